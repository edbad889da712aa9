"""Every supported image mode decodes to the same float RGB; everything else is refused by name."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ml.data.io import ImageLoadError, load_image, load_pixels
from tests.pngs import png


def _gradient(h: int = 24, w: int = 32) -> np.ndarray:
    """uint8 RGB with distinct channels, so a channel swap or transpose would show."""
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 7 % 256, y * 10 % 256, (x + y) * 3 % 256], axis=2).astype(np.uint8)


def _encode(img: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
def test_lossless_rgb_roundtrip(fmt: str) -> None:
    rgb = _gradient()
    out = load_image(_encode(Image.fromarray(rgb), fmt))
    assert out.dtype == np.float32 and out.shape == (24, 32, 3)
    np.testing.assert_allclose(out, rgb / 255.0, atol=1e-6)


def test_load_pixels_keeps_8_bit_images_as_uint8_and_the_rest_as_float() -> None:
    rgb = _gradient()
    exact = load_pixels(_encode(Image.fromarray(rgb), "PNG"))
    assert exact.dtype == np.uint8
    np.testing.assert_array_equal(exact, rgb)
    grey = load_pixels(_encode(Image.fromarray(rgb[..., 0], mode="L"), "PNG"))
    assert grey.dtype == np.uint8 and np.all(grey == rgb[..., :1])
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 128, np.uint8)])
    composited = load_pixels(_encode(Image.fromarray(rgba, mode="RGBA"), "PNG"))
    assert composited.dtype == np.float32  # alpha on black is not exact in 8 bits
    np.testing.assert_allclose(composited, rgb / 255.0 * (128 / 255), atol=1e-6)
    sixteen = load_pixels(_encode(Image.fromarray(np.full((8, 8), 1000, np.uint16)), "PNG"))
    assert sixteen.dtype == np.float32


def test_jpeg_rgb_close_to_source() -> None:
    rgb = np.full((32, 32, 3), (200, 90, 40), np.uint8)
    out = load_image(_encode(Image.fromarray(rgb), "JPEG", quality=95))
    assert np.abs(out - rgb / 255.0).max() < 0.03


def test_greyscale_l_becomes_three_equal_channels() -> None:
    grey = _gradient()[..., 0]
    out = load_image(_encode(Image.fromarray(grey, mode="L"), "PNG"))
    assert out.shape == (24, 32, 3)
    for c in range(3):
        np.testing.assert_allclose(out[..., c], grey / 255.0, atol=1e-6)


@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
def test_sixteen_bit_greyscale_keeps_full_precision(fmt: str) -> None:
    values = np.array([[0, 1, 256, 65535], [1000, 30000, 40000, 65534]], dtype=np.uint16)
    img = Image.fromarray(values)  # mode I;16
    out = load_image(_encode(img, fmt))
    np.testing.assert_allclose(out[..., 1], values / 65535.0, atol=1e-7)
    # Two 16-bit values that share an 8-bit bucket stay distinct.
    assert out[0, 0, 0] != out[0, 1, 0]


def test_rgba_is_composited_on_black() -> None:
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., :3] = 200
    rgba[:2, :, 3] = 255  # top half opaque, bottom half transparent
    out = load_image(_encode(Image.fromarray(rgba, mode="RGBA"), "PNG"))
    np.testing.assert_allclose(out[:2], 200 / 255.0, atol=1e-6)
    np.testing.assert_allclose(out[2:], 0.0)


def test_la_mode() -> None:
    la = np.zeros((4, 4, 2), np.uint8)
    la[..., 0] = 100
    la[..., 1] = 255
    la[0, 0, 1] = 0
    out = load_image(_encode(Image.fromarray(la, mode="LA"), "PNG"))
    assert out[0, 0].tolist() == [0.0, 0.0, 0.0]
    np.testing.assert_allclose(out[1, 1], [100 / 255.0] * 3, atol=1e-6)


def test_palette_mode() -> None:
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[:, :2] = (255, 0, 0)
    rgb[:, 2:] = (0, 0, 255)
    pal = Image.fromarray(rgb).quantize(colors=2)
    assert pal.mode == "P"
    out = load_image(_encode(pal, "PNG"))
    np.testing.assert_allclose(out[0, 0], [1, 0, 0], atol=1e-6)
    np.testing.assert_allclose(out[0, 3], [0, 0, 1], atol=1e-6)


def test_cmyk_tiff() -> None:
    cmyk = Image.new("CMYK", (4, 4), (0, 255, 255, 0))  # pure red
    out = load_image(_encode(cmyk, "TIFF"))
    np.testing.assert_allclose(out[0, 0], [1, 0, 0], atol=1e-6)


def test_exif_orientation_is_applied() -> None:
    rgb = np.zeros((10, 20, 3), np.uint8)
    rgb[0, 0] = 255  # marker in the top-left corner
    img = Image.fromarray(rgb)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise for display
    out = load_image(_encode(img, "JPEG", quality=100, exif=exif.tobytes()))
    assert out.shape == (20, 10, 3)
    # After a clockwise rotation the top-left marker sits in the top-right corner.
    assert out[0, -1].mean() > 0.5 and out[0, 0].mean() < 0.2


def test_path_and_file_object_sources(tmp_path: Path) -> None:
    rgb = _gradient()
    path = tmp_path / "eye.png"
    Image.fromarray(rgb).save(path)
    from_path = load_image(path)
    with path.open("rb") as fh:
        from_file = load_image(fh)
    np.testing.assert_array_equal(from_path, from_file)
    np.testing.assert_array_equal(load_image(str(path)), from_path)


def test_draft_decodes_big_jpeg_at_reduced_scale_not_below_target() -> None:
    data = _encode(Image.new("RGB", (2048, 1600), (120, 60, 30)), "JPEG")
    out = load_image(data, draft=(500, 500))
    assert out.shape[0] >= 500 and out.shape[1] >= 500
    assert out.shape[:2] != (1600, 2048)


def test_errors_name_the_file_and_the_reason(tmp_path: Path) -> None:
    with pytest.raises(ImageLoadError) as missing:
        load_image(tmp_path / "nope.jpg")
    assert missing.value.name.endswith("nope.jpg") and "not found" in missing.value.reason

    text = tmp_path / "notes.jpg"
    text.write_text("this is not a picture")
    with pytest.raises(ImageLoadError, match="notes.jpg: not an image"):
        load_image(text)

    with pytest.raises(ImageLoadError, match="empty"):
        load_image(b"", name="empty.png")


def test_truncated_jpeg_is_refused() -> None:
    data = _encode(
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)), "JPEG"
    )
    with pytest.raises(ImageLoadError, match="upload.jpg: cannot decode"):
        load_image(data[: len(data) // 2], name="upload.jpg")


@pytest.mark.parametrize("fmt", ["GIF", "BMP"])
def test_other_formats_are_refused(fmt: str) -> None:
    data = _encode(Image.new("RGB", (8, 8), (1, 2, 3)), fmt)
    with pytest.raises(ImageLoadError, match=f"unsupported format {fmt}"):
        load_image(data, name=f"x.{fmt.lower()}")


def test_image_load_error_is_a_value_error() -> None:
    err = ImageLoadError("a.jpg", "broken")
    assert isinstance(err, ValueError) and str(err) == "a.jpg: broken"


def test_resize_to_matches_a_float_resize_within_rounding() -> None:
    from ml.data.patches import resize_rgb

    rgb = _gradient(300, 500)
    data = _encode(Image.fromarray(rgb), "PNG")
    fast = load_image(data, resize_to=128)
    slow = resize_rgb(load_image(data), 128)
    assert fast.shape == (128, 128, 3)
    assert np.abs(fast - slow).max() <= 2 / 255
    # 16-bit input is not squeezed through 8 bits: it comes back at its own size.
    sixteen = _encode(Image.fromarray(np.full((40, 60), 1000, np.uint16)), "PNG")
    assert load_image(sixteen, resize_to=32).shape == (40, 60, 3)


def _png16_rgb(arr: np.ndarray) -> bytes:
    """A 16-bit RGB PNG written by hand (Pillow cannot write one)."""
    h, w, _ = arr.shape
    big = arr.astype(">u2")
    return png(w, h, 16, 2, b"".join(b"\x00" + big[y].tobytes() for y in range(h)))


def _tiff16_rgb(arr: np.ndarray) -> bytes:
    """An uncompressed 16-bit RGB TIFF written by hand (little-endian, one strip)."""
    import struct

    h, w, _ = arr.shape
    pixels = arr.astype("<u2").tobytes()
    n_tags = 9
    ifd_offset = 8
    extra = ifd_offset + 2 + n_tags * 12 + 4  # BitsPerSample values live here
    data_offset = extra + 6
    tags = [
        (256, 3, 1, w),
        (257, 3, 1, h),
        (258, 3, 3, extra),
        (259, 3, 1, 1),
        (262, 3, 1, 2),
        (273, 4, 1, data_offset),
        (277, 3, 1, 3),
        (278, 3, 1, h),
        (279, 4, 1, len(pixels)),
    ]
    out = b"II*\x00" + struct.pack("<I", ifd_offset) + struct.pack("<H", n_tags)
    for tag, typ, count, value in tags:
        packed = struct.pack("<HI", value, 0)[:4] if typ == 3 else struct.pack("<I", value)
        out += struct.pack("<HHI", tag, typ, count) + packed
    out += struct.pack("<I", 0) + struct.pack("<HHH", 16, 16, 16)
    return out + pixels


@pytest.mark.parametrize("encode", [_png16_rgb, _tiff16_rgb])
def test_sixteen_bit_rgb(encode) -> None:
    arr = (np.arange(4 * 5 * 3).reshape(4, 5, 3) * 1000).astype(np.uint16)
    out = load_image(encode(arr), name="scan16")
    assert out.shape == (4, 5, 3)
    # Pillow reads 16-bit colour at 8-bit precision: within one 8-bit step of the true value.
    np.testing.assert_allclose(out, arr / 65535.0, atol=1 / 255)
