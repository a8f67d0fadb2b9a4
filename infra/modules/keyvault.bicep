// Key Vault (RBAC, soft delete, purge protection) holding the app's secrets. The values come from secure
// parameters of main.bicep and are never written anywhere else; app settings reference them by URI.

@description('Key Vault name: 3 to 24 letters, digits and hyphens, globally unique.')
@minLength(3)
@maxLength(24)
param name string

@description('Azure region.')
param location string

@description('Tags for every resource.')
param tags object

@description('Whether Graph authenticates with a client secret (then the secret is stored).')
param storeGraphClientSecret bool

@description('Client secret of the Graph app registration (GRAPH_CLIENT_SECRET).')
@secure()
param graphClientSecret string

@description('Bearer token for the CRM API (CRM_API_TOKEN).')
@secure()
param crmApiToken string

@description('HMAC secrets for CRM webhooks, comma separated: current and next (CRM_WEBHOOK_SECRETS).')
@secure()
param crmWebhookSecrets string

@description('Keys that sign our tag on the events we write, comma separated: current, previous (EVENT_TAG_SECRETS).')
@secure()
param eventTagSecrets string

@description('Function key of the Graph routes (graph/notifications, graph/lifecycle) that Graph sends as ?code= (WEBHOOK_FUNCTION_KEY).')
@secure()
param webhookFunctionKey string

@description('Function key of the CRM webhook route (crm/webhook) that the CRM sends as ?code=; the app does not read it.')
@secure()
param crmFunctionKey string

@description('Whether the vault answers on its public endpoint (Entra ID and RBAC still decide who reads what); Disabled when it is reached through a private endpoint (docs/security.md).')
@allowed([
  'Enabled'
  'Disabled'
])
param publicNetworkAccess string = 'Enabled'

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    tenantId: subscription().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 90
    enablePurgeProtection: true
    publicNetworkAccess: publicNetworkAccess
  }
}

resource graphClientSecretEntry 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (storeGraphClientSecret) {
  parent: vault
  name: 'graph-client-secret'
  properties: {
    value: graphClientSecret
    contentType: 'text/plain'
  }
}

resource crmApiTokenEntry 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  parent: vault
  name: 'crm-api-token'
  properties: {
    value: crmApiToken
    contentType: 'text/plain'
  }
}

resource crmWebhookSecretsEntry 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  parent: vault
  name: 'crm-webhook-secrets'
  properties: {
    value: crmWebhookSecrets
    contentType: 'text/plain'
  }
}

resource eventTagSecretsEntry 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  parent: vault
  name: 'event-tag-secrets'
  properties: {
    value: eventTagSecrets
    contentType: 'text/plain'
  }
}

resource webhookFunctionKeyEntry 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  parent: vault
  name: 'webhook-function-key'
  properties: {
    value: webhookFunctionKey
    contentType: 'text/plain'
  }
}

resource crmFunctionKeyEntry 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  parent: vault
  name: 'crm-function-key'
  properties: {
    value: crmFunctionKey
    contentType: 'text/plain'
  }
}

// Who reads which secret (infra/modules/roles.bicep grants Key Vault Secrets User on each, not on the vault).
// The app resolves its Key Vault references; the operator runs infra/subscribe.py, which needs the Graph
// credential, the Graph routes' key (the notification URL) and the CRM route's key (set on the function).
var graphSecretNames = storeGraphClientSecret ? [graphClientSecretEntry.name] : []

output id string = vault.id
output appSecretNames array = concat(graphSecretNames, [
  crmApiTokenEntry.name
  crmWebhookSecretsEntry.name
  eventTagSecretsEntry.name
  webhookFunctionKeyEntry.name
])
output operatorSecretNames array = concat(graphSecretNames, [
  webhookFunctionKeyEntry.name
  crmFunctionKeyEntry.name
])
output name string = vault.name
// Versionless URIs: the app picks up a new secret version on its next restart or configuration change.
output graphClientSecretUri string = storeGraphClientSecret ? graphClientSecretEntry.properties.secretUri : ''
output crmApiTokenUri string = crmApiTokenEntry.properties.secretUri
output crmWebhookSecretsUri string = crmWebhookSecretsEntry.properties.secretUri
output eventTagSecretsUri string = eventTagSecretsEntry.properties.secretUri
output webhookFunctionKeyUri string = webhookFunctionKeyEntry.properties.secretUri
