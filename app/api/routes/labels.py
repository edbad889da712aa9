"""Patch labels of an image: the 8x8 grid, single and batch changes, the full history."""

from __future__ import annotations

from fastapi import APIRouter

from app.api.deps import AnnotatorUser, CurrentUser, SessionDep
from app.api.schemas import LabelBatch, LabelCell, LabelEvent, LabelGrid, LabelIn
from app.db.models import User
from app.services import labels, metrics

router = APIRouter(prefix="/images/{image_id}/labels", tags=["labels"])

_NAME = labels.LABEL_NAMES


def _cell_out(r: int, c: int, cell, user: User) -> LabelCell:
    if cell is None:
        return LabelCell(row=r, col=c, label=None, mine=None, set_by=None, set_at=None, annotations=[])
    mine = cell.votes.get(user.id)
    return LabelCell(
        row=r,
        col=c,
        label=_NAME.get(cell.consensus),
        mine=_NAME.get(mine.label) if mine and mine.label is not None else None,
        set_by=cell.last.username if cell.last else None,
        set_at=cell.last.at if cell.last else None,
        annotations=[
            {"user": v.username, "label": _NAME.get(v.label) if v.label is not None else None, "at": v.at}
            for v in cell.votes.values()
        ],
    )


def _grid_out(image_id: int, cells, user: User) -> LabelGrid:
    grid: list[list[str | None]] = [[None] * 8 for _ in range(8)]
    out: list[LabelCell] = []
    for r in range(8):
        for c in range(8):
            out.append(_cell_out(r, c, cells.get((r, c)), user))
            grid[r][c] = out[-1].label
    labeled = sum(1 for row in grid for v in row if v is not None)
    return LabelGrid(image_id=image_id, grid=grid, labeled=labeled, cells=out)


@router.get("", response_model=LabelGrid)
def get_labels(image_id: int, user: CurrentUser, session: SessionDep) -> LabelGrid:
    """The 8x8 grid: consensus label, your own label, each annotator's label, the latest change."""
    return _grid_out(image_id, labels.grid(session, image_id), user)


@router.put("", response_model=LabelGrid)
def put_labels(image_id: int, body: LabelBatch, user: AnnotatorUser, session: SessionDep) -> LabelGrid:
    """Several changes at once, all or nothing (a bad cell refuses the whole batch)."""
    changes = [(c.row, c.col, labels.parse_label(c.label)) for c in body.labels]
    cells = labels.set_labels(session, image_id, changes, user, whole_grid=True)
    for _, _, lab in changes:
        metrics.LABEL_WRITES.labels(_NAME.get(lab, "cleared")).inc()
    return _grid_out(image_id, cells, user)


@router.get("/history", response_model=list[LabelEvent])
def get_history(image_id: int, _: CurrentUser, session: SessionDep) -> list[LabelEvent]:
    """Every change ever made to this image's labels, oldest first (nothing is overwritten)."""
    return [
        LabelEvent(
            id=h.id,
            row=h.row,
            col=h.col,
            label=_NAME.get(h.label) if h.label is not None else None,
            user=h.user.username,
            at=h.created_at,
        )
        for h in labels.history(session, image_id)
    ]


@router.put("/{row}/{col}", response_model=LabelCell)
def put_label(
    image_id: int, row: int, col: int, body: LabelIn, user: AnnotatorUser, session: SessionDep
) -> LabelCell:
    """Set (or clear, with null) your label of patch (row, col)."""
    lab = labels.parse_label(body.label)
    labels.check_cell(row, col)
    cells = labels.set_labels(session, image_id, [(row, col, lab)], user)
    metrics.LABEL_WRITES.labels(_NAME.get(lab, "cleared")).inc()
    return _cell_out(row, col, cells.get((row, col)), user)
