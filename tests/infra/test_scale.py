"""Flex Consumption scale settings made on purpose (issue 17, item 5): the instance bound, the HTTP
concurrency of the webhook group, and each instance's share of Outlook's per-mailbox limit.

Flex applies maximumInstanceCount to each per-function scale group (the HTTP functions together, the queue
worker alone): learn.microsoft.com/azure/azure-functions/event-driven-scaling#limit-scale-out. Outlook allows
4 concurrent requests per app and mailbox: learn.microsoft.com/graph/throttling-limits#outlook-service-limits.
"""

from __future__ import annotations

from bicep_reader import INFRA, BicepFile, descendants, key_of, literal, load, properties, text
from tree_sitter import Node

from sync_core.adapters.graph.limits import MAX_CONCURRENT_PER_MAILBOX

APP = INFRA / "modules" / "functionapp.bicep"


def _key(prop: Node) -> str:
    return text(prop.named_children[0]).strip("'")


def _scale_block(bicep: BicepFile) -> dict[str, str]:
    for obj in bicep.nodes("object"):
        for prop in properties(obj):
            if _key(prop) == "scaleAndConcurrency":
                block = prop.named_children[-1]
                flat = {key_of(p): text(p.named_children[-1]) for p in properties(block)}
                for inner in descendants(block, "object_property"):
                    flat[key_of(inner)] = text(inner.named_children[-1])
                return flat
    raise AssertionError("functionapp.bicep has no scaleAndConcurrency")


def test_the_template_sets_the_instance_bound_and_the_http_concurrency(main_bicep: BicepFile) -> None:
    scale = _scale_block(load(APP))
    assert scale["maximumInstanceCount"] == "maximumInstanceCount"
    assert scale["perInstanceConcurrency"] == "httpPerInstanceConcurrency"
    for name in ("maximumInstanceCount", "httpPerInstanceConcurrency"):
        decorators = main_bicep.params()[name].decorators
        assert "minValue(1)" in decorators and "maxValue(1000)" in decorators, (name, decorators)


def test_each_instance_gets_its_share_of_the_mailbox_limit_and_the_default_bound_keeps_it(
    main_bicep: BicepFile,
) -> None:
    app = load(APP)
    assert text(app.var("graphMailboxConcurrency")) == "max(1, 4 / maximumInstanceCount)"
    assert text(app.var("appSettingsScale")).replace(" ", "").replace("\n", "") == (
        "{GRAPH_MAILBOX_CONCURRENCY:string(graphMailboxConcurrency)}"
    )
    default = main_bicep.params()["maximumInstanceCount"].value
    assert default is not None
    instances = literal(default)
    share = max(1, 4 // instances)  # Bicep's / on integers truncates
    assert instances * share <= MAX_CONCURRENT_PER_MAILBOX, "the default bound keeps Graph's 4 per mailbox"


def test_deploy_doc_says_what_happens_at_forty_instances(deploy_doc: str) -> None:
    scale = deploy_doc[deploy_doc.index("## Scale") :]
    assert "40 instances" in scale and "GRAPH_MAILBOX_CONCURRENCY" in scale and "429" in scale
