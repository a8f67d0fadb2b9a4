"""Builds the app's dependencies once, lazily, from validated settings: the only composition root.
I/O side.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from sync_core.adapters import telemetry
from sync_core.adapters.crm.dataverse import DataverseConnector
from sync_core.adapters.crm.rest import RestCrmConnector
from sync_core.adapters.crm.salesforce import SalesforceConnector
from sync_core.adapters.graph.adapter import GraphAdapter
from sync_core.adapters.graph.base import build_client
from sync_core.adapters.storage.core import (
    BULK_QUEUE,
    DECISIONS_TABLE,
    FAILURES_TABLE,
    MAILBOXES_TABLE,
    MAPPINGS_TABLE,
    SUBSCRIPTIONS_TABLE,
    Storage,
)
from sync_core.adapters.storage.decisions import DecisionLog
from sync_core.adapters.storage.deletes import TableDeleteBudget
from sync_core.adapters.storage.failures import FailureLedger
from sync_core.adapters.storage.mappings import MappingStore
from sync_core.adapters.storage.notices import NoticeLedger
from sync_core.adapters.storage.replays import ReplayGuard
from sync_core.adapters.storage.subscriptions import MailboxScope, RunLease, SubscriptionStore
from sync_core.clock import Clock, SystemClock
from sync_core.domain.messages import AnyMessage, CrmChange, GraphChange, MailboxResync, SubscriptionLifecycle
from sync_core.domain.policy import Policy, load_policy
from sync_core.errors import ConfigurationError
from sync_core.ingress.graph import NotificationClock
from sync_core.ports.crm import CrmCapabilities, CrmConnector
from sync_core.service.lifecycle import LifecycleHandler
from sync_core.service.reconcile import MailboxStateStore, Reconciler
from sync_core.service.subscription_manager import RENEWAL_LEASE, SubscriptionManager
from sync_core.service.worker import Worker
from sync_core.settings import Settings, load_settings

log = logging.getLogger(__name__)

# What our REST contract (docs/crm-contract.openapi.yaml) holds: the neutral model as it is.
REST_CAPABILITIES = CrmCapabilities(
    connector="rest",
    recurrence="native",
    exceptions="native",
    attendee_responses="native",
    rooms="spaces",
    change_feed="cursor",
)


def crm_connector(
    settings: Settings, clock: Callable[[], datetime] | None = None
) -> tuple[CrmConnector, CrmCapabilities]:
    """The CRM connector CRM_CONNECTOR names, and what its CRM can hold; `clock` is the container's."""
    if settings.crm_connector_name == "dataverse":
        return DataverseConnector.from_settings(settings), DataverseConnector.capabilities
    if settings.crm_connector_name == "salesforce":
        return SalesforceConnector.from_settings(settings, clock), SalesforceConnector.capabilities
    return RestCrmConnector.from_settings(settings), REST_CAPABILITIES  # CRM_AUTH_SCHEME: bearer or api_key


def policy_from(settings: Settings) -> Policy:
    if settings.sync_policy:
        try:
            return load_policy(json.loads(settings.sync_policy))
        except json.JSONDecodeError as exc:
            raise ConfigurationError([f"SYNC_POLICY: not valid JSON ({exc})"]) from exc
    if settings.sync_policy_file:
        path = Path(settings.sync_policy_file)
        if not path.is_file():
            raise ConfigurationError([f"SYNC_POLICY_FILE: no such file {path}"])
        return load_policy(path)
    return Policy.default()


@lru_cache(maxsize=1)
def configuration() -> tuple[Settings, Policy]:
    """Settings and policy, validated together so one error lists every problem of both."""
    problems: list[str] = []
    settings: Settings | None = None
    policy: Policy | None = None
    try:
        settings = load_settings()
    except ConfigurationError as exc:
        problems += exc.problems
    if settings is not None:
        try:
            policy = policy_from(settings)
        except ConfigurationError as exc:
            problems += exc.problems
    if problems or settings is None or policy is None:
        raise ConfigurationError(problems)
    return settings, policy


class Container:
    """Every dependency of the triggers, wired once, all reading the time from one `clock`."""

    def __init__(self, settings: Settings, policy: Policy, clock: Clock | None = None) -> None:
        self.settings = settings
        self.policy = policy
        self.clock: Clock = clock or SystemClock()
        self.storage = Storage(settings)
        self.graph = GraphAdapter(
            build_client(settings),
            extended_property_id=policy.extended_property_id,
            tag_secrets=settings.tag_secrets,
        )
        self.crm, self.crm_capabilities = crm_connector(settings, self.clock.now)
        log.info("CRM connector %s: %s", self.crm_capabilities.connector, self.crm_capabilities.describe())
        self.mappings = MappingStore(self.storage.table(MAPPINGS_TABLE))
        self.decisions = DecisionLog(self.storage.table(DECISIONS_TABLE))
        self.subscriptions = SubscriptionStore(self.storage.table(SUBSCRIPTIONS_TABLE))
        self.failures = FailureLedger(self.storage.table(FAILURES_TABLE))
        # CRM webhook plumbing shares the subscriptions table, in partitions of its own (replays)
        self.replays = ReplayGuard(self.storage.table(SUBSCRIPTIONS_TABLE))
        self.notices = NoticeLedger(self.storage.table(MAPPINGS_TABLE))
        self.deletes = TableDeleteBudget(self.storage.table(MAILBOXES_TABLE))
        self.worker = Worker(
            graph=self.graph,
            crm=self.crm,
            mappings=self.mappings,
            decisions=self.decisions,
            policy=policy,
            clock=self.clock.now,
            notices=self.notices,
            deletes=self.deletes,
        )
        self.mailbox_states = MailboxStateStore(self.storage.table(MAILBOXES_TABLE))
        self.heard = NotificationClock(self.mailbox_states.touch_notification)  # X2, for the Graph ingress
        self.reconciler = Reconciler(
            graph=self.graph,
            states=self.mailbox_states,
            policy=policy,
            enqueue=functools.partial(self.storage.enqueue, queue=BULK_QUEUE),  # fairness.py
            clock=self.clock.now,
            mappings=self.mappings,
            lease=self.subscriptions.resync_lease,  # one round per mailbox at a time
        )
        self.lifecycle = LifecycleHandler(
            graph=self.graph,
            store=self.subscriptions,
            manager=self.subscription_manager(),
            clock=self.clock.now,
        )
        self._routes: dict[type[AnyMessage], Callable[[Any], Awaitable[object]]] = {
            GraphChange: self.worker.handle,
            CrmChange: self.worker.handle,
            MailboxResync: self.reconciler.resync_mailbox,
            SubscriptionLifecycle: self.lifecycle.handle,
        }

    def subscription_manager(
        self,
        *,
        lease: bool = False,
        mailbox: str | None = None,
        enqueue: Callable[[str], Awaitable[None]] | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> SubscriptionManager:
        """The subscription manager: with `lease`, under the renewal runs' lease (the timer's and an
        operator's never overlap); with `mailbox`, seeing only that mailbox's rows. A benchmark or a
        simulation may catch what it enqueues and how it waits."""
        return SubscriptionManager(
            graph=self.graph,
            store=MailboxScope(self.subscriptions, mailbox) if mailbox else self.subscriptions,
            settings=self.settings,
            clock=self.clock.now,
            lease=RunLease(self.storage.table(SUBSCRIPTIONS_TABLE), RENEWAL_LEASE) if lease else None,
            statuses=self.mailbox_states,
            enqueue=enqueue or self.storage.enqueue,  # a new or re-created subscription is resynced
            sleep=sleep,
            housekeeping=(self.deletes.purge, self.notices.purge),  # X1 budgets, old notice claims
        )

    async def handle(self, message: AnyMessage) -> object:
        """Route one decoded queue message: changes to the worker, resyncs to the reconciler, subscription
        events to the lifecycle handler."""
        return await self._routes[type(message)](message)

    async def aclose(self) -> None:
        await self.crm.aclose()
        await self.decisions.flush()  # the time-index rows still held back
        await self.storage.aclose()
        await self.graph.aclose()


_containers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Container] = weakref.WeakKeyDictionary()


def container() -> Container:
    """The container of the running event loop, built on first use. ConfigurationError lists all problems."""
    loop = asyncio.get_running_loop()
    found = _containers.get(loop)
    if found is None:
        settings, policy = configuration()
        telemetry.configure()  # once per process: Application Insights when its connection string is set
        found = _containers[loop] = Container(settings, policy)
    return found


@asynccontextmanager
async def opened(*, clock: Clock | None = None, install: bool = False) -> AsyncIterator[Container]:
    """A container from the validated settings, closed on exit: for the CLI, the dev stack and tests.

    `clock` replaces the system clock for everything the container wires. With `install=True` it is also
    the running loop's container while the block runs, so the triggers called in it use it (and its clock);
    the loop must not have one already."""
    built = Container(*configuration(), clock=clock)
    loop = asyncio.get_running_loop()
    if install:
        if loop in _containers:
            await built.aclose()
            raise RuntimeError("this event loop already has a container")
        _containers[loop] = built
    try:
        yield built
    finally:
        if install and _containers.get(loop) is built:
            del _containers[loop]
        await built.aclose()


async def close_container() -> None:
    """Close the running loop's container, if it made one: the shutdown hook of a host whose event loop
    ends before the process does (devstack's DevHost `on_stop`), so no client is left open."""
    found = _containers.pop(asyncio.get_running_loop(), None)
    if found is not None:
        await found.aclose()
