"""Scheduled work (six-field NCRONTAB, UTC): subscription renewal."""

from __future__ import annotations

import logging

import azure.functions as func

from sync_core.bootstrap import container, utcnow
from sync_core.subscription_manager import SubscriptionManager

bp = func.Blueprint()
log = logging.getLogger("triggers.timers")


@bp.timer_trigger(schedule="0 */30 * * * *", arg_name="timer", run_on_startup=False, use_monitor=True)
async def renew_subscriptions(timer: func.TimerRequest) -> None:
    c = container()
    manager = SubscriptionManager(graph=c.graph, store=c.subscriptions, settings=c.settings, clock=utcnow)
    report = await manager.renew_due()
    log.info("renewal run (past_due=%s): %s", timer.past_due, report)
