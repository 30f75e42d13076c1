"""The studio page in real Chromium against a real server: prompt counter,
generate and wait, reuse settings, repaint with a mask, extend, image to
image from an upload, cancel, history search and delete, shared-mode credits,
phone layout and keyboard use."""

from __future__ import annotations

import io
import re

import pytest
from PIL import Image, ImageChops, PngImagePlugin
from serverkit import TINY, wait_job

from imagestudio.store.metadata import parse_parameters, read_parameters

expect = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed").expect

pytestmark = pytest.mark.browser

JOB_TIMEOUT = 90_000  # ms: a tiny job on 2 busy cores


def open_studio(page, server) -> None:
    page.goto(server.url)
    page.wait_for_selector("body[data-ready=true]")
    expect(page.locator("#model option")).not_to_have_count(0)


def set_options(page, *, count: int = 1, steps: int = 2, model: str = "tiny") -> None:
    toggle = page.locator("#settings-toggle")  # a phone shows the settings folded
    if toggle.is_visible() and toggle.get_attribute("aria-expanded") == "false":
        toggle.click()
    page.select_option("#model", model)
    page.click(f"#counts label:has(input[value='{count}'])")
    if not page.locator("#advanced").evaluate("d => d.open"):
        page.click("#advanced summary")
    page.fill("#steps", str(steps))


def wait_batch(page, count: int):
    """The newest result batch once its `count` images have loaded."""
    batch = page.locator(".batch").first
    tiles = batch.locator(".tile img")
    expect(tiles).to_have_count(count, timeout=JOB_TIMEOUT)
    page.wait_for_function(
        "n => { const imgs = document.querySelectorAll('.batch:first-child .tile img');"
        " return imgs.length === n && [...imgs].every(i => i.complete && i.naturalWidth > 0); }",
        arg=count, timeout=JOB_TIMEOUT)
    return batch


def api_image(server, image_id: str) -> Image.Image:
    with server.client() as client:
        return Image.open(io.BytesIO(client.get(f"/api/images/{image_id}/file").content)).convert("RGB")


def make_image(server, prompt: str, **extra) -> dict:
    with server.client() as client:
        response = client.post("/api/jobs", json={**TINY, "prompt": prompt, "count": 1, **extra})
        assert response.status_code == 202, response.text
        job = wait_job(client, response.json()["id"])
    assert job["state"] == "succeeded", job
    return job["images"][0]


def test_prompt_counter_and_generate_disabled_when_prompt_empty(page, server):
    open_studio(page, server)
    generate = page.locator("#generate")
    expect(generate).to_be_disabled()
    expect(page.locator("#generate-reason")).to_contain_text("Write a prompt")
    expect(page.locator("#prompt-count")).to_have_text("0/2000")

    page.locator("#prompt").press_sequentially("a red circle")
    expect(page.locator("#prompt-count")).to_have_text("12/2000")
    expect(generate).to_be_enabled()
    expect(page.locator("#generate-cost")).to_have_text(re.compile(r"\d+ credits?"))

    page.fill("#prompt", "   ")
    expect(generate).to_be_disabled()
    expect(page.locator("#generate-reason")).to_contain_text("Write a prompt")

    page.locator(".example").first.click()  # an example prompt fills the field
    expect(page.locator("#prompt")).not_to_have_value("   ")
    expect(generate).to_be_enabled()


def test_save_a_prompt_and_load_it_back(page, server):
    open_studio(page, server)
    page.fill("#prompt", "a castle on a hill at sunset")
    page.click("#negative-box summary")
    page.fill("#negative", "fog")
    page.click("#ratios label:has(input[value='9:16'])")
    page.click("#save-prompt")
    expect(page.locator("#saved-note")).to_contain_text("Saved as")
    page.fill("#prompt", "something else entirely")
    page.fill("#negative", "")
    page.click("#ratios label:has(input[value='1:1'])")
    label = page.locator("#saved-prompts option", has_text="a castle on a hill").first.get_attribute("value")
    page.select_option("#saved-prompts", label)
    expect(page.locator("#prompt")).to_have_value("a castle on a hill at sunset")
    expect(page.locator("#negative")).to_have_value("fog")
    expect(page.locator("input[name=ratio][value='9:16']")).to_be_checked()
    page.click("#delete-saved")
    expect(page.locator("#saved-note")).to_contain_text("deleted")
    expect(page.locator("#saved-prompts option", has_text="a castle on a hill")).to_have_count(0)


def test_invalid_setting_is_explained_next_to_it(page, server):
    open_studio(page, server)
    page.fill("#prompt", "a red circle")
    page.click("#ratios label:has(input[value=custom])")
    page.fill("#width", "1000")  # not a multiple of 8... and over the tiny model's limit
    page.fill("#width", "1004")
    expect(page.locator("#err-size")).to_contain_text("multiple of 8")
    expect(page.locator("#generate")).to_be_disabled()
    page.fill("#width", "1024")  # a multiple of 8, but over the tiny model's 256 px: the server says so
    expect(page.locator("#err-size")).to_contain_text("256")
    expect(page.locator("#generate")).to_be_disabled()
    page.fill("#width", "64")
    page.fill("#height", "64")
    expect(page.locator("#generate")).to_be_enabled()


def test_generate_two_images_then_reuse_settings_restores_the_seed(page, server, shot):
    open_studio(page, server)
    set_options(page, count=2)
    page.fill("#prompt", "a red circle on a blue square")
    page.locator("#prompt").press("Control+Enter")  # the keyboard shortcut generates
    expect(page.locator(".job").first).to_be_visible()
    batch = wait_batch(page, 2)
    shot(page, "desktop-results")

    tiles = batch.locator(".tile")
    seeds = [int(s) for s in tiles.evaluate_all("ts => ts.map(t => t.dataset.seed)")]
    assert seeds[1] == seeds[0] + 1
    tiles.first.locator(".open").click()  # open large, then the next one with the arrow key
    viewer = page.locator("#viewer")
    expect(viewer.locator("[data-setting=seed]")).to_have_text(str(seeds[0]))
    page.keyboard.press("ArrowRight")
    expect(viewer.locator("[data-setting=seed]")).to_have_text(str(seeds[1]))
    page.keyboard.press("Escape")
    second_id = tiles.nth(1).get_attribute("data-image-id")

    page.click("#seed-dice")  # back to a random seed
    expect(page.locator("#seed")).to_have_value("-1")
    page.fill("#prompt", "something else")
    tiles.nth(1).locator("[data-action=reuse]").click()
    expect(page.locator("#seed")).to_have_value(str(seeds[1]))
    expect(page.locator("#seed-lock")).to_have_attribute("aria-pressed", "true")
    expect(page.locator("#prompt")).to_have_value("a red circle on a blue square")
    with server.client() as client:
        assert client.get(f"/api/images/{second_id}").json()["seed"] == seeds[1]

    # Generating with the restored settings makes the same picture again (a batch
    # of one may differ from a batch of two by float rounding in a few pixels).
    page.click("#counts label:has(input[value='1'])")
    page.click("#generate")
    expect(page.locator(".batch")).to_have_count(2, timeout=JOB_TIMEOUT)
    again = wait_batch(page, 1).locator(".tile").first
    assert int(again.get_attribute("data-seed")) == seeds[1]
    again_id = again.get_attribute("data-image-id")
    with server.client() as client:
        before, after = (client.get(f"/api/images/{i}/settings").json() for i in (second_id, again_id))
    for key in ("prompt", "seed", "model", "width", "height", "steps", "guidance", "sampler", "style"):
        assert after[key] == before[key], key
    diff = ImageChops.difference(api_image(server, again_id), api_image(server, second_id)).convert("L")
    histogram = diff.histogram()
    assert sum(v * n for v, n in enumerate(histogram)) / (64 * 64) < 1.0, "not the same picture" 


def test_repaint_changes_only_the_painted_area(page, server, tmp_path, shot):
    original = make_image(server, "a green square on white")
    open_studio(page, server)
    set_options(page)
    page.click("#tab-history")
    tile = page.locator(f".tile[data-image-id='{original['id']}']")
    tile.locator("[data-action=repaint]").click()
    dialog = page.locator("#repaint")
    expect(dialog).to_be_visible()
    canvas = page.locator("#mask-canvas")
    page.wait_for_function("() => document.querySelector('#mask-image').naturalWidth > 0")
    page.fill("#brush-size", "96")
    box = canvas.bounding_box()
    # One stroke across the upper-left quarter.
    x0, y0 = box["x"] + box["width"] * 0.2, box["y"] + box["height"] * 0.25
    x1, y1 = box["x"] + box["width"] * 0.45, box["y"] + box["height"] * 0.25
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move(x1, y1, steps=8)
    page.mouse.up()
    shot(page, "desktop-repaint")
    page.fill("#repaint-prompt", "a red flower")
    page.click("#repaint-submit")
    expect(dialog).to_be_hidden()
    page.click("#tab-create") if not page.locator("#view-create").is_visible() else None
    result = wait_batch(page, 1).locator(".tile").first

    with page.expect_download() as info:
        result.locator("[data-action=download]").click()
    path = tmp_path / "repainted.png"
    info.value.save_as(path)
    repainted = Image.open(path).convert("RGB")
    before = api_image(server, original["id"])
    assert repainted.size == before.size
    # the page leaves the strength to the server's inpaint default
    assert parse_parameters(read_parameters(path))["Denoising strength"] == "0.9"

    # The painted band, in image pixels, widened by the brush radius and a margin.
    scale = before.width / box["width"]
    radius = 96 * scale / 2 + 2
    left, right = (x0 - box["x"]) * scale - radius, (x1 - box["x"]) * scale + radius
    top, bottom = (y0 - box["y"]) * scale - radius, (y0 - box["y"]) * scale + radius
    changed = outside = 0
    for y in range(before.height):
        for x in range(before.width):
            differs = before.getpixel((x, y)) != repainted.getpixel((x, y))
            inside = left <= x <= right and top <= y <= bottom
            changed += differs and inside
            outside += differs and not inside
    assert outside == 0, f"{outside} pixels changed outside the painted area"
    assert changed > 0, "nothing changed inside the painted area"


PAINTED = "() => { const c = document.querySelector('#mask-canvas');" \
          " const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;" \
          " let n = 0; for (let i = 3; i < d.length; i += 4) n += d[i] >= 128; return [n, c.width * c.height]; }"


def test_mask_tools_brush_eraser_invert_clear(page, server):
    original = make_image(server, "a mask tools test")
    open_studio(page, server)
    page.click("#tab-history")
    page.locator(f".tile[data-image-id='{original['id']}'] [data-action=repaint]").click()
    box = page.locator("#mask-canvas").bounding_box()
    cy = box["y"] + box["height"] / 2

    def stroke(x0, x1):
        page.mouse.move(box["x"] + box["width"] * x0, cy)
        page.mouse.down()
        page.mouse.move(box["x"] + box["width"] * x1, cy, steps=6)
        page.mouse.up()

    stroke(0.1, 0.9)
    painted, total = page.evaluate(PAINTED)
    assert 0 < painted < total
    page.keyboard.press("e")  # eraser, from the keyboard
    stroke(0.4, 0.6)
    erased, _ = page.evaluate(PAINTED)
    assert 0 < erased < painted
    page.click("#mask-invert")
    inverted, _ = page.evaluate(PAINTED)
    assert inverted == total - erased
    page.click("#mask-clear")
    assert page.evaluate(PAINTED)[0] == 0
    page.click("#repaint-submit")  # nothing painted: explained, nothing sent
    expect(page.locator("#err-repaint")).to_contain_text("Paint over")
    expect(page.locator(".job")).to_have_count(0)


def test_extend_adds_canvas_on_the_chosen_side(page, server):
    original = make_image(server, "a blue sky")
    open_studio(page, server)
    set_options(page)
    page.click("#tab-history")
    page.locator(f".tile[data-image-id='{original['id']}'] [data-action=extend]").click()
    expect(page.locator("#extend")).to_be_visible()
    page.uncheck("#extend input[value=left]")
    page.fill("#extend-amount", "64")
    page.dispatch_event("#extend-amount", "input")
    page.click("#extend-submit")
    result = wait_batch(page, 1).locator(".tile").first
    image = api_image(server, result.get_attribute("data-image-id"))
    assert image.size == (original["width"] + 64, original["height"])


def test_upscale_when_the_server_offers_it(page, server):
    original = make_image(server, "a small house")
    open_studio(page, server)
    page.click("#tab-history")
    tile = page.locator(f".tile[data-image-id='{original['id']}']")
    tile.locator(".open").click()
    upscale = page.locator("#viewer [data-action=upscale]")
    schema = server.client().get("/openapi.json").json()
    if "upscale" not in schema["components"]["schemas"]["Mode"]["enum"]:
        expect(upscale).to_have_count(0)  # hidden while the server has no upscale mode
        return
    upscale.click()
    result = wait_batch(page, 1).locator(".tile").first
    image = api_image(server, result.get_attribute("data-image-id"))
    assert image.size == (original["width"] * 2, original["height"] * 2)


def _png_with_parameters(path, size=(80, 72)) -> None:
    image = Image.new("RGB", size, (40, 160, 60))
    for x in range(20, 60):
        for y in range(20, 50):
            image.putpixel((x, y), (240, 240, 30))
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", "a yellow box on grass\nNegative prompt: blurry\n"
                                "Steps: 2, Sampler: Euler, CFG scale: 5.0, Seed: 7, Size: 80x72, Model: tiny")
    image.save(path, pnginfo=info)


def test_upload_an_image_for_image_to_image(page, server, tmp_path, shot):
    upload = tmp_path / "photo.png"
    _png_with_parameters(upload)
    open_studio(page, server)
    set_options(page, steps=3)
    page.set_input_files("#reference-file", str(upload))
    expect(page.locator("#reference-tools")).to_be_visible()
    expect(page.locator("#reference-image")).to_be_visible()
    page.click("#analyse")
    expect(page.locator("#prompt")).to_have_value("a yellow box on grass")
    expect(page.locator("#negative")).to_have_value("blurry")
    expect(page.locator("#steps")).to_have_value("2")
    expect(page.locator("#analyse-result")).to_contain_text("1:1")
    page.fill("#strength", "0.5")
    expect(page.locator("#mode-chip")).to_contain_text("change 0.50")
    page.locator("#reference").scroll_into_view_if_needed()
    shot(page, "desktop-image-to-image", settings_top=False)
    page.click("#generate")
    result = wait_batch(page, 1)
    expect(result.locator(".batch-head")).to_contain_text("Image to image")
    image_id = result.locator(".tile").first.get_attribute("data-image-id")
    with server.client() as client:
        settings = client.get(f"/api/images/{image_id}/settings").json()
    assert settings["mode"] == "img2img"
    assert settings["strength"] == 0.5
    assert settings["prompt"] == "a yellow box on grass"


def test_keep_the_references_colours(page, server, tmp_path):
    """The reference panel's switch sends color_correction; the image's PNG and its
    settings say so, and reusing them turns the switch back on."""
    stored = make_image(server, "an orange kite")
    open_studio(page, server)
    set_options(page, steps=3)
    page.click("#tab-history")
    page.locator(f"#history-grid .tile[data-image-id='{stored['id']}'] [data-action=reference]").click()
    expect(page.locator("#reference-tools")).to_be_visible()
    expect(page.locator("#color-correction")).not_to_be_checked()
    page.click("label.switch:has(#color-correction)")
    expect(page.locator("#color-correction")).to_be_checked()
    page.click("#generate")
    tile = wait_batch(page, 1).locator(".tile").first
    with server.client() as client:
        settings = client.get(f"/api/images/{tile.get_attribute('data-image-id')}/settings").json()
    assert settings["mode"] == "img2img" and settings["color_correction"] is True
    with page.expect_download() as info:
        tile.locator("[data-action=download]").click()
    path = tmp_path / "kept.png"
    info.value.save_as(path)
    assert parse_parameters(read_parameters(path))["Color correction"] == "yes"
    tile.locator(".open").click()
    expect(page.locator("#viewer [data-setting=color_correction]")).to_have_text("yes")
    page.keyboard.press("Escape")

    page.click("label.switch:has(#color-correction)")  # off again, and no reference, before reusing
    page.click("#reference-clear")
    tile.locator("[data-action=reuse]").click()
    expect(page.locator("#reference-image")).to_be_visible()
    expect(page.locator("#color-correction")).to_be_checked()


def test_queue_places_and_cancel_a_running_job(page, server, shot):
    open_studio(page, server)
    set_options(page, steps=150, count=4)  # 4 images x 150 steps: still running when we cancel
    page.fill("#prompt", "a slow picture")
    page.click("#generate")
    running = page.locator(".job").first
    expect(running.locator(".status")).to_contain_text("Step", timeout=JOB_TIMEOUT)
    expect(running.locator(".preview img")).to_be_visible(timeout=JOB_TIMEOUT)  # live preview
    expect(running.locator(".status")).to_contain_text(re.compile(r"left"))  # ETA
    running_id = running.get_attribute("data-job-id")

    page.fill("#prompt", "a second picture, queued behind")
    page.click("#counts label:has(input[value='1'])")
    page.click("#generate")
    expect(page.locator(".job")).to_have_count(2)
    queued = page.locator(".job").first
    expect(queued).to_have_attribute("data-state", "queued")
    expect(queued.locator(".status")).to_contain_text("in line")
    shot(page, "desktop-running")

    page.reload()  # jobs still queued or running come back after a reload
    page.wait_for_selector("body[data-ready=true]")
    expect(page.locator(".job")).to_have_count(2)
    queued = page.locator(".job").first
    expect(queued.locator(".status")).to_contain_text("in line")

    queued.locator(".cancel").click()
    expect(queued).to_have_attribute("data-state", "cancelled")
    running = page.locator(f".job[data-job-id='{running_id}']")
    running.locator(".cancel").click()
    expect(running).to_have_attribute("data-state", "cancelled", timeout=JOB_TIMEOUT)
    expect(running.locator(".status")).to_contain_text("Cancelled")
    with server.client() as client:
        assert client.get(f"/api/jobs/{running_id}").json()["state"] == "cancelled"
    running.locator("[aria-label=Dismiss]").click()
    expect(page.locator(f".job[data-job-id='{running_id}']")).to_have_count(0)


def test_drop_an_image_or_pick_one_from_history_as_reference(page, server, tmp_path):
    upload = tmp_path / "dropped.png"
    _png_with_parameters(upload)
    stored = make_image(server, "an orange kite")
    open_studio(page, server)
    data = list(upload.read_bytes())
    page.evaluate("""bytes => {
        const file = new File([new Uint8Array(bytes)], "dropped.png", {type: "image/png"});
        const transfer = new DataTransfer();
        transfer.items.add(file);
        document.querySelector("#dropzone").dispatchEvent(new DragEvent("drop", {dataTransfer: transfer, bubbles: true, cancelable: true}));
    }""", data)
    expect(page.locator("#reference-image")).to_be_visible()
    expect(page.locator("#analyse-result")).to_contain_text("80 × 72")
    page.click("#mode-chip-clear")
    expect(page.locator("#reference-image")).to_be_hidden()
    expect(page.locator("#mode-chip")).to_be_hidden()

    page.click("#reference-pick")
    expect(page.locator("#view-history")).to_be_visible()
    page.locator(f"#history-grid .tile[data-image-id='{stored['id']}'] [data-action=reference]").click()
    expect(page.locator("#view-create")).to_be_visible()
    expect(page.locator("#reference-image")).to_be_visible()
    expect(page.locator("#prompt")).to_have_value("an orange kite")
    expect(page.locator("#settings-summary")).to_contain_text("reference")


def test_history_search_open_and_delete(page, server, shot):
    giraffe = make_image(server, "a purple giraffe under the moon")
    submarine = make_image(server, "a yellow submarine")
    open_studio(page, server)
    page.click("#tab-history")
    expect(page.locator(f".tile[data-image-id='{submarine['id']}']")).to_be_visible()
    page.fill("#history-search", "giraffe")
    expect(page.locator("#history-total")).to_contain_text("1 image found")
    expect(page.locator("#history-grid .tile")).to_have_count(1)
    card = page.locator("#history-grid .tile").first
    assert card.get_attribute("data-image-id") == giraffe["id"]
    expect(card).to_contain_text("purple giraffe")
    expect(page.locator("#history-total")).to_contain_text("1 image found")
    shot(page, "desktop-history")

    card.locator("[data-action=favourite]").click()
    expect(card.locator("[data-action=favourite]")).to_have_attribute("aria-pressed", "true")
    page.fill("#history-search", "")
    page.click("label.switch:has(#history-favourites)")
    expect(page.locator("#history-total")).to_contain_text("found")
    expect(page.locator(f"#history-grid .tile[data-image-id='{submarine['id']}']")).to_have_count(0)
    expect(page.locator(f"#history-grid .tile[data-image-id='{giraffe['id']}']")).to_be_visible()
    page.click("label.switch:has(#history-favourites)")
    page.fill("#history-search", "giraffe")
    expect(page.locator("#history-grid .tile")).to_have_count(1)
    card = page.locator(f"#history-grid .tile[data-image-id='{giraffe['id']}']")

    card.locator(".open").click()
    viewer = page.locator("#viewer")
    expect(viewer).to_be_visible()
    expect(viewer.locator("[data-setting=seed]")).to_have_text(str(giraffe["seed"]))
    shot(page, "desktop-viewer")
    page.keyboard.press("Escape")
    expect(viewer).to_be_hidden()

    page.fill("#history-search", "submarine")
    expect(page.locator("#history-grid .tile")).to_have_count(1)
    found = page.locator(f"#history-grid .tile[data-image-id='{submarine['id']}']")
    expect(found).to_be_visible()
    found.locator(".open").click()
    viewer.locator("[data-action=delete]").click()
    expect(page.locator("#confirm")).to_be_visible()
    page.click("#confirm-ok")
    expect(page.locator(f".tile[data-image-id='{submarine['id']}']")).to_have_count(0)
    with server.client() as client:
        assert client.get(f"/api/images/{submarine['id']}").status_code == 404


def test_history_pages_with_show_more(page, server):
    with server.client() as client:
        jobs = [client.post("/api/jobs", json={**TINY, "prompt": f"zebra number {i}", "count": 4}).json() for i in range(7)]
        for job in jobs:
            assert wait_job(client, job["id"])["state"] == "succeeded"
    open_studio(page, server)
    page.click("#tab-history")
    page.fill("#history-search", "zebra")
    expect(page.locator("#history-total")).to_contain_text("28 images found")
    expect(page.locator("#history-grid .tile")).to_have_count(24)
    newest = page.locator("#history-grid .tile .caption").first
    expect(newest).to_have_text("zebra number 6")  # newest first
    page.click("#history-more")
    expect(page.locator("#history-grid .tile")).to_have_count(28)
    expect(page.locator("#history-more")).to_be_hidden()
    assert page.evaluate("document.documentElement.scrollWidth") <= 1280


def test_shared_mode_asks_for_a_key_and_blocks_generate_without_credits(page, shared_server, shot):
    poor = shared_server.add_user("poor-browser", 0)
    rich = shared_server.add_user("rich-browser", 3)
    page.goto(shared_server.url)
    dialog = page.locator("#key-dialog")
    expect(dialog).to_be_visible()
    page.fill("#api-key", "not-a-key")
    page.click("#key-form button[type=submit]")
    expect(page.locator("#err-key")).to_contain_text("not accepted")
    page.fill("#api-key", poor)
    page.click("#key-form button[type=submit]")
    expect(dialog).to_be_hidden()
    expect(page.locator("#balance")).to_contain_text("0 credits")
    set_options(page)
    page.fill("#prompt", "a red circle")
    expect(page.locator("#generate")).to_be_disabled()
    expect(page.locator("#generate-reason")).to_contain_text("Not enough credits")
    shot(page, "desktop-shared-no-credits")

    page.click("#account-button")
    expect(dialog).to_be_visible()
    page.fill("#api-key", rich)
    page.click("#key-form button[type=submit]")
    expect(page.locator("#balance")).to_contain_text("3 credits")
    expect(page.locator("#generate")).to_be_enabled()
    page.click("#generate")
    wait_batch(page, 1)  # images load with the key (a plain <img src> could not send it)
    expect(page.locator("#balance")).to_contain_text("2 credits")


def test_phone_layout_generates_and_fits(phone_page, server, shot):
    page = phone_page
    open_studio(page, server)
    set_options(page)
    page.fill("#prompt", "a lighthouse at night")
    page.locator("#prompt").scroll_into_view_if_needed()
    page.click("#generate")
    wait_batch(page, 1)
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the page is {width}px wide on a 390px screen"
    page.click("#settings-toggle")  # fold the settings again
    expect(page.locator("#model")).to_be_hidden()
    expect(page.locator("#settings-summary")).to_contain_text("tiny")
    page.evaluate("window.scrollTo(0, 0)")
    shot(page, "phone-create")
    page.click("#tab-history")
    expect(page.locator("#history-grid .tile").first).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    shot(page, "phone-history")


def test_keyboard_only_generate(page, server):
    open_studio(page, server)
    set_options(page)
    page.focus("#prompt")
    page.keyboard.type("a keyboard cat")
    for _ in range(12):  # Tab from the prompt to Generate
        if page.evaluate("document.activeElement.id") == "generate":
            break
        page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "generate"
    page.keyboard.press("Enter")
    wait_batch(page, 1)
    # Enter on a result opens it large; Escape closes it.
    page.locator(".batch .tile .open").first.focus()
    page.keyboard.press("Enter")
    expect(page.locator("#viewer")).to_be_visible()
    page.keyboard.press("Escape")
    expect(page.locator("#viewer")).to_be_hidden()
