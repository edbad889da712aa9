"""The paper protocol's cells fanned out to a real Celery worker and gathered into the table."""

from __future__ import annotations

import json

import pytest
from celery.contrib.testing.worker import start_worker

from app.worker import bench
from app.worker.celery_app import celery_for
from tests.app.worker.test_celery_worker import prepare_redis

pytestmark = [pytest.mark.redis, pytest.mark.slow]


def test_cells_run_on_workers_and_the_table_is_gathered(redis_url, monkeypatch, tmp_path):
    from app.core.config import get_settings

    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setattr(bench, "CACHE_DIR", tmp_path / "worker-cache")
    get_settings.cache_clear()
    prepare_redis(redis_url)
    argv = [
        "--data",
        "synthetic",
        "--synthetic-counts",
        "4",
        "4",
        "--labeled",
        "2",
        "--samplings",
        "1",
        "--methods",
        "ssl-gan",
        "--preset",
        "tiny",
        "--epochs",
        "1",
        "--cache",
        str(tmp_path / "cache"),
    ]
    out = tmp_path / "out"
    try:
        with start_worker(
            celery_for(redis_url),
            pool="solo",
            queues=["celery"],
            perform_ping_check=False,
            loglevel="WARNING",
            shutdown_timeout=60,
        ):
            rows = bench.fan_out(argv, out=out, timeout_s=240, echo=lambda _: None)
    finally:
        get_settings.cache_clear()
    assert sorted((r["method"], r["labeled"]) for r in rows) == [("ssl-gan", 2)]
    assert all(0.0 <= r["patch_auc"] <= 1.0 and r["worker"] for r in rows)
    assert json.loads((out / "results.json").read_text()) == sorted(rows, key=lambda r: r["labeled"])
    assert "| ssl-gan |" in (out / "table.md").read_text()
    # The cohort travelled through Redis into the worker's own cache, not through this host's paths.
    assert len(list((tmp_path / "worker-cache").glob("*.npz"))) == 1
    # A second run finds every cell done and sends nothing.
    assert len(bench.fan_out(argv, out=out, timeout_s=5, echo=lambda _: None)) == 1
