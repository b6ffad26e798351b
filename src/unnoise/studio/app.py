"""The studio's HTTP layer (FastAPI, the `serve` extra): the page, its static files, and the JSON API over
`service.Studio`.

Security: with a token every request must carry it (an `Authorization: Bearer` or `X-Unnoise-Token` header,
the `unnoise_token` cookie, or `?token=` once, which sets the cookie), compared in constant time. Without a
token the server must be bound to a loopback address (`check_bind`) and answers only requests whose Host is
a loopback name (no DNS rebinding). POSTs must be JSON (no cross-site form posts) and a cross-origin Origin is
refused. Request bodies are limited in bytes; every error is JSON {"error": one line} with a 4xx/5xx status.
"""
from __future__ import annotations

import asyncio
import hmac
import json
import logging
from contextlib import asynccontextmanager
from importlib import resources
from urllib.parse import urlsplit

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from ..errors import UnnoiseError
from .media import decode_data_url, settings_from_png
from .service import Limits, Studio

log = logging.getLogger("unnoise.studio")

LOOPBACK = ("127.0.0.1", "localhost", "::1")
STATIC = {"index.html": "text/html; charset=utf-8", "app.js": "text/javascript; charset=utf-8",
          "style.css": "text/css; charset=utf-8"}
COOKIE = "unnoise_token"
CSP = ("default-src 'self'; img-src 'self' data: blob:; media-src 'self'; object-src 'none'; "
       "frame-ancestors 'none'; base-uri 'none'")  # the page's own files only: no inline script, no CDN


class HTTPProblem(Exception):
    """An error answered with `status` and {"error": message}."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def check_bind(host: str, token: str | None) -> None:
    """One-line error for a non-loopback address without a token."""
    if host not in LOOPBACK and not token:
        raise UnnoiseError(f"--host {host}: serving beyond this machine needs --token T (every request must then "
                           "carry it); without a token the studio binds 127.0.0.1 only")


def _host_name(host_header: str) -> str:
    return urlsplit(f"//{host_header}").hostname or ""


def _presented_token(request) -> str:
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return (request.headers.get("x-unnoise-token") or request.cookies.get(COOKIE)
            or request.query_params.get("token") or "")


def _error(status: int, message: str):
    return JSONResponse({"error": str(message).splitlines()[0] if message else "error"}, status_code=status)


def _guard(request, token: str | None, limits: Limits):
    """The error response for a request the security rules refuse, else None."""
    if token:
        if not hmac.compare_digest(_presented_token(request).encode(), token.encode()):
            return _error(401, "missing or wrong token: pass ?token=T, an Authorization: Bearer T header or the cookie")
    elif _host_name(request.headers.get("host", "")) not in LOOPBACK:
        return _error(403, "this studio answers loopback host names only (start it with --token to serve others)")
    origin = request.headers.get("origin")
    if origin and origin != "null" and urlsplit(origin).netloc != request.headers.get("host", ""):
        return _error(403, f"cross-origin request from {origin[:80]} refused")
    if request.method == "POST":
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            return _error(415, "POST bodies must be JSON (Content-Type: application/json)")
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > limits.body_bytes):
            return _error(413, f"request body of {length} bytes is over the limit of {limits.body_bytes}")
    return None


async def _json_body(request, limit: int):
    size, chunks = 0, []
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPProblem(413, f"request body over the limit of {limit} bytes")
        chunks.append(chunk)
    try:
        return json.loads(b"".join(chunks) or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise HTTPProblem(400, f"request body is not valid JSON ({getattr(exc, 'msg', 'bad encoding')})") from None


def _static(name: str):
    if name not in STATIC:
        raise HTTPProblem(404, f"no static file {name[:80]!r}")
    data = resources.files(__package__).joinpath("static", name).read_bytes()
    return Response(data, media_type=STATIC[name], headers={"Cache-Control": "no-cache"})


def create_app(studio: Studio, token: str | None = None):
    """The FastAPI application serving `studio` (closing the studio at shutdown)."""

    @asynccontextmanager
    async def lifespan(app):
        yield
        studio.close()

    app = FastAPI(title="unnoise studio", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.studio = studio
    _add_security(app, token, studio.limits)
    _add_error_handlers(app)
    _add_page_routes(app, studio)
    _add_job_routes(app, studio)
    _add_history_routes(app, studio)
    return app


def _add_security(app, token: str | None, limits: Limits) -> None:
    @app.middleware("http")
    async def security(request: Request, call_next):
        refused = _guard(request, token, limits)
        if refused is not None:
            return refused
        response = await call_next(request)
        if token and request.query_params.get("token"):
            response.set_cookie(COOKIE, token, httponly=True, samesite="strict")
        response.headers.setdefault("Cache-Control", "no-store")
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Content-Security-Policy"] = CSP
        return response


def _add_error_handlers(app) -> None:
    """Every error as {"error": one line}: 400 user errors, 404 unknown things, 422 malformed parameters,
    500 (logged) for anything else."""

    @app.exception_handler(HTTPProblem)
    async def problem(request, exc: HTTPProblem):
        return _error(exc.status, exc.message)

    @app.exception_handler(UnnoiseError)
    async def user_error(request, exc):
        return _error(400, str(exc))

    @app.exception_handler(LookupError)
    async def not_found(request, exc):
        return _error(404, exc.args[0] if exc.args else "not found")

    @app.exception_handler(HTTPException)
    async def http_error(request, exc):
        return _error(exc.status_code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def invalid(request, exc):
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return _error(422, f"{where}: {first.get('msg', 'invalid request')}")

    @app.exception_handler(Exception)
    async def crash(request, exc):
        log.exception("internal error")
        return _error(500, f"internal error: {type(exc).__name__}")


def _add_page_routes(app, studio: Studio) -> None:
    @app.get("/")
    def index():
        return _static("index.html")

    @app.get("/static/{name}")
    def static(name: str):
        return _static(name)

    @app.get("/api/runs")
    def runs():
        return {"runs": studio.runs()}

    @app.get("/api/forms")
    def forms(run: str):
        return studio.forms(run)


def _add_job_routes(app, studio: Studio) -> None:
    @app.post("/api/jobs")
    async def submit(request: Request):
        body = await _json_body(request, studio.limits.body_bytes)
        job = await run_in_threadpool(studio.submit, body)
        return {"job": studio.job(job.id)}

    @app.get("/api/jobs")
    def jobs():
        queue = studio.queue
        listed = sorted(list(queue.jobs.values()), key=lambda j: j.created, reverse=True)
        return {"queue": [j.id for j in list(queue.pending)],
                "jobs": [j.public(queue.position(j)) for j in listed]}

    @app.get("/api/jobs/{job_id}")
    def job(job_id: str):
        return studio.job(job_id)

    @app.post("/api/jobs/{job_id}/cancel")
    def cancel(job_id: str):
        studio.queue.cancel(job_id)
        return studio.job(job_id)

    @app.post("/api/jobs/{job_id}/move")
    async def move(job_id: str, request: Request):
        body = await _json_body(request, 1024)
        position = body.get("position") if isinstance(body, dict) else None
        if not isinstance(position, int) or isinstance(position, bool) or position < 0:
            raise HTTPProblem(400, f"position must be an integer >= 0, got {position!r}"[:120])
        return {"queue": studio.queue.move(job_id, position)}

    @app.get("/api/jobs/{job_id}/events")
    async def events(job_id: str):
        studio.job(job_id)  # 404 before the stream starts
        return StreamingResponse(_event_stream(studio, job_id), media_type="text/event-stream")


def _add_history_routes(app, studio: Studio) -> None:
    @app.get("/api/jobs/{job_id}/preview.png")
    def preview(job_id: str):
        live = studio.queue.jobs.get(job_id)
        if live is None or live.preview is None:
            raise HTTPProblem(404, f"job {job_id[:40]!r}: no preview")
        return Response(live.preview, media_type="image/png")

    @app.get("/api/jobs/{job_id}/files/{name}")
    def output(job_id: str, name: str):
        return FileResponse(studio.output_file(job_id, name), media_type=_media_type(name))

    @app.get("/api/history")
    def history(limit: int = 50, offset: int = 0):
        if not 1 <= limit <= 500 or offset < 0:
            raise HTTPProblem(400, f"limit must be in 1..500 and offset >= 0, got {limit}, {offset}")
        return {"jobs": studio.history_page(limit, offset)}

    @app.post("/api/png-settings")
    async def png_settings(request: Request):
        body = await _json_body(request, studio.limits.body_bytes)
        if not isinstance(body, dict) or not isinstance(body.get("png"), str):
            raise HTTPProblem(400, "expected {\"png\": a data: URL of a PNG}")
        data, _ = decode_data_url(body["png"], studio.limits.upload_bytes, "png")
        return {"settings": settings_from_png(data)}


def _media_type(name: str) -> str:
    suffix = name.rsplit(".", 1)[-1].lower()
    return {"png": "image/png", "wav": "audio/wav", "txt": "text/plain; charset=utf-8"}.get(suffix,
                                                                                           "application/octet-stream")


async def _event_stream(studio: Studio, job_id: str, interval: float = 0.1):
    """Server-sent events: the job's state whenever it changes, until it finishes."""
    last = None
    while True:
        state = studio.job(job_id)
        if state.get("version") != last or last is None:
            last = state.get("version")
            yield f"data: {json.dumps(state)}\n\n"
        if state["status"] in ("done", "failed", "cancelled", "interrupted"):
            return
        await asyncio.sleep(interval)
