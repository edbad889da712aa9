"""The patch grid of the method: resize, normalise by the maximum, cut 8x8, downsample to 32x32.

The grid is a contract shared with the browser and the database (docs/architecture.md): patch
(row, col) covers pixels ``[row*patch:(row+1)*patch, col*patch:(col+1)*patch]`` of the resized
image and has flat index ``k = row * grid + col``. Stored patches are uint8 ``(grid*grid, 3,
model_res, model_res)``; ``patches_to_bytes`` / ``patches_from_bytes`` are their only codec.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from ml.data.io import load_pixels

if TYPE_CHECKING:
    from ml.data.io import Source

PIPELINE_VERSION = 3  # bump when preprocessing changes in a way that invalidates cached patches


@dataclass(frozen=True)
class PatchParams:
    size: int = 1024
    grid: int = 8
    patch: int = 128
    model_res: int = 32

    def __post_init__(self) -> None:
        if min(self.size, self.grid, self.patch, self.model_res) < 1:
            raise ValueError(f"patch parameters must be positive: {self}")
        if self.grid * self.patch != self.size:
            raise ValueError(f"grid * patch must equal size, got {self.grid} * {self.patch} != {self.size}")
        if self.patch % self.model_res:
            raise ValueError(f"model_res {self.model_res} must divide patch {self.patch} (box downsampling)")

    @property
    def n_patches(self) -> int:
        return self.grid * self.grid

    @property
    def patch_shape(self) -> tuple[int, int, int, int]:
        return (self.n_patches, 3, self.model_res, self.model_res)

    def key(self) -> str:
        """A short string that changes whenever cached patches would differ."""
        return f"v{PIPELINE_VERSION}-s{self.size}-g{self.grid}-p{self.patch}-m{self.model_res}"

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True)
class Preprocessed:
    """``rgb8``: the normalised image, uint8 (size, size, 3), as stored and shown to clinicians;
    ``patches``: uint8 (grid², 3, m, m), what the model sees."""

    rgb8: np.ndarray
    patches: np.ndarray


def resize_rgb(rgb: np.ndarray, size: int) -> np.ndarray:
    """Plain resize (aspect not kept) of float RGB to size x size.

    Bilinear with Pillow's antialiasing support: a triangle filter never overshoots, so the
    maximum used for normalisation is not inflated by ringing around bright exudates, as
    Lanczos or bicubic would do.
    """
    if rgb.shape[0] == size and rgb.shape[1] == size:
        return rgb.astype(np.float32, copy=False)
    channels = [
        np.asarray(
            Image.fromarray(np.ascontiguousarray(rgb[..., c], dtype=np.float32), mode="F").resize(
                (size, size), Image.Resampling.BILINEAR
            )
        )
        for c in range(3)
    ]
    return np.stack(channels, axis=2)


def normalise(rgb: np.ndarray) -> np.ndarray:
    """Divide by the image's own maximum over all channels; an all-black image stays black."""
    top = float(rgb.max(initial=0.0))
    if top <= 0.0:
        return np.zeros_like(rgb, dtype=np.float32)
    return (rgb / top).astype(np.float32, copy=False)


def box_downsample(image: np.ndarray, factor: int) -> np.ndarray:
    """Mean over factor x factor blocks of an (H, W, C) array.

    Sums of strided slices: several times faster than a mean over axes of a 5-D reshape, and it
    touches each pixel once.
    """
    if factor == 1:
        return image.astype(np.float32, copy=True)
    cols = sum(image[:, k::factor] for k in range(factor))
    rows = sum(cols[k::factor] for k in range(factor))
    return (rows / np.float32(factor * factor)).astype(np.float32, copy=False)


def cut_patches(image: np.ndarray, params: PatchParams) -> np.ndarray:
    """Cut the normalised image into the grid and box-downsample each patch to uint8 model_res."""
    g, m = params.grid, params.model_res
    small = box_downsample(image, params.patch // m)  # (g*m, g*m, 3): the grid at model resolution
    patches = small.reshape(g, m, g, m, 3).transpose(0, 2, 4, 1, 3).reshape(g * g, 3, m, m)
    return np.rint(np.clip(patches, 0.0, 1.0) * 255.0).astype(np.uint8)


def preprocess(rgb: np.ndarray, params: PatchParams | None = None) -> Preprocessed:
    """The method's preprocessing of one RGB image (H, W, 3): uint8, or float in [0, 1].

    8-bit images take an integer path (resize in 8 bits, exact block sums, one scale by the
    maximum at the end); 16-bit and alpha-composited images arrive as float and take the float
    path. Both compute the same quantity, ``rint(255 * block_mean / max)``, up to float rounding.
    """
    params = params or PatchParams()
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an RGB array (H, W, 3), got shape {rgb.shape}")
    if rgb.dtype == np.uint8:
        return _preprocess_uint8(rgb, params)
    image = normalise(resize_rgb(rgb, params.size))
    return Preprocessed(rgb8=to_uint8(image), patches=cut_patches(image, params))


def _block_sums(rgb: np.ndarray, factor: int) -> np.ndarray:
    """Sums over factor x factor blocks of a uint8 (H, W, C) image (H/f, W/f, C): uint16 while
    factor² x 255 fits (factor <= 16, the method's is 4), else uint32.

    Adding strided row and column slices keeps numpy on contiguous, vectorised loops; a reshape
    and ``sum(axis=(1, 3))`` computes the same in about ten times the time.
    """
    h, w, c = rgb.shape
    rows = rgb.reshape(h // factor, factor, w, c)
    acc = rows[:, 0].astype(np.uint16 if factor <= 16 else np.uint32)
    for i in range(1, factor):
        acc += rows[:, i]
    cols = acc.reshape(h // factor, w // factor, factor, c)
    out = cols[:, :, 0].copy()
    for i in range(1, factor):
        out += cols[:, :, i]
    return out


def _preprocess_uint8(rgb: np.ndarray, params: PatchParams) -> Preprocessed:
    """Integer form of the pipeline: a 1024x1024 upload in a few ms instead of tens.

    The block means are integer sums divided by factor², exact in float32, and the normalisation
    is a 256-entry lookup table, so no float copy of the full image is ever made. This runs on the
    request path of /predict, beside the forward pass, where every millisecond of CPU is taken
    from the model.
    """
    size, factor = params.size, params.patch // params.model_res
    if rgb.shape[:2] != (size, size):
        rgb = np.asarray(Image.fromarray(rgb).resize((size, size), Image.Resampling.BILINEAR))
    top = int(rgb.max(initial=0))
    if top == 0:
        return Preprocessed(rgb8=np.zeros_like(rgb), patches=np.zeros(params.patch_shape, np.uint8))
    lut = np.rint(np.arange(256) * (255.0 / top)).clip(0, 255).astype(np.uint8)
    rgb8 = rgb if top == 255 else lut[rgb]
    means = _block_sums(rgb, factor).astype(np.float32) / np.float32(factor * factor)
    g, m = params.grid, params.model_res
    scaled = np.rint(means * np.float32(255.0 / top)).clip(0, 255).astype(np.uint8)
    patches = scaled.reshape(g, m, g, m, 3).transpose(0, 2, 4, 1, 3).reshape(g * g, 3, m, m)
    return Preprocessed(rgb8=rgb8, patches=np.ascontiguousarray(patches))


def preprocess_file(src: Source, params: PatchParams | None = None, name: str | None = None) -> Preprocessed:
    """Load and preprocess: the path for files and uploads (the cohort cache uses it too).

    Big JPEGs decode at a reduced scale that is still >= the target size and 8-bit images are
    resized in 8 bits, so results can differ from ``preprocess(load_image(src))`` (float input) by
    rounding (at most a few 1/255 steps): use this one function wherever patches are compared.
    """
    params = params or PatchParams()
    return preprocess(load_pixels(src, name, draft=(params.size, params.size), resize_to=params.size), params)


def patches_to_bytes(patches: np.ndarray, params: PatchParams | None = None) -> bytes:
    """Serialise an image's patches for the database: raw C-order uint8 bytes, flat index first."""
    params = params or PatchParams()
    if patches.dtype != np.uint8 or patches.shape != params.patch_shape:
        raise ValueError(
            f"expected uint8 patches of shape {params.patch_shape}, got {patches.dtype} {patches.shape}"
        )
    return np.ascontiguousarray(patches).tobytes()


def patches_from_bytes(data: bytes | bytearray | memoryview, params: PatchParams | None = None) -> np.ndarray:
    """Inverse of ``patches_to_bytes``; refuses data of the wrong length instead of misreading it."""
    params = params or PatchParams()
    expected = int(np.prod(params.patch_shape))
    if len(data) != expected:
        raise ValueError(f"patch data has {len(data)} bytes, expected {expected} for {params.patch_shape}")
    return np.frombuffer(bytes(data), dtype=np.uint8).reshape(params.patch_shape).copy()


def to_model_input(patches: np.ndarray) -> np.ndarray:
    """uint8 patches -> float32 in [-1, 1], the tanh range of the generator."""
    return patches.astype(np.float32) / 127.5 - 1.0


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Float image in [0, 1] -> uint8 RGB for display, with the storage rounding (uint8 passes)."""
    if image.dtype == np.uint8:
        return image
    return np.rint(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)


def patch_box(row: int, col: int, params: PatchParams | None = None) -> tuple[int, int, int, int]:
    """Pixel box ``(top, left, bottom, right)`` of patch (row, col) in the resized image."""
    params = params or PatchParams()
    if not (0 <= row < params.grid and 0 <= col < params.grid):
        raise IndexError(f"patch ({row}, {col}) is outside the {params.grid}x{params.grid} grid")
    p = params.patch
    return row * p, col * p, (row + 1) * p, (col + 1) * p


def crop_patch(
    image: np.ndarray | Preprocessed, row: int, col: int, params: PatchParams | None = None
) -> np.ndarray:
    """Patch (row, col) of the normalised image at full patch resolution as uint8 RGB, for display."""
    params = params or PatchParams()
    full = image.rgb8 if isinstance(image, Preprocessed) else image
    if full.shape[:2] != (params.size, params.size):
        raise ValueError(f"expected a {params.size}x{params.size} normalised image, got {full.shape}")
    top, left, bottom, right = patch_box(row, col, params)
    tile = full[top:bottom, left:right]
    return tile.copy() if tile.dtype == np.uint8 else to_uint8(tile)
