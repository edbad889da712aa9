"""The training service on the embedded database (SQLite) with real, tiny training runs."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import numpy as np
import pytest
from sqlalchemy import func, select

from app.db.base import utcnow
from app.db.models import ActiveModel, ModelVersion, PatchLabel, TrainingJob
from app.services import models as registry
from app.services import training
from app.worker import local
from tests.app.worker.conftest import TINY, label_some, register_and_activate

REQ = training.JobRequest(preset="tiny", train_overrides=TINY)


def make_job(factory, settings, lib, **kw) -> int:
    with factory() as s:
        return training.create_job(s, REQ, user_id=lib.admin.id, settings=settings, **kw).id


def job_row(factory, job_id) -> TrainingJob:
    with factory() as s:
        return s.get(TrainingJob, job_id)


def active_version(factory):
    with factory() as s:
        mv = registry.active_version(s)
        return None if mv is None else mv.version


def test_second_request_conflicts_unless_queued(sqlite_factory, settings, library):
    first = make_job(sqlite_factory, settings, library)
    with pytest.raises(training.JobConflict) as err, sqlite_factory() as s:
        training.create_job(s, REQ, user_id=library.admin.id, settings=settings)
    assert err.value.job_id == first and err.value.status_code == 409
    second = make_job(sqlite_factory, settings, library, queue=True)
    assert second != first
    with sqlite_factory() as s:
        assert s.scalar(select(func.count()).select_from(TrainingJob)) == 2


def test_training_needs_both_classes(sqlite_factory, settings, library):
    with sqlite_factory() as s:
        s.query(PatchLabel).filter(PatchLabel.label == 1).delete()
        s.commit()
        with pytest.raises(training.NotEnoughLabels, match="healthy and one diseased"):
            training.create_job(s, REQ, user_id=library.admin.id, settings=settings)
        assert s.scalar(select(func.count()).select_from(TrainingJob)) == 0


def test_job_trains_registers_and_activates_the_first_model(sqlite_factory, settings, library, monkeypatch):
    settings = settings.model_copy(update={"job_heartbeat_s": 0.05})
    job_id = make_job(sqlite_factory, settings, library)
    with sqlite_factory() as s:
        s.get(TrainingJob, job_id).params = {"train_overrides": {**TINY, "epochs": 4}}
        s.commit()
    seen: list[dict] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            p = job_row(sqlite_factory, job_id).progress or {}
            if "epoch" in p:
                seen.append(p)
            time.sleep(0.02)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        assert training.run_job(job_id, sqlite_factory, settings=settings) == "succeeded"
    finally:
        done.set()
        watcher.join()
    job = job_row(sqlite_factory, job_id)
    assert job.status == "succeeded" and job.attempts == 1 and job.error is None
    assert job.worker_host and job.worker_device == "cpu"
    assert "first model" in job.progress["message"] and job.progress["activated"] is True
    # Progress was written while it trained: epoch of total, speed, losses, time left.
    assert seen, "no progress was written during training"
    assert seen[-1]["epochs"] == 4 and 1 <= seen[-1]["epoch"] <= 4
    assert seen[-1]["it_per_s"] > 0 and seen[-1]["eta_s"] is not None and seen[-1]["losses"]
    with sqlite_factory() as s:
        mv = s.get(ModelVersion, job.model_version_id)
        n_labels = s.scalar(select(func.count()).select_from(PatchLabel))
        assert mv.training_job_id == job_id
        assert sorted(mv.training_summary["label_ids"]) == sorted(job.label_snapshot["label_ids"])
        assert len(mv.training_summary["label_ids"]) == n_labels
        assert mv.training_summary["n_val_images"] >= 1 and mv.metrics["val_patch_auc"] is not None
        assert registry.active_version(s).id == mv.id
        # The registered version serves predictions (its checkpoint loads and runs).
        preds = registry.active_model(s).predictor.predict(np.zeros((1, 64, 3, 32, 32), np.uint8))
        assert len(preds) == 1 and np.isfinite(preds[0].score)
    # A second delivery of the same job does nothing.
    assert training.run_job(job_id, sqlite_factory, settings=settings) == "skipped"
    with sqlite_factory() as s:
        assert s.scalar(select(func.count()).select_from(ModelVersion)) == 1
        assert s.get(TrainingJob, job_id).attempts == 1


def test_queued_jobs_run_one_after_another(sqlite_factory, settings, library):
    first = make_job(sqlite_factory, settings, library)
    second = make_job(sqlite_factory, settings, library, queue=True)
    with sqlite_factory() as s:  # while the first runs, the second cannot be claimed
        assert training.claim_job(s, first, host="h", device="cpu") is not None
        assert training.claim_job(s, second, host="h", device="cpu") is None
        s.get(TrainingJob, first).status = "succeeded"
        s.commit()
        assert local.next_queued_job(s) == second
        assert training.claim_job(s, second, host="h", device="cpu") is not None


def test_labels_arriving_during_training_go_to_the_next_job(sqlite_factory, settings, library):
    job_id = make_job(sqlite_factory, settings, library)
    with sqlite_factory() as s:
        job = training.claim_job(s, job_id, host="h", device="cpu")
        snap = dict(job.label_snapshot)
        label_some(s, library, library.images[4:6])  # more labels while the job runs
        data = training.load_job_data(s, snap, seed=0)
    n_used = int((data.train.patch_labels >= 0).sum()) + int((data.train.val_patch_labels >= 0).sum())
    assert n_used == len(snap["label_ids"]) and snap["max_label_id"] < _max_label_id(sqlite_factory)
    # Validation images are whole images kept out of training, even as unlabeled data.
    assert not set(map(str, data.val_image_ids)) & set(data.train.image_ids)


def _max_label_id(factory) -> int:
    with factory() as s:
        return s.scalar(select(func.max(PatchLabel.id)))


def test_cancel_stops_a_running_job_and_keeps_the_active_model(
    sqlite_factory, settings, library, monkeypatch
):
    settings = settings.model_copy(update={"job_heartbeat_s": 0.05})
    job_id = make_job(sqlite_factory, settings, library)
    with sqlite_factory() as s:
        s.get(TrainingJob, job_id).params = {"train_overrides": {**TINY, "epochs": 500}}
        s.commit()
    result: dict[str, str] = {}
    t = threading.Thread(
        target=lambda: result.setdefault("s", training.run_job(job_id, sqlite_factory, settings=settings))
    )
    t.start()
    deadline = time.monotonic() + 20
    while job_row(sqlite_factory, job_id).status != "running" and time.monotonic() < deadline:
        time.sleep(0.05)
    with sqlite_factory() as s:
        training.cancel_job(s, job_id, user_id=library.admin.id)
    t.join(timeout=30)
    assert result["s"] == "cancelled"
    job = job_row(sqlite_factory, job_id)
    assert job.status == "cancelled" and "no model was produced" in job.progress["message"]
    assert job.model_version_id is None and active_version(sqlite_factory) is None


def test_cancel_a_queued_job(sqlite_factory, settings, library):
    job_id = make_job(sqlite_factory, settings, library)
    with sqlite_factory() as s:
        assert training.cancel_job(s, job_id, user_id=library.admin.id).status == "cancelled"
    assert training.run_job(job_id, sqlite_factory, settings=settings) == "skipped"
    with pytest.raises(training.JobNotFound), sqlite_factory() as s:
        training.cancel_job(s, 9999, user_id=None)


def test_failure_records_the_error_and_keeps_the_active_model(
    sqlite_factory, settings, library, monkeypatch, trained_checkpoint
):
    register_and_activate(sqlite_factory, trained_checkpoint)
    before = active_version(sqlite_factory)
    assert before == 1

    def broken(*args, **kwargs):
        raise FloatingPointError("training diverged at epoch 1")

    monkeypatch.setattr("ml.train.ssl_gan.train", broken)
    failing = make_job(sqlite_factory, settings, library)
    assert training.run_job(failing, sqlite_factory, settings=settings) == "failed"
    job = job_row(sqlite_factory, failing)
    assert job.status == "failed" and "diverged" in job.error and job.finished_at is not None
    assert active_version(sqlite_factory) == before


def test_corrupt_checkpoint_is_never_registered(
    sqlite_factory, settings, library, monkeypatch, trained_result
):
    monkeypatch.setattr("ml.train.ssl_gan.train", lambda *a, **k: trained_result)
    monkeypatch.setattr("ml.checkpoint.save", lambda result, *a, **k: b"not a checkpoint")
    job_id = make_job(sqlite_factory, settings, library)
    assert training.run_job(job_id, sqlite_factory, settings=settings) == "failed"
    job = job_row(sqlite_factory, job_id)
    assert "checkpoint" in job.error.lower()
    with sqlite_factory() as s:
        assert s.scalar(select(func.count()).select_from(ModelVersion)) == 0
        assert s.get(ActiveModel, 1).model_version_id is None


@pytest.mark.parametrize(
    "policy,new,old,expected",
    [
        ("manual", 0.9, 0.5, False),
        ("always", 0.1, 0.9, True),
        ("if_not_worse", 0.8, 0.8, True),
        ("if_not_worse", 0.7, 0.8, False),
        ("if_not_worse", None, 0.8, False),
    ],
)
def test_activation_policy(policy, new, old, expected):
    active = ModelVersion(version=1)
    assert training.decide_activation(policy, new, active, old)[0] is expected
    # With nothing active, any policy but manual activates the first model.
    assert training.decide_activation(policy, new, None, None)[0] is (policy != "manual")


def test_manual_policy_registers_without_activating(
    sqlite_factory, settings, library, monkeypatch, trained_result
):
    monkeypatch.setattr("ml.train.ssl_gan.train", lambda *a, **k: trained_result)  # training is tested above
    manual = settings.model_copy(update={"activation_policy": "manual"})
    job_id = make_job(sqlite_factory, manual, library)
    assert local.run_once(sqlite_factory, manual) == "succeeded"  # the embedded worker's path
    job = job_row(sqlite_factory, job_id)
    assert job.model_version_id is not None and job.progress["activated"] is False
    assert active_version(sqlite_factory) is None


def test_stale_running_job_is_retried_then_failed(sqlite_factory, settings, library):
    job_id = make_job(sqlite_factory, settings, library)
    with sqlite_factory() as s:
        training.claim_job(s, job_id, host="dead-host:1", device="cpu")
        s.get(TrainingJob, job_id).heartbeat_at = utcnow() - timedelta(minutes=10)
        s.commit()
        assert training.reap_stale_jobs(s, settings=settings) == [job_id]
        job = s.get(TrainingJob, job_id, populate_existing=True)
        assert job.status == "queued" and "dead-host:1 stopped responding" in job.error
        # The second attempt dies too: now it fails for good instead of looping.
        training.claim_job(s, job_id, host="dead-host:2", device="cpu")
        s.get(TrainingJob, job_id).heartbeat_at = utcnow() - timedelta(minutes=10)
        s.commit()
        assert training.reap_stale_jobs(s, settings=settings) == []
        job = s.get(TrainingJob, job_id, populate_existing=True)
        assert job.status == "failed" and job.attempts == 2 and "gave up" in job.error


def test_a_reaped_worker_cannot_overwrite_its_successor(sqlite_factory, settings, library):
    job_id = make_job(sqlite_factory, settings, library)
    with sqlite_factory() as s:
        training.claim_job(s, job_id, host="slow", device="cpu")
        s.get(TrainingJob, job_id).heartbeat_at = utcnow() - timedelta(minutes=10)
        s.commit()
        training.reap_stale_jobs(s, settings=settings)
        training.claim_job(s, job_id, host="new", device="cpu")
    assert not training._finish(sqlite_factory, job_id, 1, status="failed", error="late")
    assert job_row(sqlite_factory, job_id).status == "running"


def test_auto_retrain_after_n_labels_once_labeling_pauses(sqlite_factory, settings, library, monkeypatch):
    auto = settings.model_copy(update={"auto_retrain_after_labels": 5})
    with sqlite_factory() as s:
        assert training.maybe_auto_retrain(s, settings) is None  # off by default (N = 0)
        assert training.maybe_auto_retrain(s, auto) is None  # labels are too recent: debounced
        auto = auto.model_copy(update={"auto_retrain_quiet_s": 0.0})
        job = training.maybe_auto_retrain(s, auto)
        assert job is not None and job.trigger == "auto"
        assert training.maybe_auto_retrain(s, auto) is None  # one job at a time
        training.claim_job(s, job.id, host="h", device="cpu")
        s.get(TrainingJob, job.id).status = "succeeded"
        s.commit()
        assert training.maybe_auto_retrain(s, auto) is None  # no new labels since its snapshot
        label_some(s, library, library.images[5:7])
        assert training.maybe_auto_retrain(s, auto) is not None


def test_a_job_whose_worker_died_after_registering_is_not_trained_twice(
    sqlite_factory, settings, library, trained_checkpoint
):
    job_id = make_job(sqlite_factory, settings, library)
    with sqlite_factory() as s:
        training.claim_job(s, job_id, host="gone", device="cpu")
        registry.register_model_version(s, trained_checkpoint, method="ssl_gan", training_job_id=job_id)
        s.get(TrainingJob, job_id).heartbeat_at = utcnow() - timedelta(minutes=10)
        s.commit()
        assert training.reap_stale_jobs(s, settings=settings) == [job_id]
    assert training.run_job(job_id, sqlite_factory, settings=settings) == "skipped"
    job = job_row(sqlite_factory, job_id)
    assert job.status == "succeeded" and job.model_version_id is not None
    with sqlite_factory() as s:
        assert s.scalar(select(func.count()).select_from(ModelVersion)) == 1


def test_supervised_baseline_jobs_use_the_same_path(
    sqlite_factory, settings, library, monkeypatch, trained_result
):
    calls: list[dict] = []

    def fake_supervised(data, cfg, **kwargs):  # ml.train.supervised is tested in tests/ml
        calls.append({"cfg": cfg, **kwargs})
        return trained_result

    monkeypatch.setattr("ml.train.supervised.train", fake_supervised)
    with sqlite_factory() as s:
        request = training.JobRequest(method="convnet", preset="tiny", epochs=2, train_overrides=TINY)
        job_id = training.create_job(s, request, user_id=library.admin.id, settings=settings).id
    assert training.run_job(job_id, sqlite_factory, settings=settings) == "succeeded"
    assert calls[0]["method"] == "convnet" and calls[0]["cfg"].epochs == 2
    assert callable(calls[0]["should_stop"]) and callable(calls[0]["on_progress"])
    with sqlite_factory() as s:
        mv = s.get(ModelVersion, s.get(TrainingJob, job_id).model_version_id)
        assert mv.method == "convnet" and registry.active_version(s).id == mv.id


def test_validation_images_stay_the_same_from_job_to_job():
    ill, well = np.array([1, 0, -1], np.int8), np.array([0, 0, -1], np.int8)
    labels = {1: ill, 2: ill, 3: well, 4: well, 5: ill, 6: well}
    digests = {1: "00000000", 2: "00000001", 3: "00000004", 4: "00000005", 5: "00000006", 6: "00000007"}
    # Buckets by digest: 1 and 3 are validation images (0 and 4 are multiples of 4), whatever the seed.
    for seed in range(3):
        assert training._pick_validation(list(labels), labels, digests, seed) == ([1, 3], "stable")
    # A newly labeled image does not move the others between training and validation.
    labels[7], digests[7] = ill, "00000008"
    assert training._pick_validation(list(labels), labels, digests, 0) == ([1, 3, 7], "stable")
    # Too few labels for the rule (no diseased image left for training): a seeded random quarter.
    few = {1: ill, 3: well, 4: well}
    val, how = training._pick_validation(list(few), few, digests, 0)
    assert how == "random" and len(val) == 1
