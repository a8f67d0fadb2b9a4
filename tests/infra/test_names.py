"""Queue, table and route names agree between sync_core, the registered functions and infra/."""

from __future__ import annotations

import pytest
from azure.functions.decorators.core import Binding
from azure.functions.decorators.function_app import Function
from bicep_reader import BicepFile, literal, string_value

from sync_core.adapters.storage.core import CHANGES_QUEUE, POISON_QUEUE, QUEUES, TABLES


@pytest.fixture(scope="module")
def functions() -> list[Function]:
    from tests.conftest import app_functions  # nothing is built at import (function_app.py)

    return app_functions()


def _queue_triggers(functions: list[Function]) -> list[Binding]:
    return [b for f in functions for b in f.get_bindings() if b.type == "queueTrigger"]


def test_template_creates_exactly_the_queues_sync_core_uses(main_bicep: BicepFile) -> None:
    assert literal(main_bicep.var("queueNames")) == list(QUEUES)


def test_template_creates_exactly_the_tables_sync_core_uses(main_bicep: BicepFile) -> None:
    assert literal(main_bicep.var("tableNames")) == list(TABLES)


def test_the_poison_queue_alerted_on_is_the_hosts_poison_queue(main_bicep: BicepFile) -> None:
    assert literal(main_bicep.var("poisonQueueName")) == POISON_QUEUE == f"{CHANGES_QUEUE}-poison"


def test_every_queue_trigger_listens_on_a_queue_the_template_creates(
    main_bicep: BicepFile, functions: list[Function]
) -> None:
    created = literal(main_bicep.var("queueNames"))
    triggers = _queue_triggers(functions)
    assert triggers, "function_app registers no queue trigger"
    for binding in triggers:
        assert binding.queue_name in created
        # The host moves a message that keeps failing to <queue>-poison (maxDequeueCount in host.json).
        assert f"{binding.queue_name}-poison" in created


def test_queue_trigger_connections_are_set_identity_based(
    function_app_bicep: BicepFile, functions: list[Function]
) -> None:
    source = function_app_bicep.source
    for binding in _queue_triggers(functions):
        assert f"{binding.connection}__queueServiceUri:" in source
        assert f"{binding.connection}__credential: 'managedidentity'" in source


@pytest.mark.parametrize(
    ("output", "route"),
    [
        ("graphNotificationUrl", "graph/notifications"),
        ("graphLifecycleUrl", "graph/lifecycle"),
        ("crmWebhookUrl", "crm/webhook"),
    ],
)
def test_url_outputs_point_at_registered_http_routes(
    main_bicep: BicepFile, functions: list[Function], output: str, route: str
) -> None:
    routes = {f.get_trigger().route for f in functions if f.get_trigger().type == "httpTrigger"}
    assert route in routes
    value = main_bicep.outputs()[output].value
    assert value is not None
    assert value.text.decode() == f"'${{app.outputs.url}}/api/{route}'"


def test_deployment_container_name_is_a_valid_container_name(main_bicep: BicepFile) -> None:
    name = string_value(main_bicep.var("deploymentContainerName"))
    assert 3 <= len(name) <= 63 and name == name.lower() and name.replace("-", "").isalnum()
