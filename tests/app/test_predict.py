"""/predict, heatmaps, the model registry (atomic activation, corrupt checkpoints), micro-batching."""

from __future__ import annotations

import io
import threading
import time

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import func, select, update

from app.db.models import Image as ImageRow
from app.db.models import ModelVersion, Prediction
from app.services import models
from app.services.batching import Batcher
from tests.app.conftest import upload


def _count(db, model) -> int:
    return db.scalar(select(func.count()).select_from(model))


def _predict_file(client, account, data, store=None, name="eye.jpg"):
    url = "/api/v1/predict" + ("?store=true" if store else "")
    return client.post(url, files={"file": (name, data, "image/jpeg")}, headers=account.headers)


def test_no_model_is_409_with_advice_and_writes_nothing(client, db, settings, annotator, jpeg_bytes):
    r = _predict_file(client, annotator, jpeg_bytes, store=True)
    assert r.status_code == 409
    assert "training job" in r.json()["detail"] and "activate" in r.json()["detail"]
    assert _count(db, ImageRow) == 0 and _count(db, Prediction) == 0
    assert not settings.storage_dir.exists() or not any(settings.storage_dir.rglob("*.*"))
    image_id = upload(client, annotator, jpeg_bytes).json()["id"]
    assert (
        client.post("/api/v1/predict", json={"image_id": image_id}, headers=annotator.headers).status_code
        == 409
    )


def test_predict_upload_not_stored(client, db, viewer, active_model, jpeg_bytes):
    r = _predict_file(client, viewer, jpeg_bytes)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model_version"] == active_model.version and body["image_id"] is None
    probs = np.array(body["patch_probabilities"])
    assert probs.shape == (8, 8) and ((probs >= 0) & (probs <= 1)).all()
    assert body["score"] == pytest.approx(probs.sum(), rel=1e-5)  # score = sum of the 64 probabilities
    assert body["diseased"] == (body["score"] >= body["threshold"])
    assert body["threshold"] == pytest.approx(active_model.threshold)
    assert _count(db, ImageRow) == 0  # not stored
    row = db.get(Prediction, body["id"])  # but audited: who, which model, which bytes
    assert row.user_id == viewer.user.id and row.model_version_id == active_model.id and row.upload_sha256
    assert body["heatmap_url"] == f"/api/v1/predictions/{body['id']}/heatmap.png"


def test_predict_upload_with_store_and_by_image_id_agree(client, db, annotator, active_model, jpeg_bytes):
    stored = _predict_file(client, annotator, jpeg_bytes, store=True)
    assert stored.status_code == 200, stored.text
    image_id = stored.json()["image_id"]
    assert image_id is not None and _count(db, ImageRow) == 1
    again = client.post("/api/v1/predict", json={"image_id": image_id}, headers=annotator.headers)
    assert again.status_code == 200
    assert again.json()["score"] == pytest.approx(stored.json()["score"], rel=1e-5)
    listed = client.get("/api/v1/images?status=predicted", headers=annotator.headers).json()
    assert listed["total"] == 1 and listed["items"][0]["latest_prediction"]["id"] == again.json()["id"]
    assert _count(db, Prediction) == 2


def test_heatmap_png_overlay_and_bare(client, annotator, active_model, jpeg_bytes):
    for store in (False, True):
        pid = _predict_file(client, annotator, jpeg_bytes, store=store).json()["id"]
        r = client.get(f"/api/v1/predictions/{pid}/heatmap.png", headers=annotator.headers)
        assert r.status_code == 200 and r.headers["content-type"] == "image/png"
        over = np.asarray(Image.open(io.BytesIO(r.content)).convert("RGB"))
        assert over.shape == (1024, 1024, 3) and over.std() > 5  # the fundus shows through: not blank
        bare = client.get(f"/api/v1/predictions/{pid}/heatmap.png?overlay=false", headers=annotator.headers)
        heat = np.asarray(Image.open(io.BytesIO(bare.content)).convert("RGB"))
        assert heat.shape[2] == 3 and not np.array_equal(
            heat[..., 0], over[: heat.shape[0], : heat.shape[1], 0]
        )
        base = client.get(f"/api/v1/predictions/{pid}/heatmap.png?alpha=0", headers=annotator.headers)
        plain = np.asarray(Image.open(io.BytesIO(base.content)).convert("RGB")).astype(int)
        assert np.abs(plain - over).sum() > 0  # alpha changes the picture
    assert client.get("/api/v1/predictions/99999/heatmap.png", headers=annotator.headers).status_code == 404


def _exif_jpeg(orientation: int) -> bytes:
    from ml.synth import generate

    exif = Image.Exif()
    exif[0x010F], exif[0x9286], exif[0x0112] = "SecretCam", "patient: Jane Doe", orientation
    buf = io.BytesIO()
    Image.fromarray(np.asarray(generate(6, size=512)[0])).save(
        buf, format="JPEG", exif=exif, comment=b"id 1234"
    )
    return buf.getvalue()


@pytest.mark.parametrize("orientation", [1, 6])
def test_heatmap_of_an_unstored_upload_is_drawn_on_its_own_pixels_without_its_metadata(
    client, db, settings, annotator, active_model, orientation
):
    """The kept copy of an unstored upload carries no metadata, and the heatmap's base is the very
    grid image the prediction's patches were cut from: the upload's own JPEG data (orientation 1),
    or a re-encode of the rotated grid image (orientation 6)."""
    from app.services import images

    data = _exif_jpeg(orientation)
    pid = _predict_file(client, annotator, data).json()["id"]
    kept = db.get(Prediction, pid).overlay_base
    assert not any(s in kept for s in (b"SecretCam", b"Jane Doe", b"id 1234"))
    assert not Image.open(io.BytesIO(kept)).getexif()
    grid = images.prepare(data, "eye.jpg", settings).grid_image
    r = client.get(f"/api/v1/predictions/{pid}/heatmap.png?alpha=0", headers=annotator.headers)
    base = np.asarray(Image.open(io.BytesIO(r.content)).convert("RGB")).astype(int)
    if orientation == 1:  # lossless: exactly the grid image
        assert len(kept) < len(data) and np.array_equal(base, grid)
    else:  # re-encoded (JPEG error only), and upright like the grid image
        error, turned = np.abs(base - grid).mean(), np.abs(base - np.rot90(grid)).mean()
        assert error < 1.5 and turned > 5 * error


@pytest.mark.parametrize(
    "body,ctype,status",
    [
        (b'{"image_id": 987654}', "application/json", 404),
        (b'{"image_id": "abc"}', "application/json", 422),
        (b'{"image": 1}', "application/json", 422),
        (b"not json", "application/json", 422),
        (b"image_id=1", "application/x-www-form-urlencoded", 415),
    ],
)
def test_predict_bad_requests(client, db, annotator, active_model, body, ctype, status):
    r = client.post("/api/v1/predict", content=body, headers={**annotator.headers, "content-type": ctype})
    assert r.status_code == status, r.text
    assert isinstance(r.json()["detail"], str)
    assert _count(db, Prediction) == 0


def test_predict_bad_upload_is_refused(client, db, annotator, active_model):
    r = _predict_file(client, annotator, b"<html><script>alert(1)</script></html>", store=True)
    assert r.status_code == 415
    assert _count(db, Prediction) == 0 and _count(db, ImageRow) == 0


def test_models_list_and_detail(client, viewer, active_model):
    listed = client.get("/api/v1/models", headers=viewer.headers).json()
    assert [(m["version"], m["active"]) for m in listed] == [(active_model.version, True)]
    one = client.get(f"/api/v1/models/{active_model.version}", headers=viewer.headers).json()
    assert one["metrics"] == {"patch_auc": 0.9} and one["training_summary"] == {"labeled_patches": 10}
    assert one["method"] == "ssl_gan" and len(one["checkpoint_sha256"]) == 64
    assert client.get("/api/v1/models/77", headers=viewer.headers).status_code == 404


def test_register_refuses_bytes_that_are_not_a_checkpoint(db):
    from app.services.errors import Invalid

    with pytest.raises(Invalid, match="not registered"):
        models.register_model_version(db, b"garbage" * 100, method="ssl_gan")
    assert _count(db, ModelVersion) == 0


def test_activation_switches_and_corrupt_checkpoint_is_refused(
    client, db, admin, active_model, tiny_checkpoint
):
    v2 = models.register_model_version(db, tiny_checkpoint, method="ssl_gan", preset="tiny")
    r = client.post(f"/api/v1/models/{v2.version}/activate", headers=admin.headers)
    assert r.status_code == 200 and r.json()["active"] is True
    assert models.active_version(db).version == v2.version
    # version 3's stored bytes get damaged after registration; a fresh process must refuse it
    v3 = models.register_model_version(db, tiny_checkpoint, method="ssl_gan", preset="tiny")
    db.execute(update(ModelVersion).where(ModelVersion.id == v3.id).values(checkpoint=b"\x00" * 1000))
    db.commit()
    models.predictors.clear()
    r = client.post(f"/api/v1/models/{v3.version}/activate", headers=admin.headers)
    assert r.status_code == 409
    assert "corrupt" in r.json()["detail"] and f"version {v2.version} stays active" in r.json()["detail"]
    db.expire_all()
    assert models.active_version(db).version == v2.version
    assert client.post("/api/v1/models/99/activate", headers=admin.headers).status_code == 404


def test_health_reports_an_active_model_that_cannot_load(client, db, active_model):
    db.execute(update(ModelVersion).where(ModelVersion.id == active_model.id).values(checkpoint=b"broken"))
    db.commit()
    models.predictors.clear()
    body = client.get("/health").json()
    assert body["status"] == "degraded" and "corrupt" in body["model_error"]


# --- micro-batching (unit: a fake predictor that records how it is called) -------------------------


class FakePredictor:
    def __init__(self, name: str, delay: float = 0.05) -> None:
        self.name, self.delay, self.calls = name, delay, []
        self.running = 0
        self.max_running = 0
        self.gate = threading.Event()
        self.gate.set()
        self._lock = threading.Lock()

    def predict(self, patches):
        with self._lock:
            self.running += 1
            self.max_running = max(self.max_running, self.running)
        self.gate.wait(5)
        time.sleep(self.delay)
        self.calls.append(len(patches))
        with self._lock:
            self.running -= 1
        return [(self.name, int(p[0, 0, 0, 0])) for p in patches]


def _patches(i: int) -> np.ndarray:
    return np.full((64, 3, 32, 32), i, dtype=np.uint8)


def test_concurrent_requests_share_one_forward_pass_at_a_time():
    batcher = Batcher(max_batch=16)
    model = FakePredictor("m")
    model.gate.clear()
    futures = [batcher.submit(model, _patches(0))]
    time.sleep(0.05)  # the first forward is now running (blocked); the next ones queue behind it
    futures += [batcher.submit(model, _patches(i)) for i in range(1, 9)]
    model.gate.set()
    results = [f.result(5) for f in futures]
    assert [r.prediction for r in results] == [("m", i) for i in range(9)]  # each gets its own answer
    assert model.calls == [1, 8]  # the eight waiting requests ran as one batch
    assert model.max_running == 1 and results[5].batch_size == 8
    batcher.close()


def test_a_request_in_flight_finishes_on_the_model_it_started_with():
    batcher = Batcher(max_batch=16)
    old, new = FakePredictor("old"), FakePredictor("new")
    old.gate.clear()
    first = batcher.submit(old, _patches(1))
    time.sleep(0.05)
    queued_old = batcher.submit(old, _patches(2))  # resolved before the activation
    after = batcher.submit(new, _patches(3))  # resolved after it
    old.gate.set()
    assert first.result(5).prediction == ("old", 1)
    assert queued_old.result(5).prediction == ("old", 2)
    assert after.result(5).prediction == ("new", 3)
    batcher.close()


def test_a_failing_forward_pass_reaches_every_waiting_request():
    class Broken:
        def predict(self, patches):
            raise RuntimeError("out of memory")

    batcher = Batcher()
    fut = batcher.submit(Broken(), _patches(0))
    with pytest.raises(RuntimeError, match="out of memory"):
        fut.result(5)
    assert batcher.submit(FakePredictor("ok", 0), _patches(4)).result(5).prediction == (
        "ok",
        4,
    )  # still alive
    batcher.close()


def test_cpu_optimised_classifier_gives_the_same_predictions(tiny_checkpoint):
    from ml.predict import Predictor

    plain = Predictor.from_checkpoint(tiny_checkpoint)
    fast = Predictor.from_checkpoint(tiny_checkpoint)
    assert models.optimize_for_cpu(fast) is True
    assert fast.model is not plain.model
    x = np.random.default_rng(1).integers(0, 256, size=(3, 64, 3, 32, 32), dtype=np.uint8)
    np.testing.assert_allclose(fast.patch_logits(x), plain.patch_logits(x), atol=1e-4, rtol=1e-4)
    assert [p.diseased for p in fast.predict(x)] == [p.diseased for p in plain.predict(x)]


def test_a_model_version_shows_its_network_configuration(client, viewer, active_model, tiny_checkpoint):
    from ml.checkpoint import load

    expected = load(tiny_checkpoint).model_cfg
    body = client.get(f"/api/v1/models/{active_model.version}", headers=viewer.headers).json()
    assert body["network"]["input_norm"] == expected.input_norm
    assert body["network"]["model_res"] == expected.model_res
    assert body["network"]["d_widths"] == list(expected.d_widths)
    listed = client.get("/api/v1/models", headers=viewer.headers).json()
    assert listed[0]["network"] == body["network"]
