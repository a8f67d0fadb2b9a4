// Example parameters for infra/main.bicep: copy, edit the values, and deploy (docs/deploy.md).
// No secret belongs here. The six secure parameters are read from environment variables, or given on the
// command line, which overrides them: -p graphClientSecret=... -p crmApiToken=... and so on.
using 'main.bicep'

param namePrefix = 'calsync'

param tags = {
  owner: 'it-operations@contoso.example'
  environment: 'production'
}

param graphAuthMode = 'client_secret'

// Application (client) id of the app registration with Calendars.ReadWrite (an example value).
param graphClientId = '11111111-2222-3333-4444-555555555555'

param crmBaseUrl = 'https://crm.contoso.example/api'

// How crmApiToken is sent: 'bearer' (Authorization: Bearer) or 'api_key' (in the header crmApiKeyHeader).
param crmAuthScheme = readEnvironmentVariable('CRM_AUTH_SCHEME', 'bearer')
param crmApiKeyHeader = readEnvironmentVariable('CRM_API_KEY_HEADER', 'X-Api-Key')

param alertEmail = 'calendar-sync-ops@contoso.example'

param mailboxFreshnessThresholdSeconds = 900

param subscriptionExpiryThresholdHours = 24

param functionFailureThreshold = 5

// Object id of the admin who runs infra/subscribe.py once (docs/deploy.md, "First run"); given on the
// command line (-p operatorPrincipalId=...), which can override only parameters assigned in this file.
param operatorPrincipalId = ''

// The sync policy (docs/sync-rules.md), stored as the SYNC_POLICY app setting.
param syncPolicy = {
  direction: 'two_way'
  own_domains: [
    'contoso.example'
  ]
  internal_events: 'skip'
  unmatched_events: 'skip'
  sync_users: [
    {
      email: 'adele@contoso.example'
      crm_user_id: 'u-adele'
    }
    {
      email: 'bruno@contoso.example'
      crm_user_id: 'u-bruno'
    }
  ]
  rooms: [
    {
      mailbox: 'harbour-room@contoso.example'
      crm_space_id: 's-harbour'
      display_name: 'Harbour Room'
      mode: 'outlook_auto_accept'
    }
  ]
}

param graphClientSecret = readEnvironmentVariable('GRAPH_CLIENT_SECRET', '')
param crmApiToken = readEnvironmentVariable('CRM_API_TOKEN', '')
param crmWebhookSecrets = readEnvironmentVariable('CRM_WEBHOOK_SECRETS', '')
param eventTagSecrets = readEnvironmentVariable('EVENT_TAG_SECRETS', '')
param webhookFunctionKey = readEnvironmentVariable('WEBHOOK_FUNCTION_KEY', '')
param crmFunctionKey = readEnvironmentVariable('CRM_FUNCTION_KEY', '')
