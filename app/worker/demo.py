"""``patchscreen demo``: a library a newcomer can use at once.

A few dozen fundus photographs (synthetic ones from ml.synth, or a real IDRiD folder with
``--source``), stored through the same upload path as the API, a dozen of them with some patches
labeled the way a clinician would start (every lesion patch of a DR image plus a few clearly healthy
ones), and an admin account whose password is printed once and never stored in clear.
"""

from __future__ import annotations

import io
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.core.config import Settings, get_settings
from app.db.models import Image, User

HEALTHY_PER_IMAGE = 8  # healthy patches labeled on each labeled image
MAX_DISEASED_PER_IMAGE = 16


@dataclass
class DemoImage:
    name: str
    data: bytes
    lesions: np.ndarray | None  # (8, 8) int8 patch labels from the lesion masks; None when unknown
    is_dr: bool


def synthetic_images(n: int, seed: int) -> list[DemoImage]:
    from PIL import Image as PILImage

    from ml.data.labels import patch_labels_from_mask, union_mask
    from ml.synth import generate

    out = []
    for i in range(n):
        dr = i % 2 == 0
        rgb, masks = generate(seed * 1000 + i, size=1024, dr=dr)
        lesions = {k: v for k, v in masks.items() if k != "OD"}
        labels, _ = patch_labels_from_mask(union_mask(lesions, 1024))
        buf = io.BytesIO()
        PILImage.fromarray(np.asarray(rgb)).save(buf, format="JPEG", quality=92)
        out.append(
            DemoImage(f"synthetic_{'dr' if dr else 'healthy'}_{i:03d}.jpg", buf.getvalue(), labels, dr)
        )
    return out


def source_images(path: Path, n: int, seed: int) -> list[DemoImage]:
    """Half DR (with masks), half healthy, from an IDRiD download / prepared folder / synthetic set."""
    from ml.data.cohort import load_source
    from ml.data.labels import patch_labels_from_mask, read_mask, union_mask

    cohort = load_source(path)
    rng = np.random.default_rng(seed)
    dr = [s for s in cohort.samples if s.is_dr]
    healthy = [s for s in cohort.samples if not s.is_dr]
    n_dr = min(len(dr), (n + 1) // 2)
    picked = [dr[i] for i in rng.permutation(len(dr))[:n_dr]]
    picked += [healthy[i] for i in rng.permutation(len(healthy))[: n - n_dr]]
    out = []
    for sample in picked:
        lesions = None
        masks = {k: v for k, v in sample.masks.items() if k.upper() != "OD"}
        if sample.is_dr and masks:
            labels, _ = patch_labels_from_mask(union_mask([read_mask(p) for p in masks.values()], 1024))
            lesions = labels
        elif not sample.is_dr:
            lesions = np.zeros((8, 8), np.int8)
        out.append(DemoImage(sample.image.name, sample.image.read_bytes(), lesions, sample.is_dr))
    return out


def clinician_clicks(lesions: np.ndarray, rng: np.random.Generator) -> list[tuple[int, int, int]]:
    """What a clinician labels first: the lesion patches and a few healthy ones, not all 64."""
    flat = lesions.reshape(-1)
    diseased = np.flatnonzero(flat == 1)[:MAX_DISEASED_PER_IMAGE]
    healthy = rng.permutation(np.flatnonzero(flat == 0))[:HEALTHY_PER_IMAGE]
    return [(int(k) // 8, int(k) % 8, int(flat[k])) for k in [*diseased, *healthy]]


def ensure_admin(session: Session, echo: Callable[[str], None]) -> User:
    from app.services import users

    admin = session.scalars(select(User).where(User.role == "admin").order_by(User.id)).first()
    if admin is not None:
        echo(f"admin account: {admin.username} (its password was printed when it was created)")
        return admin
    password = secrets.token_urlsafe(12)
    admin = users.create_user(session, "admin", password, "admin")
    session.commit()
    echo("=" * 64)
    echo("  admin account created -- this password is shown only once:")
    echo("    user:     admin")
    echo(f"    password: {password}")
    echo("=" * 64)
    return admin


def seed_demo(
    *,
    source: Path | None = None,
    n_images: int = 36,
    labeled_images: int = 12,
    if_empty: bool = False,
    seed: int = 0,
    echo: Callable[[str], None] = print,
    settings: Settings | None = None,
) -> int:
    """Import the demo library; returns how many images were added."""
    from app.db.session import make_engine, session_scope
    from app.services import images, labels
    from app.services.storage import Storage

    settings = settings or get_settings()
    engine = make_engine(settings.resolved_database_url)
    from app.db import migrate

    migrate.upgrade_if_needed(engine)
    with session_scope(engine) as session:
        admin = ensure_admin(session, echo)
        existing = session.scalar(select(func.count()).select_from(Image).where(Image.deleted_at.is_(None)))
        if if_empty and existing:
            echo(f"the library already has {existing} images: no demo data added")
            return 0
        demo = source_images(source, n_images, seed) if source else synthetic_images(n_images, seed)
        storage = Storage(settings.storage_dir)
        prepared = [images.prepare(d.data, d.name, settings) for d in demo]
        stored = images.store_prepared(session, storage, prepared, admin)
        rng = np.random.default_rng(seed)
        # Label the same number of DR and healthy images, so training sees both classes.
        order = sorted(range(len(demo)), key=lambda i: (i // 2, not demo[i].is_dr))
        n_clicks = n_labeled = 0
        for i in order:
            if n_labeled >= labeled_images:
                break
            if demo[i].lesions is None or not stored[i].created:
                continue
            clicks = clinician_clicks(demo[i].lesions, rng)
            labels.set_labels(session, stored[i].image.id, clicks, admin)
            n_clicks += len(clicks)
            n_labeled += 1
        added = sum(s.created for s in stored)
    engine.dispose()
    echo(f"demo library: {added} new images ({len(demo)} offered), {n_clicks} labels on {n_labeled} images")
    return added
