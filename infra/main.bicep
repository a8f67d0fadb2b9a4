// Microsoft 365 <-> CRM calendar sync: everything it runs on, in one resource group, in one command
// (docs/deploy.md):
//   az deployment group create -g <rg> -f infra/main.bicep -p infra/main.bicepparam -p graphClientSecret=...
// A Flex Consumption function app with a user-assigned identity, identity-only storage, Key Vault for the
// secrets, Application Insights on Log Analytics, alerts mailed to an operator, and a workbook.

targetScope = 'resourceGroup'

@description('Azure region of every resource; must offer Flex Consumption (az functionapp list-flexconsumption-locations).')
param location string = resourceGroup().location

@description('Short prefix of every resource name (letters, digits, hyphens).')
@minLength(3)
@maxLength(11)
param namePrefix string = 'calsync'

@description('Tags for every resource.')
param tags object = {}

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
param pythonVersion string = '3.11'

@description('Memory of each Flex instance, in MB.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

// 4 keeps Outlook's 4 concurrent requests per mailbox and app across the queue worker's instances: each
// instance holds one place per mailbox (GRAPH_MAILBOX_CONCURRENCY). Above 4, each still holds one, and one
// busy mailbox can see maximumInstanceCount requests at once, answered 429 (docs/deploy.md, "Scale").
@description('Upper bound on on-demand instances of each Flex scale group (1 to 1000; docs/deploy.md, "Scale").')
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 4

@description('Concurrent HTTP requests one instance takes before Flex adds another (webhooks answer in milliseconds).')
@minValue(1)
@maxValue(1000)
param httpPerInstanceConcurrency int = 16

@description('Days Log Analytics keeps logs and telemetry.')
@minValue(30)
@maxValue(730)
param logRetentionDays int = 30

@description('GRAPH_BASE_URL: Microsoft Graph v1.0 endpoint of the cloud the tenant lives in.')
param graphBaseUrl string = 'https://graph.microsoft.com/v1.0'

@description('GRAPH_AUTH_MODE: client_secret (an app registration secret in Key Vault) or managed_identity (the app registration trusts this app\'s managed identity through a federated credential).')
@allowed([
  'client_secret'
  'managed_identity'
])
param graphAuthMode string = 'client_secret'

@description('GRAPH_TENANT_ID: Entra tenant of the app registration; defaults to this subscription\'s tenant.')
param graphTenantId string = subscription().tenantId

@description('GRAPH_CLIENT_ID: application (client) id of the app registration with Calendars.ReadWrite.')
param graphClientId string

@description('GRAPH_CLIENT_SECRET: client secret of the app registration, stored in Key Vault. Pass an empty string with graphAuthMode=managed_identity.')
@secure()
param graphClientSecret string

@description('CRM_BASE_URL: base URL of the CRM API (docs/crm-contract.openapi.yaml).')
param crmBaseUrl string

@description('CRM_API_TOKEN: the CRM API\'s bearer token, or its API key with crmAuthScheme=api_key, stored in Key Vault.')
@secure()
@minLength(1)
param crmApiToken string

@description('CRM_AUTH_SCHEME: bearer (Authorization: Bearer <token>) or api_key (the token in crmApiKeyHeader).')
@allowed([
  'bearer'
  'api_key'
])
param crmAuthScheme string = 'bearer'

@description('CRM_API_KEY_HEADER: the header that carries the API key when crmAuthScheme is api_key.')
param crmApiKeyHeader string = 'X-Api-Key'

@description('CRM_WEBHOOK_SECRETS: HMAC secrets of CRM webhooks, comma separated (current,next), stored in Key Vault.')
@secure()
@minLength(1)
param crmWebhookSecrets string

@description('EVENT_TAG_SECRETS: keys (at least 32 characters, comma separated: current,previous) that sign our tag on the events we write, stored in Key Vault.')
@secure()
@minLength(32)
param eventTagSecrets string

@description('WEBHOOK_FUNCTION_KEY: the function key of the Graph routes (graph/notifications, graph/lifecycle) that Graph sends as ?code= (for example `openssl rand -hex 32`), stored in Key Vault; infra/subscribe.py sets it on those two functions.')
@secure()
@minLength(32)
param webhookFunctionKey string

@description('CRM_FUNCTION_KEY: the function key of crm/webhook that the CRM sends as ?code= (for example `openssl rand -hex 32`), stored in Key Vault; infra/subscribe.py sets it on that function.')
@secure()
@minLength(32)
param crmFunctionKey string

@description('Key Vault public endpoint: Enabled (Entra ID and per-secret RBAC decide access), or Disabled with a private endpoint you add (docs/security.md, "Network").')
@allowed([
  'Enabled'
  'Disabled'
])
param keyVaultPublicNetworkAccess string = 'Enabled'

@description('SYNC_POLICY: the sync policy (docs/sync-rules.md); an empty object leaves SYNC_POLICY unset and the app uses its defaults.')
param syncPolicy object = {}

@description('Address the alerts are mailed to.')
param alertEmail string

@description('Alert when a mailbox has been out of step for longer than this many seconds.')
@minValue(60)
param mailboxFreshnessThresholdSeconds int = 900

@description('Alert when a Graph subscription expires within this many hours (they are renewed three days ahead).')
@minValue(1)
@maxValue(72)
param subscriptionExpiryThresholdHours int = 24

@description('Alert when one function fails more often than this within 15 minutes.')
@minValue(0)
param functionFailureThreshold int = 5

@description('Object id of the admin who runs infra/subscribe.py (table access and secret reads); empty for none.')
param operatorPrincipalId string = ''

@description('Principal type of operatorPrincipalId.')
@allowed([
  'User'
  'Group'
  'ServicePrincipal'
])
param operatorPrincipalType string = 'User'

// The names sync_core uses (sync_core/adapters/storage/core.py QUEUES and TABLES; tests/infra keep them equal).
var queueNames = [
  'sync-changes'
  'sync-changes-poison'
  'sync-bulk'
  'sync-bulk-poison'
]
var tableNames = [
  'SyncMappings'
  'SyncDecisions'
  'SyncSubscriptions'
  'SyncMailboxes'
  'SyncFailures'
]
var poisonQueueName = 'sync-changes-poison'

var deploymentContainerName = 'app-package'
// Function keys, one per front door (not a host key, which opens every function): infra/subscribe.py sets
// them after the code is published, because a function exists only once the host has indexed the package.
var graphFunctionKeyName = 'graph'
var crmFunctionKeyName = 'crm'

var suffix = uniqueString(resourceGroup().id, namePrefix)
var functionAppName = '${namePrefix}-${suffix}'
var storageAccountName = take(toLower('st${replace(namePrefix, '-', '')}${suffix}'), 24)
var keyVaultName = take('kv-${namePrefix}-${suffix}', 24)
var allTags = union(tags, {
  application: 'calendar-sync'
})

module identity 'modules/identity.bicep' = {
  name: 'identity'
  params: {
    name: '${namePrefix}-id-${suffix}'
    location: location
    tags: allTags
  }
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  params: {
    workspaceName: '${namePrefix}-logs-${suffix}'
    appInsightsName: '${namePrefix}-ai-${suffix}'
    location: location
    tags: allTags
    retentionInDays: logRetentionDays
  }
}

module storage 'modules/storage.bicep' = {
  name: 'storage'
  params: {
    name: storageAccountName
    location: location
    tags: allTags
    deploymentContainerName: deploymentContainerName
    queueNames: queueNames
    tableNames: tableNames
    logAnalyticsWorkspaceId: monitoring.outputs.workspaceId
  }
}

module vault 'modules/keyvault.bicep' = {
  name: 'keyvault'
  params: {
    name: keyVaultName
    location: location
    tags: allTags
    storeGraphClientSecret: graphAuthMode == 'client_secret'
    graphClientSecret: graphClientSecret
    crmApiToken: crmApiToken
    crmWebhookSecrets: crmWebhookSecrets
    eventTagSecrets: eventTagSecrets
    webhookFunctionKey: webhookFunctionKey
    crmFunctionKey: crmFunctionKey
    publicNetworkAccess: keyVaultPublicNetworkAccess
  }
}

module roles 'modules/roles.bicep' = {
  name: 'roles'
  params: {
    storageAccountName: storage.outputs.name
    keyVaultName: vault.outputs.name
    appSecretNames: vault.outputs.appSecretNames
    operatorSecretNames: vault.outputs.operatorSecretNames
    appInsightsName: monitoring.outputs.appInsightsName
    appPrincipalId: identity.outputs.principalId
    operatorPrincipalId: operatorPrincipalId
    operatorPrincipalType: operatorPrincipalType
  }
}

module app 'modules/functionapp.bicep' = {
  name: 'functionapp'
  params: {
    name: functionAppName
    planName: '${namePrefix}-plan-${suffix}'
    location: location
    tags: allTags
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    pythonVersion: pythonVersion
    instanceMemoryMB: instanceMemoryMB
    maximumInstanceCount: maximumInstanceCount
    httpPerInstanceConcurrency: httpPerInstanceConcurrency
    deploymentContainerUrl: storage.outputs.deploymentContainerUrl
    blobEndpoint: storage.outputs.blobEndpoint
    queueEndpoint: storage.outputs.queueEndpoint
    tableEndpoint: storage.outputs.tableEndpoint
    appInsightsConnectionString: monitoring.outputs.connectionString
    graphBaseUrl: graphBaseUrl
    graphAuthMode: graphAuthMode
    graphTenantId: graphTenantId
    graphClientId: graphClientId
    graphClientSecretUri: vault.outputs.graphClientSecretUri
    crmBaseUrl: crmBaseUrl
    crmApiTokenUri: vault.outputs.crmApiTokenUri
    crmAuthScheme: crmAuthScheme
    crmApiKeyHeader: crmApiKeyHeader
    crmWebhookSecretsUri: vault.outputs.crmWebhookSecretsUri
    eventTagSecretsUri: vault.outputs.eventTagSecretsUri
    webhookFunctionKeyUri: vault.outputs.webhookFunctionKeyUri
    syncPolicyJson: empty(syncPolicy) ? '' : string(syncPolicy)
  }
  // The host reads storage and Key Vault at its first start: grant the identity its roles first.
  dependsOn: [
    roles
  ]
}

module alerts 'modules/alerts.bicep' = {
  name: 'alerts'
  params: {
    location: location
    tags: allTags
    namePrefix: namePrefix
    alertEmail: alertEmail
    appInsightsId: monitoring.outputs.appInsightsId
    workspaceId: monitoring.outputs.workspaceId
    poisonQueueName: poisonQueueName
    mailboxFreshnessThresholdSeconds: mailboxFreshnessThresholdSeconds
    subscriptionExpiryThresholdHours: subscriptionExpiryThresholdHours
    functionFailureThreshold: functionFailureThreshold
  }
}

module workbook 'modules/workbook.bicep' = {
  name: 'workbook'
  params: {
    location: location
    tags: allTags
    displayName: 'Calendar sync (${functionAppName})'
    appInsightsId: monitoring.outputs.appInsightsId
  }
}

@description('Name of the function app (for func azure functionapp publish and az functionapp commands).')
output functionAppName string = app.outputs.name

@description('Base URL of the function app (PUBLIC_BASE_URL).')
output functionAppUrl string = app.outputs.url

@description('Graph change notification URL; the app registers it itself, with ?code=<WEBHOOK_FUNCTION_KEY>.')
output graphNotificationUrl string = '${app.outputs.url}/api/graph/notifications'

@description('Graph lifecycle notification URL; the app registers it itself, with ?code=<WEBHOOK_FUNCTION_KEY>.')
output graphLifecycleUrl string = '${app.outputs.url}/api/graph/lifecycle'

@description('URL to configure in the CRM\'s webhook settings, followed by ?code=<CRM_FUNCTION_KEY>.')
output crmWebhookUrl string = '${app.outputs.url}/api/crm/webhook'

@description('Name of the function key (on graph_notifications and graph_lifecycle) whose value is WEBHOOK_FUNCTION_KEY.')
output graphFunctionKeyName string = graphFunctionKeyName

@description('Name of the function key (on crm_webhook) whose value is CRM_FUNCTION_KEY.')
output crmFunctionKeyName string = crmFunctionKeyName

@description('Key Vault holding the secrets.')
output keyVaultName string = vault.outputs.name

@description('Storage account of the queues and tables.')
output storageAccountName string = storage.outputs.name

@description('Application Insights resource.')
output appInsightsName string = monitoring.outputs.appInsightsName

@description('Resource id of the workbook.')
output workbookId string = workbook.outputs.id
