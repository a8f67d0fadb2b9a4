"""Azure Functions triggers, one blueprint per family. Each decodes its input, calls sync_core, maps the result."""
