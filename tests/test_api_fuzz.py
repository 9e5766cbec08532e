"""schemathesis against the OpenAPI schema of the tiny-model server: whatever it sends, no 5xx.

The schema comes from the app itself (the public /openapi.json is off by default); requests go over HTTP to
a real uvicorn, through the same middleware as production.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import make_adapter, make_index, make_router, make_wordy_model, running_server, service_config

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is a dev extra: pip install -e '.[dev]'")
from hypothesis import HealthCheck, given, settings  # noqa: E402

from medlora.server.app import create_app  # noqa: E402
from medlora.service.llm_service import LLMService  # noqa: E402


@pytest.fixture(scope="module")
def fuzz_app(tiny_llama_dir, tiny_tokenizer, tmp_path_factory):
    root = tmp_path_factory.mktemp("api-fuzz")
    model = make_wordy_model(tiny_llama_dir, root / "llama", tiny_tokenizer)
    make_adapter(model, root / "adapters" / "lora-dermatology-adapter", "dermatology", seed=1)
    cfg = service_config(Path(model), root / "adapters", **{
        "service.admin_token_env": "MEDLORA_FUZZ_ADMIN_UNSET", "service.max_new_tokens": 4,
        "service.batch_window_ms": 0})
    service = LLMService(cfg, index=make_index(), router=make_router())
    service.load_model()
    return create_app(service)


@pytest.fixture(scope="module")
def fuzz_url(fuzz_app):
    with running_server(fuzz_app) as url:
        yield url


def test_no_server_errors(fuzz_app, fuzz_url):
    schema = schemathesis.openapi.from_dict(fuzz_app.openapi())
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/v1/chat/completions", "/v1/adapters", "/health"}
    seen: dict[str, set[int]] = {}

    for operation in operations:
        @given(case=operation.as_strategy())
        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def check(case) -> None:
            response = case.call(base_url=fuzz_url, timeout=30)
            seen.setdefault(f"{case.method} {case.path}", set()).add(response.status_code)
            assert response.status_code < 500, (case.method, case.path, case.body, response.text[:500])

        check()
    assert any(200 in codes for codes in seen.values())
