"""Celery configuration and queue routing (routing against the real Redis)."""

from __future__ import annotations

import logging

import pytest
import redis as redis_lib

from app.core.config import Settings
from app.worker import runner
from app.worker.celery_app import (
    DEFAULT_QUEUE,
    GPU_QUEUE,
    QUEUE_PRESENCE_KEY,
    announce_queues,
    make_celery,
    training_queue,
)


def test_delivery_guarantees_come_from_settings():
    import app.worker.tasks  # noqa: F401  (a worker imports it through `include`)

    app = make_celery(Settings(redis_url="redis://cache.example:6379/3"))
    conf = app.conf
    assert conf.broker_url == conf.result_backend == "redis://cache.example:6379/3"
    assert conf.task_acks_late and conf.task_reject_on_worker_lost
    assert conf.worker_prefetch_multiplier == 1
    # Longer than any training run, or a healthy job would be delivered twice.
    assert conf.broker_transport_options["visibility_timeout"] >= 6 * 3600
    assert "patchscreen.run_training_job" in app.tasks


@pytest.mark.redis
def test_training_goes_to_the_gpu_queue_only_while_a_gpu_worker_is_alive(redis_url):
    client = redis_lib.Redis.from_url(redis_url)
    for key in client.scan_iter(match=QUEUE_PRESENCE_KEY.format(queue="*", host="*")):
        client.delete(key)
    assert training_queue(client) == DEFAULT_QUEUE
    announce_queues(client, [DEFAULT_QUEUE], host="cpu-box")
    assert training_queue(client) == DEFAULT_QUEUE
    announce_queues(client, [GPU_QUEUE], host="gpu-box")
    assert training_queue(client) == GPU_QUEUE
    key = QUEUE_PRESENCE_KEY.format(queue=GPU_QUEUE, host="gpu-box")
    assert 0 < client.ttl(key) <= 30  # a dead GPU worker stops attracting jobs within 30 s
    client.delete(key)
    assert training_queue(client) == DEFAULT_QUEUE
    client.delete(QUEUE_PRESENCE_KEY.format(queue=DEFAULT_QUEUE, host="cpu-box"))


def test_worker_names_its_device(caplog, monkeypatch):
    assert runner.describe_device(Settings(device="cpu")).startswith("cpu (")
    started: list[dict] = []

    class FakeWorker:  # stands in for Celery's blocking loop; what matters is the log before it
        def __init__(self, **kwargs):
            started.append(kwargs)

        def start(self):
            pass

    monkeypatch.setattr(runner.celery_app, "Worker", FakeWorker)
    monkeypatch.setattr(runner, "start_housekeeping", lambda *a, **k: None)
    with caplog.at_level(logging.INFO, logger="patchscreen.worker"):
        runner.start_celery_worker(["gpu"], settings=Settings(device="cpu", redis_url="redis://x:1/0"))
    assert started[0]["queues"] == ["gpu"] and started[0]["pool"] == "solo"
    assert "device cpu" in caplog.text and "no CUDA device" in caplog.text


def test_each_redis_url_gets_an_app_that_sends_there():
    from app.worker.celery_app import celery_app, celery_for

    for url in ("redis://127.0.0.1:6379/13", "redis://other-host:6380/2", celery_app.conf.broker_url):
        assert celery_for(url).conf.broker_url == url
