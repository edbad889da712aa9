"""Request threads yield the CPU to the forward-pass thread (app/core/scheduling.py), for real."""

from __future__ import annotations

import gc
import os
import sys
import threading

import pytest
from fastapi.testclient import TestClient

from app.core import scheduling
from app.core.config import Settings
from app.main import create_app
from app.services.batching import Batcher

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread priorities: Linux")

SCHED_IDLE = 5


def _policy_and_nice(tid: int) -> tuple[int, int]:
    """(scheduling policy, nice) of one thread of this process, from /proc."""
    with open(f"/proc/self/task/{tid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[38]), int(fields[16])  # stat fields 41 (policy) and 19 (nice)


def _in_thread(fn):
    """Run fn in a fresh thread (priorities cannot be raised again) and return its result."""
    out: dict = {}

    def run() -> None:
        try:
            out["value"] = fn()
        except BaseException as exc:  # pragma: no cover - reported below
            out["error"] = exc

    t = threading.Thread(target=run)
    t.start()
    t.join()
    if "error" in out:
        raise out["error"]
    return out["value"]


def _lower_then_spawn(priority: str):
    def body():
        applied = scheduling.lower_current_thread(priority)
        me = threading.get_native_id()
        child = _in_thread(lambda: _policy_and_nice(threading.get_native_id()))
        return applied, _policy_and_nice(me), child

    return _in_thread(body)


def test_idle_priority_is_sched_idle_and_inherited_by_new_threads() -> None:
    main_before = _policy_and_nice(threading.get_native_id())
    applied, mine, child = _lower_then_spawn("idle")
    assert applied == "idle (SCHED_IDLE)"
    assert mine[0] == SCHED_IDLE and child[0] == SCHED_IDLE
    assert _policy_and_nice(threading.get_native_id()) == main_before  # only that thread


def test_low_priority_is_nice_19_and_normal_changes_nothing() -> None:
    applied, mine, child = _lower_then_spawn("low")
    assert applied == "low (nice 19)" and mine[1] == 19 and child[1] == 19
    before = _policy_and_nice(threading.get_native_id())
    assert _lower_then_spawn("normal")[1] == before


def test_batcher_started_first_keeps_the_normal_priority() -> None:
    """The forward-pass thread is started before its starter lowers itself, so it keeps normal."""
    batcher = Batcher()
    before = _policy_and_nice(threading.get_native_id())

    def body():
        batcher.start()
        scheduling.lower_current_thread("idle")
        return _policy_and_nice(threading.get_native_id())

    try:
        starter = _in_thread(body)
        assert starter[0] == SCHED_IDLE
        assert _policy_and_nice(batcher._thread.native_id) == before
    finally:
        batcher.close()


def test_the_app_applies_its_settings_at_start_up(tmp_path, db_engine) -> None:
    previous = sys.getswitchinterval()
    settings = Settings(
        env="test", data_dir=tmp_path / "data", request_cpu_priority="low", switch_interval_ms=2.0
    )
    app = create_app(settings, engine=db_engine)
    try:
        with TestClient(app) as client:
            assert client.get("/health").status_code in (200, 503)
            assert app.state.request_cpu_priority == "low (nice 19)"
            assert sys.getswitchinterval() == pytest.approx(0.002)
            assert _policy_and_nice(app.state.batcher._thread.native_id)[1] == os.getpriority(
                os.PRIO_PROCESS, 0
            )
    finally:
        sys.setswitchinterval(previous)


def test_start_up_freezes_the_heap_out_of_garbage_collection(tmp_path, db_engine) -> None:
    gc.unfreeze()  # whatever an earlier test froze
    assert gc.get_freeze_count() == 0
    app = create_app(Settings(env="test", data_dir=tmp_path / "data"), engine=db_engine)
    with TestClient(app) as client:
        assert client.get("/health").status_code in (200, 503)
        # The modules, the app and its routes: far more than the few objects a test makes.
        assert gc.get_freeze_count() > 50_000


def test_a_full_collection_skips_what_was_frozen() -> None:
    garbage = []
    for _ in range(20_000):  # cycles only the collector can free
        a: list = []
        a.append(a)
        garbage.append(a)
    frozen_before = gc.get_freeze_count()
    assert scheduling.freeze_startup_heap() >= frozen_before + 20_000
    del garbage
    assert gc.collect() < 20_000  # the frozen cycles are out of its reach now


_REFAULT_PROBE = """
import resource, sys, threading
import numpy as np
from app.core import scheduling
if sys.argv[1] == "keep":
    assert scheduling.keep_freed_memory()
def faults() -> int:
    return resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
counts = []
def rounds() -> None:
    for _ in range(4):  # like a forward pass: 28 MB buffers, written, then all freed
        before = faults()
        buffers = [np.ones(3_500_000) for _ in range(8)]
        del buffers
        counts.append(faults() - before)
if sys.argv[2] == "main":
    rounds()
else:  # as in the server: a thread of its own runs the forward passes
    worker = threading.Thread(target=rounds)
    worker.start()
    worker.join()
print(min(counts[1:]))
"""


@pytest.mark.parametrize("thread", ["main", "worker"])
@pytest.mark.parametrize("mode", ["default", "keep"])
def test_kept_freed_memory_is_reused_without_page_faults(mode: str, thread: str) -> None:
    """224 MB of 28 MB buffers per round: glibc's defaults give the memory back after each round
    and fault it in again (thousands of faults a round here, fewer than pages where the kernel
    uses huge pages); with the thresholds kept, later rounds fault (almost) nothing."""
    import subprocess

    out = subprocess.run(
        [sys.executable, "-c", _REFAULT_PROBE, mode, thread], capture_output=True, text=True, check=True
    ).stdout
    later_faults = int(out.strip())
    if mode == "keep":
        assert later_faults < 50
    else:  # the probe sees the problem at all: without the setting the memory comes back each round
        assert later_faults > 500
