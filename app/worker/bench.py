"""The paper protocol fanned out over the Celery workers (``patchscreen bench paper-fanout``).

A thin layer over ``ml.bench.paper``: the gatherer builds the cohort once, hands it to the workers
through Redis (a worker on another host needs only REDIS_URL, never a path on this host), sends one
``bench_paper_cell`` task per (method, labeled count, sampling) cell, saves every result as it comes
back (so an interrupted run resumes where it stopped) and writes the same report as
``python -m ml.bench.paper``.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

COHORT_KEY = "patchscreen:bench:cohort:{sha}"
COHORT_TTL_S = 3 * 24 * 3600
CACHE_DIR = Path(os.environ.get("PATCHSCREEN_BENCH_CACHE", ".cache/bench"))


def _redis(url: str):
    import redis

    return redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=60)


def publish_cohort(arrays: Any, redis_url: str) -> str:
    """Store the preprocessed cohort (npz bytes) in Redis; returns its SHA-256."""
    from ml.bench.cohort_npz import save_npz

    with tempfile.TemporaryDirectory() as tmp:
        blob = save_npz(arrays, Path(tmp) / "cohort.npz").read_bytes()
    sha = hashlib.sha256(blob).hexdigest()
    _redis(redis_url).set(COHORT_KEY.format(sha=sha), blob, ex=COHORT_TTL_S)
    return sha


def fetch_cohort(sha: str, redis_url: str) -> Any:
    """The cohort on a worker: from the local cache, else from Redis (checked by its SHA-256)."""
    from ml.bench.cohort_npz import load_npz

    path = CACHE_DIR / f"{sha}.npz"
    if not path.exists():
        blob = _redis(redis_url).get(COHORT_KEY.format(sha=sha))
        if blob is None or hashlib.sha256(blob).hexdigest() != sha:
            raise RuntimeError(f"benchmark cohort {sha[:12]} is not in Redis (expired?): rerun the gatherer")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(blob)
        os.replace(tmp, path)
    return load_npz(path)


def run_cell(cell: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
    """Body of the ``bench_paper_cell`` task: one cell, exactly as ml.bench.paper runs it."""
    from app.core.config import get_settings
    from ml.bench.paper import Cell
    from ml.bench.paper import run_cell as paper_cell

    arrays = fetch_cohort(options["cohort_sha"], get_settings().redis_url)
    ids = tuple(options["ids"])
    result = paper_cell(Cell(**cell), arrays, ids, options["opts"])
    return {**result, "worker": os.uname().nodename}


def fan_out(
    argv: list[str], *, out: Path, timeout_s: float, echo: Callable[[str], None] = print
) -> list[dict]:
    """Send every cell not yet in ``out/results.json`` to the workers and gather the table."""
    from celery import group

    from app.core.config import get_settings
    from app.worker.celery_app import celery_for, training_queue
    from ml.bench import paper

    settings = get_settings()
    if not settings.redis_url:
        raise SystemExit("bench paper-fanout needs REDIS_URL and running workers (`patchscreen worker`)")
    args = paper.parse([*argv, "--out", str(out)])
    p = paper.plan(args)
    arrays, desc, ids, opts = p.arrays, p.desc, p.ids, p.opts
    results, done, todo = p.results, p.done, p.todo
    sha = publish_cohort(arrays, settings.redis_url)
    app = celery_for(settings.redis_url)
    queue = training_queue(_redis(settings.redis_url))
    options = {"cohort_sha": sha, "ids": [list(x) for x in ids], "opts": opts}
    echo(f"{len(done)} cells done, {len(todo)} sent to the `{queue}` queue; data {desc}")
    meta = paper.write_meta(p, args, "patchscreen bench paper-fanout " + " ".join(argv), "celery workers")
    pending = group(
        app.signature(
            "patchscreen.bench_paper_cell",
            args=[{"method": c.method, "labeled": c.labeled, "sampling": c.sampling}, options],
            queue=queue,
        )
        for c in todo
    ).apply_async()
    t0, deadline = time.monotonic(), time.monotonic() + timeout_s
    waiting = list(pending.results)
    while waiting and time.monotonic() < deadline:
        for res in [r for r in waiting if r.ready()]:
            waiting.remove(res)
            row = res.get(propagate=False)
            if isinstance(row, Exception):
                echo(f"cell failed: {row!r}")
                continue
            results.append(row)
            paper.save_results(out, results)
            echo(
                f"[{time.monotonic() - t0:7.0f}s] {row['method']} n={row['labeled']} s={row['sampling']}: "
                f"image AUC {row['image_auc']} on {row.get('worker')}"
            )
        time.sleep(1.0)
    paper.write_report(out, results, meta)
    echo(
        f"{len(results)} results in {out / 'results.json'}; table in {out / 'table.md'}"
        + (f"; {len(waiting)} cells still running (rerun to resend them)" if waiting else "")
    )
    return results
