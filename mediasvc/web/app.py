"""The console application: FastAPI (on Starlette) served by uvicorn, in a child of the service.

Why this stack: FastAPI validates every request against typed declarations and generates the
OpenAPI description from the same declarations (no second, hand-kept copy to drift); it is
Starlette underneath, whose Jinja2 templates, signed-cookie sessions and static files serve the
HTML pages without a build step; uvicorn is the ASGI server both are made for, with TLS from
the standard library's ssl. All three are widely used and maintained, and pure Python here
(uvicorn without its optional C extras).

Logging: uvicorn's access log is off (it logs paths and query strings). This module logs each
request at INFO by its route template (``GET /study/{key} 200``), never by the path the
client sent; the full path and query string only at DEBUG.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.middleware.sessions import SessionMiddleware

from mediasvc.durable import atomic_write
from mediasvc.service.config import ServiceConfig
from mediasvc.web import api, pages
from mediasvc.web.actions import Conflict, Invalid
from mediasvc.web.auth import Users, first_admin, secret_key
from mediasvc.web.data import NotFound, open_queue

log = logging.getLogger("mediasvc.web")
HERE = Path(__file__).parent
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",  # no-referrer would make Origin "null"
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
                               "frame-ancestors 'none'; form-action 'self'",
}


def create_app(cfg: ServiceConfig) -> FastAPI:
    app = FastAPI(title="mediasvc console", version="1", openapi_url="/api/v1/openapi.json",
                  docs_url=None, redoc_url=None,
                  description="Jobs, drop folders, burners, printers, the local store and "
                  "its minimum data set. Reads need a viewer, actions an operator (HTTP Basic "
                  "with a user of the console, or the session cookie of /login with its CSRF "
                  "token in X-CSRF-Token).")
    app.state.cfg = cfg
    app.state.users = Users(cfg.web.users)
    app.state.queue = open_queue(cfg)
    app.include_router(api.router)
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.add_middleware(SessionMiddleware, secret_key=secret_key(cfg.run),
                       session_cookie="mediasvc_session", same_site="strict",
                       https_only=cfg.web.tls, max_age=int(cfg.web.session_hours * 3600))
    app.middleware("http")(_log_and_secure)
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(Invalid, _invalid)  # type: ignore[arg-type]
    app.add_exception_handler(NotFound, _error(404))
    app.add_exception_handler(Conflict, _error(409))
    app.add_exception_handler(HTTPException, _http_error)  # type: ignore[arg-type]
    return app


async def _log_and_secure(request: Request,
                          call_next: Callable[[Request], Awaitable[Response]]) -> Response:
    t0 = time.perf_counter()
    response = await call_next(request)
    response.headers.update(SECURITY_HEADERS)
    if not request.url.path.startswith("/static/"):
        response.headers.setdefault("Cache-Control", "no-store")  # pages hold patient data
    route = request.scope.get("route")
    template = getattr(route, "path", None) or "(no route)"
    ms = (time.perf_counter() - t0) * 1000
    log.info("%s %s %d %.1f ms", request.method, template, response.status_code, ms)
    log.debug("%s %s?%s", request.method, request.url.path, request.url.query)
    return response


def _is_api(request: Request) -> bool:
    return request.url.path.startswith("/api/")


def _field(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc]
    return ".".join(parts[1:]) if len(parts) > 1 and parts[0] in ("body", "query", "path") \
        else ".".join(parts)


async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
    errors = [{"field": _field(e.get("loc", ())), "message": str(e.get("msg", ""))}
              for e in exc.errors()]
    first = errors[0] if errors else {"field": "", "message": "invalid request"}
    if not _is_api(request):
        return pages.error_page(request, 400, f"{first['field']}: {first['message']}")
    return JSONResponse({"error": f"{first['field']}: {first['message']}",
                         "field": first["field"], "errors": errors}, status_code=400)


async def _invalid(request: Request, exc: Invalid) -> Response:
    if not _is_api(request):
        return pages.error_page(request, 400, str(exc))
    return JSONResponse({"error": str(exc), "field": exc.field}, status_code=400)


def _error(status: int) -> Callable[[Request, Exception], Awaitable[Response]]:
    async def handler(request: Request, exc: Exception) -> Response:
        if not _is_api(request):
            return pages.error_page(request, status, str(exc))
        return JSONResponse({"error": str(exc)}, status_code=status)
    return handler


async def _http_error(request: Request, exc: HTTPException) -> Response:
    if not _is_api(request):
        if exc.status_code == 401:
            return RedirectResponse(f"/login?next={request.url.path}", status_code=303)
        return pages.error_page(request, exc.status_code, str(exc.detail))
    return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code,
                        headers=exc.headers)


# -- the server -------------------------------------------------------------------------------

def serve(cfg: ServiceConfig) -> int:
    """Bind, say where, and serve until SIGTERM (uvicorn's own signal handling)."""
    import uvicorn

    note = first_admin(cfg.web.users, cfg.run)
    app = create_app(cfg)
    family = socket.AF_INET6 if ":" in cfg.web.bind else socket.AF_INET
    # IPPROTO_TCP named: asyncio sets TCP_NODELAY only on sockets that say so, and without it
    # a response written in two parts waits 40 ms for the client's delayed ACK (measured).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((cfg.web.bind, cfg.web.port))
    except OSError as exc:
        log.error("web console: cannot listen on %s port %d: %s", cfg.web.bind, cfg.web.port,
                  exc.strerror)
        return 1
    port = sock.getsockname()[1]
    url = cfg.web.url(port)
    atomic_write(cfg.run / "console.json", json.dumps(
        {"url": url, "port": port, "pid": os.getpid()}).encode())
    log.info("web console at %s", url)
    if note is not None:
        log.info("web console: first start; sign in as admin with the password in %s "
                 "(then change it: mediasvc users passwd admin)", note)
    config = uvicorn.Config(app, log_config=None, access_log=False, server_header=False,
                            ssl_certfile=str(cfg.web.tls_cert) if cfg.web.tls_cert else None,
                            ssl_keyfile=str(cfg.web.tls_key) if cfg.web.tls_key else None,
                            lifespan="off", timeout_graceful_shutdown=5)
    uvicorn.Server(config).run(sockets=[sock])
    return 0
