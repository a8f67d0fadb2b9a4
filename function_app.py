"""The Azure Functions app: registers one blueprint per trigger family. Nothing is built at import."""

import azure.functions as func

import triggers.admin
from triggers import crm_webhooks, graph_webhooks, timers, worker

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
app.register_functions(graph_webhooks.bp)
app.register_functions(crm_webhooks.bp)
app.register_functions(worker.bp)
app.register_functions(timers.bp)
app.register_functions(triggers.admin.bp)
