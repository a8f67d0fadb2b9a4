"""Azure Functions triggers, one blueprint per family: decode the input, call sync_core, map the result."""
