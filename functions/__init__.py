"""Connector Gateway: a self-hosted gateway for custom connectors.

Layout (each layer talks only to the next):
    api/        FastAPI app: thin routes, request parsing, problem+json
    identity/   caller authentication (Entra ID JWTs, local development issuer)
    services/   what the gateway does (connectors, connections, invocation)
    domain/     plain records
    stores/     Table Storage metadata and secret stores behind small interfaces
    upstream/   building and sending upstream requests with credentials
    powerplatform/  Power Platform connector definitions (parse, policies, export)
    cli/        `python -m functions ...`
    devtools/   local runner helpers (Azurite, local settings)
"""
