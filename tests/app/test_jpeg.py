"""Lossless JPEG metadata removal (app/services/jpeg.py): same pixels, no metadata, refusals."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from app.services.jpeg import strip_metadata
from tests.app.conftest import fundus_bytes

PRIVATE = (b"SecretCam", b"Jane Doe", b"patient id 1234", b"ICC_PROFILE", b"http://ns.adobe.com/xap")


def _pixels(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))


def _with_metadata(**save) -> bytes:
    with Image.open(io.BytesIO(fundus_bytes(3, size=256, fmt="PNG"))) as im:
        rgb = im.convert("RGB")
    exif = Image.Exif()
    exif[0x010F] = "SecretCam"
    exif[0x9286] = "Jane Doe"
    buf = io.BytesIO()
    rgb.save(
        buf,
        format="JPEG",
        exif=exif,
        comment=b"patient id 1234",
        icc_profile=b"ICC_PROFILE-ish bytes",
        xmp=b"<x:xmpmeta xmlns:x='http://ns.adobe.com/xap/1.0/'/>",
        **save,
    )
    return buf.getvalue()


@pytest.mark.parametrize(
    "save",
    [{}, {"progressive": True}, {"quality": 60, "subsampling": 0}, {"restart_marker_blocks": 2}],
    ids=["baseline", "progressive", "444", "restart-markers"],
)
def test_stripped_jpeg_decodes_to_the_same_pixels_without_metadata(save):
    data = _with_metadata(**save)
    assert all(p in data for p in PRIVATE[:3])  # the metadata is really there before
    out = strip_metadata(data)
    assert out is not None and len(out) < len(data)
    assert np.array_equal(_pixels(out), _pixels(data))
    assert not any(p in out for p in PRIVATE)
    with Image.open(io.BytesIO(out)) as im:
        assert not im.getexif() and "icc_profile" not in im.info and "comment" not in im.info
        assert "xmp" not in im.info


def test_cmyk_jpeg_keeps_its_colour_transform():
    cmyk = Image.fromarray(_pixels(fundus_bytes(2, size=128))).convert("CMYK")
    buf = io.BytesIO()
    cmyk.save(buf, format="JPEG")
    out = strip_metadata(buf.getvalue())
    assert out is not None and b"Adobe" in out
    assert np.array_equal(_pixels(out), _pixels(buf.getvalue()))


def test_fill_bytes_and_trailing_data_are_handled():
    data = fundus_bytes(4, size=128)
    # fill bytes before the first segment's marker are legal; anything after EOI is dropped
    padded = data[:2] + b"\xff\xff" + data[2:] + b"trailing bytes after the image"
    out = strip_metadata(padded)
    assert out is not None and out.endswith(b"\xff\xd9") and b"trailing" not in out
    assert np.array_equal(_pixels(out), _pixels(data))


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x89PNG\r\n\x1a\n",
        b"\xff\xd8",
        b"\xff\xd8\xff\xe1\x00",  # a segment length cut off
        b"\xff\xd8\xff\xe1\x00\x40abc",  # a segment longer than the file
        b"\xff\xd8\xff\xd0\xff\xd9",  # a restart marker outside a scan
        b"\xff\xd8\x00\x00\xff\xd9",  # bytes where a marker must be
    ],
    ids=["empty", "png", "soi-only", "cut-length", "overlong", "stray-rst", "garbage"],
)
def test_anything_unexpected_is_refused(data):
    assert strip_metadata(data) is None


def test_a_truncated_jpeg_is_refused():
    data = fundus_bytes(5, size=128)
    assert strip_metadata(data[: len(data) // 2]) is None
    assert strip_metadata(data[:-2]) is None  # everything but the end-of-image marker
