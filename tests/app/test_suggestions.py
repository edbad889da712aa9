"""Suggested next patches: entropy ranking, labeled patches left out, every suggestion recorded.

The model is replaced by a known function of the patch pixels (a unit test may fake the model), so
the expected ranking can be computed by hand; the database is the real schema from the migrations.
"""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db import migrate
from app.db.base import utcnow
from app.db.models import ActiveModel, Image, ModelVersion, PatchLabel, Prediction, Suggestion, User
from app.db.session import make_engine
from app.services import suggestions as svc
from app.services.errors import Conflict, Invalid, NotFound
from ml.data.patches import patches_to_bytes


@pytest.fixture()
def session(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite3'}")
    migrate.upgrade(engine)
    svc.clear_cache()
    with Session(engine, expire_on_commit=False) as s:
        yield s
    engine.dispose()


def make_patches(values: np.ndarray) -> bytes:
    """64 patches, patch k filled with the constant values[k] (0..255)."""
    arr = np.broadcast_to(values.astype(np.uint8)[:, None, None, None], (64, 3, 32, 32))
    return patches_to_bytes(np.ascontiguousarray(arr))


def logits_from_pixels(batch: np.ndarray) -> np.ndarray:
    """The fake model: logit = (mean pixel - 128) / 16, so pixel 128 means p = 0.5 (most uncertain)."""
    return (batch.reshape(batch.shape[0], 64, -1).mean(axis=2) - 128.0) / 16.0


def add_image(s: Session, name: str, values: np.ndarray, *, deleted: bool = False) -> Image:
    img = Image(
        sha256=name.ljust(64, "0"),
        original_filename=name,
        format="PNG",
        size_bytes=1,
        width=1024,
        height=1024,
        storage_key=name,
        patches=make_patches(values),
        patch_params="p",
        deleted_at=utcnow() if deleted else None,
    )
    s.add(img)
    s.flush()
    return img


def add_user(s: Session, name: str, role: str = "annotator") -> User:
    u = User(username=name, password_hash="x", role=role)
    s.add(u)
    s.flush()
    return u


def activate_model(s: Session, version: int = 1) -> ModelVersion:
    mv = ModelVersion(
        version=version,
        method="ssl_gan",
        preset="tiny",
        checkpoint=b"unused",
        checkpoint_sha256=f"{version:064d}",
        checkpoint_size=6,
        threshold=10.0,
    )
    s.add(mv)
    s.flush()
    s.merge(ActiveModel(id=1, model_version_id=mv.id))
    s.flush()
    return mv


def label(s: Session, img: Image, row: int, col: int, value: int | None, user: User) -> None:
    s.add(PatchLabel(image_id=img.id, row=row, col=col, label=value, user_id=user.id))
    s.flush()


def test_binary_entropy_is_one_bit_at_half_and_zero_at_certainty():
    h = svc.binary_entropy(np.array([0.0, 0.5, 1.0, 0.1, 0.9]))
    assert h[1] == pytest.approx(1.0)
    assert h[0] == 0.0 and h[2] == 0.0
    assert h[3] == pytest.approx(h[4]) and 0.4 < h[3] < 0.5


def test_no_active_model_answers_409_with_what_to_do(session):
    user = add_user(session, "ann")
    add_image(session, "a.png", np.full(64, 128))
    with pytest.raises(Conflict, match="training job"):
        svc.suggest(session, user, 5, logits_fn=logits_from_pixels)


def test_ranks_by_entropy_excludes_labeled_and_records_who_got_what(session):
    ann, other = add_user(session, "ann"), add_user(session, "bob")
    mv = activate_model(session)
    # Image a: patch 0 is 128 (p = 0.5), the others far from 128 (sure). Image b: patch 5 is 120.
    va = np.full(64, 250)
    va[0], va[1] = 128, 124
    vb = np.full(64, 10)
    vb[5], vb[6] = 120, 136
    a, b = add_image(session, "a.png", va), add_image(session, "b.png", vb)
    add_image(session, "gone.png", np.full(64, 128), deleted=True)  # soft-deleted: never suggested
    label(session, a, 0, 1, 1, other)  # patch (0, 1) labeled by someone else: left out
    label(session, b, 0, 6, 0, ann)  # patch (0, 6) labeled then cleared: unlabeled again
    label(session, b, 0, 6, None, ann)

    batch = svc.suggest(session, ann, 3, logits_fn=logits_from_pixels)

    got = [(i.image_id, i.row, i.col) for i in batch.items]
    # Entropy order: a(0,0) p=.5, then b(0,6) and b(0,5) are equally far from 128 (|8|): the tie is
    # broken by image id then patch index, so b(0,5) before b(0,6).
    assert got == [(a.id, 0, 0), (b.id, 0, 5), (b.id, 0, 6)]
    assert batch.items[0].probability == pytest.approx(0.5)
    assert batch.items[0].entropy == pytest.approx(1.0)
    assert batch.items[1].entropy == pytest.approx(batch.items[2].entropy)
    assert [i.rank for i in batch.items] == [1, 2, 3]
    assert batch.model_version == mv.version
    rows = session.scalars(select(Suggestion).order_by(Suggestion.rank)).all()
    assert [(r.user_id, r.image_id, r.row, r.col, r.rank) for r in rows] == [
        (ann.id, i, r, c, k) for k, (i, r, c) in enumerate(got, start=1)
    ]
    assert {r.request_id for r in rows} == {batch.request_id}
    assert all(r.model_version_id == mv.id for r in rows)


def test_image_filter_and_bounds(session):
    ann = add_user(session, "ann")
    activate_model(session)
    a = add_image(session, "a.png", np.arange(64) * 4)
    add_image(session, "b.png", np.full(64, 128))
    batch = svc.suggest(session, ann, 64, image_id=a.id, logits_fn=logits_from_pixels)
    assert {i.image_id for i in batch.items} == {a.id}
    assert len(batch.items) == 64
    ent = [i.entropy for i in batch.items]
    assert ent == sorted(ent, reverse=True)
    assert (batch.items[0].row, batch.items[0].col) == (4, 0)  # value 128 is patch k = 32
    with pytest.raises(NotFound):
        svc.suggest(session, ann, 5, image_id=9999, logits_fn=logits_from_pixels)
    for bad in (0, svc.MAX_N + 1):
        with pytest.raises(Invalid):
            svc.suggest(session, ann, bad, logits_fn=logits_from_pixels)


def test_stored_predictions_of_the_active_version_are_reused(session):
    ann = add_user(session, "ann")
    mv = activate_model(session)
    a = add_image(session, "a.png", np.full(64, 250))
    probs = [0.01] * 64
    probs[63] = 0.45
    session.add(
        Prediction(
            user_id=ann.id,
            model_version_id=mv.id,
            image_id=a.id,
            score=1.0,
            threshold=10.0,
            diseased=False,
            probabilities=probs,
        )
    )
    session.flush()

    def must_not_run(batch):
        raise AssertionError("the model ran although a stored prediction of this version exists")

    batch = svc.suggest(session, ann, 1, logits_fn=must_not_run)
    assert (batch.items[0].row, batch.items[0].col) == (7, 7)
    assert batch.items[0].probability == pytest.approx(0.45)


def test_everything_labeled_gives_an_empty_list(session):
    ann = add_user(session, "ann")
    activate_model(session)
    a = add_image(session, "a.png", np.full(64, 128))
    for k in range(64):
        label(session, a, k // 8, k % 8, k % 2, ann)
    batch = svc.suggest(session, ann, 10, logits_fn=logits_from_pixels)
    assert batch.items == []
    assert session.scalar(select(Suggestion.id)) is None


# ---- through the HTTP API with a real (tiny) trained model, on SQLite and PostgreSQL ----


@pytest.fixture(scope="module")
def tiny_model() -> bytes:
    from ml.train.toy import tiny_checkpoint

    return tiny_checkpoint(seed=0)


def test_api_needs_sign_in_and_an_active_model(client, annotator):
    assert client.get("/api/v1/suggestions").status_code == 401
    r = client.get("/api/v1/suggestions?n=5", headers=annotator.headers)
    assert r.status_code == 409
    assert "training job" in r.json()["detail"]
    assert client.get("/api/v1/suggestions?n=0", headers=annotator.headers).status_code == 422


def test_api_suggests_the_most_uncertain_unlabeled_patches_and_records_them(
    client, db, admin, annotator, viewer, tiny_model
):
    from app.services import models as registry
    from ml.predict import Predictor
    from tests.app.conftest import fundus_bytes, upload

    ids = [
        upload(client, admin, fundus_bytes(seed, dr=seed % 2 == 0), name=f"e{seed}.jpg").json()["id"]
        for seed in (3, 4)
    ]
    r = client.put(
        f"/api/v1/images/{ids[0]}/labels",
        headers=annotator.headers,
        json={
            "labels": [{"row": 0, "col": 0, "label": "healthy"}, {"row": 4, "col": 4, "label": "diseased"}]
        },
    )
    assert r.status_code == 200
    mv = registry.register_model_version(
        db, tiny_model, method="ssl_gan", preset="tiny", metrics={}, threshold=1.0
    )
    registry.activate(db, mv.version)
    registry.predictors.clear()
    svc.clear_cache()

    r = client.get("/api/v1/suggestions?n=10", headers=viewer.headers)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model_version"] == mv.version and body["scanned_images"] == 2
    got = [(s["image_id"], s["row"], s["col"]) for s in body["items"]]
    assert len(got) == 10 and (ids[0], 0, 0) not in got and (ids[0], 4, 4) not in got

    # The same ranking computed independently from the model's own probabilities.
    predictor = Predictor.from_checkpoint(tiny_model)
    patches = {i: patches_from_bytes_of(db, i) for i in ids}
    expected = []
    for i in sorted(ids, reverse=True):
        p = 1 / (1 + np.exp(-predictor.patch_logits(patches[i])[0].astype(np.float64)))
        h = svc.binary_entropy(p)
        expected += [
            (-round(float(h[k]), 9), i, k) for k in range(64) if (i, k) not in {(ids[0], 0), (ids[0], 36)}
        ]
    expected.sort()
    assert got == [(i, k // 8, k % 8) for _, i, k in expected[:10]]
    ent = [s["entropy"] for s in body["items"]]
    assert ent == sorted(ent, reverse=True) and all(0 <= e <= 1 for e in ent)
    assert body["items"][0]["label_url"].startswith(f"/images/{got[0][0]}/label?row=")

    rows = db.scalars(
        select(Suggestion).where(Suggestion.request_id == body["request_id"]).order_by(Suggestion.rank)
    ).all()
    assert [(r.user_id, r.image_id, r.row, r.col) for r in rows] == [(viewer.user.id, *g) for g in got]

    only = client.get(f"/api/v1/suggestions?n=3&image_id={ids[1]}", headers=viewer.headers).json()
    assert {s["image_id"] for s in only["items"]} == {ids[1]}


def patches_from_bytes_of(db: Session, image_id: int) -> np.ndarray:
    from ml.data.patches import patches_from_bytes

    return patches_from_bytes(db.scalar(select(Image.patches).where(Image.id == image_id)))


def test_a_request_spends_a_bounded_model_time_and_later_ones_cover_the_rest(session):
    activate_model(session)
    for i in range(40):
        add_image(session, f"i{i:02d}.png", np.full(64, 250))
    calls = []

    def slow_model(batch):
        calls.append(len(batch))
        return logits_from_pixels(batch)

    first = svc.rank(session, 5, compute_budget_s=0.0, logits_fn=slow_model)
    assert calls == [svc.BATCH_IMAGES]  # one batch, then the budget stops the model
    assert (first.scanned_images, first.pending_images) == (svc.BATCH_IMAGES, 40 - svc.BATCH_IMAGES)
    second = svc.rank(session, 5, compute_budget_s=None, logits_fn=slow_model)
    assert calls == [8, 8, 8, 8, 8]  # the cached images are not scored again
    assert (second.scanned_images, second.pending_images) == (40, 0)
