"""The front doors: Graph notifications and CRM webhooks, validated and queued."""
