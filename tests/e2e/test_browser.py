"""The web UI and the API docs in a real browser: Debian's Chromium driven by Playwright.

Every page of the running app is opened and must show no Streamlit exception and no
traceback; the predict form is filled, submitted and its answer checked against the audit
trail; /docs must render with every request kept on this machine (no CDN). Screenshots
go to docs/images/ (the README shows them).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import httpx
import pytest

from tabops.client.simulate import apply_shifts, parse_shift, sample_records
from tabops.data.datasets import read_source
from tabops.spec.files import load_usecase
from tests.conftest import ADMIN, ADMIN_KEY, require
from tests.liveapi import LiveApi
from tests.serverproc import free_port

pytestmark = pytest.mark.slow

IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"
BROWSER_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PAGES = {
    "predict": "/",
    "batch": "/batch",
    "feedback": "/feedback",
    "monitoring": "/monitoring",
    "models": "/models",
}


@pytest.fixture(scope="module")
def ui_url(live_api: LiveApi, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`tabops ui` in a subprocess, calling the live API with an admin key."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TABOPS_")}
    env |= {"TABOPS_UI__API_URL": live_api.base, "TABOPS_UI__API_KEY": ADMIN_KEY}
    log = tmp_path_factory.mktemp("ui") / "ui.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tabops", "ui", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                if httpx.get(f"{base}/_stcore/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"UI not up in 90 s:\n{log.read_text()}"
            time.sleep(0.3)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """One Chromium for the module, on a fresh profile."""
    require(shutil.which("chromium") is not None, "Debian's chromium is not installed")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright, tempfile.TemporaryDirectory() as profile:
        context = playwright.chromium.launch_persistent_context(
            profile,
            executable_path=shutil.which("chromium"),
            headless=True,
            args=BROWSER_ARGS,
            viewport={"width": 1400, "height": 1000},
        )
        try:
            yield context
        finally:
            context.close()


def _settled(page: object, title: str) -> None:
    """Wait for the page's title, then for Streamlit to finish running the script."""
    page.get_by_role("heading", name=title).first.wait_for(timeout=60_000)  # type: ignore[attr-defined]
    page.locator('[data-testid="stStatusWidget"]').wait_for(state="hidden", timeout=60_000)  # type: ignore[attr-defined]
    page.wait_for_timeout(1500)  # type: ignore[attr-defined]  # charts draw after the run


def _no_errors(page: object) -> None:
    assert page.locator('[data-testid="stException"]').count() == 0  # type: ignore[attr-defined]
    text = page.locator("body").inner_text()  # type: ignore[attr-defined]
    assert "Traceback" not in text and "Error running app" not in text


def _traffic(live_api: LiveApi) -> None:
    """Real applications from the data set, their incomes shifted up (so Income drifts),
    a few scored by id, outcomes for a third of them, and one refused call."""
    spec = load_usecase(live_api.settings.usecases_dir, "credit")
    frame = read_source(spec, live_api.settings)
    records, truths = sample_records(spec, frame, 300, seed=7)
    apply_shifts(spec, frame, records, [parse_shift(spec, "Income=+1.5sd")])
    with httpx.Client(base_url=live_api.base, timeout=30) as client:
        answers = [client.post("/usecases/credit/predict", json=r).json() for r in records]
        for row_id in (12, 12, 40):
            client.post(f"/usecases/credit/predict/{row_id}")
        explained = client.post(
            "/usecases/credit/predict", params={"explain": "true"}, json={"records": records[:4]}
        )
        assert explained.status_code == 200, explained.text
        outcomes = [
            {"prediction_id": a["prediction_id"], "actual": truth}
            for a, truth in list(zip(answers, truths, strict=True))[:100]
        ]
        assert client.post("/usecases/credit/feedback", json=outcomes).status_code == 201
        refused = client.post("/usecases/credit/predict", json=records[0] | {"Age": 3})
        assert refused.status_code == 422


def test_every_page_renders_and_the_predict_form_works(
    live_api: LiveApi, ui_url: str, browser: object
) -> None:
    _traffic(live_api)
    IMAGES.mkdir(parents=True, exist_ok=True)
    page = browser.new_page()  # type: ignore[attr-defined]
    page.goto(f"{ui_url}/?usecase=credit")
    _settled(page, "Credit scoring: will an applicant default?")
    _no_errors(page)

    age = page.get_by_role("spinbutton", name="Age (years)")
    age.fill("7")  # out of the spec's bounds: the browser marks the field invalid
    age.press("Tab")
    assert age.evaluate("e => e.validity.rangeUnderflow") is True
    age.fill("35")
    age.press("Tab")
    page.get_by_role("spinbutton", name="Income (currency units per month)").fill("120")
    page.get_by_role("button", name="Predict", exact=True).click()
    page.get_by_text("Model version").wait_for(timeout=60_000)
    _settled(page, "Credit scoring: will an applicant default?")
    _no_errors(page)
    prediction_id = page.locator('[data-testid="stCode"] code').first.inner_text().strip()
    recorded = httpx.get(
        f"{live_api.base}/usecases/credit/predictions/{prediction_id}", headers=ADMIN
    ).json()
    assert recorded["features"]["Age"] == 35 and recorded["features"]["Income"] == 120
    shown = page.locator('[data-testid="stMarkdownContainer"] h2').first.inner_text()
    assert shown == {"bad": "Refused", "good": "Approved"}[recorded["label"]]
    # the explanation: its reasons as sentences and the bar chart of contributions
    page.get_by_role("heading", name="Why").wait_for(timeout=30_000)
    for reason in recorded["explanation"]["reasons"]:
        page.get_by_text(reason, exact=True).wait_for(timeout=30_000)
    charts = page.locator('[data-testid="stVegaLiteChart"]')
    assert charts.count() == 2  # the probability, the contributions
    assert charts.nth(1).locator("canvas, svg").count() >= 1  # drawn, not an empty frame
    page.set_viewport_size({"width": 1400, "height": 1500})  # the whole answer, chart included
    _settled(page, "Credit scoring: will an applicant default?")
    page.screenshot(path=str(IMAGES / "ui-predict.png"), full_page=True)

    titles = {
        "batch": "Batch scoring",
        "feedback": "Feedback",
        "monitoring": "Monitoring",
        "models": "Models",
    }
    # Streamlit scrolls inside the page: a tall window shows a whole page in one shot
    heights = {"batch": 1000, "feedback": 1000, "monitoring": 3500, "models": 1500}
    for name, title in titles.items():
        page.set_viewport_size({"width": 1400, "height": heights[name]})
        page.goto(f"{ui_url}{PAGES[name]}?usecase=credit")
        _settled(page, title)
        _no_errors(page)
        if name == "monitoring":
            page.get_by_text("features drifted").first.wait_for(timeout=60_000)
            page.get_by_text("last hour", exact=True).click()  # this traffic is minutes old
            _settled(page, title)
            _no_errors(page)
            page.get_by_text("What drives live predictions").wait_for(timeout=30_000)
            page.get_by_text("explained predictions of version").wait_for(timeout=30_000)
        page.screenshot(path=str(IMAGES / f"ui-{name}.png"), full_page=True)
    page.close()


def test_api_docs_render_without_internet(live_api: LiveApi, browser: object) -> None:
    page = browser.new_page()  # type: ignore[attr-defined]
    outside: list[str] = []

    def _only_loopback(route: object) -> None:
        url = route.request.url  # type: ignore[attr-defined]
        if urlparse(url).hostname not in ("127.0.0.1", "localhost"):
            outside.append(url)
            route.abort()  # type: ignore[attr-defined]
        else:
            route.continue_()  # type: ignore[attr-defined]

    page.route("**/*", _only_loopback)
    page.goto(f"{live_api.base}/docs")
    page.locator(".swagger-ui .info .title").wait_for(timeout=60_000)
    assert "tabops" in page.locator(".swagger-ui .info .title").inner_text()
    page.get_by_text("/usecases/credit/predict", exact=True).first.wait_for(timeout=30_000)
    page.wait_for_timeout(500)
    page.screenshot(path=str(IMAGES / "api-docs.png"))
    assert outside == []
    # ReDoc renders too, every outside request still refused (its footer logo is the one
    # file it asks its CDN for)
    page.goto(f"{live_api.base}/redoc")
    page.get_by_text("tabops (0.1.0)").first.wait_for(timeout=60_000)
    page.get_by_text("Predict Status: Credit scoring").first.wait_for(state="attached")
    assert all(urlparse(u).path.endswith("logo-mini.svg") for u in outside), outside
    page.close()
