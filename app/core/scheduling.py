"""Who gets the CPU on a small API host: the forward pass first, request handling in its gaps.

On a CPU-only host one forward pass already uses every core, and PyTorch's intra-op threads meet
at a barrier after each layer: a request thread that takes one core for a few milliseconds
(decoding an upload, parsing a multipart body) stalls *all* of them. Measured on the 2-core host
(docs/benchmarks.md): a busy thread beside the forward pass makes it 2.2x slower at normal
priority and leaves it unchanged at SCHED_IDLE. So the web process can run its request threads at
the lowest priority, while the one thread that runs forward passes (and the intra-op threads it
starts) keeps the normal one; requests are then prepared whenever the model leaves a core free.

The interpreter lock matters too: after each forward pass the model thread needs the lock back,
and CPython lets a thread keep it for the switch interval (5 ms by default) before handing it
over; a shorter interval gives the cores back to the model sooner.

And the C allocator: glibc returns large freed blocks to the kernel (unmapping them, or trimming
the heap's free top), so the model's activations, tens of megabytes a layer, came back as fresh
pages on every forward pass: about 12,000 page faults and 20 ms of kernel time per 64-patch
pass on the 2-core host, 8-10 % of the pass. Fixed thresholds and one arena for all threads keep
those blocks for the next pass.

And the garbage collector: a full collection scans every tracked object, and after start-up the
web process holds hundreds of thousands of them (torch, SQLAlchemy, FastAPI, the routes' models)
that will live as long as it does. Each full collection re-scanned them all and stopped every
request in flight for 30-110 ms (measured during the label benchmark); frozen after start-up,
they are left out of every later collection.
"""

from __future__ import annotations

import ctypes
import gc
import logging
import os
import sys
import threading
from typing import Literal

log = logging.getLogger("patchscreen.scheduling")

Priority = Literal["normal", "low", "idle"]
_NICE_LOW = 19


def lower_current_thread(priority: Priority) -> str:
    """Lower the calling thread's CPU priority; threads it starts later inherit it (Linux).

    ``idle`` is SCHED_IDLE (runs only on otherwise idle cores, preempted at once), ``low`` is
    nice 19. Lowering needs no privilege, and it can never be undone by the process, so call it
    only from a thread whose every later task is request work. Returns what was applied.
    """
    if priority == "normal":
        return "normal"
    if not sys.platform.startswith("linux"):  # elsewhere per-thread priorities are not portable
        return "normal (not Linux)"
    tid = threading.get_native_id()
    try:
        if priority == "idle":
            os.sched_setscheduler(tid, os.SCHED_IDLE, os.sched_param(0))
            return "idle (SCHED_IDLE)"
        os.setpriority(os.PRIO_PROCESS, tid, _NICE_LOW)  # PRIO_PROCESS + a TID: this thread only
        return f"low (nice {_NICE_LOW})"
    except OSError as exc:  # e.g. a seccomp profile that forbids it: serve anyway
        log.warning("could not lower the request threads' priority (%s); they stay at normal", exc)
        return "normal (refused)"


def set_switch_interval(ms: float) -> None:
    """How long a thread may hold the interpreter lock while another waits for it."""
    sys.setswitchinterval(ms / 1000.0)


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_ARENA_MAX = -1, -3, -8  # glibc's mallopt (malloc.h)


def keep_freed_memory(mmap_threshold_mb: int = 32, trim_threshold_mb: int = 256) -> bool:
    """Let glibc reuse freed large blocks instead of handing them back to the kernel.

    Blocks up to ``mmap_threshold_mb`` come from the heap (32 MB is glibc's largest allowed value;
    setting it also stops glibc's adaptive threshold), up to ``trim_threshold_mb`` of free heap
    top stays mapped, and every thread allocates from the one main heap: a thread's own arena is
    made of 64 MB heaps that glibc unmaps as soon as they are empty, whatever the thresholds, and
    the forward pass runs in a thread of its own. Call it before the process starts threads
    (threads that already have an arena keep it). The cost is that much memory kept after a peak
    and one allocator lock, which a host that runs one forward pass at a time does not feel.
    Returns False where the C library has no such setting (not glibc); nothing changes then.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    results = [
        mallopt(_M_ARENA_MAX, 1),
        mallopt(_M_MMAP_THRESHOLD, mmap_threshold_mb << 20),
        mallopt(_M_TRIM_THRESHOLD, trim_threshold_mb << 20),
    ]
    return all(r == 1 for r in results)


def freeze_startup_heap() -> int:
    """Collect once, then exempt every object alive now from later collections (``gc.freeze``).

    Call it at the end of start-up: what exists then (modules, the app, the loaded model) lives
    until the process ends, so scanning it again in every full collection only costs pauses.
    Returns how many objects were frozen.
    """
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
