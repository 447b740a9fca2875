// The gateway: a Python 3.11 function app on the Flex Consumption plan (FC1), running as
// its user-assigned identity. App settings hold endpoints and names only, never a secret.
param name string
param planName string
param location string
param tags object = {}
param identityId string
param identityClientId string
param storageAccountName string
param deploymentContainerName string
param applicationInsightsName string
param keyVaultName string

@description('Comma-separated tenant IDs accepted in tokens.')
param authTenantIds string

@description('Comma-separated accepted token audiences (app ID URI and client ID).')
param authAudiences string

@description('Subnet for VNet integration (delegated to Microsoft.App/environments); empty for none.')
param subnetId string = ''

param maximumInstanceCount int = 40
param instanceMemoryMB int = 2048

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: keyVaultName
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    reserved: true
  }
}

resource site 'Microsoft.Web/sites@2024-04-01' = {
  name: name
  location: location
  tags: union(tags, {
    'azd-service-name': 'api'
  })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    clientCertEnabled: false
    virtualNetworkSubnetId: empty(subnetId) ? null : subnetId
    siteConfig: {
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storage.properties.primaryEndpoints.blob}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
  }
}

// Every setting the gateway reads that has a production value (functions/settings.py);
// the rest are listed with a reason in infra/settings-not-in-azure.json. A test in
// tests/infra cross-checks both against SETTING_NAMES.
var appSettings = {
  // Functions host storage, identity-based (no connection string exists: shared keys are off).
  AzureWebJobsStorage__accountName: storage.name
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identityClientId
  // DefaultAzureCredential picks the user-assigned identity by its client ID.
  AZURE_CLIENT_ID: identityClientId
  // Identity-based ingestion: Application Insights local auth is disabled.
  APPLICATIONINSIGHTS_CONNECTION_STRING: applicationInsights.properties.ConnectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'Authorization=AAD;ClientId=${identityClientId}'
  GATEWAY_ENVIRONMENT: 'production'
  GATEWAY_TABLE_ENDPOINT: storage.properties.primaryEndpoints.table
  GATEWAY_QUEUE_ENDPOINT: storage.properties.primaryEndpoints.queue
  GATEWAY_BLOB_ENDPOINT: storage.properties.primaryEndpoints.blob
  GATEWAY_SECRET_STORE: 'keyvault'
  GATEWAY_KEY_VAULT_URL: vault.properties.vaultUri
  GATEWAY_AUTH_TENANT_IDS: authTenantIds
  GATEWAY_AUTH_AUDIENCES: authAudiences
  GATEWAY_PUBLIC_BASE_URL: 'https://${site.properties.defaultHostName}'
  GATEWAY_ADMIN_ROLE: 'Gateway.Admin'
}

resource siteAppSettings 'Microsoft.Web/sites/config@2024-04-01' = {
  parent: site
  name: 'appsettings'
  properties: appSettings
}

// Deployments use Entra ID tokens (azd, az CLI); basic-auth publishing stays off.
resource ftpPublishing 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmPublishing 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'scm'
  properties: {
    allow: false
  }
}

output name string = site.name
output uri string = 'https://${site.properties.defaultHostName}'
