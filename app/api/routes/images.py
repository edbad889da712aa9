"""Images: upload, list, fetch (always without metadata), patch crops, soft delete."""

from __future__ import annotations

from typing import Literal
from urllib.parse import quote

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from app.api.deps import AdminUser, AnnotatorUser, CurrentUser, SessionDep, SettingsDep, StorageDep
from app.api.schemas import ImageList, ImageOut, PredictionSummary
from app.api.uploads import read_multipart
from app.db.models import Image, Prediction
from app.services import images, metrics
from app.services.errors import Invalid

router = APIRouter(prefix="/images", tags=["images"])

MAX_FILES_PER_REQUEST = 32
_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "files": {"type": "array", "items": {"type": "string", "format": "binary"}}
                    },
                }
            }
        },
    }
}


def image_out(session, row: Image, latest: Prediction | None = None, created: bool | None = None) -> ImageOut:
    from app.db.models import ModelVersion, User

    uploader = session.get(User, row.uploaded_by_id) if row.uploaded_by_id else None
    summary = None
    if latest is not None:
        mv = session.get(ModelVersion, latest.model_version_id)
        summary = PredictionSummary(
            id=latest.id,
            model_version=mv.version,
            score=latest.score,
            threshold=latest.threshold,
            diseased=latest.diseased,
            created_at=latest.created_at,
        )
    return ImageOut(
        id=row.id,
        sha256=row.sha256,
        original_filename=row.original_filename,
        format=row.format,
        width=row.width,
        height=row.height,
        size_bytes=row.size_bytes,
        labeled_patches=row.labeled_count,
        created_at=row.created_at,
        uploaded_by=uploader.username if uploader else None,
        file_url=f"/api/v1/images/{row.id}/file",
        preview_url=f"/api/v1/images/{row.id}/preview",
        latest_prediction=summary,
        created=created,
    )


@router.post(
    "",
    status_code=201,
    openapi_extra=_UPLOAD_BODY,
    responses={
        201: {"description": "Stored (one object for one file, a list for several)."},
        200: {"description": "All files were already stored: the existing images."},
    },
)
async def upload(
    request: Request, user: AnnotatorUser, session: SessionDep, settings: SettingsDep, storage: StorageDep
) -> JSONResponse:
    """Upload one or many images (multipart, any field name). All or nothing: one bad file refuses
    the request, listing each file's problem. The same bytes again return the existing image (200)."""
    form = await read_multipart(
        request, max_file_bytes=settings.max_upload_bytes, max_files=MAX_FILES_PER_REQUEST
    )
    if not form.files:
        raise Invalid("No file in the request: send one or more files as multipart/form-data.")

    def work():
        stored = images.upload(
            session, storage, settings, [(f.filename, bytes(f.data)) for f in form.files], user
        )
        return [
            image_out(session, s.image, created=s.created).model_dump(mode="json") for s in stored
        ], stored

    body, stored = await run_in_threadpool(work)
    created = sum(1 for s in stored if s.created)
    metrics.UPLOADS.inc(created)
    return JSONResponse(body[0] if len(body) == 1 else body, status_code=201 if created else 200)


@router.get("", response_model=ImageList)
def list_images(
    _: CurrentUser,
    session: SessionDep,
    status: Literal["labeled", "unlabeled", "predicted", "unpredicted"] | None = None,
    offset: int = Query(0, ge=0),
    limit: int = Query(50, ge=1, le=500),
) -> ImageList:
    """Newest first. ``status``: labeled (at least one patch has a consensus label), unlabeled,
    predicted (at least one stored prediction), unpredicted."""
    rows, total = images.list_images(session, status=status, offset=offset, limit=limit)
    latest = images.latest_predictions(session, [r.id for r in rows])
    return ImageList(
        items=[image_out(session, r, latest.get(r.id)) for r in rows], total=total, offset=offset, limit=limit
    )


@router.get("/{image_id}", response_model=ImageOut)
def get_image(image_id: int, _: CurrentUser, session: SessionDep) -> ImageOut:
    row = images.get_image(session, image_id)
    return image_out(session, row, images.latest_predictions(session, [row.id]).get(row.id))


def _disposition(filename: str, ext: str) -> str:
    stem = filename.rsplit(".", 1)[0] or "image"
    name = f"{stem}.{ext}"
    ascii_name = "".join(ch if 32 <= ord(ch) < 127 and ch not in '"\\;' else "_" for ch in name)
    return f"inline; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name, safe='')}"


@router.get(
    "/{image_id}/file",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}, "image/png": {}}}},
)
def get_file(image_id: int, _: CurrentUser, session: SessionDep, storage: StorageDep) -> Response:
    """The original pixels with EXIF orientation applied and all metadata removed."""
    row = images.get_image(session, image_id)
    data, media = images.clean_original(storage, row)
    ext = "jpg" if media == "image/jpeg" else "png"
    return Response(
        data,
        media_type=media,
        headers={
            "Content-Disposition": _disposition(row.original_filename, ext),
            "Cache-Control": "private, max-age=3600",
        },
    )


@router.get(
    "/{image_id}/preview",
    response_class=Response,
    responses={200: {"content": {"image/png": {}, "image/jpeg": {}}}},
)
def get_preview(
    image_id: int,
    _: CurrentUser,
    session: SessionDep,
    storage: StorageDep,
    size: int = Query(1024, ge=32, le=1024),
) -> Response:
    """The square 1024x1024 image the 8x8 grid is drawn on (resized, max-normalised), or a
    smaller thumbnail (``size``)."""
    row = images.get_image(session, image_id)
    data, media = images.preview(storage, row, size)
    return Response(data, media_type=media, headers={"Cache-Control": "private, max-age=3600"})


@router.get(
    "/{image_id}/patches/{row}/{col}",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}}},
)
def get_patch(
    image_id: int, row: int, col: int, _: CurrentUser, session: SessionDep, storage: StorageDep
) -> Response:
    """The 128x128 crop of patch (row, col) of the 1024x1024 grid image, as PNG."""
    from app.services.labels import check_cell

    check_cell(row, col)
    img = images.get_image(session, image_id)
    return Response(
        images.patch_png(storage, img, row, col),
        media_type="image/png",
        headers={"Cache-Control": "private, max-age=3600"},
    )


@router.delete("/{image_id}", response_model=ImageOut)
def delete_image(image_id: int, admin: AdminUser, session: SessionDep) -> ImageOut:
    """Soft delete (admin): hidden from lists and training; its labels and predictions stay for audit."""
    return image_out(session, images.soft_delete(session, image_id, admin))
