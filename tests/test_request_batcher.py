"""The request batcher without HTTP or a model: a fake service stands in for LLMService."""

from __future__ import annotations

import asyncio

from medlora.server.batching import OverloadedError, RequestBatcher
from medlora.service.answers import Answer


class FakeService:
    def __init__(self) -> None:
        self.calls: list[tuple[list[str], list[str | None], int | None]] = []

    def answer_batch(self, questions, adapters=None, *, max_new_tokens=None):
        self.calls.append((list(questions), list(adapters or []), max_new_tokens))
        return [Answer(text=f"{q}/{a}", sources=[], adapter=a or "base", timings={})
                for q, a in zip(questions, adapters or [None] * len(questions), strict=True)]


def test_concurrent_requests_share_one_call_per_token_budget():
    service = FakeService()

    async def run():
        batcher = RequestBatcher(service, window_ms=200, max_batch=8, max_queue=16)
        try:
            return await asyncio.gather(batcher.submit("a", "derm", 5), batcher.submit("b", "cardio", 5),
                                        batcher.submit("c", "base", 9))
        finally:
            await batcher.close()

    answers = asyncio.run(run())
    assert [a.text for a in answers] == ["a/derm", "b/cardio", "c/base"]
    assert sorted(service.calls, key=lambda c: c[2]) == [(["a", "b"], ["derm", "cardio"], 5), (["c"], ["base"], 9)]


def test_a_full_queue_refuses_at_once_with_a_retry_hint():
    service = FakeService()

    async def run():
        batcher = RequestBatcher(service, window_ms=200, max_batch=8, max_queue=2, retry_after_s=7)
        try:
            return await asyncio.gather(*[batcher.submit(q, "base", 5) for q in "abc"], return_exceptions=True)
        finally:
            await batcher.close()

    first, second, third = asyncio.run(run())
    assert [first.text, second.text] == ["a/base", "b/base"]
    assert isinstance(third, OverloadedError) and third.retry_after_s == 7
