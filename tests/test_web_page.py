"""The web chat page driven end to end in real headless Chromium (Debian's ``chromium``, via Playwright).

Playwright only drives the browser here: it never downloads one (no ``playwright install``). Without a
chromium binary or the playwright package the test is skipped and says why.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

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

from medlora import MEDICAL_DISCLAIMER
from medlora.server.app import create_app
from medlora.service.answers import NO_SOURCE_NOTE
from medlora.service.llm_service import LLMService

pytestmark = pytest.mark.browser

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def find_chromium() -> str | None:
    """``$MEDLORA_CHROMIUM``, else a chromium on PATH (Debian: ``apt-get install chromium``)."""
    candidates = [os.environ.get("MEDLORA_CHROMIUM"), shutil.which("chromium"), shutil.which("chromium-browser"),
                  "/usr/bin/chromium"]
    return next((c for c in candidates if c and Path(c).is_file() and os.access(c, os.X_OK)), None)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    executable = find_chromium()
    if executable is None:
        pytest.skip("no chromium binary found (apt-get install chromium, or set MEDLORA_CHROMIUM)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed "
                                   "(pip install playwright; the browser comes from apt, not playwright install)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="module")
def site(tiny_llama_dir, tiny_tokenizer, tmp_path_factory) -> Iterator[tuple[str, LLMService]]:
    root = tmp_path_factory.mktemp("web-adapters")
    model = make_wordy_model(tiny_llama_dir, root / "llama", tiny_tokenizer)
    make_adapter(model, root / "lora-dermatology-adapter", "dermatology", seed=1)
    make_adapter(model, root / "lora-cardiology-adapter", "cardiology", seed=2)
    service = LLMService(service_config(model, root), index=make_index(), router=make_router())
    service.load_model()
    with running_server(create_app(service)) as url:
        yield url, service


def test_chat_page_streams_an_answer_with_linked_sources(browser, site):
    url, service = site
    page = browser.new_page()
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    try:
        page.goto(url + "/")
        page.wait_for_selector("#adapter[data-loaded='true']", state="attached", timeout=15_000)
        options = page.eval_on_selector_all("#adapter option", "els => els.map(e => e.value)")
        assert options[:2] == ["auto", "base"] and sorted(options[2:]) == ["cardiology", "dermatology"]
        assert "not medical advice" in page.text_content("#banner-disclaimer")

        # A chosen adapter: the streamed text equals the service's answer, sources are links.
        page.select_option("#adapter", "dermatology")
        page.fill("#question", DERM_Q)
        page.click("#send")
        page.wait_for_selector(".exchange:nth-of-type(1) .answer[data-done='true']", timeout=30_000)
        first = page.locator(".exchange").nth(0)
        expected = service.answer(DERM_Q, "dermatology")
        assert first.locator(".question").text_content() == DERM_Q
        assert first.locator(".adapter-used").text_content() == "dermatology"
        assert first.locator(".text").text_content() == expected.body
        chunks = int(first.locator(".answer").get_attribute("data-chunks"))
        assert chunks == len(list(service.stream(DERM_Q, "dermatology"))) >= 5, "the answer was not streamed"
        links = first.locator("ol.sources li a")
        assert links.count() == len(expected.sources) >= 1
        assert [links.nth(i).get_attribute("href") for i in range(links.count())] == [
            s.url for s in expected.sources]
        assert links.nth(0).text_content() == "Melanoma"
        assert first.locator(".answer-disclaimer").text_content() == MEDICAL_DISCLAIMER
        assert first.locator(".error").count() == 0

        # auto routes a heart question to the cardiology adapter; Enter submits.
        page.select_option("#adapter", "auto")
        page.fill("#question", CARD_Q)
        page.press("#question", "Enter")
        page.wait_for_selector(".exchange:nth-of-type(2) .answer[data-done='true']", timeout=30_000)
        second = page.locator(".exchange").nth(1)
        assert second.locator(".adapter-used").text_content().startswith("cardiology (auto")
        assert "Atrial fibrillation" in second.locator("ol.sources").text_content()
        assert second.locator(".error").count() == 0
        assert first.locator(".answer-note").text_content() == ""

        # No source matches: the page says so instead of showing an empty sources list.
        page.fill("#question", "Qzx vrb plk?")
        page.press("#question", "Enter")
        page.wait_for_selector(".exchange:nth-of-type(3) .answer[data-done='true']", timeout=30_000)
        third = page.locator(".exchange").nth(2)
        assert third.locator(".answer-note").text_content() == NO_SOURCE_NOTE
        assert third.locator(".sources-box").is_hidden()
    finally:
        page.close()
    assert requests and all(r.startswith(url) for r in requests), "the page must not load anything external"
