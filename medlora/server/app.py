"""FastAPI app: OpenAI-compatible chat completions, adapter admin, health, and the web chat page.

Why OpenAI-compatible: every chat UI and SDK already speaks it, so ``OpenAI(base_url=".../v1")`` works with
``model`` set to an adapter name, ``auto`` or ``base``. medlora's additions (``sources``, ``disclaimer``,
``adapter``) are extra fields that such clients keep and ignore.

Generation is CPU-bound and the model is shared, so requests never generate concurrently: non-streamed
requests go through :class:`~medlora.server.batching.RequestBatcher`, which collects them for
``service.batch_window_ms`` and answers them together in one mixed-adapter batch; streamed requests generate
one at a time in a worker thread.

Every request is bounded before it reaches the model (docs/RELIABILITY.md): body size, message count and
length, prompt tokens, queue length (503 + ``Retry-After``), concurrent streams, and time.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles

from medlora import MEDICAL_DISCLAIMER, __version__
from medlora.errors import MedloraError
from medlora.server.batching import OverloadedError, RequestBatcher, run_in_daemon_thread
from medlora.server.completions import answer_extras, finish_reason, new_completion_id, stream_events
from medlora.server.schemas import AdapterRequest, APIError, ChatRequest, api_error, question_of
from medlora.server.security import GuardMiddleware, allowed_hosts
from medlora.service.llm_service import Answer, LLMService
from medlora.service.registry import (
    AUTO_NAME,
    BASE_NAME,
    public_model_id,
    resolve_admin_path,
)

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"


async def _wait_for_disconnect(request: Request) -> None:
    """Return when the client closes the connection (the body was already read, so only that can arrive)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


# --------------------------------------------------------------------------------------------- app


def create_app(service: LLMService, *, bind_host: str = "127.0.0.1") -> FastAPI:
    """The FastAPI app over a loaded :class:`LLMService` (``service.load_model()`` already called).

    ``bind_host`` is the interface the server listens on: it decides which Host headers are answered.
    """
    settings = service.config.service
    batcher = RequestBatcher(service, settings.batch_window_ms, settings.max_batch_size,
                             max_queue=settings.max_queue, retry_after_s=settings.retry_after_s)
    streams = {"active": 0, "rejected": 0}

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await batcher.close()

    docs = settings.api_docs
    app = FastAPI(title="medlora bot", version=__version__, lifespan=lifespan,
                  docs_url="/docs" if docs else None, redoc_url="/redoc" if docs else None,
                  openapi_url="/openapi.json" if docs else None,
                  description="OpenAI-compatible medical QA with swappable LoRA adapters. " + MEDICAL_DISCLAIMER)
    app.state.service = service
    app.state.batcher = batcher
    app.add_middleware(GuardMiddleware, max_body_bytes=settings.max_request_bytes,
                       hosts=allowed_hosts(bind_host, settings.trusted_hosts))

    @app.exception_handler(APIError)
    async def _on_api_error(_: Request, err: APIError) -> JSONResponse:
        return err.response()

    @app.exception_handler(RequestValidationError)
    async def _on_invalid_request(_: Request, err: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ())[1:]) or 'body'}: {e.get('msg')}"
                             for e in err.errors())
        return APIError(400, f"invalid request: {problems}").response()

    @app.exception_handler(MedloraError)
    async def _on_medlora_error(_: Request, err: MedloraError) -> JSONResponse:
        return api_error(err).response()

    def require_api_key(request: Request) -> None:
        """Chat and model listing need ``Authorization: Bearer <key>`` when the API key variable is set."""
        expected = os.environ.get(settings.api_key_env, "")
        if not expected:
            return
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected.encode()):
            raise APIError(401, "missing or wrong API key (Authorization: Bearer <key>)",
                           kind="authentication_error", code="invalid_api_key",
                           headers={"WWW-Authenticate": "Bearer"})

    def check_limits(request: ChatRequest) -> None:
        if len(request.messages) > settings.max_messages:
            raise APIError(413, f"too many messages: {len(request.messages)}; at most {settings.max_messages} are "
                           "accepted (service.max_messages). Only the last user message is answered: send that",
                           code="request_too_large")
        for index, message in enumerate(request.messages):
            size = len(message.text())
            if size > settings.max_message_chars:
                raise APIError(413, f"messages[{index}] has {size} characters; at most {settings.max_message_chars}"
                               " are accepted (service.max_message_chars): shorten it", code="request_too_large")

    def require_admin(request: Request) -> None:
        env = settings.admin_token_env
        expected = os.environ.get(env, "")
        if not expected:
            raise APIError(403, f"adapter administration is disabled: set the {env} environment variable "
                                "on the server to enable it", kind="permission_error", code="admin_disabled")
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected.encode()):
            raise APIError(401, "missing or wrong admin token (Authorization: Bearer <token>)",
                           kind="authentication_error", code="invalid_token",
                           headers={"WWW-Authenticate": "Bearer"})

    def model_entry(model_id: str, **extra: Any) -> dict[str, Any]:
        return {"id": model_id, "object": "model", "created": 0, "owned_by": "medlora", **extra}

    @app.get("/health")
    async def health() -> dict[str, Any]:
        stats = batcher.stats
        return {
            "status": "ok",
            "version": __version__,
            "base_model": public_model_id(service.base_model_id),
            "adapters": [a.name for a in service.list_adapters()],
            "default_adapter": service.default_adapter,
            "batching": {"window_ms": settings.batch_window_ms, "max_batch_size": settings.max_batch_size,
                         "batches": stats.batches, "requests": stats.requests,
                         "largest_batch": stats.largest, "recent_sizes": stats.sizes},
            "load": {"waiting": batcher.waiting, "max_queue": settings.max_queue, "rejected": stats.rejected,
                     "abandoned": stats.abandoned, "streams": streams["active"],
                     "max_streams": settings.max_streams, "streams_rejected": streams["rejected"]},
        }

    @app.get("/v1/models")
    async def models(request: Request) -> dict[str, Any]:
        require_api_key(request)
        data = [
            model_entry(AUTO_NAME, description="routes each question to the best adapter, or the base"),
            model_entry(BASE_NAME, description="the base model without adapter",
                        base_model=public_model_id(service.base_model_id)),
        ]
        data += [model_entry(a.name, description=f"LoRA adapter ({a.specialty or a.name})",
                             specialty=a.specialty, base_model=public_model_id(a.base_model),
                             gate_passed=a.gate_passed)
                 for a in service.list_adapters()]
        return {"object": "list", "data": data}

    @app.post("/v1/chat/completions", response_model=None)
    async def chat_completions(request: ChatRequest, http: Request) -> JSONResponse | StreamingResponse:
        require_api_key(http)
        check_limits(request)
        question = question_of(request)
        budget = min(request.max_completion_tokens or request.max_tokens or settings.max_new_tokens,
                     settings.max_new_tokens)
        # Refuse an oversized question (413) or an unknown model (404) before it waits in any queue.
        await asyncio.to_thread(service.check_question, question, budget)
        if request.stream:
            if streams["active"] >= settings.max_streams:
                streams["rejected"] += 1
                raise OverloadedError(f"{streams['active']} answers are streaming already; retry in "
                                      f"{settings.retry_after_s} s", settings.retry_after_s)
            streams["active"] += 1
            try:
                stream = await asyncio.to_thread(service.stream, question, request.model, max_new_tokens=budget)
            except BaseException:
                streams["active"] -= 1
                raise
            return _CountedStream(stream_events(stream, request.model, budget),
                                  lambda: streams.__setitem__("active", streams["active"] - 1),
                                  media_type="text/event-stream",
                                  headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        await asyncio.to_thread(service.resolve_adapters, [question], [request.model])
        answer = await _answer_or_give_up(http, batcher.submit(question, request.model, budget,
                                                               timeout=settings.request_timeout_s))
        return JSONResponse({
            "id": new_completion_id(),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": answer.adapter,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": answer.full_text},
                         "finish_reason": finish_reason(answer, budget), "logprobs": None}],
            **answer_extras(answer),
        })

    @app.get("/v1/adapters")
    async def list_adapters(request: Request) -> dict[str, Any]:
        require_api_key(request)
        return {"adapters": [a.to_json() for a in service.list_adapters()], "default": service.default_adapter}

    @app.post("/v1/adapters", status_code=201)
    async def load_adapter(body: AdapterRequest, request: Request) -> dict[str, Any]:
        require_admin(request)
        path = resolve_admin_path(Path(service.config.models.llm.adapters_dir), body.path)
        info = await run_in_daemon_thread(service.load_adapter, body.name, path)
        return {"loaded": info.to_json()}

    @app.delete("/v1/adapters/{name}")
    async def unload_adapter(name: str, request: Request) -> dict[str, Any]:
        require_admin(request)
        await asyncio.to_thread(service.unload_adapter, name)
        return {"unloaded": name}

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app


def run_server(app: FastAPI, host: str, port: int) -> None:
    """Run ``app`` under uvicorn with bounded shutdown: SIGTERM stops the server within seconds.

    Open requests get ``service.shutdown_timeout_s`` to finish; then uvicorn cancels them, and generation
    (on daemon threads) does not hold the process.
    """
    import uvicorn

    settings = app.state.service.config.service
    uvicorn.run(app, host=host, port=port, log_level="info",
                timeout_graceful_shutdown=settings.shutdown_timeout_s,
                # Connections beyond this get 503 from uvicorn itself, before any request is parsed.
                limit_concurrency=settings.max_queue + settings.max_streams + 64,
                timeout_keep_alive=5)


async def _answer_or_give_up(request: Request, answering: Any) -> Answer:
    """Await the answer, unless the client disconnects (the queued work is dropped) or time runs out (504)."""
    work = asyncio.ensure_future(answering)
    gone = asyncio.ensure_future(_wait_for_disconnect(request))
    try:
        await asyncio.wait({work, gone}, return_when=asyncio.FIRST_COMPLETED)
        if work.done():
            try:
                return work.result()
            except TimeoutError:
                raise APIError(504, "no answer in time (service.request_timeout_s); the server is busy, retry "
                               "later", kind="server_error", code="timeout") from None
        # The client went away: cancelling ``work`` cancels its queued request. Nobody reads this answer.
        raise APIError(499, "client closed the request", code="client_closed")
    finally:
        for task in (work, gone):
            if not task.done():
                task.cancel()


class _CountedStream(StreamingResponse):
    """A streamed response that releases its slot when it ends, however it ends (done, error, client gone)."""

    def __init__(self, content: Any, release: Any, **kwargs: Any) -> None:
        super().__init__(content, **kwargs)
        self._release = release

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._release()
