"""`patchscreen demo` and `scripts/run`: the embedded default a newcomer starts with."""

from __future__ import annotations

import re

import numpy as np
import pytest
from sqlalchemy import func, select

from app.core.config import Settings
from app.db.models import Image, TrainingJob, User
from app.db.session import make_engine, make_sessionmaker
from app.services import labels, training
from app.worker.demo import seed_demo
from tests.app.worker.conftest import ROOT_DIR
from tests.app.worker.test_compose import _option_names, _resolve


def test_demo_seeds_images_labels_and_an_admin_once(tmp_path):
    settings = Settings(data_dir=tmp_path, redis_url=None, database_url=None)
    lines: list[str] = []
    assert seed_demo(n_images=4, labeled_images=2, settings=settings, echo=lines.append) == 4
    password = [line.split()[-1] for line in lines if "password:" in line]
    assert len(password) == 1 and len(password[0]) >= 12
    factory = make_sessionmaker(make_engine(settings.resolved_database_url))
    with factory() as s:
        assert s.scalar(select(func.count()).select_from(Image)) == 4
        assert s.scalar(select(User.role).where(User.username == "admin")) == "admin"
        consensus = labels.consensus_labels(s)
        assert len(consensus) == 2
        values = np.concatenate(list(consensus.values()))
        assert (values == 1).any() and (values == 0).any()  # training can start at once
        assert 0 < (values >= 0).sum() < 2 * 64  # some patches, as a clinician would begin
        training.create_job(s, training.JobRequest(preset="tiny"), user_id=None, settings=settings)
        assert s.scalar(select(func.count()).select_from(TrainingJob)) == 1
    # Run again: nothing is added and the password is not printed a second time.
    lines.clear()
    assert seed_demo(n_images=4, labeled_images=2, settings=settings, echo=lines.append, if_empty=True) == 0
    assert not any("password:" in line for line in lines)
    with factory() as s:
        assert s.scalar(select(func.count()).select_from(User)) == 1


def test_scripts_run_commands_exist():
    script = (ROOT_DIR / "scripts" / "run").read_text()
    lines = [line for line in script.splitlines() if re.match(r"\s*(exec )?\$ps ", line)]
    commands = [line.split("$ps ", 1)[1].split() for line in lines]
    assert {c[0] for c in commands} >= {"db", "demo", "train", "serve"}
    for argv in commands:
        command, rest = _resolve([a for a in argv if not a.startswith('"')])
        for token in rest:
            if token.startswith("--"):
                assert token in _option_names(command), f"scripts/run: `{' '.join(argv)}` has no {token}"
    assert "--with-worker" in script and "scripts/bootstrap" in script


@pytest.mark.shared_data
def test_demo_from_real_idrid_labels_lesion_patches(shared_idrid, tmp_path):
    settings = Settings(data_dir=tmp_path, redis_url=None, database_url=None)
    assert (
        seed_demo(source=shared_idrid, n_images=4, labeled_images=2, settings=settings, echo=lambda _: None)
        == 4
    )
    factory = make_sessionmaker(make_engine(settings.resolved_database_url))
    with factory() as s:
        values = np.concatenate(list(labels.consensus_labels(s).values()))
    # One DR image (lesion masks -> diseased patches) and one healthy image were labeled.
    assert (values == 1).sum() > 0 and (values == 0).sum() >= 8
