"""Patch labels: append-only history, per-annotator labels, consensus for training, bad input."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest
from sqlalchemy import func, select

from app.db.models import Image as ImageRow
from app.db.models import PatchLabel
from app.services import labels
from tests.app.conftest import upload


@pytest.fixture
def image_id(client, annotator, jpeg_bytes) -> int:
    return upload(client, annotator, jpeg_bytes).json()["id"]


def _put(client, account, image_id, row, col, label):
    return client.put(
        f"/api/v1/images/{image_id}/labels/{row}/{col}", json={"label": label}, headers=account.headers
    )


def _n_rows(db) -> int:
    return db.scalar(select(func.count()).select_from(PatchLabel))


def test_set_change_clear_keeps_every_step_in_history(client, db, annotator, image_id):
    assert _put(client, annotator, image_id, 3, 4, "diseased").json()["label"] == "diseased"
    assert _put(client, annotator, image_id, 3, 4, "healthy").json()["mine"] == "healthy"
    cleared = _put(client, annotator, image_id, 3, 4, None).json()
    assert cleared["label"] is None and cleared["mine"] is None
    history = client.get(f"/api/v1/images/{image_id}/labels/history", headers=annotator.headers).json()
    assert [(h["row"], h["col"], h["label"], h["user"]) for h in history] == [
        (3, 4, "diseased", "anna"),
        (3, 4, "healthy", "anna"),
        (3, 4, None, "anna"),
    ]
    assert _n_rows(db) == 3  # nothing overwritten


def test_grid_shows_consensus_mine_others_and_who_when(client, make_account, annotator, image_id):
    other = make_account("annotator", "bob")
    _put(client, annotator, image_id, 0, 1, "diseased")
    _put(client, other, image_id, 0, 1, "diseased")
    _put(client, other, image_id, 7, 7, "healthy")
    grid = client.get(f"/api/v1/images/{image_id}/labels", headers=annotator.headers).json()
    assert grid["grid"][0][1] == "diseased" and grid["grid"][7][7] == "healthy" and grid["labeled"] == 2
    cell = next(c for c in grid["cells"] if (c["row"], c["col"]) == (7, 7))
    assert cell["mine"] is None and cell["set_by"] == "bob"
    assert datetime.fromisoformat(cell["set_at"]).tzinfo is not None
    assert [a["user"] for a in cell["annotations"]] == ["bob"]
    both = next(c for c in grid["cells"] if (c["row"], c["col"]) == (0, 1))
    assert {a["user"] for a in both["annotations"]} == {"anna", "bob"} and both["mine"] == "diseased"
    assert len(grid["cells"]) == 64


def test_batch_put_is_all_or_nothing(client, db, annotator, image_id):
    ok = client.put(
        f"/api/v1/images/{image_id}/labels",
        headers=annotator.headers,
        json={
            "labels": [{"row": 0, "col": 0, "label": "healthy"}, {"row": 1, "col": 1, "label": "diseased"}]
        },
    )
    assert ok.status_code == 200 and ok.json()["labeled"] == 2
    bad = client.put(
        f"/api/v1/images/{image_id}/labels",
        headers=annotator.headers,
        json={
            "labels": [{"row": 2, "col": 2, "label": "healthy"}, {"row": 9, "col": 1, "label": "diseased"}]
        },
    )
    assert bad.status_code == 422
    unknown = client.put(
        f"/api/v1/images/{image_id}/labels",
        headers=annotator.headers,
        json={"labels": [{"row": 2, "col": 2, "label": "healthy"}, {"row": 3, "col": 1, "label": "maybe"}]},
    )
    assert unknown.status_code == 422
    assert _n_rows(db) == 2


@pytest.mark.parametrize(
    "row,col,body",
    [
        (8, 0, {"label": "healthy"}),
        (0, 8, {"label": "healthy"}),
        (-1, 0, {"label": "healthy"}),
        (0, 0, {"label": "sick"}),
        (0, 0, {"label": 1}),
        (0, 0, {}),
        (0, 0, {"label": "healthy", "extra": 1}),
    ],
)
def test_bad_coordinates_and_values_are_422_and_write_nothing(
    client, db, annotator, image_id, row, col, body
):
    r = client.put(f"/api/v1/images/{image_id}/labels/{row}/{col}", json=body, headers=annotator.headers)
    assert r.status_code == 422, r.text
    assert isinstance(r.json()["detail"], str) and r.json()["detail"]
    assert _n_rows(db) == 0


def test_label_for_unknown_or_deleted_image_is_404(client, db, admin, annotator, image_id):
    assert _put(client, annotator, 999999, 0, 0, "healthy").status_code == 404
    client.delete(f"/api/v1/images/{image_id}", headers=admin.headers)
    r = _put(client, annotator, image_id, 0, 0, "healthy")
    assert r.status_code == 404 and "deleted" in r.json()["detail"]
    assert client.get(f"/api/v1/images/{image_id}/labels", headers=annotator.headers).status_code == 404
    assert _n_rows(db) == 0


def test_labeled_count_follows_consensus(client, db, annotator, image_id):
    _put(client, annotator, image_id, 0, 0, "healthy")
    _put(client, annotator, image_id, 0, 1, "healthy")
    _put(client, annotator, image_id, 0, 1, None)
    db.expire_all()
    assert db.get(ImageRow, image_id).labeled_count == 1


def _recount(db, image_id) -> int:
    return int((labels.consensus_labels(db, image_ids=[image_id]).get(image_id, np.array([])) != -1).sum())


def _state(cells) -> dict:
    return {
        k: ([(v.user_id, v.role, v.label, v.label_id, v.at) for v in c.votes.values()], c.last.label_id)
        for k, c in cells.items()
    }


def test_labeled_count_and_returned_state_equal_a_fresh_read(db, make_account, admin, image_id):
    """Single and batch writes (a batch may touch a patch twice) by annotators and an admin, sets
    and clears on few patches: the count equals a full recount and the state a write returns
    equals the state read back from the database, after every write."""
    people = [make_account("annotator").user for _ in range(3)] + [admin.user]
    rng = np.random.default_rng(0)
    for step in range(120):
        who = people[int(rng.integers(0, len(people)))]
        n = 1 if step % 3 else int(rng.integers(2, 5))
        batch = [
            (int(rng.integers(0, 3)), int(rng.integers(0, 3)), [None, 0, 1][int(rng.integers(0, 3))])
            for _ in range(n)
        ]
        whole = step % 2 == 0
        returned = labels.set_labels(db, image_id, batch, who, whole_grid=whole)
        db.expire_all()
        assert db.get(ImageRow, image_id).labeled_count == _recount(db, image_id), step
        fresh = labels.grid(db, image_id)
        if not whole:
            fresh = {k: fresh[k] for k in {(r, c) for r, c, _ in batch}}
        assert _state(returned) == _state(fresh), step


def test_a_role_change_recounts_the_images_its_user_labeled(db, make_account, image_id):
    from app.services import users

    a, b = make_account("annotator").user, make_account("annotator").user
    labels.set_labels(db, image_id, [(0, 0, 0)], a)
    labels.set_labels(db, image_id, [(0, 0, 1)], b)  # a tie: unlabeled
    assert db.get(ImageRow, image_id).labeled_count == 0
    users.update_user(db, b, role="admin")  # an admin's label wins
    db.expire_all()
    assert db.get(ImageRow, image_id).labeled_count == 1 == _recount(db, image_id)
    users.update_user(db, b, role="annotator")
    db.expire_all()
    assert db.get(ImageRow, image_id).labeled_count == 0


# --- consensus ----------------------------------------------------------------------------------


def _vote(uid, role, label, order):
    return labels.Vote(uid, f"u{uid}", role, label, datetime.now(UTC), order)


@pytest.mark.parametrize(
    "votes,expected",
    [
        ([], -1),
        ([("annotator", 1)], 1),
        ([("annotator", 1), ("annotator", 0)], -1),  # tie: unlabeled
        ([("annotator", 1), ("annotator", 0), ("annotator", 1)], 1),  # majority
        ([("annotator", 1), ("annotator", 1), ("admin", 0)], 0),  # an admin decides
        ([("admin", 1), ("admin", 0)], 0),  # the latest admin label
        ([("admin", 0), ("admin", 1)], 1),
        ([("annotator", None), ("annotator", 0)], 0),  # a cleared label does not vote
        ([("admin", None), ("annotator", 1)], 1),
    ],
)
def test_consensus_rule(votes, expected):
    assert labels.consensus_of([_vote(i, role, lab, i) for i, (role, lab) in enumerate(votes)]) == expected


def test_consensus_labels_for_training(client, db, make_account, admin, annotator, image_id, jpeg_bytes):
    bob = make_account("annotator", "bob")
    carol = make_account("annotator", "carol")
    _put(client, annotator, image_id, 0, 0, "diseased")
    _put(client, bob, image_id, 0, 0, "healthy")  # tie -> unlabeled
    _put(client, annotator, image_id, 1, 0, "diseased")
    _put(client, bob, image_id, 1, 0, "diseased")
    _put(client, carol, image_id, 1, 0, "healthy")  # majority diseased
    _put(client, annotator, image_id, 2, 0, "diseased")
    _put(client, admin, image_id, 2, 0, "healthy")  # admin decides
    snapshot = labels.label_snapshot(db)
    _put(client, annotator, image_id, 3, 0, "diseased")  # after the snapshot
    now = labels.consensus_labels(db)
    assert set(now) == {image_id}
    arr = now[image_id]
    assert arr.dtype == np.int8 and arr.shape == (64,)
    assert (arr[0], arr[8], arr[16], arr[24], arr[1]) == (-1, 1, 0, 1, -1)
    then = labels.consensus_labels(db, max_label_id=snapshot["max_label_id"])[image_id]
    assert then[24] == -1 and then[8] == 1
    assert snapshot["diseased_patches"] == 1 and snapshot["healthy_patches"] == 1 and snapshot["images"] == 1
    client.delete(f"/api/v1/images/{image_id}", headers=admin.headers)
    assert labels.consensus_labels(db) == {}  # deleted images do not train


def test_viewer_cannot_label(client, viewer, image_id):
    assert _put(client, viewer, image_id, 0, 0, "healthy").status_code == 403
