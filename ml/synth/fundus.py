"""A synthetic colour fundus photograph with lesion masks in the IDRiD convention.

Real fundus data is scarce and cannot be downloaded in CI, so tests, the demo and the dry runs use
these images. They are built to keep the method's difficulty, not to look pretty:

- anatomy that is bright or dark without being a lesion (optic disc, vessels, macula, vignetting),
  so a detector cannot just threshold brightness;
- lesion sizes taken from IDRiD at 1024 px: microaneurysms 3-7 px across (they all but vanish in the
  32x32 model patches, as in the real data), haemorrhages 10-55 px blots, hard exudates clusters of
  3-18 px bright yellow dots (some merged into a plaque), soft exudates 16-50 px pale fuzzy patches;
- sparse lesions, so that most diseased patches hold only a few percent of lesion pixels.

All geometry is expressed at 1024 px and scaled, so any ``size`` gives the same picture. The same
seed always gives the same image and masks.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

LESION_TYPES = ("MA", "HE", "EX", "SE")
MASK_TYPES = (*LESION_TYPES, "OD")

_BASE_ALBEDO = np.array([0.80, 0.36, 0.13], np.float32)  # the orange-red of a Caucasian/Indian fundus
_OD_ALBEDO = np.array([1.15, 0.92, 0.62], np.float32)
_CUP_ALBEDO = np.array([1.22, 1.05, 0.82], np.float32)
_EX_ALBEDO = np.array([1.22, 1.02, 0.42], np.float32)  # bright yellow
_SE_ALBEDO = np.array([1.02, 0.78, 0.52], np.float32)  # pale, creamy
_RED_LESION_DARKEN = np.array([0.55, 0.80, 0.75], np.float32)  # red channel kept most: dark red
_VESSEL_DARKEN = np.array([0.28, 0.58, 0.50], np.float32)


class _Canvas:
    """Coordinates and helpers shared by the drawing steps of one image."""

    def __init__(self, size: int, rng: np.random.Generator) -> None:
        self.size = size
        self.rng = rng
        self.scale = size / 1024.0
        self.center = np.array([size / 2, size / 2], np.float64)
        self.radius = 0.47 * size * rng.uniform(0.95, 1.0)  # field-of-view radius in px
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
        self.dx = (xx - self.center[0]) / self.radius
        self.dy = (yy - self.center[1]) / self.radius
        self.r = np.sqrt(self.dx**2 + self.dy**2)

    def window(self, at: np.ndarray, half: float) -> tuple[Window, np.ndarray, np.ndarray]:
        """Slices of the square of half-side ``half`` px around ``at``, with x/y offsets in px."""
        x0, x1 = max(0, int(at[0] - half)), min(self.size, int(at[0] + half) + 1)
        y0, y1 = max(0, int(at[1] - half)), min(self.size, int(at[1] + half) + 1)
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        return (slice(y0, y1), slice(x0, x1)), xx - np.float32(at[0]), yy - np.float32(at[1])

    def px(self, at_1024: float) -> float:
        return at_1024 * self.scale

    def smooth_noise(self, cells: int, lo: float, hi: float) -> np.ndarray:
        """Low-frequency random field in [lo, hi], from a cells x cells grid upsampled bicubically."""
        grid = self.rng.uniform(0.0, 1.0, (cells, cells)).astype(np.float32)
        field = np.asarray(
            Image.fromarray(grid, mode="F").resize((self.size, self.size), Image.Resampling.BICUBIC)
        )
        return lo + (hi - lo) * np.clip(field, 0.0, 1.0)

    def layer(self) -> tuple[Image.Image, ImageDraw.ImageDraw]:
        img = Image.new("L", (self.size, self.size), 0)
        return img, ImageDraw.Draw(img)

    def inside(self, x: float, y: float, margin: float = 0.9) -> bool:
        return math.hypot(x - self.center[0], y - self.center[1]) < margin * self.radius


Window = tuple[slice, slice]


class _Alpha:
    """A float alpha in [0, 1] kept only over its bounding box: lesions are sparse, so compositing
    only where they are makes a 1024 px image several times faster."""

    def __init__(self, values: np.ndarray, window: Window) -> None:
        self.values, self.window = values, window

    def scaled(self, k: float) -> _Alpha:
        return _Alpha(self.values * k, self.window)


def _soft(layer: Image.Image, blur_px: float) -> _Alpha:
    """An 8-bit drawing as a float alpha, edges softened like optics would."""
    if blur_px > 0.3:
        layer = layer.filter(ImageFilter.GaussianBlur(blur_px))
    box = layer.getbbox() or (0, 0, 0, 0)
    window = (slice(box[1], box[3]), slice(box[0], box[2]))
    return _Alpha(np.asarray(layer.crop(box), dtype=np.float32) / 255.0, window)


def _blend(albedo: np.ndarray, alpha: _Alpha, colour: np.ndarray) -> None:
    region = albedo[alpha.window]
    region += alpha.values[..., None] * (colour - region)


def _darken(albedo: np.ndarray, alpha: _Alpha, strength: np.ndarray) -> None:
    albedo[alpha.window] *= 1.0 - alpha.values[..., None] * strength


def _ellipse(draw: ImageDraw.ImageDraw, x: float, y: float, rx: float, ry: float, angle: float) -> None:
    """A filled rotated ellipse as a polygon (PIL ellipses cannot rotate)."""
    n = max(8, int(2 * math.pi * max(rx, ry) / 2))
    t = np.linspace(0, 2 * math.pi, n, endpoint=False)
    ca, sa = math.cos(angle), math.sin(angle)
    ex, ey = rx * np.cos(t), ry * np.sin(t)
    pts = list(zip((x + ca * ex - sa * ey).tolist(), (y + sa * ex + ca * ey).tolist(), strict=True))
    if max(rx, ry) < 1.0:
        draw.point((round(x), round(y)), fill=255)
    else:
        draw.polygon(pts, fill=255)


def _vessel_tree(c: _Canvas, od: np.ndarray, od_r: float, toward_macula: float) -> Image.Image:
    """Four arcades leaving the disc, each a curving random walk that branches and thins."""
    img, draw = c.layer()
    rng = c.rng
    stack: list[tuple[float, float, float, float, float, int]] = []
    for side in (-1.0, 1.0):  # superior and inferior
        # temporal arcades arch around the macula; nasal vessels run away from it
        stack.append(
            (od[0], od[1], toward_macula + side * rng.uniform(1.0, 1.3), -side * 0.03, c.px(12.0), 0)
        )
        stack.append((od[0], od[1], toward_macula + side * rng.uniform(2.0, 2.4), side * 0.01, c.px(9.0), 0))
    step = c.px(14.0)
    while stack:
        x, y, angle, curl, width, depth = stack.pop()
        for _ in range(400):
            angle += curl + rng.normal(0.0, 0.05)
            nx, ny = x + step * math.cos(angle), y + step * math.sin(angle)
            draw.line([(x, y), (nx, ny)], fill=255, width=max(1, round(width)))
            x, y = nx, ny
            width *= 0.985
            if not c.inside(x, y, 0.99) or width < max(c.px(1.6), 0.6):
                break
            if depth < 4 and rng.random() < 0.06 and math.hypot(x - od[0], y - od[1]) > od_r:
                branch = angle + rng.choice([-1.0, 1.0]) * rng.uniform(0.4, 0.9)
                stack.append((x, y, branch, rng.normal(0.0, 0.01), width * 0.7, depth + 1))
                width *= 0.88
    return img


def _lesion_sites(c: _Canvas, n: int, macula: np.ndarray, od: np.ndarray, od_r: float, spread: float) -> list:
    """Lesion centres: mostly around the posterior pole, some anywhere in the field, never on the disc."""
    sites = []
    rng = c.rng
    for _ in range(50 * max(n, 1)):
        if len(sites) >= n:
            break
        if rng.random() < 0.7:
            x, y = macula + rng.normal(0.0, spread * c.radius, 2)
        else:
            a, rr = rng.uniform(0, 2 * math.pi), c.radius * math.sqrt(rng.uniform(0, 1))
            x, y = c.center[0] + rr * math.cos(a), c.center[1] + rr * math.sin(a)
        if c.inside(x, y, 0.9) and math.hypot(x - od[0], y - od[1]) > 1.4 * od_r:
            sites.append((float(x), float(y)))
    return sites


def _draw_lesions(c: _Canvas, macula: np.ndarray, od: np.ndarray, od_r: float) -> dict[str, Image.Image]:
    rng = c.rng
    severity = rng.uniform(0.25, 1.0)
    layers = {t: c.layer() for t in LESION_TYPES}

    n_ma = rng.poisson(6 + 34 * severity)
    for x, y in _lesion_sites(c, n_ma, macula, od, od_r, 0.45):
        r = c.px(rng.uniform(1.5, 3.5))
        _ellipse(layers["MA"][1], x, y, r, r, 0.0)

    n_he = rng.poisson(1 + 12 * severity)
    n_ex = rng.poisson(0.5 + 3.5 * severity)
    if n_he + n_ex == 0:  # every DR image shows something a grader would see
        n_he = 1
    for x, y in _lesion_sites(c, n_he, macula, od, od_r, 0.4):
        base = c.px(float(np.clip(rng.lognormal(math.log(10.0), 0.5), 5.0, 28.0)))
        flame = rng.random() < 0.3  # flame-shaped haemorrhages are elongated along the nerve fibres
        for _ in range(rng.integers(1, 4)):
            ox, oy = rng.normal(0.0, 0.35 * base, 2)
            rx = base * rng.uniform(0.6, 1.0) * (1.8 if flame else 1.0)
            ry = base * rng.uniform(0.6, 1.0) * (0.5 if flame else 1.0)
            _ellipse(layers["HE"][1], x + ox, y + oy, rx, ry, rng.uniform(0, math.pi))

    for x, y in _lesion_sites(c, n_ex, macula, od, od_r, 0.25):
        spread = c.px(rng.uniform(15.0, 70.0))
        for _ in range(rng.integers(4, 26)):
            sx, sy = x + rng.normal(0, spread), y + rng.normal(0, spread)
            if c.inside(sx, sy, 0.95):
                r = c.px(float(np.clip(rng.lognormal(math.log(3.6), 0.5), 1.5, 9.0)))
                _ellipse(layers["EX"][1], sx, sy, r * rng.uniform(0.7, 1.3), r, rng.uniform(0, math.pi))
        if rng.random() < 0.35:  # some clusters merge into a plaque, as in severe maculopathy
            r = c.px(rng.uniform(10.0, 24.0))
            _ellipse(layers["EX"][1], x, y, r * rng.uniform(0.8, 1.6), r, rng.uniform(0, math.pi))

    n_se = rng.poisson(1.5 * severity) if rng.random() < 0.5 else 0
    for x, y in _lesion_sites(c, n_se, macula, od, od_r, 0.45):
        r = c.px(rng.uniform(8.0, 25.0))
        _ellipse(layers["SE"][1], x, y, r * rng.uniform(0.8, 1.4), r, rng.uniform(0, math.pi))
    return {t: img for t, (img, _draw) in layers.items()}


def generate(seed: int, size: int = 1024, dr: bool = True) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """One synthetic fundus: uint8 RGB (size, size, 3) and bool masks ``MA, HE, EX, SE, OD``.

    ``dr=False`` gives a healthy eye: anatomy only, all lesion masks empty.
    """
    if size < 32:
        raise ValueError(f"size must be at least 32 px, got {size}")
    rng = np.random.default_rng([seed, int(dr)])
    c = _Canvas(size, rng)

    # Anatomy: optic disc on the nasal side (left or right eye), macula ~2.5 disc diameters temporal.
    eye = rng.choice([-1.0, 1.0])
    od = c.center + np.array([eye * rng.uniform(0.30, 0.40), rng.uniform(-0.08, 0.08)]) * c.radius
    od_r = c.px(rng.uniform(62.0, 80.0))
    macula = od + np.array([-eye * 5.0 * od_r, rng.uniform(0.0, 0.4) * od_r])
    toward_macula = math.atan2(macula[1] - od[1], macula[0] - od[0])

    pigment = rng.uniform(0.85, 1.1)
    albedo = np.broadcast_to(_BASE_ALBEDO * pigment, (size, size, 3)).copy()
    albedo *= c.smooth_noise(12, 0.9, 1.1)[..., None]  # choroidal mottling

    window, mdx, mdy = c.window(macula, 5.0 * od_r)  # 3 sigma of the broad darkening
    md2 = (mdx**2 + mdy**2) / (od_r**2)
    macula_dark = 0.28 * np.exp(-md2 / (2 * 1.6**2)) + 0.22 * np.exp(-md2 / (2 * 0.35**2))
    albedo[window] *= (1.0 - macula_dark)[..., None]

    od_window, odx, ody = c.window(od, 1.5 * od_r)
    od_dist = np.sqrt(odx**2 + ody**2)
    od_alpha = 1.0 / (1.0 + np.exp((od_dist - od_r) / max(c.px(3.0), 0.5)))
    _blend(albedo, _Alpha(od_alpha, od_window), _OD_ALBEDO)
    cup_alpha = 1.0 / (1.0 + np.exp((od_dist - 0.45 * od_r) / max(c.px(6.0), 0.5)))
    _blend(albedo, _Alpha(cup_alpha, od_window), _CUP_ALBEDO)

    lesion_layers = _draw_lesions(c, macula, od, od_r) if dr else {}
    # Pale and bright lesions lie under the vessels; haemorrhages and microaneurysms on top.
    if dr:
        se_alpha = _soft(lesion_layers["SE"], c.px(7.0))
        _blend(albedo, se_alpha.scaled(0.85), _SE_ALBEDO)
        _blend(albedo, _soft(lesion_layers["EX"], c.px(0.8)), _EX_ALBEDO)
    vessels = _soft(_vessel_tree(c, od, od_r, toward_macula), c.px(1.0))
    _darken(albedo, vessels, _VESSEL_DARKEN)
    if dr:
        _darken(albedo, _soft(lesion_layers["HE"], c.px(1.2)), _RED_LESION_DARKEN)
        _darken(albedo, _soft(lesion_layers["MA"], c.px(0.6)).scaled(0.9), _RED_LESION_DARKEN)

    vignette = 1.0 - 0.5 * np.clip(c.r, 0, 1) ** 2.5
    illumination = c.smooth_noise(4, 0.8, 1.15) * vignette * rng.uniform(0.75, 0.95)
    fov = np.clip((1.0 - c.r) * (c.radius / max(c.px(2.0), 0.5)), 0.0, 1.0)
    shade = illumination * fov
    shade += rng.standard_normal((size, size), dtype=np.float32) * np.float32(0.012) * fov  # sensor noise
    albedo *= shade[..., None]
    image = np.rint(np.clip(albedo, 0.0, 1.0) * 255.0).astype(np.uint8)

    inside = c.r < 1.0
    masks = {t: np.zeros((size, size), bool) for t in MASK_TYPES}
    if dr:
        for t in ("MA", "HE", "EX"):
            masks[t] = (np.asarray(lesion_layers[t]) > 0) & inside
        masks["SE"][se_alpha.window] = se_alpha.values > 0.5
        masks["SE"] &= inside
    masks["OD"][od_window] = od_dist <= od_r
    return image, masks
