"""Browser pages: server-rendered shells (Jinja2) whose data come from the JSON API via plain JS.

A page route only decides who may see the page and hands the template what it needs to boot
(the signed-in user, the CSRF token for the API, ids from the URL); everything else is fetched by
the page's script from /api/v1, so the browser and REST clients exercise the same code. Pages send
no inline script or style, so the Content-Security-Policy can forbid both.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from sqlalchemy.orm import Session

from app.core import security
from app.core.config import get_settings
from app.db.models import User
from app.services import users

FRONTEND_DIR = Path(__file__).resolve().parents[2] / "frontend"
STATIC_DIR = FRONTEND_DIR / "static"
TEMPLATES_DIR = FRONTEND_DIR / "templates"

NAV = (
    ("/images", "Images", "images"),
    ("/suggestions", "Label next", "suggestions"),
    ("/predict", "Prediction", "predict"),
    ("/training", "Training", "training"),
    ("/models", "Models", "models"),
)

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=str(TEMPLATES_DIR))


@lru_cache(maxsize=256)
def _static_version(path: str, mtime_ns: int) -> str:
    return hashlib.sha256((STATIC_DIR / path).read_bytes()).hexdigest()[:10]


def static_url(path: str) -> str:
    """/static/<path>?v=<content hash>: browsers may cache forever, a changed file gets a new URL."""
    file = STATIC_DIR / path
    if not file.is_file():
        return f"/static/{path}"
    return f"/static/{path}?v={_static_version(path, file.stat().st_mtime_ns)}"


templates.env.globals["static"] = static_url


def _db(request: Request):
    session = request.app.state.session_factory(write=False)
    try:
        yield session
    finally:
        session.close()


DbDep = Annotated[Session, Depends(_db)]


def _session_user(request: Request, db: Session) -> tuple[User | None, str]:
    """The user of the browser session cookie (None when absent or dead) and its CSRF token."""
    secret = request.cookies.get(security.SESSION_COOKIE)
    if not secret:
        return None, ""
    row = users.resolve_token(db, secret, ("session",))
    if row is None:
        return None, ""
    return row.user, security.csrf_token_for(secret, get_settings().secret_key)


def _login_redirect(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)


def _render(request: Request, db: Session, template: str, page: str, **context) -> Response:
    user, csrf = _session_user(request, db)
    if user is None:
        return _login_redirect(request)
    return templates.TemplateResponse(
        request,
        template,
        {"user": user, "csrf_token": csrf, "page": page, "nav": NAV, **context},
        headers={"Cache-Control": "no-store"},
    )


@router.get("/", response_class=HTMLResponse)
def home(request: Request, db: DbDep) -> Response:
    user, _ = _session_user(request, db)
    return RedirectResponse("/images" if user else "/login", status_code=303)


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, db: DbDep, next: str = "/images") -> Response:
    if not next.startswith("/") or next.startswith("//"):
        next = "/images"
    user, _ = _session_user(request, db)
    if user is not None:
        return RedirectResponse(next, status_code=303)
    return templates.TemplateResponse(
        request,
        "login.html",
        {"user": None, "csrf_token": "", "page": "login", "nav": NAV, "next_url": next},
        headers={"Cache-Control": "no-store"},
    )


@router.get("/about", response_class=HTMLResponse)
def about_page(request: Request, db: DbDep) -> Response:
    user, csrf = _session_user(request, db)
    return templates.TemplateResponse(
        request,
        "about.html",
        {"user": user, "csrf_token": csrf, "page": "about", "nav": NAV},
    )


@router.get("/images", response_class=HTMLResponse)
def images_page(request: Request, db: DbDep) -> Response:
    return _render(request, db, "images.html", "images")


@router.get("/images/{image_id}/label", response_class=HTMLResponse)
def label_page(
    request: Request,
    db: DbDep,
    image_id: int,
    row: Annotated[int | None, Query(ge=0, le=7)] = None,
    col: Annotated[int | None, Query(ge=0, le=7)] = None,
) -> Response:
    return _render(
        request,
        db,
        "label.html",
        "images",
        image_id=image_id,
        row="" if row is None else row,
        col="" if col is None else col,
    )


@router.get("/suggestions", response_class=HTMLResponse)
def suggestions_page(request: Request, db: DbDep) -> Response:
    return _render(request, db, "suggestions.html", "suggestions")


@router.get("/predict", response_class=HTMLResponse)
def predict_page(
    request: Request, db: DbDep, image_id: Annotated[int | None, Query(ge=1)] = None
) -> Response:
    return _render(request, db, "predict.html", "predict", image_id=image_id)


@router.get("/training", response_class=HTMLResponse)
def training_page(request: Request, db: DbDep) -> Response:
    return _render(request, db, "training.html", "training", default_preset=get_settings().default_preset)


@router.get("/models", response_class=HTMLResponse)
def models_page(request: Request, db: DbDep) -> Response:
    return _render(request, db, "models.html", "models")
