// Connector Gateway on Azure: `azd up` provisions this and deploys the function app.
// Subscription scope: creates the resource group, then one module per concern (infra/app/).
// No account keys, no secrets in app settings: every data-plane call uses the app's
// user-assigned managed identity and Entra ID role assignments (infra/app/rbac.bicep).
targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('azd environment name; with the subscription and location it seeds the resource token.')
param environmentName string

@minLength(1)
@description('Region for every resource. It must offer the Flex Consumption plan (az functionapp list-flexconsumption-locations).')
@metadata({
  azd: {
    type: 'location'
  }
})
param location string

@description('Object ID of the person (or CI service principal) running azd. When set, it gets data roles on storage and Key Vault for local development against Azure. Leave empty in production.')
param principalId string = ''

@description('Principal type of principalId.')
@allowed([
  'User'
  'ServicePrincipal'
])
param principalType string = 'User'

@minLength(36)
@maxLength(36)
@description('Application (client) ID of the Entra ID app registration that callers request tokens for (see infra/README.md).')
param apiClientId string

@description('Application ID URI of that app registration; empty means api://<apiClientId>.')
param apiAppIdUri string = ''

@description('Comma-separated Entra ID tenant IDs whose tokens the gateway accepts; empty means the tenant of this subscription.')
param authTenantIds string = ''

@description('Create a virtual network, private endpoints for storage and Key Vault, and integrate the function app with it. Storage public network access is then disabled.')
param usePrivateNetworking bool = false

@description('Key Vault public network access. Disabled takes effect only with usePrivateNetworking=true (otherwise the app could not reach its vault).')
@allowed([
  'Enabled'
  'Disabled'
])
param keyVaultPublicNetworkAccess string = 'Enabled'

@description('Upper bound on Flex Consumption instances (cost guard).')
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('Memory per Flex Consumption instance, in MB.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('Log Analytics daily ingestion cap in GB (-1: no cap).')
param logAnalyticsDailyQuotaGb int = 1

var abbrs = loadJsonContent('abbreviations.json')
var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
}
var functionAppName = '${abbrs.webSitesFunctions}api-${resourceToken}'
var deploymentContainerName = 'app-package-${resourceToken}'
var keyVaultAccess = usePrivateNetworking ? keyVaultPublicNetworkAccess : 'Enabled'
var effectiveAppIdUri = empty(apiAppIdUri) ? 'api://${apiClientId}' : apiAppIdUri
var effectiveTenantIds = empty(authTenantIds) ? tenant().tenantId : authTenantIds

// Tables the gateway reads and writes (no prefix in Azure). The app also creates any
// missing one at startup; listing them here makes them part of the deployment.
// gwheartbeats and gwclaims are written by on-premises agents (functions/onprem).
var tableNames = [
  'connectors'
  'connections'
  'definitions'
  'shares'
  'oauthstates'
  'audit'
  'gateways'
  'gwheartbeats'
  'gwclaims'
]
// Relay queues are per gateway and per app instance (functions/onprem/names.py): the
// app creates them at run time, so none is declared here.
var queueNames = []

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: '${abbrs.resourcesResourceGroups}${environmentName}'
  location: location
  tags: tags
}

module identity 'app/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    name: '${abbrs.managedIdentityUserAssignedIdentities}api-${resourceToken}'
    location: location
    tags: tags
  }
}

module storage 'app/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    name: '${abbrs.storageStorageAccounts}${resourceToken}'
    location: location
    tags: tags
    deploymentContainerName: deploymentContainerName
    tableNames: tableNames
    queueNames: queueNames
    usePrivateNetworking: usePrivateNetworking
  }
}

module keyVault 'app/keyvault.bicep' = {
  name: 'keyvault'
  scope: rg
  params: {
    name: '${abbrs.keyVaultVaults}${resourceToken}'
    location: location
    tags: tags
    publicNetworkAccess: keyVaultAccess
  }
}

module monitoring 'app/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    logAnalyticsName: '${abbrs.operationalInsightsWorkspaces}${resourceToken}'
    applicationInsightsName: '${abbrs.insightsComponents}${resourceToken}'
    location: location
    tags: tags
    dailyQuotaGb: logAnalyticsDailyQuotaGb
  }
}

module network 'app/network.bicep' = if (usePrivateNetworking) {
  name: 'network'
  scope: rg
  params: {
    vnetName: '${abbrs.networkVirtualNetworks}${resourceToken}'
    privateEndpointPrefix: abbrs.networkPrivateEndpoints
    resourceToken: resourceToken
    location: location
    tags: tags
    storageAccountId: storage.outputs.id
    keyVaultId: keyVault.outputs.id
  }
}

module rbac 'app/rbac.bicep' = {
  name: 'rbac'
  scope: rg
  params: {
    storageAccountName: storage.outputs.name
    keyVaultName: keyVault.outputs.name
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    appPrincipalId: identity.outputs.principalId
    userPrincipalId: principalId
    userPrincipalType: principalType
  }
}

module functionApp 'app/function.bicep' = {
  name: 'function'
  scope: rg
  params: {
    name: functionAppName
    planName: '${abbrs.webServerFarms}${resourceToken}'
    location: location
    tags: tags
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    storageAccountName: storage.outputs.name
    deploymentContainerName: deploymentContainerName
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    keyVaultName: keyVault.outputs.name
    authTenantIds: effectiveTenantIds
    authAudiences: '${effectiveAppIdUri},${apiClientId}'
    subnetId: usePrivateNetworking ? network.outputs.appSubnetId : ''
    maximumInstanceCount: maximumInstanceCount
    instanceMemoryMB: instanceMemoryMB
  }
  // The host reads AzureWebJobsStorage with the identity at start-up: grant roles first.
  dependsOn: [
    rbac
  ]
}

output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output RESOURCE_GROUP string = rg.name
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = functionApp.outputs.name
output SERVICE_API_NAME string = functionApp.outputs.name
output SERVICE_API_URI string = functionApp.outputs.uri
output AZURE_USER_ASSIGNED_IDENTITY_CLIENT_ID string = identity.outputs.clientId
output AZURE_STORAGE_ACCOUNT_NAME string = storage.outputs.name
output AZURE_STORAGE_QUEUE_ENDPOINT string = storage.outputs.queueEndpoint
output AZURE_KEY_VAULT_NAME string = keyVault.outputs.name
output APPLICATIONINSIGHTS_NAME string = monitoring.outputs.applicationInsightsName
output GATEWAY_TABLE_ENDPOINT string = storage.outputs.tableEndpoint
output GATEWAY_KEY_VAULT_URL string = keyVault.outputs.uri
output GATEWAY_PUBLIC_BASE_URL string = functionApp.outputs.uri
