"""Browser tests: Debian's Chromium driven by Playwright against a real
Image Studio server (uvicorn on a free loopback port, tiny pipelines).

Screenshots of each view go to test-output/screenshots/."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "test-output" / "screenshots"
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run"]
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}

@pytest.fixture(scope="session")
def chromium_path() -> str:
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"Debian's chromium is not installed ({CHROMIUM} is missing); `make test` installs it "
                    "with apt-get install chromium")
    pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed (pip install -e '.[test]')")
    return CHROMIUM


@pytest.fixture(scope="session")
def playwright_browser(chromium_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path, args=LAUNCH_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def studio_engine(tmp_path_factory, chromium_path):
    """One engine (tiny pipelines loaded once) shared by the servers below."""
    from serverkit import make_models_dir

    from imagestudio.engine import Catalog, Engine

    models = make_models_dir(tmp_path_factory.mktemp("browser-models"))
    catalog = Catalog(models, include_embedded=False)
    return models, catalog, Engine(catalog)


@pytest.fixture(scope="session")
def server(tmp_path_factory, studio_engine):
    from serverkit import start_server

    models, catalog, engine = studio_engine
    with start_server(tmp_path_factory.mktemp("browser-data"), models, engine=engine, catalog=catalog) as running:
        yield running


@pytest.fixture(scope="session")
def shared_server(tmp_path_factory, studio_engine):
    from serverkit import start_server

    models, catalog, engine = studio_engine
    with start_server(tmp_path_factory.mktemp("browser-shared"), models, engine=engine, catalog=catalog,
                      shared=True) as running:
        yield running


def _new_page(browser, viewport):
    context = browser.new_context(viewport=viewport, accept_downloads=True)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    page.js_errors = errors
    return context, page


@pytest.fixture
def page(playwright_browser):
    context, page = _new_page(playwright_browser, DESKTOP)
    yield page
    context.close()
    assert not page.js_errors, f"JavaScript errors on the page: {page.js_errors}"


@pytest.fixture
def phone_page(playwright_browser):
    context, page = _new_page(playwright_browser, PHONE)
    yield page
    context.close()
    assert not page.js_errors, f"JavaScript errors on the page: {page.js_errors}"


@pytest.fixture(scope="session")
def shot():
    """shot(page, name): save a screenshot to test-output/screenshots/<name>.png."""
    return save_screenshot


def save_screenshot(page, name: str, settings_top: bool = True) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    if settings_top:
        page.evaluate("() => { const s = document.querySelector('#settings'); if (s) s.scrollTop = 0; }")
    page.screenshot(path=str(path))
    return path
