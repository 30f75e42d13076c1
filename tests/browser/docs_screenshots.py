"""Make the README screenshots of the studio page with the embedded model:

    .venv/bin/python tests/browser/docs_screenshots.py [OUT_DIR [MODELS_DIR]]

Starts a real server (temporary data folder, the default catalog), generates
in Chromium at 1280x800 and 390x844, and writes page-desktop.png and
page-phone.png. Not a test: the browser tests use tiny random-weight models,
whose images are noise."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

from conftest import CHROMIUM, DESKTOP, LAUNCH_ARGS, PHONE  # noqa: E402
from serverkit import start_server  # noqa: E402

PROMPT = "a red house on the left and a yellow star on the right, sunset sky"


def generate(page, url: str, count: int, prompt: str) -> None:
    page.goto(url)
    page.wait_for_selector("body[data-ready=true]")
    toggle = page.locator("#settings-toggle")
    if toggle.is_visible():
        toggle.click()
    page.click(f"#counts label:has(input[value='{count}'])")
    if toggle.is_visible():
        toggle.click()
    page.fill("#prompt", prompt)
    page.click("#generate")
    page.wait_for_function(
        "n => { const imgs = document.querySelectorAll('.batch:first-child .tile img');"
        " return imgs.length === n && [...imgs].every(i => i.complete && i.naturalWidth > 0); }",
        arg=count, timeout=600_000)
    page.wait_for_timeout(500)
    page.evaluate("() => { window.scrollTo(0, 0); document.querySelector('#settings').scrollTop = 0; }")


def main(out: Path, models: Path | None = None) -> None:
    from playwright.sync_api import sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp, \
            start_server(Path(tmp) / "data", models or Path(tmp) / "models") as server, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        page = browser.new_page(viewport=DESKTOP)
        generate(page, server.url, 4, PROMPT)
        page.screenshot(path=str(out / "page-desktop.png"))
        phone = browser.new_page(viewport=PHONE)
        generate(phone, server.url, 2, "a blue boat by the sea, comic style, bold outlines")
        phone.screenshot(path=str(out / "page-phone.png"))
        browser.close()
    print(f"wrote {out / 'page-desktop.png'} and {out / 'page-phone.png'}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE.parents[1] / "docs" / "images",
         Path(sys.argv[2]) if len(sys.argv) > 2 else None)
