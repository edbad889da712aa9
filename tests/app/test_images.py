"""Image upload, listing, serving without metadata, soft delete, and every bad-input case."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import func, select

from app.db.models import Image as ImageRow
from app.db.models import PatchLabel
from ml.data.patches import patches_from_bytes, preprocess_file
from tests.app.conftest import fundus_bytes, upload
from tests.pngs import png


def _count(db, model=ImageRow) -> int:
    return db.scalar(select(func.count()).select_from(model))


def _storage_files(settings) -> list:
    root = settings.storage_dir
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def test_upload_stores_original_patches_and_returns_201(client, db, settings, annotator, jpeg_bytes):
    r = upload(client, annotator, jpeg_bytes, name="left eye.jpg")
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["width"] == 512 and body["height"] == 512 and body["original_filename"] == "left eye.jpg"
    import hashlib

    assert body["sha256"] == hashlib.sha256(jpeg_bytes).hexdigest()
    row = db.get(ImageRow, body["id"])
    patches = patches_from_bytes(row.patches)
    assert patches.shape == (64, 3, 32, 32) and patches.dtype == np.uint8
    assert np.array_equal(patches, preprocess_file(jpeg_bytes).patches)  # exactly the method's pipeline
    original = settings.storage_dir / row.storage_key
    assert original.read_bytes() == jpeg_bytes  # kept unchanged, content-addressed
    assert body["sha256"] in original.name


def test_same_bytes_again_return_the_existing_image(client, db, annotator, jpeg_bytes):
    first = upload(client, annotator, jpeg_bytes).json()
    again = upload(client, annotator, jpeg_bytes, name="renamed.jpg")
    assert again.status_code == 200
    assert again.json()["id"] == first["id"] and again.json()["created"] is False
    assert _count(db) == 1


def test_many_files_in_one_request(client, db, annotator):
    files = [("files", (f"e{i}.jpg", fundus_bytes(10 + i, size=300), "image/jpeg")) for i in range(3)]
    r = client.post("/api/v1/images", files=files, headers=annotator.headers)
    assert r.status_code == 201, r.text
    assert [x["original_filename"] for x in r.json()] == ["e0.jpg", "e1.jpg", "e2.jpg"]
    assert _count(db) == 3


def test_one_bad_file_refuses_the_whole_batch_and_names_it(client, db, settings, annotator):
    files = [
        ("files", ("good.jpg", fundus_bytes(20, size=300), "image/jpeg")),
        ("files", ("bad.jpg", b"this is not an image", "image/jpeg")),
    ]
    r = client.post("/api/v1/images", files=files, headers=annotator.headers)
    assert r.status_code == 415, r.text
    assert r.json()["files"][0]["filename"] == "bad.jpg"
    assert _count(db) == 0 and _storage_files(settings) == []


def test_list_filters_and_pagination(client, annotator):
    ids = [
        upload(client, annotator, fundus_bytes(30 + i, size=300), name=f"{i}.jpg").json()["id"]
        for i in range(3)
    ]
    client.put(f"/api/v1/images/{ids[0]}/labels/0/0", json={"label": "healthy"}, headers=annotator.headers)
    page = client.get("/api/v1/images?limit=2", headers=annotator.headers).json()
    assert page["total"] == 3 and len(page["items"]) == 2 and page["items"][0]["id"] == ids[2]  # newest first
    labeled = client.get("/api/v1/images?status=labeled", headers=annotator.headers).json()
    assert [i["id"] for i in labeled["items"]] == [ids[0]] and labeled["items"][0]["labeled_patches"] == 1
    unlabeled = client.get("/api/v1/images?status=unlabeled", headers=annotator.headers).json()
    assert {i["id"] for i in unlabeled["items"]} == {ids[1], ids[2]}
    assert client.get("/api/v1/images?status=predicted", headers=annotator.headers).json()["total"] == 0
    assert client.get("/api/v1/images?status=bogus", headers=annotator.headers).status_code == 422


def _jpeg_with_exif() -> bytes:
    rgb, _ = __import__("ml.synth", fromlist=["generate"]).generate(3, size=400)
    img = Image.fromarray(np.asarray(rgb))
    exif = Image.Exif()
    exif[0x010F] = "SecretCam"  # Make
    exif[0x9286] = "patient: Jane Doe"  # UserComment-ish private data
    exif[0x0112] = 6  # orientation: rotate 90 CW for display
    buf = io.BytesIO()
    img.crop((0, 0, 400, 300)).save(buf, format="JPEG", exif=exif, comment=b"patient id 1234")
    return buf.getvalue()


def test_served_file_has_no_metadata_and_applies_orientation(client, annotator):
    data = _jpeg_with_exif()
    body = upload(client, annotator, data, name="exif.jpg").json()
    assert (body["width"], body["height"]) == (300, 400)  # as displayed (EXIF orientation 6)
    r = client.get(f"/api/v1/images/{body['id']}/file", headers=annotator.headers)
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    assert b"SecretCam" not in r.content and b"Jane Doe" not in r.content and b"patient id" not in r.content
    served = Image.open(io.BytesIO(r.content))
    assert served.size == (300, 400) and not served.getexif()
    for path in (
        f"/api/v1/images/{body['id']}/preview",
        f"/api/v1/images/{body['id']}/preview?size=128",
        f"/api/v1/images/{body['id']}/patches/0/0",
    ):
        r = client.get(path, headers=annotator.headers)
        assert r.status_code == 200 and b"SecretCam" not in r.content and b"Jane Doe" not in r.content


def test_patch_crop_is_the_128px_cell_of_the_grid_image(client, annotator, jpeg_bytes):
    image_id = upload(client, annotator, jpeg_bytes).json()["id"]
    grid = np.asarray(
        Image.open(
            io.BytesIO(client.get(f"/api/v1/images/{image_id}/preview", headers=annotator.headers).content)
        ).convert("RGB")
    )
    assert grid.shape == (1024, 1024, 3)
    r = client.get(f"/api/v1/images/{image_id}/patches/3/5", headers=annotator.headers)
    assert r.headers["content-type"] == "image/png"
    crop = np.asarray(Image.open(io.BytesIO(r.content)).convert("RGB"))
    assert crop.shape == (128, 128, 3)
    assert np.array_equal(crop, grid[384:512, 640:768])
    assert client.get(f"/api/v1/images/{image_id}/patches/8/0", headers=annotator.headers).status_code == 422
    assert client.get(f"/api/v1/images/{image_id}/patches/-1/0", headers=annotator.headers).status_code == 422
    assert client.get("/api/v1/images/999999/patches/0/0", headers=annotator.headers).status_code == 404


def test_delete_is_soft_and_keeps_labels(client, db, admin, annotator, jpeg_bytes):
    image_id = upload(client, annotator, jpeg_bytes).json()["id"]
    client.put(f"/api/v1/images/{image_id}/labels/2/2", json={"label": "diseased"}, headers=annotator.headers)
    assert client.delete(f"/api/v1/images/{image_id}", headers=admin.headers).status_code == 200
    assert client.get(f"/api/v1/images/{image_id}", headers=annotator.headers).status_code == 404
    assert client.get("/api/v1/images", headers=annotator.headers).json()["total"] == 0
    db.expire_all()
    assert db.get(ImageRow, image_id).deleted_at is not None  # the row and its labels stay for audit
    assert _count(db, PatchLabel) == 1
    assert client.delete(f"/api/v1/images/{image_id}", headers=admin.headers).status_code == 404


def test_unknown_image_is_404_with_a_sentence(client, viewer):
    r = client.get("/api/v1/images/424242", headers=viewer.headers)
    assert r.status_code == 404 and "424242" in r.json()["detail"]


# --- bad input: each refused with a clear 4xx and nothing written --------------------------------


def _png_bomb(width: int = 100_000, height: int = 100_000) -> bytes:
    """A valid PNG header declaring a huge image, with a few bytes of data: the classic bomb shape."""
    return png(width, height, 8, 2, b"\0" * 64)


def _encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _fundus(size=320) -> Image.Image:
    from ml.synth import generate

    return Image.fromarray(np.asarray(generate(5, size=size)[0]))


BAD_INPUTS = {
    "empty": (b"", "e.jpg", 422, "empty"),
    "text with an image extension": (b"hello, I am plain text\n" * 20, "notes.jpg", 415, "not"),
    "svg disguised as png": (
        b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="900" '
        b'height="900"><script>alert(1)</script></svg>',
        "x.png",
        415,
        "SVG",
    ),
    "html disguised as jpeg": (
        b"<!DOCTYPE html><html><body><script>alert(1)</script></body></html>",
        "x.jpg",
        415,
        "HTML",
    ),
    "decompression bomb": (None, "bomb.png", 413, "pixels"),
    "tiny": (None, "tiny.jpg", 422, "too small"),
    "extreme aspect ratio": (None, "strip.png", 422, "aspect ratio"),
    "truncated jpeg": (None, "cut.jpg", 422, "truncated"),
    "truncated png": (None, "cut.png", 422, "truncated"),
    "gif": (None, "anim.gif", 415, "GIF"),
}


def _bad(name: str) -> bytes:
    data = BAD_INPUTS[name][0]
    if data is not None:
        return data
    if name == "decompression bomb":
        return _png_bomb()
    if name == "tiny":
        return _encode(_fundus(320).resize((100, 100)), "JPEG")
    if name == "extreme aspect ratio":
        return _encode(Image.new("RGB", (3000, 300), (120, 40, 20)), "PNG")
    if name == "truncated jpeg":
        full = _encode(_fundus(), "JPEG", quality=95)
        return full[: len(full) // 2]
    if name == "truncated png":
        full = _encode(_fundus(), "PNG")
        return full[: len(full) // 2]
    if name == "gif":
        return _encode(_fundus(), "GIF")
    raise KeyError(name)


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_uploads_are_refused_and_nothing_is_written(client, db, settings, annotator, case):
    _, filename, status, words = BAD_INPUTS[case]
    r = client.post(
        "/api/v1/images", files={"files": (filename, _bad(case), "image/jpeg")}, headers=annotator.headers
    )
    assert r.status_code == status, r.text
    detail = r.json()["detail"]
    assert isinstance(detail, str) and words.lower() in detail.lower() and detail.endswith(".")
    assert _count(db) == 0
    assert _storage_files(settings) == []


def test_bomb_is_refused_before_decoding(client, annotator, monkeypatch):
    import ml.data.io

    def must_not_decode(*a, **k):
        raise AssertionError("decoded a decompression bomb")

    monkeypatch.setattr(ml.data.io, "load_pixels", must_not_decode)
    monkeypatch.setattr("ml.data.patches.load_pixels", must_not_decode)
    monkeypatch.setattr("app.services.images.preprocess_file", must_not_decode)
    r = client.post(
        "/api/v1/images",
        files={"files": ("bomb.png", _png_bomb(20_000, 20_000), "image/png")},
        headers=annotator.headers,
    )
    assert r.status_code == 413


def test_pixel_limit_is_configurable(client, app, annotator):
    app.state.settings = app.state.settings.model_copy(update={"max_image_pixels": 300 * 300})
    r = client.post(
        "/api/v1/images",
        files={"files": ("a.png", _encode(_fundus(320), "PNG"), "image/png")},
        headers=annotator.headers,
    )
    assert r.status_code == 413 and "90,000" in r.json()["detail"]


def test_file_over_the_size_limit_is_413(client, app, db, annotator, jpeg_bytes):
    app.state.settings = app.state.settings.model_copy(update={"max_upload_bytes": len(jpeg_bytes) - 1})
    r = upload(client, annotator, jpeg_bytes)
    assert r.status_code == 413 and "limit" in r.json()["detail"]
    assert _count(db) == 0


def _rgb16_png() -> bytes:
    grey = (np.asarray(_fundus().convert("L"), dtype=np.uint16) * 257).astype(np.uint16)
    return _encode(Image.fromarray(grey), "PNG")


CONVERTIBLE = {
    "16-bit greyscale png": _rgb16_png,
    "greyscale jpeg": lambda: _encode(_fundus().convert("L"), "JPEG"),
    "palette png": lambda: _encode(_fundus().convert("P"), "PNG"),
    "rgba png": lambda: _encode(_fundus().convert("RGBA"), "PNG"),
    "cmyk jpeg": lambda: _encode(_fundus().convert("CMYK"), "JPEG"),
    "tiff": lambda: _encode(_fundus(), "TIFF"),
}


@pytest.mark.parametrize("case", list(CONVERTIBLE))
def test_other_pixel_formats_are_accepted_and_converted(client, db, annotator, case):
    r = client.post(
        "/api/v1/images",
        files={"files": ("x.img", CONVERTIBLE[case](), "application/octet-stream")},
        headers=annotator.headers,
    )
    assert r.status_code == 201, r.text
    patches = patches_from_bytes(db.get(ImageRow, r.json()["id"]).patches)
    assert patches.max() > 150  # a real picture came through, not a black or clipped one
    preview = client.get(f"/api/v1/images/{r.json()['id']}/preview", headers=annotator.headers)
    assert np.asarray(Image.open(io.BytesIO(preview.content))).max() == 255  # normalised by its maximum
    served = client.get(f"/api/v1/images/{r.json()['id']}/file", headers=annotator.headers)
    assert Image.open(io.BytesIO(served.content)).mode == "RGB"


@pytest.mark.parametrize(
    "raw,shown",
    [
        ("../../etc/passwd.jpg", "passwd.jpg"),
        ("C:\\Users\\doc\\eye.jpg", "eye.jpg"),
        ("nul\x00byte.jpg", "nulbyte.jpg"),
        ("œil gauche – 右目.jpg", "œil gauche – 右目.jpg"),
        ("..", "image"),
    ],
)
def test_hostile_filenames_are_stored_safely(client, db, settings, annotator, raw, shown):
    from app.services.images import safe_filename

    assert safe_filename(raw) == shown
    r = client.post(
        "/api/v1/images",
        files={"files": (raw, fundus_bytes(7, size=300), "image/jpeg")},
        headers=annotator.headers,
    )
    assert r.status_code == 201, r.text
    stored = r.json()["original_filename"]
    # httpx percent-encodes a NUL in the multipart header itself; what arrives must still be clean
    assert stored == (shown if "\x00" not in raw else "nul%00byte.jpg") and "\x00" not in stored
    assert all(settings.storage_dir in p.parents for p in _storage_files(settings))  # nothing escaped storage
    disposition = client.get(f"/api/v1/images/{r.json()['id']}/file", headers=annotator.headers).headers[
        "content-disposition"
    ]
    assert "/" not in disposition.split("filename*=")[0] and "\x00" not in disposition
    disposition.encode("latin-1")  # a valid header: non-ASCII only percent-encoded in filename*


def test_no_file_in_multipart_is_422(client, annotator):
    r = client.post(
        "/api/v1/images",
        data={"note": "x"},
        files={},
        headers={**annotator.headers, "content-type": "multipart/form-data; boundary=abc"},
        content=b"--abc--\r\n",
    )
    assert r.status_code == 422


def test_non_multipart_upload_is_415(client, annotator):
    r = client.post("/api/v1/images", json={"file": "x"}, headers=annotator.headers)
    assert r.status_code == 415


def test_uploading_a_deleted_image_again_restores_it_with_its_labels(client, admin, annotator, jpeg_bytes):
    image_id = upload(client, annotator, jpeg_bytes).json()["id"]
    client.put(f"/api/v1/images/{image_id}/labels/1/1", json={"label": "healthy"}, headers=annotator.headers)
    client.delete(f"/api/v1/images/{image_id}", headers=admin.headers)
    again = upload(client, annotator, jpeg_bytes)
    assert again.status_code == 200 and again.json()["id"] == image_id
    grid = client.get(f"/api/v1/images/{image_id}/labels", headers=annotator.headers).json()
    assert grid["grid"][1][1] == "healthy"


def test_missing_storage_file_is_a_clear_404_not_a_crash(client, db, settings, annotator, jpeg_bytes):
    import shutil

    image_id = upload(client, annotator, jpeg_bytes).json()["id"]
    shutil.rmtree(settings.storage_dir)
    r = client.get(f"/api/v1/images/{image_id}/file", headers=annotator.headers)
    assert r.status_code == 404 and "missing from storage" in r.json()["detail"]
    assert client.get(f"/api/v1/images/{image_id}/labels", headers=annotator.headers).status_code == 200
