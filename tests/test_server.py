"""The HTTP API under a real uvicorn on 127.0.0.1, driven by the official ``openai`` client."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
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
    running_server,
    service_config,
)

from medlora import MEDICAL_DISCLAIMER
from medlora.server.app import create_app
from medlora.service.answers import NO_SOURCE_NOTE
from medlora.service.llm_service import LLMService

openai = pytest.importorskip("openai", reason="the openai client is a dev extra: pip install -e '.[dev]'")

ADMIN_ENV = "MEDLORA_TEST_ADMIN_TOKEN"


@pytest.fixture(scope="module")
def adapters_dir(wordy_llama_dir, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("server-adapters")
    make_adapter(wordy_llama_dir, root / "lora-dermatology-adapter", "dermatology", seed=1)
    make_adapter(wordy_llama_dir, root / "lora-cardiology-adapter", "cardiology", seed=2)
    return root


@pytest.fixture(scope="module")
def service(wordy_llama_dir, adapters_dir) -> LLMService:
    # Every source retrieved is shown (no title filter): these tests check how the API carries several sources;
    # the bot's filter is tested in test_service.py and test_relevance.py.
    cfg = service_config(wordy_llama_dir, adapters_dir, **{
        "service.admin_token_env": ADMIN_ENV, "service.batch_window_ms": 150, "service.min_source_match": 0.0})
    svc = LLMService(cfg, index=make_index(), router=make_router())
    svc.load_model()
    return svc


@pytest.fixture(scope="module")
def base_url(service) -> Iterator[str]:
    with running_server(create_app(service)) as url:
        yield url


@pytest.fixture
def client(base_url):
    return openai.OpenAI(base_url=f"{base_url}/v1", api_key="x", max_retries=0, timeout=60)


def test_health_and_models(base_url, client):
    health = httpx.get(f"{base_url}/health").json()
    assert health["status"] == "ok" and sorted(health["adapters"]) == ["cardiology", "dermatology"]
    ids = [m.id for m in client.models.list().data]
    assert ids[:2] == ["auto", "base"] and sorted(ids[2:]) == ["cardiology", "dermatology"]


def test_non_streamed_completion_has_sources_and_disclaimer(client, service):
    response = client.chat.completions.create(model="dermatology", messages=[
        {"role": "system", "content": "ignored"}, {"role": "user", "content": DERM_Q}])
    content = response.choices[0].message.content
    expected = service.answer(DERM_Q, "dermatology")
    assert content == expected.full_text
    assert "Sources:\n[1] Melanoma — https://example.org/melanoma" in content and MEDICAL_DISCLAIMER in content
    extra = response.model_extra
    assert response.model == "dermatology" and extra["adapter"] == "dermatology"
    assert [s["title"] for s in extra["sources"]] == [s.title for s in expected.sources]
    assert extra["sources"][0]["url"] == "https://example.org/melanoma"
    assert extra["disclaimer"] == MEDICAL_DISCLAIMER
    # This answer ends before the 10-token budget; one capped at 2 tokens ends by length.
    assert expected.timings["new_tokens"] < 10 and response.choices[0].finish_reason == "stop"
    capped = client.chat.completions.create(model="dermatology", max_tokens=2,
                                            messages=[{"role": "user", "content": DERM_Q}])
    assert capped.choices[0].finish_reason == "length"


def test_streamed_completion_matches_and_ends_with_sources(client, base_url):
    plain = client.chat.completions.create(model="dermatology", messages=[{"role": "user", "content": DERM_Q}])
    chunks = list(client.chat.completions.create(
        model="dermatology", messages=[{"role": "user", "content": DERM_Q}], stream=True))
    contents = [c.choices[0].delta.content or "" for c in chunks]
    assert sum(1 for text in contents[1:-1] if text) >= 5, f"expected a chunk per word, got {contents}"
    assert "".join(contents) == plain.choices[0].message.content
    final = chunks[-1]
    assert final.choices[0].finish_reason == plain.choices[0].finish_reason  # counted alike on both paths
    assert [s["number"] for s in final.model_extra["sources"]] == [1, 2]
    assert final.model_extra["disclaimer"] == MEDICAL_DISCLAIMER
    assert all(c.model == "dermatology" for c in chunks)

    # The raw SSE framing: data lines, ending with [DONE].
    with httpx.stream("POST", f"{base_url}/v1/chat/completions", timeout=60, json={
            "model": "base", "stream": True, "messages": [{"role": "user", "content": CARD_Q}]}) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in response.iter_lines() if line]
    assert all(line.startswith("data: ") for line in lines)
    assert lines[-1] == "data: [DONE]"
    assert "sources" in json.loads(lines[-2][6:])


def test_auto_routes_and_unknown_model_is_404(client):
    response = client.chat.completions.create(model="auto", messages=[{"role": "user", "content": CARD_Q}])
    assert response.model == "cardiology" and response.model_extra["route"]["adapter"] == "cardiology"
    with pytest.raises(openai.NotFoundError, match="unknown adapter"):
        client.chat.completions.create(model="neurology", messages=[{"role": "user", "content": "x?"}])
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="neurology", stream=True,
                                       messages=[{"role": "user", "content": "x?"}])
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="base", messages=[{"role": "assistant", "content": "hi"}])
    with pytest.raises(openai.BadRequestError, match="messages"):
        client.chat.completions.create(model="base", messages=[])


def test_concurrent_requests_for_different_adapters_share_a_batch(client, base_url, service):
    requests = [(DERM_Q, "dermatology"), (CARD_Q, "cardiology"), (DERM_Q, "base"), (CARD_Q, "dermatology")]
    before = httpx.get(f"{base_url}/health").json()["batching"]

    def ask(item):
        question, model = item
        return client.chat.completions.create(model=model, messages=[{"role": "user", "content": question}])

    with ThreadPoolExecutor(len(requests)) as pool:
        responses = list(pool.map(ask, requests))
    after = httpx.get(f"{base_url}/health").json()["batching"]
    assert after["requests"] - before["requests"] == len(requests)
    assert after["batches"] - before["batches"] < len(requests), "concurrent requests were not batched"
    for (question, model), response in zip(requests, responses, strict=True):
        assert response.model == model
        assert response.choices[0].message.content == service.answer(question, model).full_text


def test_adapter_admin_requires_token(base_url, adapters_dir, tiny_llama_dir, tmp_path, monkeypatch):
    url = f"{base_url}/v1/adapters"
    body = {"name": "derm2", "path": "lora-dermatology-adapter"}
    monkeypatch.delenv(ADMIN_ENV, raising=False)
    response = httpx.post(url, json=body)
    assert response.status_code == 403 and ADMIN_ENV in response.json()["error"]["message"]

    monkeypatch.setenv(ADMIN_ENV, "s3cret")
    assert httpx.post(url, json=body).status_code == 401
    assert httpx.post(url, json=body, headers={"Authorization": "Bearer wrong"}).status_code == 401
    auth = {"Authorization": "Bearer s3cret"}
    response = httpx.post(url, json=body, headers=auth)
    assert response.status_code == 201, response.text
    assert response.json()["loaded"]["name"] == "derm2"
    assert "derm2" in [m["id"] for m in httpx.get(f"{base_url}/v1/models").json()["data"]]

    other = make_adapter(tiny_llama_dir, adapters_dir / "other-base", "dermatology", base_id="someone/other-model")
    try:
        response = httpx.post(url, json={"name": "other", "path": "other-base"}, headers=auth)
        assert response.status_code == 409 and "someone/other-model" in response.json()["error"]["message"]
    finally:
        shutil.rmtree(other)

    assert httpx.delete(f"{url}/derm2").status_code == 401
    assert httpx.delete(f"{url}/derm2", headers=auth).status_code == 200
    assert httpx.delete(f"{url}/derm2", headers=auth).status_code == 404
    assert "derm2" not in [m["id"] for m in httpx.get(f"{base_url}/v1/models").json()["data"]]


def test_web_page_and_static_files_are_served(base_url):
    page = httpx.get(base_url + "/")
    assert page.status_code == 200 and "medlora" in page.text and "/static/app.js" in page.text
    assert "http://" not in page.text.replace("http://www.w3.org", "") and "cdn" not in page.text.lower()
    assert httpx.get(base_url + "/static/app.js").status_code == 200
    assert httpx.get(base_url + "/static/style.css").status_code == 200


def test_serving_without_adapters_imports_neither_sklearn_nor_peft(tiny_llama_dir, tmp_path):
    """`medlora serve` start: scikit-learn (the router) and PEFT (adapters) cost seconds to import, so a start
    imports them only when they are used: the router on the first ``auto`` question, PEFT on the first adapter."""
    script = (
        "import sys\n"
        "from medlora.cli import main\n"
        "from medlora.server.app import create_app\n"
        "from medlora.config import MedloraConfig\n"
        "from medlora.service.llm_service import LLMService\n"
        f"cfg = MedloraConfig().with_overrides({{'models.llm.name': {str(tiny_llama_dir)!r}, "
        f"'models.llm.adapters_dir': {str(tmp_path / 'none')!r}, 'service.retrieval': False}})\n"
        "service = LLMService(cfg)\n"
        "service.load_model()\n"
        "create_app(service)\n"
        "print(sorted(m for m in ('sklearn', 'peft') if m in sys.modules))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_an_answer_without_sources_says_so(client):
    """No source matched: the API says so in the text and as ``note`` (the web page shows it)."""
    response = client.chat.completions.create(model="base", messages=[{"role": "user", "content": "Qzx vrb plk?"}])
    assert response.model_extra["sources"] == [] and response.model_extra["note"] == NO_SOURCE_NOTE
    assert NO_SOURCE_NOTE in response.choices[0].message.content
    chunks = list(client.chat.completions.create(
        model="base", messages=[{"role": "user", "content": "Qzx vrb plk?"}], stream=True))
    assert chunks[-1].model_extra["note"] == NO_SOURCE_NOTE
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == response.choices[0].message.content
