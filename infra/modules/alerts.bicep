// Alerts, all mailed to one action group: messages in the poison queue, a stale mailbox, a Graph
// subscription close to expiry, and failing function invocations. The telemetry names the queries read are
// the contract documented in docs/deploy.md ("Telemetry the alerts and the workbook read").

@description('Azure region of the alert rules.')
param location string

@description('Tags for every resource.')
param tags object

@description('Name prefix of the action group and the rules.')
param namePrefix string

@description('Address the alerts are mailed to.')
param alertEmail string

@description('Resource id of Application Insights (scope of the telemetry alerts).')
param appInsightsId string

@description('Resource id of the Log Analytics workspace (scope of the poison-queue alert).')
param workspaceId string

@description('Name of the poison queue.')
param poisonQueueName string

@description('Alert when a mailbox has not been in step for longer than this many seconds.')
param mailboxFreshnessThresholdSeconds int

@description('Alert when a subscription expires within this many hours.')
param subscriptionExpiryThresholdHours int

@description('Alert when more function invocations than this fail within 15 minutes.')
param functionFailureThreshold int

var freshnessMetric = 'sync.mailbox_freshness_seconds'
var expiryMetric = 'sync.subscription_expiry_seconds'
var queueDepthMetric = 'sync.queue_depth'

resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = {
  name: '${namePrefix}-alerts'
  location: 'global'
  tags: tags
  properties: {
    groupShortName: take(replace(namePrefix, '-', ''), 12)
    enabled: true
    emailReceivers: [
      {
        name: 'operator'
        emailAddress: alertEmail
        useCommonAlertSchema: true
      }
    ]
  }
}

// A gauge the app emits as a custom metric (dimension `mailbox`) or, failing that, as a log line
// "<metric> mailbox=<address> value=<number>". Rows: timestamp, mailbox, seconds.
var gaugeQuery = '''
let fromMetrics = customMetrics
| where name == '{0}'
| project timestamp, mailbox = tostring(customDimensions.mailbox), seconds = todouble(coalesce(valueMax, value));
let fromTraces = traces
| where message startswith '{0} '
| parse message with * 'mailbox=' mailbox:string ' value=' seconds:real
| project timestamp, mailbox, seconds;
union fromMetrics, fromTraces
| where isnotempty(mailbox)
'''

// Every message put on the poison queue (by the host after maxDequeueCount, or by sync_core.service.retry for a
// permanent failure) is a PutMessage; a `sync.queue_depth` gauge, if the app emits one, adds the backlog.
var poisonQuery = '''
union isfuzzy=true
  (StorageQueueLogs
   | where OperationName == 'PutMessage' and Uri contains '/{0}/messages'
   | project TimeGenerated, messages = 1.0),
  (AppMetrics
   | where Name == '{1}' and tostring(Properties.queue) == '{0}'
   | project TimeGenerated, messages = todouble(Max))
'''

// Requests are sampled (host.json samplingSettings): each row stands for itemCount executions.
var failuresQuery = '''
requests
| where success == false
| project timestamp, functionName = operation_Name, failures = todouble(itemCount)
'''

resource poisonAlert 'Microsoft.Insights/scheduledQueryRules@2022-06-15' = {
  name: '${namePrefix}-poison-queue'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'Calendar sync: messages in ${poisonQueueName}'
    description: 'A change could not be synced and was moved to the poison queue; see the SyncFailures table.'
    severity: 2
    enabled: true
    scopes: [
      workspaceId
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
    skipQueryValidation: true
    autoMitigate: true
    criteria: {
      allOf: [
        {
          query: format(poisonQuery, poisonQueueName, queueDepthMetric)
          timeAggregation: 'Maximum'
          metricMeasureColumn: 'messages'
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    actions: {
      actionGroups: [
        actionGroup.id
      ]
    }
  }
}

resource freshnessAlert 'Microsoft.Insights/scheduledQueryRules@2022-06-15' = {
  name: '${namePrefix}-mailbox-freshness'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'Calendar sync: mailbox out of step'
    description: 'A mailbox has not been brought in step for longer than ${mailboxFreshnessThresholdSeconds} s (${freshnessMetric}).'
    severity: 2
    enabled: true
    scopes: [
      appInsightsId
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
    skipQueryValidation: true
    autoMitigate: true
    criteria: {
      allOf: [
        {
          query: format(gaugeQuery, freshnessMetric)
          timeAggregation: 'Maximum'
          metricMeasureColumn: 'seconds'
          dimensions: [
            {
              name: 'mailbox'
              operator: 'Include'
              values: [
                '*'
              ]
            }
          ]
          operator: 'GreaterThan'
          threshold: mailboxFreshnessThresholdSeconds
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    actions: {
      actionGroups: [
        actionGroup.id
      ]
    }
  }
}

resource expiryAlert 'Microsoft.Insights/scheduledQueryRules@2022-06-15' = {
  name: '${namePrefix}-subscription-expiry'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'Calendar sync: Graph subscription about to expire'
    description: 'A mailbox subscription expires within ${subscriptionExpiryThresholdHours} h (${expiryMetric}); renewal is failing.'
    severity: 1
    enabled: true
    scopes: [
      appInsightsId
    ]
    // The renewal timer runs every 30 minutes: a one-hour window always holds a reading.
    evaluationFrequency: 'PT15M'
    windowSize: 'PT1H'
    skipQueryValidation: true
    autoMitigate: true
    criteria: {
      allOf: [
        {
          query: format(gaugeQuery, expiryMetric)
          timeAggregation: 'Minimum'
          metricMeasureColumn: 'seconds'
          dimensions: [
            {
              name: 'mailbox'
              operator: 'Include'
              values: [
                '*'
              ]
            }
          ]
          operator: 'LessThan'
          threshold: subscriptionExpiryThresholdHours * 3600
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    actions: {
      actionGroups: [
        actionGroup.id
      ]
    }
  }
}

resource failuresAlert 'Microsoft.Insights/scheduledQueryRules@2022-06-15' = {
  name: '${namePrefix}-function-failures'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'Calendar sync: function invocations failing'
    description: 'More than ${functionFailureThreshold} failed invocations of one function in 15 minutes.'
    severity: 2
    enabled: true
    scopes: [
      appInsightsId
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
    skipQueryValidation: true
    autoMitigate: true
    criteria: {
      allOf: [
        {
          query: failuresQuery
          timeAggregation: 'Total'
          metricMeasureColumn: 'failures'
          dimensions: [
            {
              name: 'functionName'
              operator: 'Include'
              values: [
                '*'
              ]
            }
          ]
          operator: 'GreaterThan'
          threshold: functionFailureThreshold
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    actions: {
      actionGroups: [
        actionGroup.id
      ]
    }
  }
}

output actionGroupId string = actionGroup.id
