"""FastAPI app: OpenAI-compatible chat completions, adapter admin, health, and the web chat page.

Why OpenAI-compatible: every chat UI and SDK already speaks it, so ``OpenAI(base_url=".../v1")`` works with
``model`` set to an adapter name, ``auto`` or ``base``. medlora's additions (``sources``, ``disclaimer``,
``adapter``) are extra fields that such clients keep and ignore.

Generation is CPU-bound and the model is shared, so requests never generate concurrently: non-streamed
requests go through :class:`RequestBatcher`, which collects them for ``service.batch_window_ms`` and answers
them together in one mixed-adapter batch; streamed requests generate one at a time in a worker thread.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field

from medlora import MEDICAL_DISCLAIMER, __version__
from medlora.errors import AdapterMismatchError, MedloraError
from medlora.service.llm_service import Answer, AnswerStream, LLMService
from medlora.service.registry import AUTO_NAME, BASE_NAME, AdapterNotFoundError

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"


# --------------------------------------------------------------------------------------------- schemas


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: str
    content: str | list[dict[str, Any]] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):  # OpenAI "content parts": keep the text parts
            return "\n".join(str(p.get("text", "")) for p in self.content if p.get("type") == "text")
        return self.content or ""


class ChatRequest(BaseModel):
    """The subset of the OpenAI request the bot honours; sampling options are ignored (greedy decoding)."""

    model_config = ConfigDict(extra="ignore")

    model: str = AUTO_NAME
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)


class AdapterRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str
    name: str | None = None


class APIError(Exception):
    """An error answered in OpenAI's shape: ``{"error": {"message", "type", "code"}}``."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error", code: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.kind, self.code, self.headers = status, message, kind, code, headers

    def response(self) -> JSONResponse:
        body = {"error": {"message": self.message, "type": self.kind, "code": self.code, "param": None}}
        return JSONResponse(body, status_code=self.status, headers=self.headers)


def _api_error(err: MedloraError) -> APIError:
    if isinstance(err, AdapterNotFoundError):
        return APIError(404, str(err), code="model_not_found")
    if isinstance(err, AdapterMismatchError):
        return APIError(409, str(err), code="adapter_base_mismatch")
    return APIError(400, str(err))


# --------------------------------------------------------------------------------------------- batching


@dataclass
class _Pending:
    question: str
    adapter: str
    max_new_tokens: int
    future: asyncio.Future[Answer]


@dataclass
class BatchStats:
    batches: int = 0
    requests: int = 0
    largest: int = 0
    sizes: list[int] = field(default_factory=list)

    def record(self, size: int) -> None:
        self.batches += 1
        self.requests += size
        self.largest = max(self.largest, size)
        self.sizes = (self.sizes + [size])[-50:]


class RequestBatcher:
    """Collect concurrent requests for a few ms, then answer them in one ``answer_batch`` call.

    While a batch generates, new requests queue up and form the next batch, so under load batches grow by
    themselves. Requests with different token budgets go in separate calls (one budget per generate).
    A batch that fails is retried request by request, so one bad request cannot fail its neighbours.
    """

    def __init__(self, service: LLMService, window_ms: int, max_batch: int) -> None:
        self.service = service
        self.window = window_ms / 1000
        self.max_batch = max_batch
        self.stats = BatchStats()
        self._queue: asyncio.Queue[_Pending] | None = None
        self._task: asyncio.Task[None] | None = None

    async def submit(self, question: str, adapter: str, max_new_tokens: int) -> Answer:
        loop = asyncio.get_running_loop()
        if self._queue is None or self._task is None or self._task.done():
            self._queue = asyncio.Queue()
            self._task = loop.create_task(self._run(), name="medlora-batcher")
        future: asyncio.Future[Answer] = loop.create_future()
        await self._queue.put(_Pending(question, adapter, max_new_tokens, future))
        return await future

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task

    async def _collect(self) -> list[_Pending]:
        assert self._queue is not None
        batch = [await self._queue.get()]
        deadline = asyncio.get_running_loop().time() + self.window
        while len(batch) < self.max_batch:
            remaining = deadline - asyncio.get_running_loop().time()
            try:
                batch.append(self._queue.get_nowait() if remaining <= 0 else
                             await asyncio.wait_for(self._queue.get(), remaining))
            except (asyncio.QueueEmpty, TimeoutError):
                break
        return [p for p in batch if not p.future.done()]  # drop requests whose client went away

    async def _run(self) -> None:
        while True:
            batch = await self._collect()
            budgets: dict[int, list[_Pending]] = {}
            for pending in batch:
                budgets.setdefault(pending.max_new_tokens, []).append(pending)
            for budget, group in budgets.items():
                await self._answer(group, budget)

    async def _answer(self, group: list[_Pending], budget: int) -> None:
        try:
            answers = await asyncio.to_thread(self.service.answer_batch, [p.question for p in group],
                                              [p.adapter for p in group], max_new_tokens=budget)
            self.stats.record(len(group))
        except Exception as err:  # noqa: BLE001 - delivered to the waiting request(s)
            if len(group) > 1:
                for pending in group:
                    await self._answer([pending], budget)
                return
            if not group[0].future.done():
                group[0].future.set_exception(err)
            return
        for pending, answer in zip(group, answers, strict=True):
            if not pending.future.done():
                pending.future.set_result(answer)


# --------------------------------------------------------------------------------------------- app


def _question(request: ChatRequest) -> str:
    """The last user message. The prompt format is single-turn (as in training), so earlier turns are not sent."""
    for message in reversed(request.messages):
        if message.role == "user" and message.text().strip():
            return message.text()
    raise APIError(400, "no user message with text in 'messages'")


def _completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex[:24]}"


def _extras(answer: Answer) -> dict[str, Any]:
    data: dict[str, Any] = {
        "sources": [s.to_json() for s in answer.sources],
        "disclaimer": answer.disclaimer,
        "adapter": answer.adapter,
        "timings": answer.timings,
    }
    if answer.route is not None:
        data["route"] = {"adapter": answer.route.adapter or BASE_NAME,
                         "probability": round(answer.route.probability, 4)}
    return data


def _finish_reason(answer: Answer, budget: int) -> str:
    return "length" if answer.timings.get("new_tokens", 0) >= budget else "stop"


def _sse(data: dict[str, Any] | str) -> str:
    return f"data: {data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)}\n\n"


def create_app(service: LLMService) -> FastAPI:
    """The FastAPI app over a loaded :class:`LLMService` (``service.load_model()`` already called)."""
    settings = service.config.service
    batcher = RequestBatcher(service, settings.batch_window_ms, settings.max_batch_size)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await batcher.close()

    app = FastAPI(title="medlora bot", version=__version__, lifespan=lifespan,
                  description="OpenAI-compatible medical QA with swappable LoRA adapters. " + MEDICAL_DISCLAIMER)
    app.state.service = service
    app.state.batcher = batcher

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
        return _api_error(err).response()

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
        return {
            "status": "ok",
            "version": __version__,
            "base_model": service.base_model_id,
            "adapters": [a.name for a in service.list_adapters()],
            "default_adapter": service.default_adapter,
            "batching": {"window_ms": settings.batch_window_ms, "max_batch_size": settings.max_batch_size,
                         "batches": batcher.stats.batches, "requests": batcher.stats.requests,
                         "largest_batch": batcher.stats.largest, "recent_sizes": batcher.stats.sizes},
        }

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        data = [
            model_entry(AUTO_NAME, description="routes each question to the best adapter, or the base"),
            model_entry(BASE_NAME, description="the base model without adapter", base_model=service.base_model_id),
        ]
        data += [model_entry(a.name, description=f"LoRA adapter ({a.specialty or a.name})",
                             specialty=a.specialty, base_model=a.base_model, gate_passed=a.gate_passed)
                 for a in service.list_adapters()]
        return {"object": "list", "data": data}

    @app.post("/v1/chat/completions", response_model=None)
    async def chat_completions(request: ChatRequest) -> JSONResponse | StreamingResponse:
        question = _question(request)
        budget = min(request.max_completion_tokens or request.max_tokens or settings.max_new_tokens,
                     settings.max_new_tokens)
        if request.stream:
            stream = await asyncio.to_thread(service.stream, question, request.model, max_new_tokens=budget)
            return StreamingResponse(_stream_events(stream, request.model, budget), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        # Fail fast (404) on an unknown model instead of inside a batch.
        await asyncio.to_thread(service.resolve_adapters, [question], [request.model])
        answer = await batcher.submit(question, request.model, budget)
        return JSONResponse({
            "id": _completion_id(),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": answer.adapter,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": answer.full_text},
                         "finish_reason": _finish_reason(answer, budget), "logprobs": None}],
            **_extras(answer),
        })

    @app.get("/v1/adapters")
    async def list_adapters() -> dict[str, Any]:
        return {"adapters": [a.to_json() for a in service.list_adapters()], "default": service.default_adapter}

    @app.post("/v1/adapters", status_code=201)
    async def load_adapter(body: AdapterRequest, request: Request) -> dict[str, Any]:
        require_admin(request)
        info = await asyncio.to_thread(service.load_adapter, body.name, body.path)
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


async def _stream_events(stream: AnswerStream, requested: str, budget: int) -> AsyncIterator[str]:
    """SSE chunks in OpenAI's shape; the last chunk carries the sources list, the disclaimer and ``sources``.

    The answer is generated by a worker thread that feeds an asyncio queue; if the client disconnects, the
    generation is cancelled so the model is free for the next request.
    """
    loop = asyncio.get_running_loop()
    pieces: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()

    def send(kind: str, value: Any) -> None:
        with suppress(RuntimeError):  # the event loop is gone (server shutting down): nobody is listening
            loop.call_soon_threadsafe(pieces.put_nowait, (kind, value))

    def produce() -> None:
        try:
            for piece in stream:
                send("piece", piece)
            send("done", stream.answer)
        except Exception as err:  # noqa: BLE001 - sent to the client as an error event
            send("error", err)

    completion_id, created = _completion_id(), int(time.time())

    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
        return _sse({"id": completion_id, "object": "chat.completion.chunk", "created": created,
                     "model": stream.adapter, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                     **extra})

    worker = threading.Thread(target=produce, name="medlora-sse", daemon=True)
    worker.start()
    try:
        yield chunk({"role": "assistant", "content": ""}, adapter=stream.adapter)
        while True:
            kind, value = await pieces.get()
            if kind == "piece":
                yield chunk({"content": value})
            elif kind == "done":
                answer: Answer = value
                tail = answer.full_text[len(answer.body):]
                yield chunk({"content": tail}, _finish_reason(answer, budget), **_extras(answer))
                break
            else:
                message = str(value) if isinstance(value, MedloraError) else f"generation failed: {value}"
                log.error("stream failed: %s", type(value).__name__)
                yield _sse({"error": {"message": message, "type": "server_error", "code": None}})
                break
        yield _sse("[DONE]")
    finally:
        stream.cancel()  # no-op when finished; stops generation when the client went away
