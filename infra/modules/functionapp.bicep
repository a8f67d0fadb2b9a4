// The Flex Consumption plan (FC1) and the Linux Python function app, with identity-based host storage,
// the deployment container reached by the managed identity, and every app setting sync_core reads
// (sync_core/settings.py). Secrets are Key Vault references resolved with the same identity.
// Flex deprecates FUNCTIONS_WORKER_RUNTIME, FUNCTIONS_EXTENSION_VERSION, WEBSITE_RUN_FROM_PACKAGE and the
// content-share settings: the runtime and its version live in functionAppConfig.runtime instead.

@description('Function app name; also the first label of its default host name.')
param name string

@description('Flex Consumption plan name.')
param planName string

@description('Azure region.')
param location string

@description('Tags for every resource.')
param tags object

@description('Resource id of the user-assigned managed identity.')
param identityId string

@description('Client id of the user-assigned managed identity.')
param identityClientId string

// Flex Consumption runs Python 3.10 to 3.14 (az functionapp list-flexconsumption-runtimes --runtime python;
// learn.microsoft.com/azure/azure-functions/supported-languages?pivots=programming-language-python). Allowed
// here: the ones the suite runs on (3.11 or 3.12: make test PYTHON=python3.1x; 3.13: make test-313).
// Not 3.10 (below requires-python; its Functions support ended in October 2026), not 3.14 (not run yet).
@description('Python version of the Flex runtime (3.11 to 3.13).')
@allowed([
  '3.11'
  '3.12'
  '3.13'
])
param pythonVersion string

@description('Memory of each instance, in MB.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int

// Flex Consumption: 1 to 1000, applied to each per-function scale group (the HTTP functions together, the
// queue worker alone, each timer alone), not to the app's total; always-ready instances do not count.
// https://learn.microsoft.com/azure/azure-functions/event-driven-scaling#limit-scale-out
// https://learn.microsoft.com/azure/azure-functions/flex-consumption-plan#per-function-scaling
@description('Upper bound on on-demand instances of each scale group (Flex allows 1 to 1000).')
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int

// How many HTTP requests one instance takes at once before Flex adds an instance (the HTTP functions scale
// as one group): https://learn.microsoft.com/azure/azure-functions/flex-consumption-how-to#set-http-concurrency-limits
@description('Concurrent HTTP invocations per instance of the HTTP group (the webhooks, health, ops).')
@minValue(1)
@maxValue(1000)
param httpPerInstanceConcurrency int

@description('URL of the blob container holding deployment packages.')
param deploymentContainerUrl string

@description('Blob endpoint of the storage account (AzureWebJobsStorage__blobServiceUri).')
param blobEndpoint string

@description('Queue endpoint of the storage account (AzureWebJobsStorage__queueServiceUri).')
param queueEndpoint string

@description('Table endpoint of the storage account (AzureWebJobsStorage__tableServiceUri).')
param tableEndpoint string

@description('Application Insights connection string (no secret: local auth is disabled on the resource).')
param appInsightsConnectionString string

@description('GRAPH_BASE_URL.')
param graphBaseUrl string

@description('GRAPH_AUTH_MODE: client_secret, or managed_identity (the identity federated with the app registration).')
@allowed([
  'client_secret'
  'managed_identity'
])
param graphAuthMode string

@description('GRAPH_TENANT_ID.')
param graphTenantId string

@description('GRAPH_CLIENT_ID.')
param graphClientId string

@description('Key Vault URI of the Graph client secret; empty unless graphAuthMode is client_secret.')
param graphClientSecretUri string

@description('CRM_BASE_URL.')
param crmBaseUrl string

@description('Key Vault URI of CRM_API_TOKEN.')
param crmApiTokenUri string

@description('CRM_AUTH_SCHEME: how CRM_API_TOKEN is sent, as a bearer token or as an API key.')
@allowed([
  'bearer'
  'api_key'
])
param crmAuthScheme string = 'bearer'

@description('CRM_API_KEY_HEADER: the header that carries the API key when crmAuthScheme is api_key.')
param crmApiKeyHeader string = 'X-Api-Key'

@description('Key Vault URI of CRM_WEBHOOK_SECRETS.')
param crmWebhookSecretsUri string

@description('Key Vault URI of EVENT_TAG_SECRETS.')
param eventTagSecretsUri string

@description('Key Vault URI of WEBHOOK_FUNCTION_KEY.')
param webhookFunctionKeyUri string

@description('SYNC_POLICY as JSON; empty to leave it unset (the app then uses its default policy).')
param syncPolicyJson string

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    tier: 'FlexConsumption'
    name: 'FC1'
  }
  properties: {
    reserved: true
  }
}

resource site 'Microsoft.Web/sites@2024-04-01' = {
  name: name
  location: location
  tags: tags
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
    siteConfig: {
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      ftpsState: 'Disabled'
    }
    // Key Vault references resolve with the user-assigned identity, not a (non-existent) system one.
    keyVaultReferenceIdentity: identityId
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: deploymentContainerUrl
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
        triggers: {
          http: {
            perInstanceConcurrency: httpPerInstanceConcurrency
          }
        }
      }
      runtime: {
        name: 'python'
        version: pythonVersion
      }
    }
  }
}

// No basic-auth publishing (FTP or SCM user/password): deployment goes through Entra ID alone.
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

var publicBaseUrl = 'https://${site.properties.defaultHostName}'

// Platform settings, read by the Functions host (and the first five by sync_core.settings too).
var appSettingsPlatform = {
  AzureWebJobsStorage__blobServiceUri: blobEndpoint
  AzureWebJobsStorage__queueServiceUri: queueEndpoint
  AzureWebJobsStorage__tableServiceUri: tableEndpoint
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identityClientId
  APPLICATIONINSIGHTS_CONNECTION_STRING: appInsightsConnectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identityClientId};Authorization=AAD'
}

// sync_core.settings.Settings, by alias.
var appSettingsSync = {
  GRAPH_BASE_URL: graphBaseUrl
  GRAPH_AUTH_MODE: graphAuthMode
  GRAPH_TENANT_ID: graphTenantId
  GRAPH_CLIENT_ID: graphClientId
  PUBLIC_BASE_URL: publicBaseUrl
  WEBHOOK_FUNCTION_KEY: '@Microsoft.KeyVault(SecretUri=${webhookFunctionKeyUri})'
  CRM_BASE_URL: crmBaseUrl
  CRM_API_TOKEN: '@Microsoft.KeyVault(SecretUri=${crmApiTokenUri})'
  CRM_AUTH_SCHEME: crmAuthScheme
  CRM_API_KEY_HEADER: crmApiKeyHeader
  CRM_WEBHOOK_SECRETS: '@Microsoft.KeyVault(SecretUri=${crmWebhookSecretsUri})'
  EVENT_TAG_SECRETS: '@Microsoft.KeyVault(SecretUri=${eventTagSecretsUri})'
}

// Each worker instance's share of Outlook's 4 concurrent requests per mailbox and app (and of the request
// budget): with maximumInstanceCount instances of the queue worker, 4 / maximumInstanceCount each, at least
// one (sync_core/adapters/graph/limits.py; docs/deploy.md, "Scale").
var graphMailboxConcurrency = max(1, 4 / maximumInstanceCount)

var appSettingsScale = {
  GRAPH_MAILBOX_CONCURRENCY: string(graphMailboxConcurrency)
}

var appSettingsGraphSecret = graphAuthMode == 'client_secret'
  ? {
      GRAPH_CLIENT_SECRET: '@Microsoft.KeyVault(SecretUri=${graphClientSecretUri})'
    }
  : {}

var appSettingsGraphIdentity = graphAuthMode == 'managed_identity'
  ? {
      GRAPH_MANAGED_IDENTITY_CLIENT_ID: identityClientId
    }
  : {}

var appSettingsPolicy = empty(syncPolicyJson)
  ? {}
  : {
      SYNC_POLICY: syncPolicyJson
    }

resource appSettings 'Microsoft.Web/sites/config@2024-04-01' = {
  parent: site
  name: 'appsettings'
  properties: union(
    appSettingsPlatform,
    appSettingsSync,
    appSettingsScale,
    appSettingsGraphSecret,
    appSettingsGraphIdentity,
    appSettingsPolicy
  )
}

// No host key: a host key opens every function. Each front door gets its own function key (Graph's routes,
// the CRM webhook), set by infra/subscribe.py once the code is published: Microsoft.Web/sites/functions/keys
// needs the function, and on Flex Consumption functions exist only after the host indexes the deployed
// package, so the resource cannot be part of this template's first deployment (docs/deploy.md).

output name string = site.name
output id string = site.id
output defaultHostName string = site.properties.defaultHostName
output url string = publicBaseUrl
