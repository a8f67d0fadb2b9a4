"""CRM connectors (the REST contract of docs/crm-contract.openapi.yaml)."""
