"""Patch labels: an append-only history, a current label per annotator, and a consensus for training.

Every change (set or clear) is a new ``patch_labels`` row; nothing is updated or deleted. For each
patch and annotator the current label is that annotator's latest row (``NULL`` = cleared).

Consensus (what training uses), per patch, over the annotators' current, non-cleared labels:
1. if any admin has a current label, the most recent admin label wins (an admin adjudicates);
2. otherwise the majority label among annotators;
3. a tie (or no label at all) leaves the patch unlabeled (-1).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from sqlalchemy import func, select, text, tuple_, update
from sqlalchemy.orm import Session

from app.db.models import Image, PatchLabel, User
from app.services.errors import Invalid, NotFound

GRID = 8
LABEL_NAMES = {0: "healthy", 1: "diseased"}
LABEL_VALUES = {"healthy": 0, "diseased": 1}


@dataclass(frozen=True)
class Vote:
    user_id: int
    username: str
    role: str
    label: int | None
    at: datetime
    label_id: int


@dataclass
class Cell:
    row: int
    col: int
    votes: dict[int, Vote]  # user id -> that annotator's current label (latest row, maybe cleared)
    last: Vote | None  # the latest change by anyone

    @property
    def consensus(self) -> int:
        return consensus_of(self.votes.values())


def consensus_of(votes) -> int:
    live = [v for v in votes if v.label is not None]
    admin = [v for v in live if v.role == "admin"]
    if admin:
        return max(admin, key=lambda v: v.label_id).label  # type: ignore[return-value]
    counts = Counter(v.label for v in live).most_common()
    if not counts or (len(counts) > 1 and counts[0][1] == counts[1][1]):
        return -1
    return counts[0][0]  # type: ignore[return-value]


def parse_label(value: str | None) -> int | None:
    if value is None:
        return None
    if value not in LABEL_VALUES:
        raise Invalid(f'Unknown label {value!r}: use "healthy", "diseased" or null.')
    return LABEL_VALUES[value]


def check_cell(row: int, col: int) -> None:
    if not (0 <= row < GRID and 0 <= col < GRID):
        raise Invalid(f"Patch ({row}, {col}) is outside the 8x8 grid: row and col go from 0 to 7.")


def _live_image(session: Session, image_id: int) -> Image:
    image = session.scalar(select(Image).where(Image.id == image_id))
    if image is None or image.deleted_at is not None:
        raise NotFound(f"No image with id {image_id} (unknown or deleted).")
    return image


def _current_rows(session: Session, image_ids, *, max_label_id: int | None = None, cells=None):
    """Each annotator's latest row per patch (so at most 64 x annotators rows per image), for
    every patch or only the (row, col) ``cells`` given.

    The latest change to a patch by anyone is among them: it is its author's latest row.
    """
    latest = select(func.max(PatchLabel.id)).group_by(
        PatchLabel.image_id, PatchLabel.row, PatchLabel.col, PatchLabel.user_id
    )
    if image_ids is not None:
        latest = latest.where(PatchLabel.image_id.in_(list(image_ids)))
    if cells is not None:
        latest = latest.where(tuple_(PatchLabel.row, PatchLabel.col).in_(list(cells)))
    if max_label_id is not None:
        latest = latest.where(PatchLabel.id <= max_label_id)
    q = (
        select(
            PatchLabel.id,
            PatchLabel.image_id,
            PatchLabel.row,
            PatchLabel.col,
            PatchLabel.label,
            PatchLabel.user_id,
            PatchLabel.created_at,
            User.username,
            User.role,
        )
        .join(User, User.id == PatchLabel.user_id)
        .where(PatchLabel.id.in_(latest))
        .order_by(PatchLabel.id)
    )
    return session.execute(q)


def cells_by_image(
    session: Session, image_ids=None, *, max_label_id: int | None = None, cells=None
) -> dict[int, dict]:
    """image id -> {(row, col): Cell} with every annotator's current label of each labeled patch
    (of the ``cells`` given, when given)."""
    out: dict[int, dict[tuple[int, int], Cell]] = {}
    for r in _current_rows(session, image_ids, max_label_id=max_label_id, cells=cells):
        vote = Vote(r.user_id, r.username, r.role, r.label, r.created_at, r.id)
        cell = out.setdefault(r.image_id, {}).setdefault((r.row, r.col), Cell(r.row, r.col, {}, None))
        cell.votes[r.user_id] = vote
        cell.last = vote
    return out


def grid(session: Session, image_id: int) -> dict[tuple[int, int], Cell]:
    _live_image(session, image_id)
    return cells_by_image(session, [image_id]).get(image_id, {})


def history(session: Session, image_id: int) -> list[PatchLabel]:
    _live_image(session, image_id)
    return list(
        session.scalars(select(PatchLabel).where(PatchLabel.image_id == image_id).order_by(PatchLabel.id))
    )


def _labeled(cells: dict[tuple[int, int], Cell]) -> int:
    return sum(1 for cell in cells.values() if cell.consensus != -1)


def set_labels(
    session: Session,
    image_id: int,
    changes: list[tuple[int, int, int | None]],
    user: User,
    *,
    whole_grid: bool = False,
) -> dict[tuple[int, int], Cell]:
    """Append one history row per change, all in one transaction (all or nothing); returns the new
    state of the changed patches (of the whole grid with ``whole_grid``).

    The touched patches' state is read once, before the insert, under a lock on those patches
    (``_lock_patches``), and the new rows are applied to it in Python, so the result is what a
    re-read would give. ``labeled_count`` moves by what the touched patches' consensus did, as
    one atomic ``labeled_count + delta`` at the end, so a click never rebuilds the grid and
    annotators of one image wait for each other only when they click the same patch.
    """
    for r, c, _ in changes:
        check_cell(r, c)
    touched = sorted({(r, c) for r, c, _ in changes})
    image = _live_image(session, image_id)
    _lock_patches(session, image.id, touched)
    before = cells_by_image(session, [image.id], cells=None if whole_grid else touched).get(image.id, {})
    rows = [PatchLabel(image_id=image.id, row=r, col=c, label=lab, user_id=user.id) for r, c, lab in changes]
    session.add_all(rows)
    session.flush()  # assigns the ids (in insertion order) and the timestamps
    after = _with_new_rows(before, rows, user)
    delta = _labeled(_only(after, touched)) - _labeled(_only(before, touched))
    if delta:
        session.execute(
            update(Image).where(Image.id == image.id).values(labeled_count=Image.labeled_count + delta)
        )
    session.commit()
    return after


# PostgreSQL advisory locks with two int4 keys (image id, patch index); -1 stands for the image.
_WHOLE_IMAGE = -1


def _lock_patches(session: Session, image_id: int, cells: list[tuple[int, int]]) -> None:
    """Serialise writers of the same patches until commit (PostgreSQL; SQLite's write transaction
    already serialises every writer).

    A patch's new consensus depends on its annotators' current labels, so two writers of one
    patch must not both read the old state; writers of different patches of one image need not
    wait for each other (the image-row lock used before made five annotators of one image queue
    behind each other on every click). Each writer also holds the image key in shared mode, so
    that ``recount_labeled`` (exclusive) sees no write half done. Keys are taken in sorted order.
    """
    if session.get_bind().dialect.name != "postgresql":
        return
    keys = ", ".join(f"pg_advisory_xact_lock(:i, {r * GRID + c})" for r, c in sorted(cells))
    session.execute(text(f"SELECT pg_advisory_xact_lock_shared(:i, {_WHOLE_IMAGE}), {keys}"), {"i": image_id})


def _lock_images(session: Session, image_ids: list[int]) -> None:
    """Wait for every label write in flight on these images, and keep new ones out until commit."""
    if session.get_bind().dialect.name != "postgresql":
        return
    for image_id in sorted(image_ids):
        session.execute(text(f"SELECT pg_advisory_xact_lock(:i, {_WHOLE_IMAGE})"), {"i": image_id})


def _only(cells: dict[tuple[int, int], Cell], keys) -> dict[tuple[int, int], Cell]:
    return {k: cells[k] for k in keys if k in cells}


def _with_new_rows(
    cells: dict[tuple[int, int], Cell], rows: list[PatchLabel], user: User
) -> dict[tuple[int, int], Cell]:
    """``cells`` after ``rows`` (flushed, all by ``user``): each row becomes its author's current
    vote and the cell's latest change, exactly as ``cells_by_image`` would read them back
    (votes in the order of their label ids, so the author moves to the end)."""
    out = {k: Cell(c.row, c.col, dict(c.votes), c.last) for k, c in cells.items()}
    for row in rows:
        vote = Vote(user.id, user.username, user.role, row.label, row.created_at, row.id)
        cell = out.setdefault((row.row, row.col), Cell(row.row, row.col, {}, None))
        cell.votes.pop(user.id, None)
        cell.votes[user.id] = vote
        cell.last = vote
    return out


def recount_labeled(session: Session, user_id: int) -> None:
    """Recount ``labeled_count`` of the images this user has labeled: a role change can flip the
    consensus of their patches (an admin's label wins) without any new label row."""
    image_ids = list(
        session.scalars(select(PatchLabel.image_id).where(PatchLabel.user_id == user_id).distinct())
    )
    if not image_ids:
        return
    _lock_images(session, image_ids)
    cells = cells_by_image(session, image_ids)
    for image in session.scalars(select(Image).where(Image.id.in_(image_ids))):
        image.labeled_count = _labeled(cells.get(image.id, {}))


def consensus_labels(
    session: Session, *, max_label_id: int | None = None, image_ids=None
) -> dict[int, np.ndarray]:
    """Per live image with at least one label: its (64,) int8 consensus labels (-1 unlabeled).

    ``max_label_id`` replays the history up to a snapshot (a training job records the largest
    label id it saw, so the model version states exactly which labels it learned from).
    """
    cells = cells_by_image(session, image_ids, max_label_id=max_label_id)
    live = set(session.scalars(select(Image.id).where(Image.deleted_at.is_(None), Image.id.in_(list(cells)))))
    out: dict[int, np.ndarray] = {}
    for image_id, by_cell in cells.items():
        if image_id not in live:
            continue
        labels = np.full(GRID * GRID, -1, dtype=np.int8)
        for (r, c), cell in by_cell.items():
            labels[r * GRID + c] = cell.consensus
        out[image_id] = labels
    return out


def label_snapshot(session: Session) -> dict:
    """What a training job records before it starts: the history cut-off and the label ids in effect."""
    cells = cells_by_image(session)
    max_id = session.scalar(select(PatchLabel.id).order_by(PatchLabel.id.desc()).limit(1)) or 0
    ids = sorted(
        v.label_id
        for by_cell in cells.values()
        for cell in by_cell.values()
        for v in cell.votes.values()
        if v.label is not None
    )
    consensus = consensus_labels(session, max_label_id=max_id)
    n_pos = int(sum((a == 1).sum() for a in consensus.values()))
    n_neg = int(sum((a == 0).sum() for a in consensus.values()))
    return {
        "max_label_id": max_id,
        "label_ids": ids,
        "images": len(consensus),
        "diseased_patches": n_pos,
        "healthy_patches": n_neg,
    }
