"""Accounts and access: password and token sign-in, the browser cookie with CSRF, every role rule."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from app.core import security
from app.db.models import ApiToken
from tests.app.conftest import PASSWORD

PUBLIC = {
    ("POST", "/api/v1/auth/token"),
    ("POST", "/api/v1/auth/login"),
    ("GET", "/health"),
    ("GET", "/docs"),
    ("GET", "/docs/init.js"),
}


def _concrete(path: str) -> str:
    for name, value in {
        "{image_id}": "1",
        "{row}": "0",
        "{col}": "0",
        "{version}": "1",
        "{prediction_id}": "1",
        "{user_id}": "1",
        "{token_id}": "1",
        "{job_id}": "1",
        "{id}": "1",
    }.items():
        path = path.replace(name, value)
    return path


def test_every_endpoint_but_health_and_login_needs_credentials(app, client):
    checked = 0
    for path, operations in app.openapi()["paths"].items():
        for method in (m.upper() for m in operations):
            if (method, path) in PUBLIC or not (path.startswith("/api/") or path == "/metrics"):
                continue
            r = client.request(method, _concrete(path))
            assert r.status_code == 401, f"{method} {path} answered {r.status_code} without credentials"
            assert r.headers["www-authenticate"] == "Bearer"
            assert isinstance(r.json()["detail"], str)
            checked += 1
    assert checked >= 20


# (method, path, json body, roles allowed). Wrong roles must get 403 before anything happens.
ROLE_RULES = [
    ("GET", "/api/v1/users", None, {"admin"}),
    ("POST", "/api/v1/users", {"username": "x1", "password": "longenough", "role": "viewer"}, {"admin"}),
    ("PATCH", "/api/v1/users/1", {"role": "viewer"}, {"admin"}),
    ("GET", "/api/v1/tokens", None, {"admin"}),
    ("POST", "/api/v1/tokens", {"name": "ci"}, {"admin"}),
    ("DELETE", "/api/v1/tokens/999", None, {"admin"}),
    ("POST", "/api/v1/models/1/activate", None, {"admin"}),
    ("DELETE", "/api/v1/images/999", None, {"admin"}),
    ("PUT", "/api/v1/images/999/labels/0/0", {"label": "healthy"}, {"admin", "annotator"}),
    (
        "PUT",
        "/api/v1/images/999/labels",
        {"labels": [{"row": 0, "col": 0, "label": "healthy"}]},
        {"admin", "annotator"},
    ),
    ("POST", "/api/v1/images", None, {"admin", "annotator"}),
]


@pytest.mark.parametrize(
    "method,path,body,allowed", ROLE_RULES, ids=[f"{m} {p}" for m, p, _, _ in ROLE_RULES]
)
@pytest.mark.parametrize("role", ["admin", "annotator", "viewer"])
def test_role_rules(client, make_account, role, method, path, body, allowed):
    account = make_account(role)
    r = client.request(method, path, json=body, headers=account.headers)
    if role in allowed:
        assert r.status_code != 403, r.text
    else:
        assert r.status_code == 403, r.text
        assert role in r.json()["detail"]


@pytest.mark.parametrize("role", ["admin", "annotator", "viewer"])
def test_every_role_can_read_and_predict(client, make_account, role):
    account = make_account(role)
    for path in ("/api/v1/images", "/api/v1/models", "/api/v1/auth/me", "/metrics"):
        assert client.get(path, headers=account.headers).status_code == 200, path
    r = client.post("/api/v1/predict", json={"image_id": 1}, headers=account.headers)
    assert r.status_code == 409  # allowed, but no model is active yet


def test_viewer_cannot_store_an_image_through_predict(client, viewer, jpeg_bytes):
    r = client.post(
        "/api/v1/predict?store=true",
        files={"file": ("a.jpg", jpeg_bytes, "image/jpeg")},
        headers=viewer.headers,
    )
    assert r.status_code == 403


def test_oauth2_password_flow(client, annotator):
    r = client.post("/api/v1/auth/token", data={"username": "anna", "password": PASSWORD})
    assert r.status_code == 200, r.text
    token = r.json()["access_token"]
    assert r.json()["token_type"] == "bearer"
    me = client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert me.json()["username"] == "anna" and me.json()["role"] == "annotator"
    bad = client.post("/api/v1/auth/token", data={"username": "anna", "password": "wrong password"})
    assert bad.status_code == 401 and "password" in bad.json()["detail"]
    nobody = client.post("/api/v1/auth/token", data={"username": "nobody", "password": PASSWORD})
    assert nobody.status_code == 401


def test_tokens_are_stored_hashed(client, db, annotator):
    rows = db.scalars(select(ApiToken)).all()
    assert rows and all(r.token_hash != annotator.token and len(r.token_hash) == 64 for r in rows)
    assert any(r.token_hash == security.hash_token(annotator.token) for r in rows)


def test_admin_issues_and_revokes_api_tokens(client, admin, annotator):
    r = client.post("/api/v1/tokens", json={"name": "scanner", "username": "anna"}, headers=admin.headers)
    assert r.status_code == 201, r.text
    secret, token_id = r.json()["token"], r.json()["id"]
    headers = {"Authorization": f"Bearer {secret}"}
    assert client.get("/api/v1/auth/me", headers=headers).json()["username"] == "anna"
    listed = client.get("/api/v1/tokens", headers=admin.headers).json()
    assert any(t["id"] == token_id and "token" not in t for t in listed)
    assert client.delete(f"/api/v1/tokens/{token_id}", headers=admin.headers).status_code == 200
    r = client.get("/api/v1/auth/me", headers=headers)
    assert r.status_code == 401 and "revoked" in r.json()["detail"]


def test_garbage_bearer_token_is_401(client):
    r = client.get("/api/v1/images", headers={"Authorization": "Bearer ps_not-a-real-token"})
    assert r.status_code == 401


def test_disabling_a_user_ends_their_access(client, admin, annotator):
    r = client.patch(f"/api/v1/users/{annotator.user.id}", json={"is_active": False}, headers=admin.headers)
    assert r.status_code == 200, r.text
    assert client.get("/api/v1/images", headers=annotator.headers).status_code == 401
    r = client.patch(f"/api/v1/users/{admin.user.id}", json={"is_active": False}, headers=admin.headers)
    assert r.status_code == 422  # never lock yourself out


def test_admin_creates_users_and_duplicates_conflict(client, admin):
    body = {"username": "newbie", "password": "long enough pw", "role": "annotator"}
    assert client.post("/api/v1/users", json=body, headers=admin.headers).status_code == 201
    r = client.post("/api/v1/users", json=body, headers=admin.headers)
    assert r.status_code == 409 and "exists" in r.json()["detail"]
    assert (
        client.post(
            "/api/v1/auth/token", data={"username": "newbie", "password": "long enough pw"}
        ).status_code
        == 200
    )


def _login(client, name="anna"):
    r = client.post("/api/v1/auth/login", json={"username": name, "password": PASSWORD})
    assert r.status_code == 200, r.text
    return r


def test_browser_login_sets_httponly_cookie_and_csrf(client, annotator):
    r = _login(client)
    cookies = r.headers.get_list("set-cookie")
    session_cookie = next(c for c in cookies if c.startswith(security.SESSION_COOKIE + "="))
    csrf_cookie = next(c for c in cookies if c.startswith(security.CSRF_COOKIE + "="))
    assert "HttpOnly" in session_cookie and "samesite=lax" in session_cookie.lower()
    assert "HttpOnly" not in csrf_cookie  # JavaScript must read it
    assert "Secure" not in session_cookie  # Settings.cookie_secure is off in this test
    assert r.json()["csrf_token"] and r.json()["user"]["username"] == "anna"
    assert client.get("/api/v1/auth/me").json()["username"] == "anna"


def test_secure_cookie_flag_follows_settings(client, app, annotator):
    app.state.settings = app.state.settings.model_copy(update={"cookie_secure": True})
    cookies = _login(client).headers.get_list("set-cookie")
    assert all("Secure" in c for c in cookies)


def test_form_login_works_too(client, annotator):
    r = client.post("/api/v1/auth/login", data={"username": "anna", "password": PASSWORD})
    assert r.status_code == 200


def test_cookie_requests_that_change_state_need_the_csrf_header(client, annotator, jpeg_bytes):
    csrf = _login(client).json()["csrf_token"]
    no = client.post("/api/v1/images", files={"files": ("a.jpg", jpeg_bytes, "image/jpeg")})
    assert no.status_code == 403 and "CSRF" in no.json()["detail"]
    wrong = client.post(
        "/api/v1/images",
        files={"files": ("a.jpg", jpeg_bytes, "image/jpeg")},
        headers={security.CSRF_HEADER: "0" * 64},
    )
    assert wrong.status_code == 403
    ok = client.post(
        "/api/v1/images",
        files={"files": ("a.jpg", jpeg_bytes, "image/jpeg")},
        headers={security.CSRF_HEADER: csrf},
    )
    assert ok.status_code == 201, ok.text
    assert client.get("/api/v1/images").status_code == 200  # reads need no CSRF token


def test_logout_ends_the_session(client, annotator):
    csrf = _login(client).json()["csrf_token"]
    assert client.post("/api/v1/auth/logout").status_code == 403  # logout is state-changing: CSRF too
    r = client.post("/api/v1/auth/logout", headers={security.CSRF_HEADER: csrf})
    assert r.status_code == 200
    client.cookies.clear()
    # the old cookie value no longer works even if replayed
    stale = r.request.headers.get("cookie", "")
    assert client.get("/api/v1/auth/me", headers={"cookie": stale}).status_code == 401


def test_bad_login_is_401_with_a_sentence(client, annotator):
    r = client.post("/api/v1/auth/login", json={"username": "anna", "password": "nope nope"})
    assert r.status_code == 401 and "password" in r.json()["detail"]
    assert security.SESSION_COOKIE not in r.headers.get("set-cookie", "")


def test_expired_tokens_and_sessions_are_refused(client, db, annotator):
    from datetime import timedelta

    from app.services import users

    for kind in ("access", "api"):
        expired = users.issue_token(db, annotator.user, kind, ttl=timedelta(seconds=-1))
        db.commit()
        r = client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {expired.token}"})
        assert r.status_code == 401 and "expired" in r.json()["detail"]
    session = users.issue_token(db, annotator.user, "session", ttl=timedelta(seconds=-1))
    db.commit()
    r = client.get("/api/v1/auth/me", headers={"cookie": f"{security.SESSION_COOKIE}={session.token}"})
    assert r.status_code == 401 and "sign in again" in r.json()["detail"]
    # a session secret is not a bearer token, and the other way round
    live = users.issue_token(db, annotator.user, "session", ttl=timedelta(hours=1))
    db.commit()
    assert client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {live.token}"}).status_code == 401
    cookie = {"cookie": f"{security.SESSION_COOKIE}={annotator.token}"}
    assert client.get("/api/v1/auth/me", headers=cookie).status_code == 401


@pytest.mark.parametrize(
    "body,ctype",
    [
        (b"{not json", "application/json"),
        (b'{"username": 1}', "application/json"),
        (b"[]", "application/json"),
    ],
)
def test_malformed_login_is_422_not_500(client, body, ctype):
    r = client.post("/api/v1/auth/login", content=body, headers={"content-type": ctype})
    assert r.status_code == 422 and "password" in r.json()["detail"]
