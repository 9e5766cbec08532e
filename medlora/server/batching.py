"""Request batching with bounds: a queue that refuses work it cannot do, and generation the server can leave.

Why each bound exists:

- **Bounded queue.** Generation is CPU-bound and serialised; a queue that grows without limit turns a burst
  into minutes of latency for everybody and unbounded memory. Past ``max_queue`` waiting requests the server
  answers 503 with ``Retry-After`` at once, which clients (and the OpenAI SDK) know how to handle.
- **Dropped abandoned work.** A request whose client went away or timed out has its future cancelled; it is
  removed when the next batch is collected, so nobody generates for a closed socket.
- **Daemon generation threads.** ``asyncio.to_thread`` runs on the default executor, whose threads the
  interpreter joins at exit, so SIGTERM during a long generation waited for it to finish. Generation runs on a
  daemon thread instead: graceful shutdown is bounded by uvicorn's timeout, not by the model.
- **Bisection on failure.** A batch that raises is split in halves until the failing request is alone, so one
  bad request costs about log2(batch) extra calls instead of re-running every neighbour one by one.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from medlora.errors import MedloraError
from medlora.service.answers import Answer

T = TypeVar("T")


class BatchAnswerer(Protocol):
    """What the batcher needs of the service (:class:`~medlora.service.llm_service.LLMService`): one call
    that answers several questions, each with its own adapter."""

    def answer_batch(self, questions: Sequence[str], adapters: Sequence[str | None] | None = None, *,
                     max_new_tokens: int | None = None) -> list[Answer]: ...


class OverloadedError(MedloraError):
    """The server has more work queued than it can answer in reasonable time: retry later (HTTP 503)."""

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


async def run_in_daemon_thread(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Like ``asyncio.to_thread`` but on a daemon thread, so a running generation never delays process exit."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def deliver(setter: Callable[[Any], None], value: Any) -> None:
        if not future.done():
            setter(value)

    def work() -> None:
        try:
            result = fn(*args, **kwargs)
        except BaseException as err:  # noqa: BLE001 - handed to the awaiting coroutine
            with suppress(RuntimeError):  # the loop is closed: the server is gone, nobody waits
                loop.call_soon_threadsafe(deliver, future.set_exception, err)
            return
        with suppress(RuntimeError):
            loop.call_soon_threadsafe(deliver, future.set_result, result)

    threading.Thread(target=work, name="medlora-generate", daemon=True).start()
    return await future


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
    rejected: int = 0  # refused with 503 because the queue was full
    abandoned: int = 0  # dropped before generation: the client went away or timed out
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
    At most ``max_queue`` requests wait (queued or being answered); more raise :class:`OverloadedError`.
    """

    def __init__(self, service: BatchAnswerer, window_ms: int, max_batch: int, *, max_queue: int = 64,
                 retry_after_s: int = 5) -> None:
        self.service = service
        self.window = window_ms / 1000
        self.max_batch = max_batch
        self.max_queue = max_queue
        self.retry_after_s = retry_after_s
        self.stats = BatchStats()
        self._waiting = 0  # submitted and not yet answered (queued, collecting or generating)
        self._queue: asyncio.Queue[_Pending] | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def waiting(self) -> int:
        return self._waiting

    async def submit(self, question: str, adapter: str, max_new_tokens: int, *,
                     timeout: float | None = None) -> Answer:
        """Queue one request and wait for its answer; ``TimeoutError`` after ``timeout`` seconds.

        Cancelling the caller (client gone) or the timeout cancels the request's future, so the batcher skips it
        if it has not started generating yet.
        """
        if self._waiting >= self.max_queue:
            self.stats.rejected += 1
            raise OverloadedError(f"the server is busy ({self._waiting} requests waiting); retry in "
                                  f"{self.retry_after_s} s", self.retry_after_s)
        loop = asyncio.get_running_loop()
        if self._queue is None or self._task is None or self._task.done():
            self._queue = asyncio.Queue()
            self._task = loop.create_task(self._run(), name="medlora-batcher")
        future: asyncio.Future[Answer] = loop.create_future()
        self._waiting += 1
        future.add_done_callback(self._done)
        self._queue.put_nowait(_Pending(question, adapter, max_new_tokens, future))
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout)
        finally:
            if not future.done():  # timed out or cancelled: drop the work, nobody will read it
                future.cancel()

    def _done(self, future: asyncio.Future[Answer]) -> None:
        self._waiting -= 1
        if future.cancelled():
            self.stats.abandoned += 1

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task
        if self._queue is not None:
            while not self._queue.empty():
                self._queue.get_nowait().future.cancel()

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
                group = [p for p in group if not p.future.done()]
                if group:
                    await self._answer(group, budget)

    async def _answer(self, group: list[_Pending], budget: int) -> None:
        try:
            answers = await run_in_daemon_thread(self.service.answer_batch, [p.question for p in group],
                                                 [p.adapter for p in group], max_new_tokens=budget)
            self.stats.record(len(group))
        except Exception as err:  # noqa: BLE001 - delivered to the waiting request(s)
            if len(group) > 1:  # find the culprit by halving: the others still get their answers
                middle = len(group) // 2
                for half in (group[:middle], group[middle:]):
                    half = [p for p in half if not p.future.done()]
                    if half:
                        await self._answer(half, budget)
                return
            if not group[0].future.done():
                group[0].future.set_exception(err)
            return
        for pending, answer in zip(group, answers, strict=True):
            if not pending.future.done():
                pending.future.set_result(answer)


__all__ = ["BatchAnswerer", "BatchStats", "OverloadedError", "RequestBatcher", "run_in_daemon_thread"]
