// Least-privilege role assignments, each named with guid(scope, principal, role) so re-deploying is a no-op.
// The app's identity gets exactly what the host and sync_core need (docs/deploy.md, "Permissions"):
//   Storage Blob Data Owner         host storage (locks, keys, timers) and the deployment container
//   Storage Queue Data Contributor  the queue trigger on sync-changes, enqueueing, and the poison queue
//   Storage Table Data Contributor  sync_core's tables and the host's diagnostic events
//   Key Vault Secrets User          on each secret it references (@Microsoft.KeyVault(...) app settings),
//                                   not on the vault: nothing else stored there is readable
//   Monitoring Metrics Publisher    sending telemetry to Application Insights with Entra ID auth
// An optional operator (the admin running infra/subscribe.py and `python -m sync_core`) gets table and queue
// access (subscription rows, backfill and replay messages) and Key Vault Secrets User on the secrets
// infra/subscribe.py reads only (keyvault.bicep operatorSecretNames), each assignment scoped to one secret.
// Secret-scoped RBAC: https://learn.microsoft.com/azure/key-vault/general/rbac-guide (Best practices:
// individual keys, secrets and certificates role assignments).

@description('Storage account name.')
param storageAccountName string

@description('Key Vault name.')
param keyVaultName string

@description('Application Insights name.')
param appInsightsName string

@description('Secrets the app resolves through Key Vault references.')
param appSecretNames array

@description('Secrets the operator reads (infra/subscribe.py).')
param operatorSecretNames array

@description('Principal (object) id of the app\'s user-assigned identity.')
param appPrincipalId string

@description('Object id of an admin who runs infra/subscribe.py from their machine; empty for none.')
param operatorPrincipalId string

@description('Principal type of the operator.')
@allowed([
  'User'
  'Group'
  'ServicePrincipal'
])
param operatorPrincipalType string

// Built-in role definition ids (https://learn.microsoft.com/azure/role-based-access-control/built-in-roles).
var roles = {
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  storageQueueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
  storageTableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
  keyVaultSecretsUser: '4633458b-17de-408a-b874-0445c86b69e6'
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb'
}

var storageRolesForApp = [
  roles.storageBlobDataOwner
  roles.storageQueueDataContributor
  roles.storageTableDataContributor
]

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: keyVaultName
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: appInsightsName
}

resource appStorageRoles 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for roleId in storageRolesForApp: {
    name: guid(storage.id, appPrincipalId, roleId)
    scope: storage
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleId)
      principalId: appPrincipalId
      principalType: 'ServicePrincipal'
    }
  }
]

resource appSecrets 'Microsoft.KeyVault/vaults/secrets@2023-07-01' existing = [
  for secretName in appSecretNames: {
    parent: vault
    name: secretName
  }
]

resource appSecretRoles 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for (secretName, i) in appSecretNames: {
    name: guid(vault.id, secretName, appPrincipalId, roles.keyVaultSecretsUser)
    scope: appSecrets[i]
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.keyVaultSecretsUser)
      principalId: appPrincipalId
      principalType: 'ServicePrincipal'
    }
  }
]

resource appTelemetryRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(appInsights.id, appPrincipalId, roles.monitoringMetricsPublisher)
  scope: appInsights
  properties: {
    roleDefinitionId: subscriptionResourceId(
      'Microsoft.Authorization/roleDefinitions',
      roles.monitoringMetricsPublisher
    )
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource operatorTableRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(operatorPrincipalId)) {
  name: guid(storage.id, operatorPrincipalId, roles.storageTableDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId(
      'Microsoft.Authorization/roleDefinitions',
      roles.storageTableDataContributor
    )
    principalId: operatorPrincipalId
    principalType: operatorPrincipalType
  }
}

resource operatorQueueRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(operatorPrincipalId)) {
  name: guid(storage.id, operatorPrincipalId, roles.storageQueueDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId(
      'Microsoft.Authorization/roleDefinitions',
      roles.storageQueueDataContributor
    )
    principalId: operatorPrincipalId
    principalType: operatorPrincipalType
  }
}

var operatorSecretNamesGranted = empty(operatorPrincipalId) ? [] : operatorSecretNames

resource operatorSecrets 'Microsoft.KeyVault/vaults/secrets@2023-07-01' existing = [
  for secretName in operatorSecretNamesGranted: {
    parent: vault
    name: secretName
  }
]

resource operatorSecretRoles 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for (secretName, i) in operatorSecretNamesGranted: {
    name: guid(vault.id, secretName, operatorPrincipalId, roles.keyVaultSecretsUser)
    scope: operatorSecrets[i]
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.keyVaultSecretsUser)
      principalId: operatorPrincipalId
      principalType: operatorPrincipalType
    }
  }
]
