"""Operational endpoints outside /api/v1: /health (no auth), /metrics, and the offline API docs."""

from __future__ import annotations

from html import escape

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse
from sqlalchemy import text

from app.api.deps import CurrentUser, SessionDep, SettingsDep
from app.services import metrics, models

router = APIRouter()


def _queue_status(redis_url: str | None) -> str:
    if not redis_url:
        return "not configured (local worker)"
    try:
        import redis

        redis.Redis.from_url(redis_url, socket_connect_timeout=0.5, socket_timeout=0.5).ping()
        return "ok"
    except Exception as exc:
        return f"unreachable ({exc.__class__.__name__})"


@router.get("/health", tags=["system"])
def health(session: SessionDep, settings: SettingsDep) -> JSONResponse:
    """Database reachable, schema revision, active model (and whether it loads), queue reachable."""
    body: dict = {
        "status": "ok",
        "database": "ok",
        "schema_revision": None,
        "active_model": None,
        "model_error": None,
        "queue": _queue_status(settings.redis_url),
    }
    try:
        session.execute(text("select 1"))
        body["schema_revision"] = session.execute(text("select version_num from alembic_version")).scalar()
        mv = models.active_version(session)
        body["active_model"] = mv.version if mv else None
        body["model_error"] = models.check_active_model(session)
    except Exception as exc:
        session.rollback()
        body.update(status="degraded", database=f"unreachable ({exc.__class__.__name__})")
        return JSONResponse(body, status_code=503)
    if body["model_error"] or body["queue"].startswith("unreachable"):
        body["status"] = "degraded"
    return JSONResponse(body)


@router.get("/metrics", tags=["system"], response_class=Response)
def prometheus_metrics(_: CurrentUser) -> Response:
    """Prometheus text format: request counts and latencies, predictions, label writes, batching."""
    return Response(metrics.exposition(), media_type="text/plain; version=0.0.4; charset=utf-8")


# Swagger UI served from the installed swagger-ui-bundle package: no CDN (clinics run offline) and
# no inline script (the Content-Security-Policy forbids them), hence the separate init script.
_DOCS_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title} - API</title>
<link rel="stylesheet" href="/docs-assets/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="/docs-assets/swagger-ui-bundle.js"></script>
<script src="/docs/init.js"></script></body></html>"""

_DOCS_INIT = """window.addEventListener('load', function () {
  window.ui = SwaggerUIBundle({url: '/openapi.json', dom_id: '#swagger-ui', deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis], layout: 'BaseLayout'});
});
"""


@router.get("/docs", include_in_schema=False)
def docs(request: Request) -> HTMLResponse:
    return HTMLResponse(_DOCS_HTML.format(title=escape(request.app.title)))


@router.get("/docs/init.js", include_in_schema=False)
def docs_init() -> Response:
    return Response(_DOCS_INIT, media_type="text/javascript")
