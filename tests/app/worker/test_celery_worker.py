"""Celery tasks in a real worker (celery.contrib.testing) against the real Redis and PostgreSQL.

The API queues a job; a worker thread consuming the default queue claims it, trains the tiny
preset for a few iterations, registers a model version, activates it by policy, and /predict then
answers with that version.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redis as redis_lib
from celery.contrib.testing.worker import start_worker

from app.core.config import get_settings
from app.worker import tasks
from app.worker.celery_app import QUEUE_PRESENCE_KEY, celery_for, training_queue
from tests.app.worker.test_training_api import URL, Api, make_api

pytestmark = [pytest.mark.redis, pytest.mark.postgres, pytest.mark.slow]


def prepare_redis(redis_url: str) -> None:
    """Forget queue announcements and stale messages left in the test's Redis database."""
    client = redis_lib.Redis.from_url(redis_url)
    for key in client.scan_iter(match=QUEUE_PRESENCE_KEY.format(queue="*", host="*")):
        client.delete(key)
    celery_for(redis_url).control.purge()


@pytest.fixture()
def worker_env(monkeypatch, pg_url, redis_url) -> Iterator[None]:
    """Point the in-process worker at the test database and Redis, as DATABASE_URL would."""
    monkeypatch.setenv("DATABASE_URL", pg_url)
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("PATCHSCREEN_DEVICE", "cpu")
    get_settings.cache_clear()
    tasks.session_factory.cache_clear()
    prepare_redis(redis_url)
    yield
    get_settings.cache_clear()
    tasks.session_factory.cache_clear()


@pytest.fixture()
def pg_api(pg_factory, settings, redis_url, worker_env) -> Iterator[Api]:
    yield from make_api(pg_factory, settings.model_copy(update={"redis_url": redis_url}))


def wait_for(client, job_id: int, headers, statuses: set[str], timeout: float = 120.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"{URL}/{job_id}", headers=headers).json()
        if job["status"] in statuses:
            return job
        time.sleep(0.25)
    raise AssertionError(f"job {job_id} did not reach {statuses}: {job}")


def test_worker_trains_registers_activates_and_serves(pg_api, redis_url):
    app = celery_for(redis_url)
    assert training_queue(redis_lib.Redis.from_url(redis_url)) == "celery"  # no GPU worker announced
    with start_worker(
        app,
        pool="solo",
        concurrency=1,
        queues=["celery"],
        perform_ping_check=False,
        loglevel="WARNING",
        shutdown_timeout=60,
    ):
        r = pg_api.client.post(URL, json={"preset": "tiny", "epochs": 2}, headers=pg_api.admin)
        assert r.status_code == 202, r.text
        assert r.json()["queue"] == "celery"
        job = wait_for(pg_api.client, r.json()["id"], pg_api.viewer, {"succeeded", "failed"})
    assert job["status"] == "succeeded", job["error"]
    assert job["model_version"] == 1 and job["attempts"] == 1 and job["worker_device"] == "cpu"
    assert job["labels"]["n_labels"] > 0 and job["progress"]["activated"] is True
    model = pg_api.client.get("/api/v1/models/1", headers=pg_api.viewer).json()
    assert model["active"] is True and model["training_job_id"] == job["id"]
    r = pg_api.client.post("/api/v1/predict", json={"image_id": pg_api.lib.images[0]}, headers=pg_api.viewer)
    assert r.status_code == 200, r.text
    assert r.json()["model_version"] == 1 and len(r.json()["patch_probabilities"]) == 8
