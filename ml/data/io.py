"""Decode a fundus photograph into RGB pixels, or refuse it with a reason a person can act on.

Fundus cameras and archives produce JPEG, PNG and TIFF in many pixel modes (8/16-bit, greyscale,
palette, with alpha, CMYK, EXIF-rotated). Everything downstream wants one thing: RGB with the
orientation the clinician saw, uint8 where 8 bits hold the image exactly and float32 in [0, 1]
otherwise. Anything else is refused here with an ``ImageLoadError`` naming the file, so the
upload API and the importer can report it per file.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

SUPPORTED_FORMATS = {"JPEG", "MPO", "PNG", "TIFF"}  # MPO: multi-picture JPEG written by some cameras
_SIXTEEN_BIT_MODES = {"I;16", "I;16L", "I;16B", "I;16N"}
_EIGHT_BIT_MODES = {
    "1",
    "L",
    "LA",
    "La",
    "P",
    "PA",
    "RGB",
    "RGBA",
    "RGBa",
    "RGBX",
    "CMYK",
    "YCbCr",
    "LAB",
    "HSV",
}

Source = str | os.PathLike[str] | bytes | bytearray | memoryview | BinaryIO


class ImageLoadError(ValueError):
    """An input that is not a usable fundus image; ``name`` says which file, ``reason`` why."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"{name}: {reason}")
        self.name = name
        self.reason = reason


def _describe(src: Source, name: str | None) -> str:
    if name:
        return name
    if isinstance(src, str | os.PathLike):
        return os.fspath(src)
    return getattr(src, "name", None) or "<uploaded image>"


def _open(src: Source, label: str) -> Image.Image:
    if isinstance(src, bytes | bytearray | memoryview):
        if len(src) == 0:
            raise ImageLoadError(label, "the file is empty")
        fp: str | BinaryIO = io.BytesIO(bytes(src))
    elif isinstance(src, str | os.PathLike):
        path = Path(src)
        if not path.is_file():
            raise ImageLoadError(label, "file not found")
        if path.stat().st_size == 0:
            raise ImageLoadError(label, "the file is empty")
        fp = str(path)
    else:
        fp = src
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return Image.open(fp)
    except UnidentifiedImageError:
        raise ImageLoadError(
            label, "not an image file Pillow can identify (expected JPEG, PNG or TIFF)"
        ) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageLoadError(label, "image has too many pixels (decompression bomb guard)") from None
    except OSError as exc:
        raise ImageLoadError(label, f"cannot read the file ({exc})") from None


def _to_pixels(img: Image.Image, label: str) -> np.ndarray:
    """Map any supported mode to RGB: uint8 where 8 bits hold it exactly, else float32 in [0, 1].

    Alpha is composited onto black, because that is the background outside a fundus camera's
    field of view: a transparent border must not become a bright frame that would dominate the
    max-intensity normalisation. Plain 8-bit images stay uint8 so that preprocessing can work in
    integers (exact, and several times faster than float arrays of a 1024x1024 image).
    """
    mode = img.mode
    if mode in _SIXTEEN_BIT_MODES:
        grey = np.asarray(img, dtype=np.float32) / 65535.0
        return np.repeat(grey[..., None], 3, axis=2)
    if mode == "I":  # 32-bit integer greyscale, as 16-bit PNGs sometimes decode
        grey = np.asarray(img, dtype=np.float64)
        top = 65535.0 if grey.max(initial=0) <= 65535 else float(grey.max())
        return np.repeat((np.clip(grey, 0, None) / top).astype(np.float32)[..., None], 3, axis=2)
    if mode == "F":
        grey = np.asarray(img, dtype=np.float32)
        if not np.isfinite(grey).all():
            raise ImageLoadError(label, "floating-point image contains NaN or infinite values")
        top = max(float(grey.max(initial=0)), 1.0)
        return np.repeat((np.clip(grey, 0, None) / top)[..., None], 3, axis=2)
    if mode not in _EIGHT_BIT_MODES:
        raise ImageLoadError(label, f"unsupported pixel mode {mode!r}")
    if mode in {"P", "PA"}:
        img = img.convert("RGBA")
        mode = "RGBA"
    if mode in {"LA", "La", "RGBA", "RGBa"}:
        rgba = np.asarray(img.convert("RGBA"), dtype=np.float32) / 255.0
        return rgba[..., :3] * rgba[..., 3:4]
    return np.asarray(img if mode == "RGB" else img.convert("RGB"))


def load_image(
    src: Source,
    name: str | None = None,
    *,
    draft: tuple[int, int] | None = None,
    resize_to: int | None = None,
) -> np.ndarray:
    """Decode ``src`` (path, bytes or binary file object) to float32 (H, W, 3) RGB in [0, 1]."""
    pixels = load_pixels(src, name, draft=draft, resize_to=resize_to)
    return pixels.astype(np.float32) / 255.0 if pixels.dtype == np.uint8 else pixels


def load_pixels(
    src: Source,
    name: str | None = None,
    *,
    draft: tuple[int, int] | None = None,
    resize_to: int | None = None,
) -> np.ndarray:
    """Decode ``src`` to (H, W, 3) RGB: uint8 for 8-bit images without alpha, else float32 in [0, 1].

    ``draft`` lets a JPEG decode at a reduced scale that is still at least that (width, height):
    a 4288x2848 photograph headed for 1024x1024 then decodes 2-4x faster with no visible loss.
    EXIF orientation is applied, so the patch grid matches what the clinician sees.
    ``resize_to`` resizes plainly to a square of that side while the pixels are still 8-bit RGB
    or greyscale (bilinear, antialiased), which is several times faster and lighter than resizing
    float arrays; other modes are returned at their own size, for ``preprocess`` to resize.
    """
    label = _describe(src, name)
    opened = img = _open(src, label)
    try:
        if img.format not in SUPPORTED_FORMATS:
            raise ImageLoadError(
                label, f"unsupported format {img.format or 'unknown'} (expected JPEG, PNG or TIFF)"
            )
        width, height = img.size
        if width < 1 or height < 1:
            raise ImageLoadError(label, "image has no pixels")
        if draft is not None and img.format in {"JPEG", "MPO"}:
            img.draft("RGB", draft)
        try:
            img.load()
            if img.getexif().get(0x0112, 1) != 1:  # transposing copies: only when needed
                img = ImageOps.exif_transpose(img)
            if resize_to is not None and img.mode in {"RGB", "L"} and img.size != (resize_to, resize_to):
                img = img.resize((resize_to, resize_to), Image.Resampling.BILINEAR)
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            raise ImageLoadError(
                label, f"cannot decode the image, the file may be truncated or corrupt ({exc})"
            ) from None
        return _to_pixels(img, label)
    finally:
        opened.close()
