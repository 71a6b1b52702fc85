"""The HTTP API (FastAPI): thin routes over `vpl.serve.service`. (No `from __future__ import
annotations` here: FastAPI reads the route annotations at run time.)

Every route but `/health` and the annotation page needs `Authorization: Bearer KEY` (an API key
from `vpl serve keys create`); a user is reachable only with the key that created it. Errors
are JSON `{"detail": ...}` with a 4xx status; nothing leaks a stack trace.
"""


import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated

import anyio.to_thread
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vpl.serve import schemas as S
from vpl.serve.service import Service
from vpl.serve.store import ForbiddenUser, UnknownUser

log = logging.getLogger("vpl.serve")
STATIC = Path(__file__).parent / "static"


class BodyLimit:
    """ASGI middleware: 413 for a request body over `limit` bytes, declared or streamed
    (chunked). The body is read here, at most `limit` bytes of it, and handed on whole."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await _too_large(scope, receive, send)
            return
        chunks, size = [], 0
        while True:
            msg = await receive()
            if msg["type"] != "http.request":  # the client went away
                break
            chunks.append(msg.get("body", b""))
            size += len(chunks[-1])
            if size > self.limit:
                await _too_large(scope, receive, send)
                return
            if not msg.get("more_body", False):
                break
        body, sent = b"".join(chunks), False

        async def replay() -> Message:
            nonlocal sent
            if sent:
                return await receive()
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


async def _too_large(scope: Scope, receive: Receive, send: Send) -> None:
    log.info("%s %s 413", scope.get("method"), scope.get("path"))
    await JSONResponse({"detail": "request body too large"}, status_code=413)(scope, receive,
                                                                              send)


bearer = HTTPBearer(auto_error=False)
Creds = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


def get_service(request: Request) -> Service:
    """The app's service (one per process)."""
    return request.app.state.service


Svc = Annotated[Service, Depends(get_service)]


def api_key(creds: Creds, service: Svc) -> int:
    """The id of the request's API key (401 without a valid one)."""
    if creds is None:
        raise HTTPException(401, "missing API key (Authorization: Bearer KEY)",
                            headers={"WWW-Authenticate": "Bearer"})
    key_id = service.store.key_id(creds.credentials)
    if key_id is None:
        raise HTTPException(401, "invalid API key", headers={"WWW-Authenticate": "Bearer"})
    return key_id


def user_token(creds: Creds, service: Svc) -> tuple[int, str]:
    """(key id, user id) of the request's annotation token (401 without a valid one)."""
    found = service.store.token_user(creds.credentials) if creds is not None else None
    if found is None:
        raise HTTPException(401, "missing or invalid user token")
    return found


Key = Annotated[int, Depends(api_key)]
TokenUser = Annotated[tuple[int, str], Depends(user_token)]

users = APIRouter(prefix="/v1/users", tags=["users"])
annotate = APIRouter(prefix="/v1/annotate", tags=["annotation page"])
misc = APIRouter()


@misc.get("/health")
def health(service: Svc) -> dict[str, str]:
    return {"status": "ok", "run": service.scorer.run_id}


@misc.get("/", response_class=HTMLResponse, include_in_schema=False)
def page() -> HTMLResponse:
    return HTMLResponse((STATIC / "annotate.html").read_text(encoding="utf-8"))


@users.post("", response_model=S.CreatedUser, status_code=201)
def create_user(key: Key, service: Svc) -> S.CreatedUser:
    return S.CreatedUser(user_id=service.store.create_user(key))


@users.delete("/{user_id}", status_code=204)
def delete_user(user_id: str, key: Key, service: Svc) -> None:
    service.forget(key, user_id)


@users.post("/{user_id}/comparisons", response_model=S.Stored)
def add_comparisons(user_id: str, body: S.AddComparisons, key: Key, service: Svc) -> S.Stored:
    stored, total = service.store.add_answers(
        key, user_id, [(c.prompt, c.chosen, c.rejected) for c in body.comparisons],
        request_id=body.request_id)
    return S.Stored(stored=stored, total=total)


@users.post("/{user_id}/next-query", response_model=S.Query)
def next_query(user_id: str, body: S.NextQuery, key: Key, service: Svc) -> S.Query:
    if not service.scorer.personal:
        raise HTTPException(409, f"model {service.scorer.model.name!r} has no user latent: "
                                 "no query tells anything about a user")
    i, gain = service.next_query(key, user_id, [(c.prompt, c.a, c.b) for c in body.candidates])
    return S.Query(index=i, info_gain=gain)


@users.get("/{user_id}/latent", response_model=S.Latent)
def latent(user_id: str, key: Key, service: Svc) -> S.Latent:
    mean, std, n = service.latent(key, user_id)
    return S.Latent(mean=mean.tolist(), std=std.tolist(), n_answers=n)


@users.post("/{user_id}/score", response_model=S.Scores)
def score(user_id: str, body: S.ScoreRequest, key: Key, service: Svc) -> S.Scores:
    mean, std = service.score(key, user_id, body.prompt, body.responses)
    return S.Scores(scores=[S.Score(reward=float(m), std=float(s))
                            for m, s in zip(mean, std, strict=True)], best=int(mean.argmax()))


@users.post("/{user_id}/token", response_model=S.Token)
def token(user_id: str, key: Key, service: Svc) -> S.Token:
    return S.Token(token=service.store.issue_token(key, user_id))


@annotate.get("/next", response_model=S.PoolQuery)
def annotate_next(who: TokenUser, service: Svc) -> S.PoolQuery:
    if not service.pool:
        raise HTTPException(409, "no candidate pool loaded (vpl serve --pool FILE)")
    return S.PoolQuery(**service.pool_next(*who))


@annotate.post("/answer", response_model=S.Stored)
def annotate_answer(body: S.PoolAnswer, who: TokenUser, service: Svc) -> S.Stored:
    if body.index >= len(service.pool):
        raise HTTPException(422, f"no pool pair {body.index}")
    stored, total = service.pool_answer(*who, body.index, body.choice)
    return S.Stored(stored=stored, total=total)


def add_error_handlers(app: FastAPI) -> None:
    """JSON errors with a 4xx (or 503 when the database is busy); never a stack trace."""

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            return JSONResponse({"detail": "malformed JSON body"}, status_code=400)
        detail = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", "")} for e in errors]
        return JSONResponse({"detail": detail}, status_code=422)

    @app.exception_handler(UnknownUser)
    async def unknown(_: Request, exc: UnknownUser) -> JSONResponse:
        return JSONResponse({"detail": f"no user {exc.args[0]!r}"}, status_code=404)

    @app.exception_handler(ForbiddenUser)
    async def forbidden(_: Request, exc: ForbiddenUser) -> JSONResponse:
        return JSONResponse({"detail": "this user belongs to another API key"}, status_code=403)

    @app.exception_handler(OperationalError)
    @app.exception_handler(PoolTimeout)
    async def busy(_: Request, exc: Exception) -> JSONResponse:
        # the database is locked or out of connections under load: the client may retry
        log.warning("database busy: %s", type(exc).__name__)
        return JSONResponse({"detail": "database busy, retry"}, status_code=503,
                            headers={"Retry-After": "1"})

    @app.exception_handler(Exception)
    async def internal(_: Request, exc: Exception) -> JSONResponse:
        log.exception("internal error")
        return JSONResponse({"detail": "internal error"}, status_code=500)


def create_app(service: Service, request_threads: int | None = None) -> FastAPI:
    """The API over one service (a store and a loaded run). `request_threads`: how many
    requests one process works on at once (default: anyio's 40). The work is mostly CPU under
    one interpreter lock, so a few threads per process, and more processes, serve faster than
    many threads contending for that lock."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if request_threads is not None:
            anyio.to_thread.current_default_thread_limiter().total_tokens = request_threads
        yield

    app = FastAPI(title="vpl", version="1", lifespan=lifespan,
                  description="Personalized reward models: learn each user from a few "
                              "comparisons, then score responses for them.")
    app.state.service = service
    for router in (misc, users, annotate):
        app.include_router(router)
    add_error_handlers(app)

    @app.middleware("http")
    async def log_requests(request: Request, call_next):  # noqa: ANN001, ANN202
        t0 = time.perf_counter()
        response = await call_next(request)
        log.info("%s %s %d %.1f ms", request.method, request.url.path, response.status_code,
                 1e3 * (time.perf_counter() - t0))
        return response

    app.add_middleware(BodyLimit, limit=S.MAX_BODY)
    return app
