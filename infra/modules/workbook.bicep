// An Azure Workbook over Application Insights: sync latency, mailbox freshness, decisions by rule, failures.
// Decisions come from the worker's "decided <rule> for <side> ...: <reason> (...) writes=<n> [...]" log line
// (sync_core/service/worker.py); the sync.* metrics are described in docs/deploy.md.
// host.json keeps successful executions in `requests` (Host.Results at Information) and samples them
// (adaptive sampling, exceptions excluded): a count of requests is sum(itemCount), and percentiles of the
// sampled rows stand for all. tests/infra/test_kql_names.py checks every name these queries read against
// what the app emits: metric names and dimensions (sync_core/adapters/telemetry.py), function names
// (triggers/), and the log lines parsed.

@description('Azure region.')
param location string

@description('Tags for every resource.')
param tags object

@description('Display name of the workbook.')
param displayName string

@description('Resource id of Application Insights.')
param appInsightsId string

var aiResourceType = 'microsoft.insights/components'

var workerLatencyQuery = '''
requests
| where operation_Name == 'sync_worker'
| summarize p50 = percentile(duration, 50), p95 = percentile(duration, 95), p99 = percentile(duration, 99)
    by bin(timestamp, 15m)
| render timechart
'''

var endToEndLatencyQuery = '''
customMetrics
| where name == 'sync.latency_seconds'
| extend seconds = todouble(coalesce(valueMax, value)), side = tostring(customDimensions.side)
| summarize p50 = percentile(seconds, 50), p95 = percentile(seconds, 95) by bin(timestamp, 15m), side
| render timechart
'''

var freshnessQuery = '''
union
  (customMetrics
   | where name == 'sync.mailbox_freshness_seconds'
   | project timestamp, mailbox = tostring(customDimensions.mailbox), seconds = todouble(coalesce(valueMax, value))),
  (traces
   | where message startswith 'sync.mailbox_freshness_seconds '
   | parse message with * 'mailbox=' mailbox:string ' value=' seconds:real
   | project timestamp, mailbox, seconds)
| where isnotempty(mailbox)
| summarize arg_max(timestamp, seconds) by mailbox
| project mailbox, seconds, last_reading = timestamp
| order by seconds desc
'''

var decisionsByRuleQuery = '''
traces
| where message startswith 'decided '
| parse message with 'decided ' rule:string ' for ' side:string ' ' * 'writes=' writes:int ' [' *
| summarize decisions = count() by bin(timestamp, 1h), rule
| render columnchart kind=stacked
'''

var writesByRuleQuery = '''
traces
| where message startswith 'decided '
| parse message with 'decided ' rule:string ' for ' side:string ' ' * 'writes=' writes:int ' [' *
| summarize decisions = count(), with_writes = countif(writes > 0), no_ops = countif(writes == 0) by rule, side
| order by decisions desc
'''

var failedInvocationsQuery = '''
requests
| where success == false
| summarize failures = sum(itemCount) by bin(timestamp, 15m), operation_Name
| render timechart
'''

var errorLogQuery = '''
union
  (traces | where severityLevel >= 3 | project timestamp, function = operation_Name, text = message),
  (exceptions | project timestamp, function = operation_Name, text = strcat(type, ': ', outerMessage))
| order by timestamp desc
| take 100
'''

func queryItem(name string, title string, query string, visualization string, resourceType string) object => {
  type: 3
  name: name
  content: {
    version: 'KqlItem/1.0'
    title: title
    query: query
    size: 0
    queryType: 0
    resourceType: resourceType
    visualization: visualization
    timeContext: {
      durationMs: 86400000
    }
  }
}

var workbookContent = {
  version: 'Notebook/1.0'
  isLocked: false
  fallbackResourceIds: [
    appInsightsId
  ]
  items: [
    {
      type: 1
      name: 'intro'
      content: {
        json: '## Calendar sync\nLatency, freshness, decisions by rule and failures over the last 24 hours.'
      }
    }
    queryItem('worker-latency', 'Worker duration per message (ms)', workerLatencyQuery, 'timechart', aiResourceType)
    queryItem('sync-latency', 'Change to applied (s), by side', endToEndLatencyQuery, 'timechart', aiResourceType)
    queryItem('freshness', 'Mailbox freshness (s), latest reading', freshnessQuery, 'table', aiResourceType)
    queryItem('decisions-by-rule', 'Decisions by rule', decisionsByRuleQuery, 'barchart', aiResourceType)
    queryItem('writes-by-rule', 'Writes and no-ops by rule', writesByRuleQuery, 'table', aiResourceType)
    queryItem('failed-invocations', 'Failed invocations', failedInvocationsQuery, 'timechart', aiResourceType)
    queryItem('errors', 'Errors and exceptions', errorLogQuery, 'table', aiResourceType)
  ]
}

resource workbook 'Microsoft.Insights/workbooks@2023-06-01' = {
  name: guid(resourceGroup().id, appInsightsId, 'calendar-sync-workbook')
  location: location
  tags: tags
  kind: 'shared'
  properties: {
    displayName: displayName
    category: 'workbook'
    sourceId: appInsightsId
    version: 'Notebook/1.0'
    serializedData: string(workbookContent)
  }
}

output id string = workbook.id
