"""Scheduled work (six-field NCRONTAB, UTC): subscription renewal, the reconciliation sweep, X3 polling.

Each run holds a lease row (sync_core.service.sweeps), so a slow run and the next occurrence never overlap.
sync_core's service is imported on the first run, not with function_app (tests/core/test_cold_import.py).
"""

from __future__ import annotations

import logging

import azure.functions as func

bp = func.Blueprint()
log = logging.getLogger("triggers.timers")


@bp.timer_trigger(schedule="0 */30 * * * *", arg_name="timer", run_on_startup=False, use_monitor=True)
async def renew_subscriptions(timer: func.TimerRequest) -> None:
    """Create, renew, re-create and delete subscriptions so every enabled mailbox has a live one."""
    from sync_core.bootstrap import container
    from sync_core.service import sweeps

    report = await sweeps.run_renewals(container())
    log.info("renewal run (past_due=%s): %s", timer.past_due, report)


@bp.timer_trigger(schedule="0 7 * * * *", arg_name="timer", run_on_startup=False, use_monitor=True)
async def reconcile_sweep(timer: func.TimerRequest) -> None:
    """Hourly: a delta resync of every enabled mailbox, and the CRM's changes since its cursor."""
    from sync_core.bootstrap import container
    from sync_core.service import sweeps

    report = await sweeps.run_sweep(container())
    log.info("sweep (past_due=%s): %s", timer.past_due, report)


@bp.timer_trigger(schedule="30 */5 * * * *", arg_name="timer", run_on_startup=False, use_monitor=True)
async def poll_unsubscribed(timer: func.TimerRequest) -> None:
    """X3: every five minutes, a delta resync of each mailbox Graph refused a subscription."""
    from sync_core.bootstrap import container
    from sync_core.service import sweeps

    count = await sweeps.run_polls(container())
    log.info("polled %d mailbox(es) without a subscription (past_due=%s)", count, timer.past_due)
