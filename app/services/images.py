"""Image intake and serving: validate before decoding, store once, serve without metadata.

Upload order matters for "nothing is written on a 4xx": every file of a request is probed (cheap
header read: format, declared size, pixel count), then decoded and preprocessed, and only when all
of them passed is anything written (original file, derived grid image, database rows).
"""

from __future__ import annotations

import hashlib
import io
import unicodedata
import warnings
from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image, UnidentifiedImageError
from sqlalchemy import exists, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.core.config import Settings
from app.db.base import utcnow
from app.db.models import Image as ImageRow
from app.db.models import Prediction, User
from app.services import jpeg
from app.services.errors import Invalid, NotFound, TooLarge, UnsupportedMedia
from app.services.storage import Storage
from ml.data.io import SUPPORTED_FORMATS, ImageLoadError, load_pixels
from ml.data.patches import PatchParams, patches_to_bytes, preprocess_file, to_uint8

PARAMS = PatchParams()
_MARKUP_PREFIXES = (b"<?xml", b"<svg", b"<!doctype", b"<html", b"<head", b"<body", b"<script", b"<!--")
_TRANSPOSING_ORIENTATIONS = {5, 6, 7, 8}


@dataclass
class Probe:
    format: str
    width: int  # as displayed (EXIF orientation applied)
    height: int
    orientation: int = 1  # EXIF orientation tag; 1 = stored as displayed


@dataclass
class PreparedImage:
    """A validated, decoded upload, ready to be stored or predicted on."""

    data: bytes
    filename: str
    sha256: str
    probe: Probe
    grid_image: np.ndarray  # uint8 (1024, 1024, 3), normalised: the image the patches are cut from
    patches: np.ndarray  # uint8 (64, 3, 32, 32)


def safe_filename(name: str | None) -> str:
    """The name shown back to people: last path component, no control characters, <= 255 chars.

    Storage never uses it (files are named by their SHA-256), so this is only about display: no
    directory parts, no NUL or control characters; non-ASCII letters are kept (NFC) and escaped
    by JSON, by HTML templates and in Content-Disposition.
    """
    name = unicodedata.normalize("NFC", name or "")
    name = name.replace("\\", "/").split("/")[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C").strip()
    if name in {"", ".", ".."}:
        name = "image"
    return name[:255]


def probe(data: bytes, filename: str, settings: Settings) -> Probe:
    """Refuse what must never be decoded: empty, markup, unknown format, too many pixels, wrong shape."""
    if not data:
        raise Invalid(f"{filename}: the file is empty.")
    head = data[:512].lstrip().lower()
    if head.startswith(_MARKUP_PREFIXES) or b"<svg" in head or b"<html" in head:
        raise UnsupportedMedia(
            f"{filename}: this is an SVG/HTML/XML document, not a photograph; upload JPEG, PNG or TIFF."
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise TooLarge(
            f"{filename}: the image declares more pixels than the limit of {settings.max_image_pixels:,}; "
            "it was refused before decoding."
        ) from None
    except UnidentifiedImageError:
        raise UnsupportedMedia(
            f"{filename}: not a JPEG, PNG or TIFF image (the content is not an image)."
        ) from None
    except Exception as exc:  # Pillow raises assorted errors on malformed headers
        raise Invalid(f"{filename}: the image header cannot be read ({exc}).") from None
    with img:
        if img.format not in SUPPORTED_FORMATS:
            raise UnsupportedMedia(
                f"{filename}: {img.format} images are not supported; upload JPEG, PNG or TIFF."
            )
        width, height = img.size
        if width * height > settings.max_image_pixels:
            raise TooLarge(
                f"{filename}: {width}x{height} is {width * height:,} pixels, over the limit of "
                f"{settings.max_image_pixels:,}; it was refused before decoding."
            )
        try:
            orientation = img.getexif().get(0x0112, 1)
        except Exception:
            orientation = 1
        if orientation in _TRANSPOSING_ORIENTATIONS:
            width, height = height, width
        fmt = "JPEG" if img.format == "MPO" else img.format
    if min(width, height) < settings.min_image_side:
        raise Invalid(
            f"{filename}: {width}x{height} is too small; both sides must be at least "
            f"{settings.min_image_side} pixels for an 8x8 grid of useful patches."
        )
    ratio = max(width, height) / min(width, height)
    if ratio > settings.max_aspect_ratio:
        raise Invalid(
            f"{filename}: the aspect ratio {ratio:.1f}:1 is too extreme "
            f"(limit {settings.max_aspect_ratio:g}:1); a fundus photograph is roughly square."
        )
    return Probe(format=fmt, width=width, height=height, orientation=orientation)


def prepare(data: bytes, filename: str | None, settings: Settings) -> PreparedImage:
    """Validate and preprocess one upload (no side effects)."""
    name = safe_filename(filename)
    info = probe(data, name, settings)
    try:  # the one preprocessing entry point, shared with the cohort cache and the benchmarks
        pre = preprocess_file(data, PARAMS, name)
    except ImageLoadError as exc:
        raise Invalid(f"{name}: {exc.reason}.") from None
    return PreparedImage(
        data=data,
        filename=name,
        sha256=hashlib.sha256(data).hexdigest(),
        probe=info,
        grid_image=pre.rgb8,
        patches=pre.patches,
    )


def overlay_base(item: PreparedImage) -> bytes:
    """A metadata-free copy of an upload to draw its heatmap on later (see ``overlay_rgb``).

    A JPEG no larger than the grid image and stored as displayed is kept as its own compressed
    data without metadata segments (lossless, microseconds); anything else becomes a JPEG of
    the square grid image (about 4 ms for 1024x1024).
    """
    p = item.probe
    if p.format == "JPEG" and p.orientation == 1 and max(p.width, p.height) <= PARAMS.size:
        stripped = jpeg.strip_metadata(item.data)
        if stripped is not None:
            return stripped
    return encode_jpeg(item.grid_image, quality=85)


def overlay_rgb(base: bytes) -> np.ndarray:
    """The square grid image an overlay base stands for: run through the upload's preprocessing,
    so a kept upload gives exactly the image its patches were cut from (and a re-encoded grid
    JPEG, already square and normalised, comes back as itself up to rounding)."""
    return preprocess_file(base, PARAMS).rgb8


def encode_png(rgb: np.ndarray, compress_level: int = 3) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG", compress_level=compress_level)
    return buf.getvalue()


def encode_jpeg(rgb: np.ndarray, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


@dataclass
class StoredImage:
    image: ImageRow
    created: bool


def store_prepared(
    session: Session, storage: Storage, items: list[PreparedImage], user: User
) -> list[StoredImage]:
    """Write files then rows for already validated uploads; same bytes return the existing image."""
    out: list[StoredImage] = []
    for item in items:
        existing = session.scalar(select(ImageRow).where(ImageRow.sha256 == item.sha256))
        if existing is not None:
            if existing.deleted_at is not None:  # uploading a deleted image again restores it
                existing.deleted_at = None
                existing.deleted_by_id = None
            out.append(StoredImage(existing, created=False))
            continue
        key = storage.original_key(item.sha256)
        storage.write(key, item.data)
        storage.write(storage.derived_key(item.sha256, "grid.png"), encode_png(item.grid_image))
        row = ImageRow(
            sha256=item.sha256,
            original_filename=item.filename,
            format=item.probe.format,
            size_bytes=len(item.data),
            width=item.probe.width,
            height=item.probe.height,
            storage_key=key,
            patches=patches_to_bytes(item.patches, PARAMS),
            patch_params=PARAMS.key(),
            labeled_count=0,
            uploaded_by_id=user.id,
        )
        try:
            with session.begin_nested():
                session.add(row)
                session.flush()
        except IntegrityError:  # the same bytes uploaded concurrently: keep the other's row
            session.expunge(row) if row in session else None
            existing = session.scalar(select(ImageRow).where(ImageRow.sha256 == item.sha256))
            if existing is None:
                raise
            out.append(StoredImage(existing, created=False))
            continue
        out.append(StoredImage(row, created=True))
    session.commit()
    return out


def upload(
    session: Session, storage: Storage, settings: Settings, files: list[tuple[str | None, bytes]], user: User
) -> list[StoredImage]:
    """All or nothing: one bad file refuses the whole request, with every file's problem listed."""
    prepared: list[PreparedImage] = []
    errors: list[dict[str, object]] = []
    first: Exception | None = None
    for filename, data in files:
        try:
            prepared.append(prepare(data, filename, settings))
        except (Invalid, TooLarge, UnsupportedMedia) as exc:
            first = first or exc
            errors.append(
                {"filename": safe_filename(filename), "status": exc.status_code, "detail": exc.message}
            )
    if first is not None:
        if len(files) == 1:
            raise first
        raise type(first)(  # type: ignore[call-arg]
            f"{len(errors)} of {len(files)} files were refused, so none was stored: "
            + " ".join(str(e["detail"]) for e in errors),
            files=errors,
        )
    return store_prepared(session, storage, prepared, user)


def get_image(session: Session, image_id: int, *, include_deleted: bool = False) -> ImageRow:
    row = session.get(ImageRow, image_id)
    if row is None or (row.deleted_at is not None and not include_deleted):
        raise NotFound(f"No image with id {image_id}.")
    return row


Status = Literal["labeled", "unlabeled", "predicted", "unpredicted"]


def list_images(
    session: Session, *, status: Status | None, offset: int, limit: int
) -> tuple[list[ImageRow], int]:
    q = select(ImageRow).where(ImageRow.deleted_at.is_(None))
    has_prediction = exists().where(Prediction.image_id == ImageRow.id)
    if status == "labeled":
        q = q.where(ImageRow.labeled_count > 0)
    elif status == "unlabeled":
        q = q.where(ImageRow.labeled_count == 0)
    elif status == "predicted":
        q = q.where(has_prediction)
    elif status == "unpredicted":
        q = q.where(~has_prediction)
    total = session.scalar(select(func.count()).select_from(q.subquery())) or 0
    rows = list(session.scalars(q.order_by(ImageRow.id.desc()).offset(offset).limit(limit)))
    return rows, total


def latest_predictions(session: Session, image_ids: list[int]) -> dict[int, Prediction]:
    if not image_ids:
        return {}
    latest = (
        select(func.max(Prediction.id))
        .where(Prediction.image_id.in_(image_ids))
        .group_by(Prediction.image_id)
    )
    rows = session.scalars(select(Prediction).where(Prediction.id.in_(latest)))
    return {p.image_id: p for p in rows if p.image_id is not None}


def soft_delete(session: Session, image_id: int, user: User) -> ImageRow:
    row = get_image(session, image_id)
    row.deleted_at = utcnow()
    row.deleted_by_id = user.id
    session.commit()
    return row


# --- serving: always re-encoded from pixels, so no EXIF, XMP, IPTC or comments go back out ---


def _original(storage: Storage, row: ImageRow) -> bytes:
    if not storage.exists(row.storage_key):
        raise NotFound(
            f"The original file of image {row.id} is missing from storage ({storage.root}); its patches and "
            "labels are intact in the database. Restore the storage directory from a backup."
        )
    return storage.read(row.storage_key)


def grid_png(storage: Storage, row: ImageRow) -> bytes:
    key = storage.derived_key(row.sha256, "grid.png")
    if not storage.exists(key):  # e.g. storage restored from a backup of originals only
        pre = preprocess_file(_original(storage, row), PARAMS, row.original_filename)
        storage.write(key, encode_png(pre.rgb8))
    return storage.read(key)


def grid_rgb(storage: Storage, row: ImageRow) -> np.ndarray:
    with Image.open(io.BytesIO(grid_png(storage, row))) as img:
        return np.asarray(img.convert("RGB"))


def clean_original(storage: Storage, row: ImageRow) -> tuple[bytes, str]:
    """The original pixels (orientation applied) without any metadata: JPEG stays JPEG, else PNG."""
    ext, media = ("jpg", "image/jpeg") if row.format == "JPEG" else ("png", "image/png")
    key = storage.derived_key(row.sha256, f"clean.{ext}")
    if not storage.exists(key):
        rgb8 = to_uint8(load_pixels(_original(storage, row), row.original_filename))
        storage.write(
            key, encode_jpeg(rgb8, quality=95) if ext == "jpg" else encode_png(rgb8, compress_level=6)
        )
    return storage.read(key), media


def preview(storage: Storage, row: ImageRow, size: int) -> tuple[bytes, str]:
    """The square grid image as the model sees it, at ``size`` px (PNG at full size, else JPEG)."""
    if size >= PARAMS.size:
        return grid_png(storage, row), "image/png"
    with Image.open(io.BytesIO(grid_png(storage, row))) as img:
        small = img.convert("RGB").resize((size, size), Image.Resampling.BILINEAR, reducing_gap=2.0)
    return encode_jpeg(np.asarray(small), quality=85), "image/jpeg"


def patch_png(storage: Storage, row: ImageRow, r: int, c: int) -> bytes:
    p = PARAMS.patch
    crop = grid_rgb(storage, row)[r * p : (r + 1) * p, c * p : (c + 1) * p]
    return encode_png(np.ascontiguousarray(crop), compress_level=1)
