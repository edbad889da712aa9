"""Faults, each against the real PostgreSQL and Redis: a worker SIGKILLed mid-job, Redis going down
and coming back, racing training requests, and missing or corrupt checkpoints."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest
import redis as redis_lib
from sqlalchemy import func, select, text

from app.db.models import PatchLabel, TrainingJob
from app.services import models as registry
from app.services import training
from app.worker.celery_app import training_queue
from tests.app.worker.conftest import ROOT_DIR, register_and_activate
from tests.app.worker.test_celery_worker import prepare_redis, wait_for
from tests.app.worker.test_training_api import URL, Api, closed_port, make_api, n_jobs

pytestmark = [pytest.mark.postgres]


def count_labels(factory) -> int:
    with factory() as s:
        return s.scalar(select(func.count()).select_from(PatchLabel))


def active_version(factory) -> int | None:
    with factory() as s:
        mv = registry.active_version(s)
        return None if mv is None else mv.version


@pytest.fixture()
def pg_api(pg_factory, settings, redis_url) -> Iterator[Api]:
    prepare_redis(redis_url)
    yield from make_api(pg_factory, settings.model_copy(update={"redis_url": redis_url}))


@pytest.mark.redis
@pytest.mark.slow
def test_sigkilled_worker_job_is_requeued_in_bounded_time(
    pg_api, pg_url, redis_url, monkeypatch, trained_checkpoint, tmp_path
):
    factory = pg_api.factory
    assert register_and_activate(factory, trained_checkpoint) == 1
    labels_before = count_labels(factory)
    env = {
        **os.environ,
        "DATABASE_URL": pg_url,
        "REDIS_URL": redis_url,
        "PATCHSCREEN_DEVICE": "cpu",
        "PATCHSCREEN_JOB_HEARTBEAT_S": "0.5",
    }
    log = open(tmp_path / "worker.log", "wb")  # noqa: SIM115 - closed below
    worker = subprocess.Popen(
        [sys.executable, "-c", "from app.cli import main; main()", "worker", "--queues", "gpu"],
        env=env,
        cwd=ROOT_DIR,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        # The worker announces the gpu queue; from then on jobs are routed to it.
        client = redis_lib.Redis.from_url(redis_url)
        deadline = time.monotonic() + 90
        while training_queue(client) != "gpu" and time.monotonic() < deadline:
            assert worker.poll() is None, (tmp_path / "worker.log").read_text()
            time.sleep(0.2)
        r = pg_api.client.post(URL, json={"preset": "tiny", "epochs": 5000}, headers=pg_api.admin)
        assert r.status_code == 202, r.text
        assert r.json()["queue"] == "gpu"
        job_id = r.json()["id"]
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            job = pg_api.client.get(f"{URL}/{job_id}", headers=pg_api.viewer).json()
            if job["status"] == "running":  # claimed: the worker is now inside the job
                break
            assert worker.poll() is None, (tmp_path / "worker.log").read_text()
            time.sleep(0.2)
        else:
            raise AssertionError(
                f"the worker never got going: {(tmp_path / 'worker.log').read_text()[-3000:]}"
            )
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(timeout=10)
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
        log.close()

    app = pg_api.client.app  # the API reaps dead jobs whenever one is read
    app.state.settings = app.state.settings.model_copy(update={"job_stale_after_s": 3.0})
    killed_at = time.monotonic()
    job = wait_for(pg_api.client, job_id, pg_api.viewer, {"queued", "failed"}, timeout=20)
    assert time.monotonic() - killed_at < 15
    assert job["status"] == "queued" and "stopped responding" in job["error"] and "retrying" in job["error"]
    assert active_version(factory) == 1  # the active model did not change
    assert count_labels(factory) == labels_before  # and no label was lost
    assert pg_api.client.delete(f"{URL}/{job_id}", headers=pg_api.admin).json()["status"] == "cancelled"
    prepare_redis(redis_url)


class PrivateRedis:
    """A redis-server of our own on a free port, so it can be stopped without touching the shared one."""

    def __init__(self, tmp_path) -> None:
        self.port, self.dir, self.proc = closed_port(), tmp_path, None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.dir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis_lib.Redis(port=self.port, socket_connect_timeout=0.2)
        for _ in range(100):
            try:
                client.ping()
                return
            except redis_lib.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError("private redis-server did not start")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


@pytest.mark.redis
def test_redis_outage_keeps_the_service_working_and_recovers(
    pg_factory, settings, redis_url, trained_checkpoint, tmp_path
):
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    server = PrivateRedis(tmp_path)
    server.start()
    try:
        register_and_activate(pg_factory, trained_checkpoint)
        for api in make_api(pg_factory, settings.model_copy(update={"redis_url": server.url})):
            r = api.client.post(URL, json={"preset": "tiny"}, headers=api.admin)
            assert r.status_code == 202, r.text
            api.client.delete(f"{URL}/{r.json()['id']}", headers=api.admin)

            server.stop()
            started = time.monotonic()
            r = api.client.post(URL, json={"preset": "tiny"}, headers=api.admin)
            assert r.status_code == 503 and "unreachable" in r.json()["detail"]
            assert time.monotonic() - started < 10
            assert n_jobs(pg_factory) == 1
            image_id = api.lib.images[-1]
            assert api.client.get("/api/v1/images", headers=api.viewer).status_code == 200
            r = api.client.put(
                f"/api/v1/images/{image_id}/labels/1/1", json={"label": "healthy"}, headers=api.annotator
            )
            assert r.status_code == 200, r.text
            r = api.client.post("/api/v1/predict", json={"image_id": image_id}, headers=api.viewer)
            assert r.status_code == 200 and r.json()["model_version"] == 1
            assert "unreachable" in api.client.get("/health").json()["queue"]

            server.start()  # Redis is back: the same API process starts jobs again
            r = api.client.post(URL, json={"preset": "tiny"}, headers=api.admin)
            assert r.status_code == 202, r.text
            assert api.client.get("/health").json()["queue"] == "ok"
    finally:
        if server.proc and server.proc.poll() is None:
            server.stop()


def race(factory, settings, n: int = 6) -> list[str]:
    barrier = threading.Barrier(n)
    results: list[str] = []

    def request() -> None:
        with factory() as s:
            barrier.wait()
            try:
                training.create_job(s, training.JobRequest(preset="tiny"), user_id=None, settings=settings)
                results.append("created")
            except training.JobConflict:
                results.append("409")

    threads = [threading.Thread(target=request) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return results


def test_racing_requests_make_exactly_one_job_postgres(pg_factory, settings):
    from tests.app.worker.conftest import seed_library

    seed_library(pg_factory)
    for _ in range(3):
        results = race(pg_factory, settings)
        assert sorted(results) == ["409"] * 5 + ["created"]
        with pg_factory() as s:
            assert (
                s.scalar(select(func.count()).select_from(TrainingJob).where(TrainingJob.status == "queued"))
                == 1
            )
            s.execute(text("UPDATE training_jobs SET status = 'cancelled'"))
            s.commit()


def test_racing_requests_make_exactly_one_job_sqlite(sqlite_factory, settings, library):
    assert sorted(race(sqlite_factory, settings)) == ["409"] * 5 + ["created"]
    assert n_jobs(sqlite_factory) == 1


def post_together(api: Api, n: int) -> list[int]:
    barrier = threading.Barrier(n)
    codes: list[int] = []

    def post() -> None:
        barrier.wait()
        codes.append(api.client.post(URL, json={"preset": "tiny"}, headers=api.admin).status_code)

    threads = [threading.Thread(target=post) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return codes


def test_racing_http_requests_make_exactly_one_job(pg_factory, settings):
    for api in make_api(pg_factory, settings):
        assert sorted(post_together(api, 4)) == [202, 409, 409, 409]
        assert n_jobs(pg_factory) == 1


def test_corrupt_or_missing_checkpoint_never_replaces_the_active_model(
    pg_factory, settings, trained_checkpoint
):
    from ml import checkpoint

    register_and_activate(pg_factory, trained_checkpoint)
    with pg_factory() as s:
        for n in range(2):  # other models (other bytes) that will go bad in storage
            other = checkpoint.save(checkpoint.load(trained_checkpoint), metrics={"copy": n})
            registry.register_model_version(s, other, method="ssl_gan", preset="tiny")
        s.execute(
            text("UPDATE model_versions SET checkpoint = :junk WHERE version = 2"), {"junk": b"\x00" * 100}
        )
        s.execute(text("UPDATE model_versions SET checkpoint = :empty WHERE version = 3"), {"empty": b""})
        s.commit()
    registry.predictors.clear()
    for api in make_api(pg_factory, settings):
        r = api.client.post("/api/v1/models/2/activate", headers=api.admin)
        assert (
            r.status_code == 409
            and "corrupt" in r.json()["detail"]
            and "version 1 stays active" in r.json()["detail"]
        )
        r = api.client.post("/api/v1/models/3/activate", headers=api.admin)
        assert r.status_code == 409 and "no checkpoint data" in r.json()["detail"]
        assert active_version(pg_factory) == 1
        r = api.client.post("/api/v1/predict", json={"image_id": api.lib.images[0]}, headers=api.viewer)
        assert r.status_code == 200 and r.json()["model_version"] == 1

    # At start-up: the active model's checkpoint went bad on disk/in the database. The service
    # starts, says so in /health, answers /predict with a clear 503, and changes nothing by itself.
    with pg_factory() as s:
        s.execute(
            text("UPDATE model_versions SET checkpoint = :junk WHERE version = 1"), {"junk": b"\x01" * 100}
        )
        s.commit()
    registry.predictors.clear()
    from fastapi.testclient import TestClient

    from app.main import create_app

    with TestClient(create_app(settings, engine=pg_factory.kw["bind"])) as client:
        health = client.get("/health").json()
        assert health["status"] == "degraded" and "corrupt" in health["model_error"]
        headers = api.viewer
        r = client.post("/api/v1/predict", json={"image_id": api.lib.images[0]}, headers=headers)
        assert r.status_code == 503 and "activate another version" in r.json()["detail"]
    assert active_version(pg_factory) == 1
