// The app's user-assigned managed identity. User-assigned rather than system-assigned because it exists
// before the app: its role assignments are in place when the app first starts (host storage, Key Vault
// references), its client id is known at deployment time (AzureWebJobsStorage__clientId), and it survives
// re-creating the app.

@description('Name of the user-assigned managed identity.')
param name string

@description('Azure region.')
param location string

@description('Tags for every resource.')
param tags object

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: name
  location: location
  tags: tags
}

output id string = identity.id
output name string = identity.name
output clientId string = identity.properties.clientId
output principalId string = identity.properties.principalId
