"""Page routes without a browser: who gets which page, what the shell hands the scripts, and that the
templates contain no inline script or style and reference only static files that exist."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.core import security
from app.core.config import Settings
from app.db import migrate
from app.db.session import make_engine, session_scope
from app.main import create_app
from app.services import users
from app.web.pages import NAV, STATIC_DIR, TEMPLATES_DIR

PASSWORD = "page-tests-password"
PAGES = ["/images", "/images/1/label", "/suggestions", "/predict", "/training", "/models"]


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pages")
    engine = make_engine(f"sqlite:///{tmp / 'db.sqlite3'}")
    migrate.upgrade(engine)
    with session_scope(engine) as s:
        users.create_user(s, "ada", PASSWORD, "admin")
        users.create_user(s, "vic", PASSWORD, "viewer")
    app = create_app(Settings(env="test", data_dir=tmp / "data"), engine=engine)
    with TestClient(app) as c:
        yield c
    engine.dispose()


def sign_in(client: TestClient, name: str) -> str:
    client.cookies.clear()
    r = client.post("/api/v1/auth/login", json={"username": name, "password": PASSWORD})
    assert r.status_code == 200, r.text
    return r.json()["csrf_token"]


@pytest.mark.parametrize("path", PAGES)
def test_pages_send_signed_out_visitors_to_sign_in_and_back(client, path):
    client.cookies.clear()
    r = client.get(path, follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"].startswith("/login?next=")
    assert re.sub("%2F", "/", r.headers["location"].split("next=")[1]) == path


def test_login_page_and_open_redirects(client):
    client.cookies.clear()
    r = client.get("/login?next=//evil.example/x")
    assert r.status_code == 200
    assert 'data-next="/images"' in r.text  # an off-site "next" is replaced, never followed
    assert "script-src 'self'" in r.headers["content-security-policy"]
    sign_in(client, "ada")
    r = client.get("/login?next=/models", follow_redirects=False)
    assert (r.status_code, r.headers["location"]) == (303, "/models")


@pytest.mark.parametrize("path", PAGES)
def test_signed_in_pages_carry_the_csrf_token_and_the_user(client, path):
    csrf = sign_in(client, "ada")
    r = client.get(path)
    assert r.status_code == 200
    assert r.headers["cache-control"] == "no-store"
    assert f'<meta name="csrf-token" content="{csrf}">' in r.text
    assert csrf == client.cookies.get(security.CSRF_COOKIE)
    assert 'data-user="ada" data-role="admin"' in r.text
    assert all(f'href="{href}"' in r.text for href, _, _ in NAV)
    assert "IDRiD" in r.text and "CC BY 4.0" in r.text


def test_admin_only_controls_are_not_rendered_for_a_viewer(client):
    sign_in(client, "vic")
    assert 'id="start-form"' not in client.get("/training").text
    assert 'id="dropzone"' not in client.get("/images").text
    assert 'data-can-label="false"' in client.get("/images/1/label").text
    sign_in(client, "ada")
    assert 'id="start-form"' in client.get("/training").text
    assert 'data-can-label="true"' in client.get("/images/1/label").text


def test_label_page_rejects_cells_outside_the_grid(client):
    sign_in(client, "ada")
    assert client.get("/images/1/label?row=8&col=0").status_code == 422
    assert 'data-row="3" data-col="4"' in client.get("/images/1/label?row=3&col=4").text


def templates() -> list[Path]:
    return sorted(TEMPLATES_DIR.glob("*.html"))


@pytest.mark.parametrize("template", templates(), ids=lambda p: p.name)
def test_templates_have_no_inline_script_or_style(template):
    text = template.read_text()
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", text), "inline <script> block"
    assert not re.search(r"<style\b", text), "inline <style> block"
    assert not re.search(r"\sstyle\s*=", text), "style attribute"
    assert not re.search(r"\son[a-z]+\s*=", text), "inline event handler"
    assert not re.search(r"https?://(?!creativecommons\.org/licenses/by/4\.0/)", text), "external resource"


def test_every_static_reference_exists_and_is_served(client):
    referenced = set()
    for t in templates():
        referenced |= set(re.findall(r"static\('([^']+)'\)", t.read_text()))
    for js in (STATIC_DIR / "js").glob("*.js"):  # ES module imports between scripts
        referenced |= {f"js/{m}" for m in re.findall(r'from "\./([^"]+)"', js.read_text())}
    assert {"css/app.css", "js/common.js", "js/api.js", "js/label.js"} <= referenced
    for rel in sorted(referenced):
        assert (STATIC_DIR / rel).is_file(), rel
        r = client.get(f"/static/{rel}")
        assert r.status_code == 200, rel
        kind = {"js": "javascript", "css": "text/css", "svg": "image/svg+xml"}[rel.rsplit(".", 1)[1]]
        assert kind in r.headers["content-type"], (rel, r.headers["content-type"])
