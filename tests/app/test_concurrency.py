"""Concurrent writers on a real database (several connections): no label is lost, counts stay right."""

from __future__ import annotations

import threading

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.core.config import Settings
from app.db.models import Image as ImageRow
from app.db.models import PatchLabel, User
from app.db.session import session_scope, write_engine
from app.services import images, labels
from app.services.storage import Storage
from tests.app.conftest import _PASSWORD_HASH, fundus_bytes


def test_concurrent_label_writes_on_one_image_are_all_kept(fresh_engine, tmp_path):
    settings = Settings(env="test", data_dir=tmp_path)
    with session_scope(fresh_engine) as s:
        people = [User(username=f"a{i}", password_hash=_PASSWORD_HASH, role="annotator") for i in range(6)]
        s.add_all(people)
        s.flush()
        prepared = images.prepare(fundus_bytes(3, size=300), "x.jpg", settings)
        image_id = images.store_prepared(s, Storage(settings.storage_dir), [prepared], people[0])[0].image.id
        user_ids = [p.id for p in people]

    writes_each = 12
    errors: list[Exception] = []
    start = threading.Barrier(len(user_ids))

    def annotator(i: int, user_id: int) -> None:
        rng = np.random.default_rng(i)
        try:
            start.wait()
            for _ in range(writes_each):
                with Session(bind=write_engine(fresh_engine), expire_on_commit=False) as s:
                    user = s.get(User, user_id)
                    cell = int(rng.integers(0, 4))  # few cells: real contention on the same patches
                    labels.set_labels(s, image_id, [(cell, cell, int(rng.integers(0, 2)))], user)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=annotator, args=(i, uid)) for i, uid in enumerate(user_ids)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    with Session(bind=fresh_engine) as s:
        assert s.scalar(select(func.count()).select_from(PatchLabel)) == len(user_ids) * writes_each
        consensus = labels.consensus_labels(s)[image_id]
        assert s.get(ImageRow, image_id).labeled_count == int((consensus != -1).sum())
