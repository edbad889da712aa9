"""Service-wide behaviour: /health, /metrics, security headers, JSON errors, offline docs,
the streaming upload limit, and start-up migration of an empty database."""

from __future__ import annotations

import asyncio

from fastapi.testclient import TestClient

from app.core.config import Settings
from app.db import migrate
from app.main import CONTENT_SECURITY_POLICY, create_app
from tests.app.conftest import upload


def test_health_needs_no_credentials(client):
    r = client.get("/health")
    assert r.status_code == 200
    body = r.json()
    assert body["database"] == "ok" and body["schema_revision"] == migrate.head_revision()
    assert body["active_model"] is None and body["queue"].startswith("not configured")


def test_health_reports_an_unreachable_queue(client, app):
    app.state.settings = app.state.settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0"})
    body = client.get("/health").json()
    assert body["status"] == "degraded" and body["queue"].startswith("unreachable")


def test_metrics_count_requests_and_labels(client, annotator, jpeg_bytes):
    image_id = upload(client, annotator, jpeg_bytes).json()["id"]
    client.put(f"/api/v1/images/{image_id}/labels/0/0", json={"label": "diseased"}, headers=annotator.headers)
    r = client.get("/metrics", headers=annotator.headers)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert (
        'patchscreen_http_requests_total{method="PUT",route="/api/v1/images/{image_id}/labels/{row}/{col}",'
        'status="200"}' in text
    )
    assert "patchscreen_http_request_duration_seconds_bucket" in text
    assert 'patchscreen_label_writes_total{label="diseased"}' in text


def test_security_headers_on_every_response(client, viewer):
    for path, headers in (
        ("/health", {}),
        ("/api/v1/images", viewer.headers),
        ("/nowhere", {}),
        ("/docs", {}),
    ):
        r = client.get(path, headers=headers)
        csp = r.headers["content-security-policy"]
        assert csp == CONTENT_SECURITY_POLICY
        script_src = next(d for d in csp.split(";") if d.strip().startswith("script-src"))
        assert "unsafe-inline" not in script_src and "unsafe-eval" not in script_src
        assert r.headers["x-content-type-options"] == "nosniff" and r.headers["x-frame-options"] == "DENY"


def test_unknown_paths_and_methods_answer_json_sentences(client, viewer):
    r = client.get("/api/v1/nothing-here", headers=viewer.headers)
    assert r.status_code == 404 and r.json()["detail"].endswith(".")
    r = client.patch("/api/v1/images", headers=viewer.headers)
    assert r.status_code == 405 and isinstance(r.json()["detail"], str)


def test_openapi_and_offline_docs_without_inline_script(client):
    spec = client.get("/openapi.json").json()
    assert (
        "/api/v1/predict" in spec["paths"] and "/api/v1/images/{image_id}/labels/{row}/{col}" in spec["paths"]
    )
    html = client.get("/docs").text
    assert "cdn" not in html.lower() and "<script>" not in html  # scripts only by src, all local
    assert client.get("/docs-assets/swagger-ui-bundle.js").status_code == 200
    assert "SwaggerUIBundle" in client.get("/docs/init.js").text


def test_oversize_upload_is_refused_while_streaming(app, annotator):
    """Drive the ASGI app directly with a body that arrives in chunks and count what it read."""
    limit = 256 * 1024
    app.state.settings = app.state.settings.model_copy(update={"max_upload_bytes": limit})
    boundary = b"XyZ"
    head = (
        b"--" + boundary + b'\r\nContent-Disposition: form-data; name="files"; filename="big.jpg"\r\n'
        b"Content-Type: image/jpeg\r\n\r\n"
    )
    chunk = b"\xff" * 65536
    total_chunks = 200  # 13 MB announced, far over the limit
    sent = {"chunks": 0}

    async def receive():
        sent["chunks"] += 1
        if sent["chunks"] == 1:
            return {"type": "http.request", "body": head, "more_body": True}
        if sent["chunks"] < total_chunks:
            return {"type": "http.request", "body": chunk, "more_body": True}
        return {"type": "http.request", "body": b"\r\n--" + boundary + b"--\r\n", "more_body": False}

    messages = []

    async def send(message):
        messages.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/api/v1/images",
        "raw_path": b"/api/v1/images",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"content-type", b"multipart/form-data; boundary=" + boundary),
            (b"authorization", f"Bearer {annotator.token}".encode()),
            (b"host", b"test"),
        ],
        "client": ("127.0.0.1", 1234),
        "server": ("test", 80),
        "state": {},
    }

    asyncio.run(app(scope, receive, send))
    start = next(m for m in messages if m["type"] == "http.response.start")
    assert start["status"] == 413
    assert sent["chunks"] <= limit // len(chunk) + 3  # stopped just past the limit, not at the end


def test_start_up_creates_the_schema_on_an_empty_database(tmp_path):
    settings = Settings(env="test", data_dir=tmp_path / "fresh")
    app = create_app(settings)
    with TestClient(app) as c:
        assert c.get("/health").json()["schema_revision"] == migrate.head_revision()
    assert migrate.current_revision(app.state.engine) == migrate.head_revision()
    app.state.engine.dispose()


def test_json_bodies_over_one_mib_are_refused(client, annotator):
    big = b'{"labels": [' + b'{"row": 0, "col": 0, "label": "healthy"},' * 30000 + b"]}"
    r = client.put(
        "/api/v1/images/1/labels",
        content=big,
        headers={**annotator.headers, "content-type": "application/json"},
    )
    assert r.status_code == 413 and "1 MiB" in r.json()["detail"]

    def chunks():  # no Content-Length: counted as it streams
        yield b'{"labels": ['
        for _ in range(400):
            yield b'{"row": 0, "col": 0, "label": "healthy"},' * 100
        yield b"]}"

    r = client.put(
        "/api/v1/images/1/labels",
        content=chunks(),
        headers={**annotator.headers, "content-type": "application/json"},
    )
    assert r.status_code == 413
