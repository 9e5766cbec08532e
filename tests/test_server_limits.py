"""Input limits, overload and exposure of the HTTP server, under a real uvicorn on 127.0.0.1.

Generation is held back with a gate (an event the fake ``answer_batch`` waits on) or by holding the model
lock, so queue states are reached deterministically instead of by racing a fast tiny model.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from helpers import (
    CARD_Q,
    DERM_Q,
    make_adapter,
    make_index,
    make_router,
    make_wordy_model,
    running_server,
    service_config,
)

from medlora.server.app import create_app
from medlora.service.llm_service import LLMService

ADMIN_ENV = "MEDLORA_TEST_LIMITS_ADMIN"
KEY_ENV = "MEDLORA_TEST_LIMITS_KEY"


@pytest.fixture(scope="module")
def limits_adapters(tiny_llama_dir, tiny_tokenizer, tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("limits")
    model = make_wordy_model(tiny_llama_dir, root / "llama", tiny_tokenizer)
    adapters = root / "adapters"
    make_adapter(model, adapters / "lora-dermatology-adapter", "dermatology", seed=1)
    return model, adapters


@pytest.fixture(scope="module")
def svc(limits_adapters) -> LLMService:
    model, adapters = limits_adapters
    cfg = service_config(model, adapters, **{
        "service.admin_token_env": ADMIN_ENV, "service.api_key_env": KEY_ENV, "service.batch_window_ms": 0,
        "service.max_queue": 2, "service.max_streams": 1, "service.max_message_chars": 2000,
        "service.max_messages": 50, "service.retry_after_s": 7, "service.max_prompt_tokens": 300})
    service = LLMService(cfg, index=make_index(), router=make_router())
    service.load_model()
    return service


@pytest.fixture(scope="module")
def url(svc):
    with running_server(create_app(svc)) as base:
        yield base


class Gate:
    """Replace ``answer_batch`` by one that waits for :meth:`open` and records the questions it answered."""

    def __init__(self, service: LLMService, monkeypatch: pytest.MonkeyPatch) -> None:
        self.event = threading.Event()
        self.questions: list[str] = []
        self.calls = 0
        original = service.answer_batch

        def gated(questions, adapters=None, **kwargs):
            self.calls += 1
            assert self.event.wait(30), "the test never opened the gate"
            self.questions += list(questions)
            return original(questions, adapters, **kwargs)

        monkeypatch.setattr(service, "answer_batch", gated)

    def open(self) -> None:
        self.event.set()


def _chat(url: str, question: str, **extra) -> httpx.Response:
    body = {"model": "dermatology", "messages": [{"role": "user", "content": question}], **extra}
    return httpx.post(f"{url}/v1/chat/completions", json=body, timeout=30)


def _load(url: str) -> dict:
    return httpx.get(f"{url}/health", timeout=5).json()["load"]


def _wait_until(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


def test_huge_message_and_many_messages_get_4xx_fast_while_others_are_served(url):
    with ThreadPoolExecutor(1) as pool:
        normal = pool.submit(_chat, url, DERM_Q)
        started = time.perf_counter()
        huge = _chat(url, "x" * 2_000_000)
        huge_s = time.perf_counter() - started
        started = time.perf_counter()
        many = httpx.post(f"{url}/v1/chat/completions", timeout=30, json={
            "model": "dermatology", "messages": [{"role": "user", "content": "hi"}] * 5000})
        many_s = time.perf_counter() - started
        assert normal.result().status_code == 200
    assert huge.status_code == 413 and huge_s < 1.0, (huge.status_code, huge_s)
    assert "max_request_bytes" in huge.json()["error"]["message"]
    assert many.status_code == 413 and many_s < 1.0, (many.status_code, many_s)
    assert "too many messages: 5000" in many.json()["error"]["message"]


def test_long_message_and_long_prompt_are_refused_with_the_limit(url):
    response = _chat(url, "y" * 2500)
    assert response.status_code == 413 and "max_message_chars" in response.json()["error"]["message"]
    # Within the character cap but beyond the prompt-token cap (300 tokens) of this server.
    words = " ".join(f"melanoma{i}" for i in range(150))
    response = _chat(url, words)
    assert response.status_code == 413 and "prompt of" in response.json()["error"]["message"]
    stream = _chat(url, words, stream=True)
    assert stream.status_code == 413
    response = _chat(url, DERM_Q, max_tokens=100000)  # clamped to service.max_new_tokens, not an error
    assert response.status_code == 200


def test_full_queue_answers_503_with_retry_after_and_drops_timed_out_work(url, svc, monkeypatch):
    gate = Gate(svc, monkeypatch)
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(_chat, url, "first question about melanoma")
        _wait_until(lambda: gate.calls == 1)  # generating, held at the gate
        second = pool.submit(_chat, url, "second question about psoriasis")
        _wait_until(lambda: _load(url)["waiting"] == 2)
        started = time.perf_counter()
        refused = _chat(url, "third question about acne")
        assert refused.status_code == 503 and time.perf_counter() - started < 1.0
        assert refused.headers["retry-after"] == "7" and refused.json()["error"]["code"] == "overloaded"
        gate.open()
        assert first.result().status_code == 200 and second.result().status_code == 200
    assert "third question about acne" not in gate.questions
    assert _load(url)["rejected"] >= 1


def test_request_timeout_and_client_disconnect_drop_queued_work(url, svc, monkeypatch):
    gate = Gate(svc, monkeypatch)
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(_chat, url, "held question about eczema")
        _wait_until(lambda: gate.calls == 1)
        monkeypatch.setattr(svc.config.service, "request_timeout_s", 0.5)
        started = time.perf_counter()
        timed_out = _chat(url, "timed out question about rosacea")
        assert timed_out.status_code == 504 and time.perf_counter() - started < 5
        # A client that gives up: its queued request must be dropped, not generated.
        abandoned_before = _load(url)["abandoned"]
        monkeypatch.setattr(svc.config.service, "request_timeout_s", 60.0)
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{url}/v1/chat/completions", timeout=httpx.Timeout(30, read=0.5), json={
                "model": "dermatology", "messages": [{"role": "user", "content": "gone question about warts"}]})
        _wait_until(lambda: _load(url)["abandoned"] > abandoned_before)
        gate.open()
        assert first.result().status_code == 200
    time.sleep(0.3)
    assert gate.questions == ["held question about eczema"]


def test_streams_are_capped(url, svc):
    # the first stream's generation waits for the model: it keeps its slot
    with svc._lock, ThreadPoolExecutor(1) as pool:
        def stream_one() -> int:
            with httpx.stream("POST", f"{url}/v1/chat/completions", timeout=30, json={
                    "model": "dermatology", "stream": True,
                    "messages": [{"role": "user", "content": CARD_Q}]}) as response:
                return response.status_code if list(response.iter_lines()) else -1

        first = pool.submit(stream_one)
        _wait_until(lambda: _load(url)["streams"] == 1)
        refused = _chat(url, DERM_Q, stream=True)
        assert refused.status_code == 503 and refused.headers["retry-after"] == "7"
        svc._lock.release()
        try:
            assert first.result(timeout=30) == 200
        finally:
            svc._lock.acquire()
    _wait_until(lambda: _load(url)["streams"] == 0)
    assert _chat(url, DERM_Q, stream=True).status_code == 200


def test_content_type_host_headers_docs_and_api_key(url, monkeypatch):
    body = '{"model": "base", "messages": [{"role": "user", "content": "hi there"}]}'
    response = httpx.post(f"{url}/v1/chat/completions", content=body, headers={"Content-Type": "text/plain"})
    assert response.status_code == 415 and "application/json" in response.json()["error"]["message"]
    response = httpx.get(f"{url}/health", headers={"Host": "evil.example"})
    assert response.status_code == 400 and "trusted_hosts" in response.text
    assert httpx.get(f"{url}/health", headers={"Host": "localhost"}).status_code == 200

    page = httpx.get(url + "/")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY" and page.headers["x-content-type-options"] == "nosniff"
    for path in ("/docs", "/redoc", "/openapi.json"):
        assert httpx.get(url + path).status_code == 404

    monkeypatch.setenv(KEY_ENV, "k3y")
    assert httpx.get(f"{url}/v1/models").status_code == 401
    assert _chat(url, DERM_Q).status_code == 401
    assert httpx.get(f"{url}/v1/models", headers={"Authorization": "Bearer k3y"}).status_code == 200
    ok = httpx.post(f"{url}/v1/chat/completions", headers={"Authorization": "Bearer k3y"}, timeout=30,
                    json={"model": "base", "messages": [{"role": "user", "content": DERM_Q}]})
    assert ok.status_code == 200
    assert httpx.get(f"{url}/health").status_code == 200 and httpx.get(url + "/").status_code == 200


def test_admin_paths_stay_inside_adapters_dir_and_no_absolute_paths_are_shown(url, limits_adapters, tiny_llama_dir,
                                                                              tmp_path, monkeypatch):
    model, adapters = limits_adapters
    monkeypatch.setenv(ADMIN_ENV, "adm")
    auth = {"Authorization": "Bearer adm"}
    outside = make_adapter(model, tmp_path / "outside-adapter", "dermatology", seed=3)
    (adapters / "sneaky").symlink_to(outside, target_is_directory=True)
    try:
        answers = []
        for path in (str(outside), "../" * 8 + str(outside).lstrip("/"), "sneaky", "does-not-exist",
                     str(tmp_path / "nothing-here"), "/etc"):
            response = httpx.post(f"{url}/v1/adapters", json={"name": "x1", "path": path}, headers=auth)
            assert response.status_code == 404, (path, response.text)
            answers.append(response.json()["error"]["message"])
            assert str(tmp_path) not in response.text
        # The same wording whether the path exists or not: the API cannot probe the server's files.
        assert len({re.sub(r"'[^']*'", "NAME", a, count=1) for a in answers}) == 1, answers
        response = httpx.post(f"{url}/v1/adapters", json={"name": "derm-copy", "path": "lora-dermatology-adapter"},
                              headers=auth)
        assert response.status_code == 201, response.text
    finally:
        (adapters / "sneaky").unlink()
        httpx.delete(f"{url}/v1/adapters/derm-copy", headers=auth)
    for path in ("/v1/adapters", "/health", "/v1/models"):
        text = httpx.get(url + path).text
        assert str(model.parent) not in text and '"/' not in text, (path, text[:300])
    assert httpx.get(f"{url}/v1/adapters").json()["adapters"][0]["directory"] == "lora-dermatology-adapter"


def test_a_failing_request_is_found_by_halving_not_by_rerunning_everyone():
    from medlora.errors import MedloraError
    from medlora.server.batching import RequestBatcher
    from medlora.service.llm_service import Answer

    class Service:
        calls: list[list[str]] = []

        def answer_batch(self, questions, adapters, max_new_tokens):
            self.calls.append(list(questions))
            if "bad" in questions:
                raise MedloraError("this one fails")
            return [Answer(text=q, sources=[], adapter="base", timings={}) for q in questions]

    service = Service()
    questions = [f"q{i}" for i in range(7)] + ["bad"]

    async def run():
        batcher = RequestBatcher(service, window_ms=200, max_batch=8, max_queue=16)
        try:
            return await asyncio.gather(*[batcher.submit(q, "base", 5) for q in questions], return_exceptions=True)
        finally:
            await batcher.close()

    results = asyncio.run(run())
    assert [r.text for r in results[:7]] == questions[:7]
    assert isinstance(results[7], MedloraError)
    assert service.calls[0] == questions  # one batch first
    assert len(service.calls) <= 1 + 2 * 3  # log2(8) halvings, not 1 + 8 single reruns


SHUTDOWN_SCRIPT = """
import sys, time
import medlora.service.llm_service as llm
from medlora.config import MedloraConfig
from medlora.server.app import create_app, run_server
cfg = MedloraConfig().with_overrides({"models.llm.name": sys.argv[1], "models.llm.adapters_dir": sys.argv[2],
                                      "service.retrieval": False, "service.shutdown_timeout_s": 1.0})
svc = llm.LLMService(cfg)
svc.load_model()
llm.generate_batch = lambda *a, **k: time.sleep(600)  # a generation that would run for ten minutes
run_server(create_app(svc), "127.0.0.1", int(sys.argv[3]))
"""


def test_sigterm_stops_the_server_within_seconds_during_a_long_generation(tiny_llama_dir, tmp_path):
    import os
    import signal
    import socket
    import subprocess
    import sys

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    script = tmp_path / "serve.py"
    script.write_text(SHUTDOWN_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    process = subprocess.Popen([sys.executable, str(script), str(tiny_llama_dir), str(tmp_path / "none"), str(port)],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert process.poll() is None, process.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "server did not start"
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(lambda: httpx.post(f"{url}/v1/chat/completions", timeout=60, json={
                "model": "base", "messages": [{"role": "user", "content": DERM_Q}]}))
            _wait_until(lambda: _load(url)["waiting"] == 1)
            time.sleep(0.3)  # inside the ten-minute generation now
            process.send_signal(signal.SIGTERM)
            started = time.monotonic()
            process.wait(timeout=30)
            stopped_s = time.monotonic() - started
            with pytest.raises(Exception):  # noqa: B017 - the client sees an error or an empty reply
                assert pending.result().status_code == 200
        assert stopped_s < 8, f"SIGTERM took {stopped_s:.1f} s"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
