"""The studio in a real headless Chromium (Debian's `chromium`, driven by Playwright for Python): open the
page, generate and see progress then the images, drop an output PNG to get its settings back, reorder and
cancel in the queue, paint a mask stroke, undo it, erase, clear, paint again and inpaint, reload and find the
jobs in the history. Screenshots go to the test's folder; studio.png also to $UNNOISE_STUDIO_SCREENSHOTS when
set (docs/studio.png is taken this way)."""
import os
import shutil
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")
uvicorn = pytest.importorskip("uvicorn")
playwright_api = pytest.importorskip("playwright.sync_api",
                                     reason="playwright is not installed (make test installs it)")
from PIL import Image  # noqa: E402

from unnoise.cli.main import main  # noqa: E402
from unnoise.studio import Studio, create_app  # noqa: E402
from unnoise.studio.service import JobContext  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
TINY = ["--steps", "2", "--batch-size", "16", "--set", "train.sample_every=0", "--set", "train.checkpoint_every=0",
        "--set", "model.network_options.hidden=32", "--set", "model.network_options.depth=2"]
TIMEOUT_MS = 15000


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if CHROMIUM is None:
        reason = "Debian's chromium is not installed and could not be (make test runs apt-get install chromium as root)"
        print(f"SKIPPED browser test: {reason}")
        pytest.skip(reason)
    runs = tmp_path_factory.mktemp("browser-runs")
    assert main(["train", "--preset", "digits", "--out", str(runs / "digits"), *TINY]) == 0
    assert main(["train", "--preset", "toy2d", "--out", str(runs / "points"), *TINY]) == 0
    studio = Studio(runs, "auto")
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(studio), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 10
    while not server.started and time.time() < deadline:
        time.sleep(0.05)
    assert server.started, "the studio server did not start"
    yield f"http://127.0.0.1:{port}/"
    server.should_exit = True
    thread.join(10)


@pytest.fixture
def page(server, tmp_path):
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1200, "height": 800})
        page.set_default_timeout(TIMEOUT_MS)
        errors = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        yield page
        browser.close()
        assert not errors, errors


def _screenshot(page, tmp_path: Path, name: str) -> None:
    page.screenshot(path=str(tmp_path / name))
    folder = os.environ.get("UNNOISE_STUDIO_SCREENSHOTS")
    if folder and name == "studio.png":
        Path(folder).mkdir(parents=True, exist_ok=True)
        shutil.copy(tmp_path / name, Path(folder) / name)


def _slow_steps(monkeypatch):
    """Each sampler step takes 25 ms more, so the page sees the job in progress."""
    step = JobContext.callback

    def slow(self, *args):
        time.sleep(0.025)
        step(self, *args)

    monkeypatch.setattr(JobContext, "callback", slow)


def _paint_stroke(page) -> None:
    box = page.locator("#mask-canvas").bounding_box()
    x, y = box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.5
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + box["width"] * 0.4, y, steps=6)
    page.mouse.up()


def _painted(page) -> int:
    return int(page.locator("#mask-canvas").get_attribute("data-painted"))


def _generate_and_watch_progress(page) -> None:
    page.fill("#field-nfe", "24")
    page.select_option("#field-sampler", "euler")
    page.fill("#field-n", "2")
    page.evaluate("""() => { window.seen = []; new MutationObserver(() => window.seen.push(
        document.querySelector('#progress-text').textContent)).observe(document.querySelector('#progress-text'),
        {childList: true, characterData: true, subtree: true}); }""")
    page.click("#submit")
    page.wait_for_function("() => document.querySelectorAll('#results img').length === 2 && "
                           "[...document.querySelectorAll('#results img')]"
                           ".every(i => i.complete && i.naturalWidth === 8)")
    seen = page.evaluate("window.seen")
    assert any(text.startswith("step ") and not text.startswith("step 48/48") for text in seen), seen
    assert seen[-1] == "done"


def _drop_an_output_png(page) -> None:
    for field, value in (("#field-seed", "99"), ("#field-n", "5"), ("#field-nfe", "3")):
        page.fill(field, value)
    page.evaluate("""async () => {  // drop the second image (seed 1) on the page: its settings come back
        const blob = await (await fetch(document.querySelectorAll('#results img')[1].src)).blob();
        const files = new DataTransfer();
        files.items.add(new File([blob], 'seed1.png', {type: 'image/png'}));
        document.dispatchEvent(new DragEvent('drop', {dataTransfer: files, bubbles: true, cancelable: true})); }""")
    page.wait_for_function("() => document.querySelector('#field-seed').value === '1'")
    assert [page.input_value(f) for f in ("#field-n", "#field-nfe", "#field-sampler")] == ["1", "24", "euler"]


def _queue_reorder_and_cancel(page) -> None:
    """Three jobs: one runs, two wait; the last is moved up, the running one cancelled, all finish."""
    page.fill("#field-n", "1")
    page.fill("#field-nfe", "48")  # 1.2 s a job: the queue is seen with two waiting
    for _ in range(3):
        page.click("#submit")
        page.wait_for_function("() => document.querySelector('#progress-text').textContent !== 'submitting'")
    page.wait_for_function("() => document.querySelectorAll('#queue li').length === 3")
    items = page.locator("#queue li")
    running, first, last = (items.nth(k).get_attribute("data-job") for k in range(3))
    items.nth(2).locator("button[title='earlier']").click()
    page.wait_for_function(f"() => document.querySelector('#queue li:nth-child(2)')?.dataset.job === '{last}'")
    assert page.locator("#queue li").nth(2).get_attribute("data-job") == first
    page.locator(f"#queue li[data-job='{running}'] button[title='cancel']").click()
    page.wait_for_function("() => document.querySelectorAll('#queue li').length === 0")


def _paint_undo_erase_and_inpaint(page, tmp_path) -> int:
    picture = tmp_path / "digit.png"
    Image.fromarray(np.tile(np.arange(0, 256, 32, dtype=np.uint8), (8, 1))).save(picture)
    page.click("#form-tabs button[data-form='restore']")
    page.set_input_files("#field-image", str(picture))
    page.wait_for_function("() => window.studio.painter.source !== null")
    _paint_stroke(page)
    painted = _painted(page)
    assert painted > 0
    page.click("#undo")
    assert _painted(page) == 0
    _paint_stroke(page)
    page.click("#eraser")
    _paint_stroke(page)  # the same stroke with the eraser
    assert _painted(page) == 0
    page.click("#undo")
    page.click("#eraser")
    assert _painted(page) == painted
    page.click("#clear")
    assert _painted(page) == 0
    page.click("#undo")
    assert _painted(page) == painted
    page.fill("#field-steps", "6")
    page.fill("#field-n", "2")
    _screenshot(page, tmp_path, "studio.png")  # the README's picture
    page.click("#submit")
    page.wait_for_function("() => document.querySelectorAll('#results img').length === 2 && "
                           "document.querySelector('#progress-text').textContent === 'done'")
    return painted


def _pick_runs_of_two_kinds(page) -> None:
    """Both runs are listed; each shows its kind's forms: points only generate, images also restore."""
    assert page.eval_on_selector_all("#run-select option", "nodes => nodes.map(n => n.value)") == ["digits", "points"]
    page.select_option("#run-select", "points")
    page.wait_for_function("() => document.querySelectorAll('#form-tabs button').length > 0 && "
                           "!document.querySelector(\"#form-tabs button[data-form='restore']\")")
    page.select_option("#run-select", "digits")
    page.wait_for_function("() => document.querySelector(\"#form-tabs button[data-form='restore']\") !== null")


def test_generate_paint_undo_inpaint_and_history(page, server, tmp_path, monkeypatch):
    _slow_steps(monkeypatch)
    page.goto(server)
    page.wait_for_function("() => document.querySelector('#run-select').value === 'digits'")
    _pick_runs_of_two_kinds(page)
    _generate_and_watch_progress(page)
    _screenshot(page, tmp_path, "studio-generate.png")
    _drop_an_output_png(page)
    _queue_reorder_and_cancel(page)
    painted = _paint_undo_erase_and_inpaint(page, tmp_path)
    page.reload()
    page.wait_for_function("() => document.querySelectorAll('#history .history-item').length === 5")
    forms = page.eval_on_selector_all("#history .history-item div[class^='status-']",
                                      "nodes => nodes.map(n => n.textContent)")
    assert forms[0] == "digits · restore · done" and forms[-1] == "digits · generate · done"
    assert sorted(forms[1:4]) == ["digits · generate · cancelled"] + ["digits · generate · done"] * 2
    page.click("#history .history-item:nth-child(5) button")  # reuse the first generation's settings
    page.wait_for_function("() => document.querySelector('#field-n')?.value === '2'")
    assert [page.input_value(f) for f in ("#field-nfe", "#field-sampler")] == ["24", "euler"]
    _screenshot(page, tmp_path, "studio-history.png")
    page.click("#history .history-item:nth-child(1) button")  # the inpainting: its image and painted mask
    page.wait_for_function(f"() => document.querySelector('#mask-canvas')?.dataset.painted === '{painted}'")
    assert page.input_value("#field-task") == "inpaint" and _painted(page) == painted
