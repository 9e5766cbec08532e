"""Load test for `medlora serve`: steady concurrent clients, a burst beyond the queue bound, bad inputs, /health.

Start a server first (any model; the figures in docs/RELIABILITY.md name theirs), then:

    python bench/load_test.py --url http://127.0.0.1:8000 --clients 50 --seconds 60 --burst 150

What it checks, and prints as JSON (``--out FILE`` also writes it):

- **steady**: ``--clients`` clients ask questions back to back for ``--seconds`` (after a 503 a client waits
  its ``Retry-After``, as the OpenAI SDK does); status counts and latency p50/p95/max of the answered ones.
  Nothing but 200 (and 503 when the queue is full) is acceptable: a 504 means the server could not answer
  within ``service.request_timeout_s``.
- **burst**: ``--burst`` requests at once on top of the steady load: the queue bound must turn the excess into
  503s with ``Retry-After`` at once, not into minutes of waiting or 5xx errors.
- **bad inputs** during the load: a 2 MB message and a request with 5000 messages must get a 4xx in < 1 s.
- **health**: ``/health`` is polled every 0.5 s throughout; every poll must answer.

Exit status 1 when any of these fails, so it can gate a deployment.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx

QUESTIONS = [
    "What does a melanoma look like on the skin?",
    "How is psoriasis treated?",
    "What are the symptoms of atrial fibrillation?",
    "How is heart failure treated?",
    "What causes eczema in adults?",
    "When should a mole be checked by a doctor?",
]


@dataclass
class Tally:
    statuses: Counter = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)  # answered (200) requests only
    retry_after: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)  # transport errors by kind

    def add(self, response: httpx.Response | None, seconds: float, error: str | None = None) -> None:
        if response is None:
            self.errors[error or "error"] += 1
            return
        self.statuses[response.status_code] += 1
        if response.status_code == 200:
            self.latencies.append(seconds)
        if response.status_code == 503:
            self.retry_after[response.headers.get("retry-after", "missing")] += 1

    def summary(self) -> dict[str, Any]:
        lat = sorted(self.latencies)
        return {
            "requests": sum(self.statuses.values()) + sum(self.errors.values()),
            "status": {str(k): v for k, v in sorted(self.statuses.items())},
            "transport_errors": dict(self.errors),
            "retry_after": dict(self.retry_after),
            "latency_s": {"p50": _pct(lat, 50), "p95": _pct(lat, 95), "max": lat[-1] if lat else None,
                          "mean": round(statistics.fmean(lat), 3) if lat else None},
        }


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    index = min(len(values) - 1, max(0, round(q / 100 * (len(values) - 1))))
    return round(values[index], 3)


def _body(question: str, model: str, max_tokens: int) -> dict[str, Any]:
    return {"model": model, "max_tokens": max_tokens, "messages": [{"role": "user", "content": question}]}


async def _ask(client: httpx.AsyncClient, body: dict[str, Any], tally: Tally, timeout: float) -> float:
    """One request; returns the ``Retry-After`` seconds of a 503 (0 otherwise), which a polite client honours."""
    started = time.perf_counter()
    try:
        response = await client.post("/v1/chat/completions", json=body, timeout=timeout)
    except httpx.HTTPError as err:
        tally.add(None, time.perf_counter() - started, type(err).__name__)
        return 0.0
    tally.add(response, time.perf_counter() - started)
    if response.status_code == 503:
        try:
            return float(response.headers.get("retry-after", "1"))
        except ValueError:
            return 1.0
    return 0.0


async def _steady(client: httpx.AsyncClient, args: argparse.Namespace, tally: Tally, stop: float) -> None:
    async def one_client(number: int) -> None:
        i = number
        while time.monotonic() < stop:
            wait = await _ask(client, _body(QUESTIONS[i % len(QUESTIONS)], args.model, args.max_tokens), tally,
                              args.timeout)
            if wait and not args.ignore_retry_after:
                await asyncio.sleep(min(wait, max(0.0, stop - time.monotonic())))
            i += 1

    await asyncio.gather(*(one_client(n) for n in range(args.clients)))


async def _health(client: httpx.AsyncClient, stop: float) -> dict[str, Any]:
    answered, failed, worst = 0, 0, 0.0
    waiting_max = 0
    while time.monotonic() < stop:
        started = time.perf_counter()
        try:
            response = await client.get("/health", timeout=5)
            response.raise_for_status()
            answered += 1
            waiting_max = max(waiting_max, response.json().get("load", {}).get("waiting", 0))
        except (httpx.HTTPError, ValueError):
            failed += 1
        worst = max(worst, time.perf_counter() - started)
        await asyncio.sleep(0.5)
    return {"answered": answered, "failed": failed, "slowest_s": round(worst, 3), "max_waiting": waiting_max}


async def _bad_inputs(client: httpx.AsyncClient, args: argparse.Namespace) -> dict[str, Any]:
    cases = {
        "message_2MB": _body("x" * 2_000_000, args.model, args.max_tokens),
        "messages_5000": {"model": args.model, "messages": [{"role": "user", "content": "hi"}] * 5000},
        "negative_max_tokens": _body("What is acne?", args.model, -1),
        "unknown_model": _body("What is acne?", "../../etc", args.max_tokens),
    }
    results: dict[str, Any] = {}
    for name, body in cases.items():
        started = time.perf_counter()
        response = await client.post("/v1/chat/completions", json=body, timeout=30)
        results[name] = {"status": response.status_code, "seconds": round(time.perf_counter() - started, 3)}
    started = time.perf_counter()
    response = await client.post("/v1/chat/completions", content=b"question=hi", timeout=30,
                                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    results["form_encoded"] = {"status": response.status_code, "seconds": round(time.perf_counter() - started, 3)}
    return results


async def run(args: argparse.Namespace) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=args.clients + args.burst + 16, max_keepalive_connections=args.clients + 16)
    key = os.environ.get("MEDLORA_API_KEY")  # when the server requires one; never a flag (shell history)
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with httpx.AsyncClient(base_url=args.url, limits=limits, headers=headers) as client:
        (await client.get("/health", timeout=10)).raise_for_status()
        steady, burst = Tally(), Tally()
        started = time.monotonic()
        stop = started + args.seconds
        health_task = asyncio.create_task(_health(client, stop + 5))
        steady_task = asyncio.create_task(_steady(client, args, steady, stop))
        await asyncio.sleep(min(args.seconds / 3, 20))  # the steady load is established
        bad = await _bad_inputs(client, args)
        burst_started = time.perf_counter()
        await asyncio.gather(*(_ask(client, _body(QUESTIONS[i % len(QUESTIONS)], args.model, args.max_tokens), burst,
                                    args.timeout) for i in range(args.burst)))
        burst_s = time.perf_counter() - burst_started
        await steady_task
        health = await health_task
    return {"settings": {"url": args.url, "clients": args.clients, "seconds": args.seconds, "burst": args.burst,
                         "max_tokens": args.max_tokens, "model": args.model},
            "steady": steady.summary(), "burst": {**burst.summary(), "seconds": round(burst_s, 2)},
            "bad_inputs": bad, "health": health}


def verdict(result: dict[str, Any]) -> list[str]:
    """The failures: 5xx other than 503, transport errors, slow or missing 4xx, unanswered /health polls."""
    problems = []
    for phase in ("steady", "burst"):
        data = result[phase]
        bad = {k: v for k, v in data["status"].items() if k not in ("200", "503")}
        if bad:
            problems.append(f"{phase}: unexpected statuses {bad}")
        if data["transport_errors"]:
            problems.append(f"{phase}: transport errors {data['transport_errors']}")
        if data["retry_after"].get("missing"):
            problems.append(f"{phase}: 503 without Retry-After")
    for name, case in result["bad_inputs"].items():
        if not 400 <= case["status"] < 500:
            problems.append(f"bad input {name}: status {case['status']}")
        if case["seconds"] >= 1.0:
            problems.append(f"bad input {name}: {case['seconds']} s (limit 1 s)")
    if result["health"]["failed"]:
        problems.append(f"/health failed {result['health']['failed']} time(s)")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--burst", type=int, default=150, help="requests fired at once mid-run")
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--model", default="auto")
    parser.add_argument("--timeout", type=float, default=300)
    parser.add_argument("--ignore-retry-after", action="store_true",
                        help="clients retry at once after a 503 instead of waiting Retry-After seconds")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    result = asyncio.run(run(args))
    result["problems"] = verdict(result)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as handle:
            handle.write(text + "\n")
    return 1 if result["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
