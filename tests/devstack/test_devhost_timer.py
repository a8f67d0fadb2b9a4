"""DevHost timer triggers: NCRONTAB schedules, no overlap, runOnStartup, on-demand runs and the admin API."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
import azure.functions as func
import pytest

from devstack.host import DevHost

StartHost = Callable[..., DevHost]
WaitFor = Callable[..., Any]


@dataclass
class Runs:
    started: list[float] = field(default_factory=list)  # time.monotonic() at the start of each run
    ended: list[float] = field(default_factory=list)  # ... and at its end
    fired_at: list[datetime] = field(default_factory=list)  # wall clock at the start of each run
    next_due: list[datetime] = field(default_factory=list)  # each run's schedule_status["Next"]
    past_due: list[bool] = field(default_factory=list)
    startup_runs: int = 0
    running: int = 0
    most_running: int = 0
    sleep: float = 0.0
    fail: bool = False


runs = Runs()
app = func.FunctionApp()


@app.timer_trigger(schedule="%TICK_SCHEDULE%", arg_name="timer")
async def tick(timer: func.TimerRequest) -> None:
    runs.started.append(time.monotonic())
    runs.fired_at.append(datetime.now(UTC))
    runs.next_due.append(datetime.fromisoformat(timer.schedule_status["Next"]))
    runs.past_due.append(timer.past_due)
    runs.running += 1
    runs.most_running = max(runs.most_running, runs.running)
    try:
        await asyncio.sleep(runs.sleep)
        if runs.fail:
            raise RuntimeError("tick asked to fail")
    finally:
        runs.running -= 1
        runs.ended.append(time.monotonic())


@app.timer_trigger(schedule="0 0 0 1 1 *", arg_name="timer", run_on_startup=True)
def yearly(timer: func.TimerRequest) -> None:
    runs.startup_runs += 1


@pytest.fixture(autouse=True)
def fresh_runs() -> Iterator[None]:
    global runs
    runs = Runs()
    yield


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def run(start_host: StartHost, schedule: str = "0 0 0 1 1 *") -> DevHost:
    return start_host(app, settings={"TICK_SCHEDULE": schedule})


def occurrences(caplog: pytest.LogCaptureFixture) -> list[datetime]:
    """The occurrences `tick` ran for, from the host's "Executing" lines (Reason='Timer fired at ...')."""
    return [
        datetime.fromisoformat(str(r.args[1]).removeprefix("Timer fired at "))
        for r in caplog.records
        if isinstance(r.args, tuple) and r.msg.startswith("Executing") and r.args[0] == "tick"
    ]


async def test_a_timer_fires_on_its_schedule(
    start_host: StartHost, wait_for: WaitFor, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="devstack.host"):
        run(start_host, "* * * * * *")
        await wait_for(lambda: len(runs.started) >= 2, within=5, what="two ticks")
    due = occurrences(caplog)[:2]
    # Two distinct occurrences of the every-second schedule, each run started at or after its own.
    assert len(due) == 2 and due[0] < due[1] and {d.microsecond for d in due} == {0}
    assert runs.fired_at[0] >= due[0] and runs.fired_at[1] >= due[1]
    # The status a run gets names an occurrence of the schedule after the one it runs for.
    assert runs.next_due[0] > due[0] and runs.next_due[0].microsecond == 0
    assert runs.past_due[:2] == [False, False]


async def test_a_timer_never_overlaps_itself(
    start_host: StartHost, wait_for: WaitFor, caplog: pytest.LogCaptureFixture
) -> None:
    runs.sleep = 1.6  # each run outlasts the next tick, which is skipped
    with caplog.at_level(logging.WARNING, logger="devstack.host"):
        run(start_host, "* * * * * *")
        await wait_for(lambda: len(runs.started) >= 2, within=8, what="two runs")
    assert runs.most_running == 1
    assert runs.started[1] >= runs.ended[0]  # the second run began once the first had ended
    assert "Timer 'tick': skipping" in caplog.text


async def test_run_on_startup_fires_once_when_the_host_starts(
    start_host: StartHost, wait_for: WaitFor
) -> None:
    run(start_host)
    await wait_for(lambda: runs.startup_runs == 1, within=5, what="the startup run")
    assert runs.started == []  # `tick` is not due until next January


async def test_invoke_timer_fires_on_demand_and_waits_for_a_run_in_progress(start_host: StartHost) -> None:
    host = run(start_host)
    runs.sleep = 0.3
    first, second = host.invoke_timer("tick"), host.invoke_timer("tick")
    await asyncio.wait_for(asyncio.gather(asyncio.wrap_future(first), asyncio.wrap_future(second)), 5)
    assert len(runs.started) == 2
    assert runs.most_running == 1
    assert runs.started[1] >= runs.ended[0]  # the second waited for the run in progress


async def test_invoke_timer_reports_the_function_failure(start_host: StartHost) -> None:
    host = run(start_host)
    runs.fail = True
    with pytest.raises(RuntimeError, match="tick asked to fail"):
        host.invoke_timer("tick").result(timeout=30)
    with pytest.raises(KeyError):
        host.invoke_timer("no-such-timer")


async def test_the_admin_api_fires_a_timer_with_the_master_key_only(
    start_host: StartHost, http: aiohttp.ClientSession, keys: dict[str, str], wait_for: WaitFor
) -> None:
    host = run(start_host)
    url = f"{host.base_url}/admin/functions/tick"
    async with http.post(url, json={}, headers={"x-functions-key": keys["function"]}) as response:
        assert response.status == 401
    async with http.post(url, json={}, headers={"x-functions-key": keys["master"]}) as response:
        assert response.status == 202
    await wait_for(lambda: len(runs.started) == 1, within=5, what="the admin-fired run")
    async with http.post(f"{host.base_url}/admin/functions/nope?code={keys['master']}") as response:
        assert response.status == 404
