"""Suggested next patches: the active model's most uncertain unlabeled patches, recorded per user."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from app.api.deps import CurrentUser, SessionDep
from app.services import suggestions

router = APIRouter(tags=["suggestions"])


class SuggestionOut(BaseModel):
    image_id: int
    row: int
    col: int
    rank: int = Field(description="1 = the most uncertain patch.")
    probability: float = Field(description="The active model's probability that the patch is diseased.")
    entropy: float = Field(description="Binary entropy of that probability, in bits (1 = cannot tell).")
    original_filename: str
    patch_url: str
    label_url: str = Field(description="The labeling page with this patch selected.")


class SuggestionList(BaseModel):
    request_id: str = Field(description="Identifies this set of suggestions in the suggestions table.")
    model_version: int
    scanned_images: int = Field(description="Images whose patches were ranked.")
    pending_images: int = Field(
        description="Images the active model has not scored yet: a later request covers them."
    )
    items: list[SuggestionOut]


@router.get("/suggestions", response_model=SuggestionList)
async def get_suggestions(
    request: Request,
    user: CurrentUser,
    session: SessionDep,
    n: int = Query(12, ge=1, le=suggestions.MAX_N, description="How many patches."),
    image_id: int | None = Query(None, ge=1, description="Only patches of this image."),
) -> SuggestionList:
    """The ``n`` unlabeled patches the active model is least certain about (highest entropy first).

    409 while no model is active. What was suggested, to whom and from which model version is
    stored (the ``suggestions`` table).
    """

    def work() -> suggestions.SuggestionBatch:
        batch = suggestions.rank(session, n, image_id=image_id)
        session.commit()  # end the read transaction before writing (no read-to-write lock upgrade)
        # A GET runs on a read session; the record is written in its own short write transaction.
        write = request.app.state.session_factory(write=True)
        try:
            suggestions.record(write, user, batch)
        finally:
            write.close()
        return batch

    batch = await run_in_threadpool(work)
    return SuggestionList(
        request_id=batch.request_id,
        model_version=batch.model_version,
        scanned_images=batch.scanned_images,
        pending_images=batch.pending_images,
        items=[
            SuggestionOut(
                image_id=s.image_id,
                row=s.row,
                col=s.col,
                rank=s.rank,
                probability=s.probability,
                entropy=s.entropy,
                original_filename=s.original_filename,
                patch_url=f"/api/v1/images/{s.image_id}/patches/{s.row}/{s.col}",
                label_url=f"/images/{s.image_id}/label?row={s.row}&col={s.col}",
            )
            for s in batch.items
        ],
    )
