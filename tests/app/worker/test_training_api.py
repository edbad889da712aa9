"""/api/v1/training-jobs over HTTP on the embedded database: roles, 202/409/422/503, cancel."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from app.db.models import TrainingJob, User
from app.main import create_app
from app.services import users
from tests.app.worker.conftest import Library, seed_library

URL = "/api/v1/training-jobs"


@dataclass
class Api:
    client: TestClient
    lib: Library
    factory: object
    admin: dict[str, str]
    annotator: dict[str, str]
    viewer: dict[str, str]


def bearer(factory, user_id: int) -> dict[str, str]:
    with factory() as s:
        issued = users.issue_token(s, s.get(User, user_id), "api", name="test")
        s.commit()
        return {"Authorization": f"Bearer {issued.token}"}


def make_api(factory, settings) -> Iterator[Api]:
    lib = seed_library(factory)
    with factory() as s:
        viewer = User(username="vic", password_hash="x", role="viewer")
        s.add(viewer)
        s.commit()
        viewer_id = viewer.id
    app = create_app(settings, engine=factory.kw["bind"])
    with TestClient(app) as client:
        yield Api(
            client,
            lib,
            factory,
            bearer(factory, lib.admin.id),
            bearer(factory, lib.annotator.id),
            bearer(factory, viewer_id),
        )


@pytest.fixture()
def api(sqlite_factory, settings) -> Iterator[Api]:
    yield from make_api(sqlite_factory, settings)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def n_jobs(factory) -> int:
    with factory() as s:
        return s.scalar(select(func.count()).select_from(TrainingJob))


def test_roles(api):
    assert api.client.post(URL, json={}).status_code == 401
    assert api.client.post(URL, json={}, headers=api.annotator).status_code == 403
    assert api.client.get(URL).status_code == 401
    r = api.client.post(URL, json={"preset": "tiny"}, headers=api.admin)
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]
    assert api.client.get(URL, headers=api.viewer).status_code == 200
    assert api.client.get(f"{URL}/{job_id}", headers=api.viewer).json()["status"] == "queued"
    assert api.client.delete(f"{URL}/{job_id}", headers=api.annotator).status_code == 403
    assert api.client.delete(f"{URL}/{job_id}", headers=api.viewer).status_code == 403


def test_start_conflict_queue_cancel(api):
    r = api.client.post(URL, json={"preset": "tiny", "epochs": 2, "seed": 3}, headers=api.admin)
    assert r.status_code == 202
    job = r.json()
    assert job["status"] == "queued" and job["epochs"] == 2 and job["seed"] == 3
    assert job["requested_by"] == "admin" and job["progress"]["message"] == "waiting for a worker"
    r = api.client.post(URL, json={"preset": "tiny"}, headers=api.admin)
    assert r.status_code == 409 and r.json()["job_id"] == job["id"] and "queue=true" in r.json()["detail"]
    r = api.client.post(URL, json={"preset": "tiny", "queue": True}, headers=api.admin)
    assert r.status_code == 202 and r.json()["id"] != job["id"]
    r = api.client.delete(f"{URL}/{job['id']}", headers=api.admin)
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    listed = api.client.get(URL, headers=api.viewer).json()
    assert [j["id"] for j in listed] == [job["id"] + 1, job["id"]]
    assert api.client.get(f"{URL}/999", headers=api.viewer).status_code == 404
    assert api.client.delete(f"{URL}/999", headers=api.admin).status_code == 404


@pytest.mark.parametrize(
    "body", [{"preset": "huge"}, {"method": "svm"}, {"epochs": 0}, {"epochs": "many"}, {"seed": -1}]
)
def test_bad_requests_are_422_and_write_nothing(api, body):
    r = api.client.post(URL, json=body, headers=api.admin)
    assert r.status_code == 422 and r.json()["detail"].startswith("Invalid request")
    assert n_jobs(api.factory) == 0


def test_no_labels_of_one_class_is_a_clear_409(api):
    from app.db.models import PatchLabel

    with api.factory() as s:
        s.query(PatchLabel).filter(PatchLabel.label == 0).delete()
        s.commit()
    r = api.client.post(URL, json={}, headers=api.admin)
    assert r.status_code == 409 and "healthy and one diseased" in r.json()["detail"]


def test_redis_down_gives_503_and_writes_nothing(sqlite_factory, settings):
    down = settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{closed_port()}/0"})
    for api in make_api(sqlite_factory, down):
        r = api.client.post(URL, json={"preset": "tiny"}, headers=api.admin)
        assert r.status_code == 503
        assert (
            "unreachable" in r.json()["detail"]
            and "Labeling and predictions keep working" in r.json()["detail"]
        )
        assert n_jobs(sqlite_factory) == 0
        # Browsing and labeling do not need Redis.
        image_id = api.lib.images[-1]
        assert api.client.get("/api/v1/images", headers=api.viewer).status_code == 200
        r = api.client.put(
            f"/api/v1/images/{image_id}/labels/0/0", json={"label": "diseased"}, headers=api.annotator
        )
        assert r.status_code == 200, r.text
