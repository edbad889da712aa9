"""The FastAPI application: ``create_app(settings)`` wires settings, database, storage, routes.

Start-up creates the schema through Alembic when the database is empty (a lagging schema is
reported, not migrated behind the operator's back) and checks that the active model loads.
Every response carries security headers, including a Content-Security-Policy that allows no
inline script; every error is JSON with a sentence in ``detail``.
"""

from __future__ import annotations

import logging
import time
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy import Engine
from sqlalchemy.orm import Session
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.core import scheduling
from app.core.config import Settings, get_settings
from app.db import migrate
from app.db.session import make_engine, write_engine
from app.services import metrics, models
from app.services.batching import Batcher
from app.services.errors import ServiceError
from app.services.storage import Storage

log = logging.getLogger("patchscreen")
ROOT = Path(__file__).resolve().parents[1]

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; "
    "frame-ancestors 'none'"
)


class SecurityAndMetricsMiddleware:
    """Pure ASGI (no per-request task switching): security headers and request metrics."""

    def __init__(self, app, *, hsts: bool) -> None:
        self.app = app
        headers = [
            (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
            (b"x-content-type-options", b"nosniff"),
            (b"x-frame-options", b"DENY"),
            (b"referrer-policy", b"same-origin"),
            (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
            (b"cross-origin-opener-policy", b"same-origin"),
        ]
        if hsts:
            headers.append((b"strict-transport-security", b"max-age=31536000; includeSubDomains"))
        self.headers = headers

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = {"code": 500}

        async def send_wrapper(message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                message.setdefault("headers", [])
                present = {k.lower() for k, _ in message["headers"]}
                message["headers"] = list(message["headers"]) + [
                    h for h in self.headers if h[0] not in present
                ]
            await send(message)

        try:
            if scope["method"] in ("POST", "PUT", "PATCH", "DELETE"):
                receive = await _buffer_small_body(scope, receive)
                if receive is None:
                    await JSONResponse({"detail": _BODY_TOO_LARGE}, status_code=413)(
                        scope, receive, send_wrapper
                    )
                    return
            await self.app(scope, receive, send_wrapper)
        finally:
            path = _route_template(scope)
            method = scope["method"]
            metrics.HTTP_REQUESTS.labels(method, path, str(status["code"])).inc()
            metrics.HTTP_LATENCY.labels(method, path).observe(time.perf_counter() - start)


MAX_NON_UPLOAD_BODY = 1024 * 1024
_BODY_TOO_LARGE = "The request body is larger than 1 MiB; only image uploads (multipart) may be bigger."


async def _buffer_small_body(scope, receive):
    """Read a non-multipart body (JSON, forms: small by nature) up to 1 MiB, as it arrives.

    Returns a ``receive`` that replays it, or None when it is too large. Multipart uploads are
    not touched: they stream to their own per-file limit (app/api/uploads.py).
    """
    headers = dict(scope.get("headers") or [])
    if headers.get(b"content-type", b"").lower().startswith(b"multipart/form-data"):
        return receive
    declared = headers.get(b"content-length", b"")
    if declared.isdigit() and int(declared) > MAX_NON_UPLOAD_BODY:
        return None
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        body += message.get("body", b"")
        if len(body) > MAX_NON_UPLOAD_BODY:
            return None
        if not message.get("more_body", False):
            break
    replayed = False

    async def replay():
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": bytes(body), "more_body": False}
        return await receive()

    return replay


def _route_template(scope) -> str:
    """The matched route's template (``/api/v1/images/{image_id}``), so metrics have few labels.

    Rebuilt from the path and its parameters: with nested routers, ``scope["route"].path`` is
    relative to the innermost router.
    """
    if scope.get("route") is None:
        for prefix in ("/static", "/docs-assets"):
            if scope["path"].startswith(prefix + "/"):
                return prefix
        return "unmatched"
    params = list((scope.get("path_params") or {}).items())
    parts = scope["path"].split("/")
    for i, seg in enumerate(parts):
        if params and seg == str(params[0][1]):
            parts[i] = "{" + params.pop(0)[0] + "}"
    return "/".join(parts)


def _error(status: int, detail: str, headers: dict | None = None, **extra) -> JSONResponse:
    if status == 401:
        headers = {**(headers or {}), "WWW-Authenticate": "Bearer"}
    return JSONResponse({"detail": detail, **extra}, status_code=status, headers=headers)


def _validation_sentence(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path"))
        parts.append(f"{where or 'request'}: {err.get('msg', 'invalid')}")
    return "Invalid request. " + "; ".join(parts) + "."


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ServiceError)
    async def _service_error(_: Request, exc: ServiceError) -> JSONResponse:
        return _error(exc.status_code, exc.message, **exc.extra)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")} for e in exc.errors()
        ]
        return _error(422, _validation_sentence(exc), errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 404 and detail == "Not Found":
            detail = "There is nothing at this address."
        elif exc.status_code == 405:
            detail = "This method is not allowed at this address."
        return _error(exc.status_code, detail, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return _error(500, "Something went wrong on the server; the error was logged. Please try again.")


def _session_factory(engine: Engine):
    writer = write_engine(engine)

    def factory(write: bool = False) -> Session:
        return Session(bind=writer if write else engine, expire_on_commit=False)

    return factory


def create_app(settings: Settings | None = None, *, engine: Engine | None = None) -> FastAPI:
    settings = settings or get_settings()
    engine = engine or make_engine(settings.resolved_database_url)
    kept = scheduling.keep_freed_memory()  # before the model and its threads exist

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if migrate.upgrade_if_needed(engine):
            log.info("created the database schema (revision %s)", migrate.head_revision())
        elif migrate.current_revision(engine) != migrate.head_revision():
            log.warning(
                "database schema is at %s, the code expects %s: run `patchscreen db upgrade`",
                migrate.current_revision(engine),
                migrate.head_revision(),
            )
        with app.state.session_factory() as session:
            problem = models.check_active_model(session)
        if problem:
            log.error(
                "the active model cannot be loaded (%s); /predict answers 503 until an admin "
                "activates another version",
                problem,
            )
        # The forward-pass thread first, at normal priority; then this (event loop) thread and
        # every worker thread it starts from now on yield the cores to it.
        app.state.batcher.start()
        app.state.request_cpu_priority = scheduling.lower_current_thread(settings.request_cpu_priority)
        scheduling.set_switch_interval(settings.switch_interval_ms)
        frozen = scheduling.freeze_startup_heap()  # last: everything start-up made is now in place
        log.info(
            "request threads at %s CPU priority, interpreter switch interval %s ms, "
            "freed memory kept for reuse: %s, %d start-up objects frozen out of garbage collection",
            app.state.request_cpu_priority,
            settings.switch_interval_ms,
            "yes" if kept else "no (not glibc)",
            frozen,
        )
        yield
        app.state.batcher.close()

    app = FastAPI(
        title="PatchScreen",
        version="0.1.0",
        description="Diabetic-retinopathy screening from a few labeled patches.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.session_factory = _session_factory(engine)
    app.state.storage = Storage(settings.storage_dir)
    app.state.batcher = Batcher(max_batch=settings.predict_max_batch, on_batch=metrics.observe_batch)

    install_error_handlers(app)
    app.add_middleware(SecurityAndMetricsMiddleware, hsts=settings.cookie_secure)

    from app.api.router import api_router
    from app.api.routes import system
    from app.web import pages

    app.include_router(api_router, prefix="/api/v1")
    app.include_router(system.router)
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=ROOT / "frontend" / "static", check_dir=False), name="static")
    try:
        import swagger_ui_bundle

        app.mount(
            "/docs-assets", StaticFiles(directory=swagger_ui_bundle.swagger_ui_path), name="docs-assets"
        )
    except ImportError:  # pragma: no cover - docs assets are a declared dependency
        log.warning("swagger-ui-bundle is not installed: /docs will not load")
    return app


def app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory app.main:app_from_env`` (what `patchscreen serve` runs)."""
    return create_app(get_settings())
