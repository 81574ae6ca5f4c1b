"""End to end in a real browser: `streamlit run` on 127.0.0.1, headless Chromium, a prediction, a screenshot.

Skips with the reason when Chromium, chromedriver or Selenium is missing (`make browser-deps` installs them).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
IMAGE = "image_classification"
TAB = "tabular_classification"

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("app-browser")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, timeout: float = 5.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as err:
        return err.code, ""


def _pick_task() -> str:
    """The image plugin when it is installed and loads, else the example tabular plugin."""
    from suite.registry import get_registry

    return IMAGE if IMAGE in get_registry() else TAB


def _need_browser() -> None:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).exists()]
    if missing:
        pytest.skip(f"browser test skipped: {', '.join(missing)} not installed "
                    "(`make browser-deps`, or apt-get install chromium chromium-driver)")
    pytest.importorskip("selenium", reason="browser test skipped: selenium is not installed (requirements.txt)")


@contextlib.contextmanager
def _serving(root: Path, plugins: str, cwd: Path):
    """`streamlit run` of the app on a free port of 127.0.0.1, over the runs in ``root``, with only
    ``plugins`` loaded; yields the base URL and the server log's path once /_stcore/health answers."""
    from suite_app.settings import streamlit_flags

    port = _free_port()
    env = dict(os.environ, SUITE_HOME=str(root), SUITE_APP_PREPARE_SAMPLES="0", SUITE_PLUGINS=plugins)
    log = open(cwd / "streamlit.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(  # cwd is not the repo: the settings must come from the flags
        [sys.executable, "-m", "streamlit", "run", str(ROOT / "apps" / "app.py"), *streamlit_flags(),
         "--server.address", "127.0.0.1", "--server.port", str(port)],
        cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            if proc.poll() is not None:
                raise AssertionError((cwd / "streamlit.log").read_text()[-2000:])
            try:
                if _get(f"{base}/_stcore/health", 2)[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(0.5)
        else:
            raise AssertionError("streamlit did not answer /_stcore/health within 60 s")
        yield base, cwd / "streamlit.log"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    _need_browser()
    from suite.runstore import RunStore
    from suite.trainer import TrainOptions, train

    task = _pick_task()
    root = tmp_path_factory.mktemp("browser-store") / "runs"
    overrides = {"epochs": 3} if task == TAB else {
        "model": "cnn_small", "image_size": 16, "epochs": 1, "batch_size": 64, "max_train_examples": 512}
    train(task, "sample", overrides, name=f"{task}-browser", store=RunStore(root),
          options=TrainOptions(tensorboard=False))
    with _serving(root, task, tmp_path_factory.mktemp("elsewhere")) as (base, log):
        yield {"base": base, "task": task, "root": root, "log": log}


@pytest.fixture()
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", "--window-size=1400,1600"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(60)
    yield driver
    with contextlib.suppress(Exception):  # a test may have closed it already
        driver.quit()


def _prediction_text(driver):
    """The "Prediction: ..." heading's text once the page shows one, else False (for WebDriverWait)."""
    from selenium.webdriver.common.by import By

    for el in driver.find_elements(By.CSS_SELECTOR, "[data-testid='stMarkdownContainer'] h3"):
        if el.text.startswith("Prediction:"):
            return el.text
    return False


def _png(color=(200, 30, 30), size=(28, 28)) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


def test_browser_opens_a_plugin_page_submits_an_input_and_sees_a_prediction(server, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    task = server["task"]
    browser.get(f"{server['base']}/{task}")
    wait = WebDriverWait(browser, 90)

    if task == IMAGE:
        # Upload a picture through the real file input (checked by content on the server).
        wait.until(ec.presence_of_element_located((By.XPATH, "//label[.//p[text()='Upload']]"))).click()
        file_input = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "input[type='file']")))
        picture = tmp_path / "upload.png"
        picture.write_bytes(_png())
        file_input.send_keys(str(picture))
    else:
        area = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "textarea")))
        area.clear()
        area.send_keys("6.7,3.0,5.2,2.3")
        browser.find_element(By.XPATH, "//button[.//p[text()='Predict']]").click()
    text = wait.until(_prediction_text)
    assert text.startswith("Prediction: ") and len(text) > len("Prediction: ")
    wait.until(lambda d: "Answered in" in d.find_element(By.TAG_NAME, "body").text)
    body = browser.find_element(By.TAG_NAME, "body").text
    assert "Traceback" not in body
    time.sleep(1.0)  # let the chart finish drawing for the screenshot
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / f"app-{task}-prediction.png"
    assert browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000


def test_browser_delete_clears_the_choice_and_a_closed_browser_leaves_no_traceback(server, browser):
    """Deleting a run: the deleted name leaves the selection and "Yes, delete" is unticked in the browser
    itself (state popped after the widgets were drawn came back from the browser); then the browser closes and
    the server log has no traceback (a closed tab wrote a WebSocketDisconnected traceback)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    source = server["root"] / f"{server['task']}-browser"
    doomed = f"{server['task']}-doomed"
    shutil.copytree(source, server["root"] / doomed)
    browser.get(f"{server['base']}/runs")
    wait = WebDriverWait(browser, 90)
    box = wait.until(lambda d: d.find_element(
        By.XPATH, "//div[@data-testid='stMultiSelect'][.//p[text()='Runs to delete']]"))
    field = box.find_element(By.CSS_SELECTOR, "input")
    field.click()
    field.send_keys(doomed, Keys.ENTER)
    wait.until(lambda d: doomed in box.text)
    field.send_keys(Keys.ESCAPE)  # close the drop-down, which covers the checkbox
    time.sleep(0.5)
    browser.find_element(By.XPATH, "//label[.//p[text()='Yes, delete these run folders']]").click()
    button = browser.find_element(By.XPATH, "//button[.//p[text()='Delete']]")
    wait.until(lambda d: button.is_enabled())
    button.click()
    wait.until(lambda d: f"Deleted {doomed}" in d.find_element(By.TAG_NAME, "body").text)
    assert not (server["root"] / doomed).exists()
    time.sleep(1.5)  # a stale widget value would come back with the browser's next message
    box = browser.find_element(By.XPATH, "//div[@data-testid='stMultiSelect'][.//p[text()='Runs to delete']]")
    assert doomed not in box.text, box.text
    sure = browser.find_element(By.XPATH, "//label[.//p[text()='Yes, delete these run folders']]//input")
    assert not sure.is_selected()
    assert not browser.find_element(By.XPATH, "//button[.//p[text()='Delete']]").is_enabled()
    before = server["log"].read_text(errors="replace")
    browser.quit()
    time.sleep(3.0)
    after = server["log"].read_text(errors="replace")[len(before):]
    assert "Traceback" not in after and "WebSocketClosedError" not in after, after[-3000:]
    assert "WebSocketDisconnected" not in after, after[-3000:]


_FIND_PAD = """
const seen = [];
function search(root) {
  for (const el of root.querySelectorAll('*')) {
    if (el.matches('canvas.upper-canvas')) return el;
    if (el.shadowRoot) { const hit = search(el.shadowRoot); if (hit) return hit; }
  }
  return null;
}
return search(document);
"""


def test_browser_draws_on_the_pad_and_sees_a_prediction(server, browser):
    """The Draw input: strokes made with the mouse on the drawing pad (streamlit-drawable-canvas) reach the
    model as a PNG and are answered like an upload."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    if server["task"] != IMAGE:
        pytest.skip("the drawing pad is the image plugin's; it is not installed here")
    browser.get(f"{server['base']}/{IMAGE}")
    wait = WebDriverWait(browser, 90)
    wait.until(ec.presence_of_element_located((By.XPATH, "//label[.//p[text()='Draw']]"))).click()
    pad = wait.until(lambda d: d.execute_script(_FIND_PAD))
    wait.until(lambda d: pad.size["width"] >= 200)
    # a "7": a bar across the top, then a stroke down to the bottom left (offsets from the pad's centre)
    chain = ActionChains(browser)
    chain.move_to_element_with_offset(pad, -70, -90).click_and_hold()
    for dx, dy in ((35, 0), (35, 0), (35, 0), (35, 0)):
        chain.move_by_offset(dx, dy)
    for dx, dy in ((-15, 35), (-15, 35), (-15, 35), (-15, 35), (-15, 35)):
        chain.move_by_offset(dx, dy)
    chain.release().perform()

    text = wait.until(_prediction_text)
    assert text.removeprefix("Prediction: ").strip()[:1].isdigit(), text  # one of the digit classes
    body = browser.find_element(By.TAG_NAME, "body").text
    assert "Traceback" not in body and "cannot be used" not in body
    time.sleep(1.0)
    ARTIFACTS.mkdir(exist_ok=True)
    assert browser.save_screenshot(str(ARTIFACTS / f"app-{IMAGE}-drawing.png"))


# ---- the walk: every built-in task through Try it / Train / Evaluate / Export, then Runs ------------------
BUILT_INS = ("image_classification", "sentiment", "translation", "speech_commands")


def _walk_overrides(task) -> dict:
    """Each built-in's sample settings cut to one short epoch: the walk checks the pages, not the models."""
    tiny = {"image_classification": {"max_train_examples": 512},
            "speech_commands": {"width": 16, "depth": 2}}.get(task.name, {})
    return {**task.sample_overrides, "epochs": 1, **tiny}


@pytest.fixture(scope="module")
def walk_server(tmp_path_factory):
    _need_browser()
    from suite.registry import get_registry
    from suite.runstore import RunStore
    from suite.trainer import TrainOptions, train

    registry = get_registry()
    tasks = [t for t in BUILT_INS if t in registry]
    assert tasks == list(BUILT_INS), f"built-in plugins missing: {registry.failures}"
    root = tmp_path_factory.mktemp("walk-store") / "runs"
    for name in tasks:
        train(name, "sample", _walk_overrides(registry.get(name)), name=f"{name}-walk", store=RunStore(root),
              options=TrainOptions(tensorboard=False))
    with _serving(root, ",".join(tasks), tmp_path_factory.mktemp("walk-cwd")) as (base, log):
        yield {"base": base, "tasks": tasks, "root": root, "log": log}


def _visible_text(driver) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.TAG_NAME, "body").text


def _assert_no_error(driver, where: str) -> None:
    """No red error box and no traceback is shown (the app's guard turns a failure into an error box)."""
    from selenium.webdriver.common.by import By

    errors = [e.text for e in driver.find_elements(By.CSS_SELECTOR, "[data-testid='stAlertContentError']")
              if e.is_displayed()]
    assert not errors, f"{where}: {errors}"
    assert "Traceback" not in _visible_text(driver), where


def _open_tab(driver, wait, title: str) -> None:
    from selenium.webdriver.common.by import By

    tab = wait.until(lambda d: d.find_element(By.XPATH, f"//div[@data-testid='stTab'][.//p[text()='{title}']]"))
    tab.click()
    wait.until(lambda d: tab.get_attribute("aria-selected") == "true")


def _shot(driver, name: str) -> None:
    time.sleep(0.8)  # let charts finish drawing
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"walk-{name}.png"
    assert driver.save_screenshot(str(path)) and path.stat().st_size > 10_000


@contextlib.contextmanager
def _shot_on_failure(driver, name: str):
    """A failed step leaves the page it failed on in test-artifacts/, with the page's visible text."""
    try:
        yield
    except Exception:
        ARTIFACTS.mkdir(exist_ok=True)
        with contextlib.suppress(Exception):
            driver.save_screenshot(str(ARTIFACTS / f"walk-{name}-FAILED.png"))
            (ARTIFACTS / f"walk-{name}-FAILED.txt").write_text(_visible_text(driver))
        raise


def _walk_try(driver, wait, task: str) -> None:
    from selenium.webdriver.common.by import By

    if task in ("sentiment", "translation"):  # the box starts with the first example: press Predict
        wait.until(lambda d: d.find_element(By.XPATH, "//button[.//p[text()='Predict']]")).click()
    # image and speech start on their first example and answer it at once
    wait.until(lambda d: "Answered in" in _visible_text(d))
    if task != "translation":
        assert _prediction_text(driver), task
    _assert_no_error(driver, f"{task}: Try it")
    _shot(driver, f"{task}-try")


def _walk_evaluate(driver, wait, task: str) -> None:
    from selenium.webdriver.common.by import By

    _open_tab(driver, wait, "Evaluate")
    metric = "bleu" if task == "translation" else "accuracy"
    wait.until(lambda d: any(m.is_displayed() and metric in m.text
                             for m in d.find_elements(By.CSS_SELECTOR, "[data-testid='stMetric']")))
    _assert_no_error(driver, f"{task}: Evaluate")
    _shot(driver, f"{task}-evaluate")


def _walk_export(driver, wait, task: str, fmt: str) -> None:
    """Export one format and see its verification report; every format is checked by each plugin's own
    tests, and exporting all four for every task would double the walk's time."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    _open_tab(driver, wait, "Export")
    # None, not StopIteration, while the box is not drawn yet: WebDriverWait retries on a falsy value only
    box = wait.until(lambda d: next((b for b in d.find_elements(
        By.XPATH, "//div[@data-testid='stMultiSelect'][.//p[text()='Formats']]") if b.is_displayed()), None))
    box.find_element(By.CSS_SELECTOR, "[aria-label='Clear all']").click()
    field = box.find_element(By.CSS_SELECTOR, "input")
    field.send_keys(fmt, Keys.ENTER, Keys.ESCAPE)
    wait.until(lambda d: fmt in box.text)
    go = driver.find_element(By.XPATH, "//button[.//p[text()='Export and verify']]")
    wait.until(lambda d: go.is_enabled())
    go.click()
    wait.until(lambda d: "Verification report" in _visible_text(d))
    assert f"Exported: {fmt}" in _visible_text(driver)
    _assert_no_error(driver, f"{task}: Export")
    _shot(driver, f"{task}-export")


def _walk_train(driver, wait, task: str) -> None:
    """The Train tab's form draws for the task (training itself is driven in tests/test_app.py)."""
    from selenium.webdriver.common.by import By

    _open_tab(driver, wait, "Train")
    wait.until(lambda d: any(b.is_displayed() for b in d.find_elements(
        By.XPATH, "//button[.//p[text()='Start training']]")))
    _assert_no_error(driver, f"{task}: Train")
    _shot(driver, f"{task}-train")


_RUNS_TABLE = """
const grid = document.querySelector("[data-testid='stDataFrame']");
return grid && grid.textContent.includes("-walk") ? grid.textContent : null;
"""


def test_browser_walks_every_built_in_task_and_the_runs_page(walk_server, browser):
    """A user's first walk, in Chromium: each built-in task's page answers its first example, shows its test
    metrics, exports and verifies a TFLite file (a SavedModel where TFLite cannot carry the model) and draws
    its training form; the Runs page lists every run.
    Screenshots of each step go to test-artifacts/walk-*.png."""
    from selenium.webdriver.support.ui import WebDriverWait

    from suite.registry import get

    wait = WebDriverWait(browser, 120)
    for task in walk_server["tasks"]:
        # the phone format where the task's model can be carried in it, else the server one
        fmt = "tflite" if "tflite" not in get(task).export_limits() else "saved_model"
        browser.get(f"{walk_server['base']}/{task}")
        with _shot_on_failure(browser, task):
            _walk_try(browser, wait, task)
            _walk_evaluate(browser, wait, task)
            _walk_export(browser, wait, task, fmt)
            assert (walk_server["root"] / f"{task}-walk" / "exports" / fmt / "report.json").is_file(), task
            _walk_train(browser, wait, task)
    browser.get(f"{walk_server['base']}/runs")
    with _shot_on_failure(browser, "runs"):
        table = wait.until(lambda d: d.execute_script(_RUNS_TABLE))  # the grid draws on a canvas: read its a11y copy
        assert all(f"{t}-walk" in table for t in walk_server["tasks"]), table
        assert not re.search(r"\d\.\d{5,}", table), table  # accuracies rounded
        _assert_no_error(browser, "Runs")
    _shot(browser, "runs")


_FIND_LIVE_BOX = """
function search(root) {
  for (const el of root.querySelectorAll('*')) {
    if (el.shadowRoot) { const hit = el.shadowRoot.querySelector('input') || search(el.shadowRoot); if (hit) return hit; }
  }
  return null;
}
return search(document);
"""


def test_browser_predicts_as_the_user_types(walk_server, browser):
    """Keystrokes typed into the live box (streamlit-keyup, a component in a shadow root) reach the model after a pause,
    and the typed text is the one the ordinary box then holds."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(f"{walk_server['base']}/sentiment")
    wait = WebDriverWait(browser, 120)
    wait.until(lambda d: d.find_element(By.XPATH, "//label[.//p[text()='Predict as you type']]")).click()
    live = wait.until(lambda d: d.execute_script(_FIND_LIVE_BOX))  # streamlit-keyup draws in a shadow root
    live.clear()
    typed = "what a wonderful, warm film"
    for ch in typed:  # one key at a time, as a person types
        live.send_keys(ch)
        time.sleep(0.02)
    wait.until(lambda d: "Answered in" in _visible_text(d) and _prediction_text(d))
    _assert_no_error(browser, "predict as you type")
    _shot(browser, "sentiment-as-you-type")
    browser.find_element(By.XPATH, "//label[.//p[text()='Predict as you type']]").click()  # back to the box
    area = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "textarea"))
    with _shot_on_failure(browser, "sentiment-back-to-the-box"):
        wait = WebDriverWait(browser, 10)
        wait.until(lambda d: area.get_attribute("value") == typed)


_ROW_LAYOUT = """
const row = document.querySelector(arguments[0]);
if (!row) return null;
const boxes = [...row.children].map(c => c.getBoundingClientRect()).filter(r => r.width > 0);
if (row.querySelectorAll("[data-testid='stWidgetLabel']").length < boxes.length) return null;  // still drawing
const first = boxes.reduce((a, b) => (b.top < a.top ? b : a));
const perRow = boxes.filter(r => r.top < first.bottom - 1).length;  // beside the first field (bottom-aligned)
const cut = [...row.querySelectorAll("[data-testid='stWidgetLabel'] p")]
  .filter(p => p.scrollWidth > p.clientWidth + 1).map(p => p.textContent);
return {fields: boxes.length, per_row: perRow, narrowest: Math.min(...boxes.map(r => r.width)),
        right: Math.max(...boxes.map(r => r.right)), page: document.documentElement.clientWidth, cut: cut};
"""

_CHIPS_INSIDE = """
const row = document.querySelector(arguments[0]);
if (!row || !row.children.length) return null;
const widget = row.children[0];
const chips = [...widget.querySelectorAll("span")].filter(
  e => !e.children.length && ["keras", "saved_model", "tflite", "onnx"].includes(e.textContent.trim()));
if (!chips.length) return null;
const outer = widget.getBoundingClientRect();
return {chips: chips.length, hidden: chips.filter(c => { const r = c.getBoundingClientRect();
  // clear of the box's clear and open buttons at its right end (the last chip once faded under them)
  return r.right > outer.right - 64 || r.bottom > outer.bottom + 1 || r.width === 0; }).map(c => c.textContent)};
"""


@pytest.mark.parametrize(("width", "fewest", "most"), [(1400, 3, 6), (900, 2, 2), (390, 1, 1)])
def test_browser_settings_wrap_to_the_screen_and_no_label_is_cut(walk_server, browser, width, fewest, most):
    """The Train form's fields flow into as many columns as the screen holds (a laptop several, a narrow window
    beside the sidebar two, a phone one) at a readable width, never past the page's edge, with no label cut;
    the Export tab shows the chip of every format it offers."""
    from selenium.webdriver.support.ui import WebDriverWait

    from suite.registry import get

    task = "image_classification"
    browser.set_window_size(width, 1400)
    browser.get(f"{walk_server['base']}/{task}")
    wait = WebDriverWait(browser, 120)
    with _shot_on_failure(browser, f"layout-{width}"):
        _open_tab(browser, wait, "Train")
        layout = wait.until(lambda d: d.execute_script(_ROW_LAYOUT, f".st-key-{task}-settings"))
        assert layout["fields"] == len(get(task).config_class.ui_fields), layout
        assert fewest <= layout["per_row"] <= most, layout
        assert layout["narrowest"] >= 170 and layout["right"] <= layout["page"], layout
        assert not layout["cut"], layout
        _open_tab(browser, wait, "Export")
        chips = wait.until(lambda d: d.execute_script(_CHIPS_INSIDE, f".st-key-{task}-export-formats"))
        assert chips["chips"] == 4 and not chips["hidden"], chips
    _shot(browser, f"layout-{width}")
