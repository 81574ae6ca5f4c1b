"""The Streamlit app in a real browser: cold start, first prediction, and concurrent sessions on one server.

Trains a small image model on the built-in sample into a temporary SUITE_HOME, starts ``streamlit run`` on
127.0.0.1 with the suite's server flags, and drives headless Chromium through Selenium:

* cold start: seconds from launching ``streamlit run`` to the first rendered page (the home title), and to the
  first prediction on the image page (upload a PNG, wait for ``Prediction:``);
* load: N browser sessions (20 full, 3 quick) against that one server, each uploading a digit PNG; reports
  errors, per-session latency, whether labels equal the serial ones, how many times the server loaded the
  model (from its log, see ``apps/common.py: MODEL_LOADS``), and the server's RSS before, at peak and after.

``python -m bench.run --only app [--quick|--full]`` runs it; needs /usr/bin/chromium and chromedriver.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.common import ROOT, machine, md_table, save_results

NAME = "app"
TASK = "image_classification"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
TITLE = "Keras Task Suite"
LOAD_LINE = "suite-app: model loaded"
DIGITS = (0, 1, 3, 7, 8)  # the PNGs sessions upload, in turn
WAIT_S = 180.0


def browser_available() -> str | None:
    """None when Chromium, chromedriver and Selenium are all here; otherwise why not."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).exists()]
    if missing:
        return f"{', '.join(missing)} not installed (apt-get install chromium chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train_model(home: Path, quick: bool):
    """A small image model on the built-in sample (sklearn digits), in ``home``."""
    from suite.registry import get
    from suite.runstore import RunStore
    from suite.trainer import TrainOptions, train

    task = get(TASK)
    overrides = dict(task.sample_overrides)
    if quick:
        overrides["epochs"] = 3
    run = train(task, "sample", overrides, name="app-bench", store=RunStore(home),
                options=TrainOptions(tensorboard=False))
    if run.status != "completed":
        raise RuntimeError(f"training ended {run.status}: {run.info.get('error')}")
    return run


def digit_pngs(digits=DIGITS) -> dict[int, bytes]:
    """One held-out-style sample digit per class, upscaled to 28x28 like the training data, as PNG bytes."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    data = load_digits()
    out = {}
    for d in digits:
        # The last image of each class: the sample's split shuffles, so this is simply a real digit.
        idx = int(np.flatnonzero(data.target == d)[-1])
        img = np.clip(np.rint(data.images[idx] * (255.0 / 16.0)), 0, 255).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(img, mode="L").resize((28, 28), Image.BILINEAR).save(buf, format="PNG")
        out[d] = buf.getvalue()
    return out


class Server:
    """``streamlit run apps/app.py`` on 127.0.0.1 in its own process group, with its log in a file."""

    def __init__(self, home: Path, workdir: Path, env_extra: dict[str, str] | None = None):
        from suite_app.settings import streamlit_flags

        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / "streamlit.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115
        env = {**os.environ, "SUITE_HOME": str(home), "SUITE_APP_PREPARE_SAMPLES": "0", "SUITE_PLUGINS": TASK,
               **(env_extra or {})}
        self.started = time.perf_counter()
        self.started_wall = time.time()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", str(ROOT / "apps" / "app.py"), *streamlit_flags(),
             "--server.address", "127.0.0.1", "--server.port", str(self.port)],
            cwd=workdir, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)

    def wait_healthy(self, timeout: float = 120.0) -> float:
        """Seconds from launch until /_stcore/health answers 200."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("streamlit exited: " + self.log()[-1000:])
            try:
                with urllib.request.urlopen(f"{self.base}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        return time.perf_counter() - self.started
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"streamlit did not answer /_stcore/health within {timeout:.0f} s")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def model_loads(self) -> int:
        return self.log().count(LOAD_LINE)

    def rss_mb(self) -> float:
        import psutil

        return psutil.Process(self.proc.pid).memory_info().rss / 2**20

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)  # our own process group (start_new_session)
                self.proc.wait(timeout=15)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait()
        self._log.close()


def new_driver(extra_flags: tuple[str, ...] = ()):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", "--disable-extensions", "--window-size=1200,1400", *extra_flags):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(WAIT_S)
    return driver


def quit_driver(driver) -> None:
    try:
        driver.quit()
    except Exception:
        # quit failed half-way: end the chromedriver we started (its Chromium children go with it).
        proc = getattr(getattr(driver, "service", None), "process", None)
        if proc is not None and proc.poll() is None:
            proc.kill()


def wait_title(driver, timeout: float = WAIT_S) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, timeout).until(
        lambda d: any(TITLE in h.text for h in d.find_elements(By.TAG_NAME, "h1")))


def open_upload(driver, base: str, timeout: float = WAIT_S):
    """Open the image page and switch its input to Upload; returns the file input element."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(f"{base}/{TASK}")
    wait = WebDriverWait(driver, timeout)
    wait.until(ec.element_to_be_clickable((By.XPATH, "//label[.//p[text()='Upload']]")))
    wait_idle(driver, timeout)  # a click during the first run can be lost in its rerun
    driver.find_element(By.XPATH, "//label[.//p[text()='Upload']]").click()
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "input[type='file']")))
    wait_idle(driver, timeout)
    return driver.find_element(By.CSS_SELECTOR, "input[type='file']")


def wait_idle(driver, timeout: float = WAIT_S) -> None:
    """Until the page's script run has finished (Streamlit marks it on the stApp element) for 0.3 s."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def idle(d):
        states = [e.get_attribute("data-test-script-state") for e in d.find_elements(By.CSS_SELECTOR,
                                                                                      "[data-testid='stApp']")]
        return bool(states) and all(s == "notRunning" for s in states)

    deadline = time.time() + timeout
    while True:
        WebDriverWait(driver, max(1.0, deadline - time.time())).until(idle)
        time.sleep(0.3)
        if idle(driver) or time.time() > deadline:
            return


def upload_and_read(driver, file_input, picture: Path, timeout: float = WAIT_S) -> str:
    """Upload ``picture`` and return the predicted label shown on the page."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def prediction(d):
        body = d.find_element(By.TAG_NAME, "body").text
        if "Traceback" in body or "cannot be used" in body:
            raise RuntimeError("the page shows an error: " + body[-300:].replace("\n", " / "))
        for el in d.find_elements(By.CSS_SELECTOR, "[data-testid='stMarkdownContainer'] h3"):
            m = re.match(r"Prediction:\s*(\S+)", el.text)
            if m:
                return m.group(1)
        return False

    from selenium.common.exceptions import TimeoutException

    file_input.send_keys(str(picture))
    try:
        return WebDriverWait(driver, timeout).until(prediction)
    except TimeoutException:
        body = driver.find_element(By.TAG_NAME, "body").text
        raise TimeoutError(f"no prediction within {timeout:.0f} s; page ends: "
                           + body[-200:].replace("\n", " / ")) from None


def cold_start(home: Path, workdir: Path, pictures: dict[int, Path]) -> tuple[Server, dict]:
    """Launch the server with a browser already open; time first page and first prediction."""
    driver = new_driver()  # Chromium's own start-up is not the app's
    server = None
    try:
        server = Server(home, workdir)
        healthy = server.wait_healthy()
        driver.get(server.base)
        wait_title(driver)
        first_page = time.perf_counter() - server.started
        # Let the home page's run finish: two first runs importing TensorFlow and Keras at once in two threads
        # deadlock the import and break the server for good (a known app issue, see the report).
        wait_idle(driver)
        file_input = open_upload(driver, server.base)
        t = time.perf_counter()
        digit = DIGITS[0]
        label = upload_and_read(driver, file_input, pictures[digit])
        first_pred = time.perf_counter() - server.started
        return server, {"health_s": healthy, "first_page_s": first_page, "first_prediction_s": first_pred,
                        "upload_to_prediction_s": time.perf_counter() - t, "label": label, "digit": digit}
    except BaseException:
        if server is not None:
            server.stop()
        raise
    finally:
        quit_driver(driver)


def serial_labels(server: Server, pictures: dict[int, Path]) -> dict[int, dict]:
    """Each digit predicted in its own session, one after another: the reference for the concurrent run."""
    out = {}
    for digit, path in pictures.items():
        driver = new_driver()
        try:
            file_input = open_upload(driver, server.base)
            t = time.perf_counter()
            out[digit] = {"label": upload_and_read(driver, file_input, path), "seconds": time.perf_counter() - t}
        finally:
            quit_driver(driver)
    return out


def load_test(server: Server, pictures: dict[int, Path], sessions: int, launch_concurrency: int = 4,
              timeout: float = WAIT_S) -> dict:
    """``sessions`` browsers against one server: all connect (launches bounded), then all upload at once.

    Chromium start-ups are limited to ``launch_concurrency`` at a time (they are the CPU-heavy part); each
    session then waits at a barrier with its page open, so every session is connected when the uploads start.
    """
    digits = list(pictures)
    launch = threading.Semaphore(launch_concurrency)
    barrier = threading.Barrier(sessions)
    lock = threading.Lock()
    state = {"connected": 0, "max_connected": 0}
    stop = threading.Event()
    rss: list[float] = []

    def sample_rss():
        while not stop.is_set():
            try:
                rss.append(server.rss_mb())
            except Exception:
                pass
            stop.wait(0.2)

    def session(i: int) -> dict:
        digit = digits[i % len(digits)]
        rec: dict = {"session": i, "digit": digit}
        driver = None
        connected = False
        try:
            with launch:
                t0 = time.perf_counter()
                driver = new_driver()
                file_input = open_upload(driver, server.base, timeout)
                rec["connect_s"] = time.perf_counter() - t0
            with lock:
                state["connected"] += 1
                connected = True
                state["max_connected"] = max(state["max_connected"], state["connected"])
            try:
                barrier.wait(timeout=max(timeout, 30.0 * sessions))  # the last launches can take minutes
            except threading.BrokenBarrierError:
                rec["barrier_broken"] = True
            t = time.perf_counter()
            rec["label"] = upload_and_read(driver, file_input, pictures[digit], timeout)
            rec["latency_s"] = time.perf_counter() - t
        except Exception as err:  # noqa: BLE001 -- a failed session is a figure, not a crash
            rec["error"] = f"{type(err).__name__}: {str(err).strip().splitlines()[0][:200] if str(err).strip() else ''}"
            barrier.abort()
        finally:
            if connected:
                with lock:
                    state["connected"] -= 1
            if driver is not None:
                quit_driver(driver)
        return rec

    loads_before = server.model_loads()
    rss_before = server.rss_mb()
    sampler = threading.Thread(target=sample_rss, daemon=True)
    sampler.start()
    t0 = time.perf_counter()
    try:
        with ThreadPoolExecutor(max_workers=sessions) as pool:
            records = list(pool.map(session, range(sessions)))
    finally:
        stop.set()
        sampler.join()
    wall = time.perf_counter() - t0
    time.sleep(5.0)  # let the server drop the closed sessions
    rss_after = server.rss_mb()
    return {"records": records, "wall_s": wall, "max_connected": state["max_connected"],
            "rss_before_mb": rss_before, "rss_peak_mb": max(rss + [rss_before]), "rss_after_mb": rss_after,
            "model_loads_during": server.model_loads() - loads_before}


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, max(0, round(q * (len(values) - 1))))]


def measure(quick: bool, sessions: int | None = None, launch_concurrency: int = 4) -> dict:
    """The whole measurement, cleaning up its server and browsers; returns raw figures."""
    sessions = sessions or (3 if quick else 20)
    with tempfile.TemporaryDirectory(prefix="suite-app-bench-") as tmp:
        tmp = Path(tmp)
        home = tmp / "runs"
        t = time.perf_counter()
        run = train_model(home, quick)
        train_s = time.perf_counter() - t
        pngs = digit_pngs()
        pictures = {}
        for d, data in pngs.items():
            pictures[d] = tmp / f"digit{d}.png"
            pictures[d].write_bytes(data)
        from suite.predictor import Predictor

        direct = {d: str(Predictor(run).predict_one(data)["label"]) for d, data in pngs.items()}
        workdir = tmp / "cwd"
        workdir.mkdir()
        server, cold = cold_start(home, workdir, pictures)
        try:
            serial = serial_labels(server, pictures)
            load = load_test(server, pictures, sessions, launch_concurrency)
            loads_total = server.model_loads()
        finally:
            server.stop()
    recs = load["records"]
    ok = [r for r in recs if "error" not in r]
    lat = [r["latency_s"] for r in ok]
    mismatches = [r for r in ok if r["label"] != serial[r["digit"]]["label"]]
    return {
        "quick": quick, "machine": machine(), "train_s": train_s, "cold": cold,
        "direct_labels": direct, "serial": serial, "sessions": sessions, "launch_concurrency": launch_concurrency,
        "errors": [r["error"] for r in recs if "error" in r], "ok": len(ok), "mismatches": len(mismatches),
        "latency_p50_s": _pct(lat, 0.5) if lat else None, "latency_p95_s": _pct(lat, 0.95) if lat else None,
        "latency_max_s": max(lat) if lat else None, "max_connected": load["max_connected"],
        "barrier_broken": sum(1 for r in recs if r.get("barrier_broken")),
        "connect_p50_s": _pct([r["connect_s"] for r in recs if "connect_s" in r], 0.5) if ok else None,
        "load_wall_s": load["wall_s"], "model_loads_total": loads_total,
        "model_loads_during_load": load["model_loads_during"], "rss_before_mb": load["rss_before_mb"],
        "rss_peak_mb": load["rss_peak_mb"], "rss_after_mb": load["rss_after_mb"], "records": recs,
    }


# ---- first contact: a fresh SUITE_HOME, sample models prepared on first start, every plugin page ------------
FIRST_CONTACT_TASKS = ("image_classification", "sentiment", "speech_commands", "translation")
FIRST_CONTACT_TARGET_S = 120.0
# Background tabs must keep their websocket and timers running in headless Chromium.
TAB_FLAGS = ("--disable-background-timer-throttling", "--disable-backgrounding-occluded-windows",
             "--disable-renderer-backgrounding")


def shown_prediction(driver) -> str | None:
    """The label (or translation) a plugin page shows, once it shows a prediction; else None."""
    from selenium.webdriver.common.by import By

    body = driver.find_element(By.TAG_NAME, "body").text
    if "Answered in" not in body:
        return None
    for el in driver.find_elements(By.CSS_SELECTOR, "[data-testid='stMarkdownContainer'] h3"):
        m = re.match(r"Prediction:\s*(.+)", el.text)
        if m:
            return m.group(1).strip()
    lines = [ln.strip() for ln in body.splitlines()]
    if "Translation" in lines and lines.index("Translation") + 1 < len(lines):
        return lines[lines.index("Translation") + 1]
    return None


def first_contact(workdir: Path, tasks=FIRST_CONTACT_TASKS, timeout: float = 600.0) -> dict:
    """Seconds from launching ``streamlit run`` on a FRESH SUITE_HOME to a prediction on every plugin page.

    The browser opens Home (the first session starts the sample models), then one tab per plugin page; each tab
    is polled until its page shows a prediction, which it does by itself once its sample model is ready (the
    first example is pre-selected). Which label came out, and whether it is the example's expected one, is
    recorded too.
    """
    home = workdir / "fresh-home"
    cwd = workdir / "fc-cwd"
    cwd.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    driver = new_driver(TAB_FLAGS)  # Chromium's own start-up is not the app's
    server = None
    try:
        server = Server(home, cwd, env_extra={"SUITE_APP_PREPARE_SAMPLES": "1", "SUITE_PLUGINS": ",".join(tasks)})
        healthy = server.wait_healthy()
        driver.get(server.base)
        wait_title(driver, timeout)
        first_page = time.perf_counter() - server.started
        handles = {}
        for task in tasks:
            driver.switch_to.new_window("tab")
            driver.get(f"{server.base}/{task}")
            handles[task] = driver.current_window_handle
        shown: dict[str, dict] = {}
        deadline = time.time() + timeout
        while len(shown) < len(tasks) and time.time() < deadline:
            for task, handle in handles.items():
                if task in shown:
                    continue
                driver.switch_to.window(handle)
                label = shown_prediction(driver)
                if label is not None:
                    shown[task] = {"seconds": time.perf_counter() - server.started, "shown": label}
            time.sleep(0.5)
        for task, handle in handles.items():  # what each page says, for the record
            if task not in shown:
                driver.switch_to.window(handle)
                from selenium.webdriver.common.by import By

                shown[task] = {"seconds": None, "page_ends": driver.find_element(By.TAG_NAME, "body").text[-300:]}
        total = time.perf_counter() - server.started
        loads = {}
        for m in re.finditer(r"model loaded \(\d+\) \S+/sample-(\w+) at ([\d.]+) in ([\d.]+) s", server.log()):
            loads[m.group(1)] = {"loaded_at_s": float(m.group(2)) - server.started_wall, "load_s": float(m.group(3))}
    finally:
        quit_driver(driver)
        if server is not None:
            server.stop()
    status = {}
    import json

    with contextlib.suppress(OSError, ValueError):
        status = json.loads((home / ".sample-models.json").read_text())
    _expected_labels(home, shown)
    times = status.get("times") or {}
    t0 = status.get("started")
    for task, rec in shown.items():
        t = times.get(task) or {}
        if t.get("started") and t.get("finished"):
            rec["train_s"] = t["finished"] - t["started"]
            rec["ready_after_coordinator_s"] = t["finished"] - t0 if t0 else None
        if t.get("finished"):
            rec["ready_at_s"] = t["finished"] - server.started_wall
        rec.update(loads.get(task, {}))
        rec["state"] = (status.get("tasks") or {}).get(task)
        rec["lane"] = ((status.get("plan") or {}).get(task) or {}).get("lane")
    done = [r["seconds"] for r in shown.values() if r.get("seconds") is not None]
    return {"health_s": healthy, "first_page_s": first_page, "pages": shown, "tasks": list(tasks),
            "all_pages_s": max(done) if len(done) == len(tasks) else None, "wall_s": total,
            "lanes": 1 + max((r.get("lane") or 0) for r in shown.values()), "loadavg_before": load_before,
            "loadavg_after": os.getloadavg(), "target_s": FIRST_CONTACT_TARGET_S}


def _expected_labels(home: Path, shown: dict) -> None:
    """The first example each page pre-selects, and whether the prediction shown is its expected label."""
    from suite.registry import get
    from suite.runstore import RunStore
    from suite_app.samples import sample_name

    for task_name, rec in shown.items():
        with contextlib.suppress(Exception):
            task = get(task_name)
            run = RunStore(home).get(sample_name(task_name))
            examples = list(task.examples(run.meta))
            kind = str if task.input_kind in ("text", "table") else bytes
            first = next(e for e in examples if isinstance(e.value, kind))
            rec["example"], rec["expected"] = first.name, first.expected
            rec["correct"] = rec.get("shown") is not None and str(rec["shown"]).strip() == str(first.expected)
            # The sample model on all its examples (in-process, same model file): how sensible it is.
            from suite.predictor import Predictor

            pred = Predictor(run)
            outs = [(pred.predict_one(e.value), e.expected) for e in examples if e.expected is not None]
            hits = [str(o.get("label", o.get("text"))).strip() == str(exp) for o, exp in outs]
            rec["examples_right"] = f"{sum(hits)}/{len(hits)}"


def first_contact_section(fc: dict, cmd: str) -> str:
    rows = []
    for task in fc["tasks"]:
        r = fc["pages"][task]
        rows.append([task, r.get("lane", "-"), r.get("train_s", "-"), r.get("ready_at_s", "-"),
                     r.get("loaded_at_s", "-"), r.get("seconds") or "not shown",
                     f"{r.get('shown', '-')} (expected {r.get('expected', '-')})", r.get("examples_right", "-")])
    verdict = ("within" if fc["all_pages_s"] is not None and fc["all_pages_s"] <= fc["target_s"] else "OVER")
    lines = [
        FC_MARK,
        "",
        f"Command: `{cmd}`. A fresh SUITE_HOME, `streamlit run apps/app.py` on 127.0.0.1 with the four built-in "
        "plugins; headless Chromium opens Home (whose first run starts the sample models), then one tab per plugin "
        "page, and each tab is polled until it shows a prediction (the page predicts on its pre-selected first "
        f"example by itself as soon as its sample model is ready). Sample models trained in {fc['lanes']} lanes. "
        f"Machine load average before / after: {fc['loadavg_before'][0]:.1f} / {fc['loadavg_after'][0]:.1f} "
        "(other jobs share this 2-core machine).",
        "",
        f"**Every plugin page showed a prediction {fc['all_pages_s'] or float('nan'):.1f} s after `streamlit run`** "
        f"({verdict} the {fc['target_s']:.0f} s target); health endpoint {fc['health_s']:.1f} s, first page "
        f"{fc['first_page_s']:.1f} s.",
        "",
        md_table(["plugin page", "lane", "sample model trained in (s)", "model ready at (s after launch)",
                  "server loaded it at (s)", "prediction shown at (s)", "shown (first example)",
                  "sample model right on its examples"], rows),
    ]
    return "\n".join(lines) + "\n"


FC_MARK = "### First contact: a fresh machine, every plugin page predicting"


def replace_subsection(text: str, mark: str, section: str) -> str:
    """``text`` with the ``### `` subsection that starts with ``mark`` replaced by ``section`` (or added)."""
    if mark in text:
        start = text.index(mark)
        end = text.find("\n### ", start + len(mark))
        rest = text[end + 1:] if end >= 0 else ""
        text = text[:start].rstrip() + "\n" + ("\n" + rest if rest else "")
    return text.rstrip() + "\n\n" + section.strip() + "\n"


def _keep_subsection(mark: str, section: str) -> None:
    from bench.common import RESULTS

    path = RESULTS / f"{NAME}.md"
    old = path.read_text() if path.exists() else "## The app in a browser\n"
    path.write_text(replace_subsection(old, mark, section))


def _measure_alone(kind: str, measure, section_of, mark: str) -> str:
    """Measure one part (``first_contact``, ``first_paint``) in a scratch folder; save its results and replace
    only its subsection of bench/results/app.md (the other app figures are kept)."""
    with tempfile.TemporaryDirectory(prefix=f"suite-app-{kind}-") as tmp:
        figures = measure(Path(tmp))
    save_results(f"{NAME}_{kind}", {"machine": machine(), **figures})
    section = section_of(figures, f"python -m bench.app --{kind.replace('_', '-')}")
    _keep_subsection(mark, section)
    return section


def run_first_contact_only() -> str:
    return _measure_alone("first_contact", first_contact, first_contact_section, FC_MARK)


FP_MARK = "### First paint: Home and the sidebar before TensorFlow"


def first_paint(workdir: Path, rounds: int = 3) -> dict:
    """Launch a server on an empty run store (every built-in plugin, no sample training) with a browser
    already open; time the title and the sidebar's task links, the whole Home page, then a task page."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    tries = []
    for i in range(rounds):
        home = workdir / f"home{i}"
        home.mkdir()
        driver, server = new_driver(), None
        try:
            server = Server(home, workdir, env_extra={"SUITE_PLUGINS": ""})
            healthy = server.wait_healthy()
            t0 = time.perf_counter()
            driver.get(server.base)
            wait_title(driver)
            WebDriverWait(driver, WAIT_S).until(lambda d: len(d.find_elements(
                By.CSS_SELECTOR, "[data-testid='stSidebarNav'] a")) >= 5)
            painted = time.perf_counter()
            wait_idle(driver)
            home_ready = time.perf_counter()
            driver.get(f"{server.base}/{TASK}")
            WebDriverWait(driver, WAIT_S).until(
                lambda d: any("Image classification" in h.text for h in d.find_elements(By.TAG_NAME, "h1")))
            wait_idle(driver)
            task_ready = time.perf_counter()
            tries.append({"health_s": healthy, "first_paint_s": painted - t0,
                          "first_paint_after_launch_s": painted - server.started,
                          "home_ready_s": home_ready - t0, "task_page_ready_s": task_ready - home_ready})
        finally:
            quit_driver(driver)
            if server is not None:
                server.stop()
    return {"tries": tries, **{k: sorted(t[k] for t in tries)[len(tries) // 2] for k in tries[0]}}


def first_paint_section(fp: dict, cmd: str) -> str:
    rows = [[i + 1, f"{t['health_s']:.1f}", f"{t['first_paint_s']:.2f}", f"{t['first_paint_after_launch_s']:.1f}",
             f"{t['home_ready_s']:.1f}", f"{t['task_page_ready_s']:.1f}"] for i, t in enumerate(fp["tries"])]
    return "\n".join([
        FP_MARK, "",
        f"Command: `{cmd}` (idle machine, one server at a time, every built-in plugin installed, empty run "
        "store, no sample training; the browser is started before the server). Home and the sidebar draw from "
        "the plugin registry without importing TensorFlow; only Home's last section (what `auto` picks, which "
        "detects devices) and the task pages import it.",
        "",
        f"Median of {len(fp['tries'])}: **first paint (title and every task link in the sidebar) "
        f"{fp['first_paint_s']:.2f} s after the browser asks** ({fp['first_paint_after_launch_s']:.1f} s after "
        f"`streamlit run`), Home complete {fp['home_ready_s']:.1f} s, then the image page ready "
        f"{fp['task_page_ready_s']:.1f} s later.",
        "",
        md_table(["try", "server healthy after launch (s)", "first paint after the request (s)",
                  "first paint after launch (s)", "Home complete (s)", "then image page ready (s)"], rows),
    ])


def run_first_paint_only() -> str:
    return _measure_alone("first_paint", first_paint, first_paint_section, FP_MARK)


def run(quick: bool) -> str:
    why = browser_available()
    if why:
        return f"## The app in a browser\n\nNot measured: {why}.\n"
    r = measure(quick)
    save_results(NAME + ("_quick" if quick else ""), r)
    cmd = f"python -m bench.run --only app {'--quick' if quick else '--full'}"
    cold = r["cold"]
    serial_ok = all(r["serial"][d]["label"] == r["direct_labels"][d] for d in r["serial"])
    lines = [
        "## The app in a browser (Streamlit + headless Chromium)",
        "",
        f"Command: `{cmd}`. Machine: {r['machine']}. Model: `image_classification` trained on the built-in "
        f"sample (sklearn digits, {r['train_s']:.0f} s); server: `streamlit run apps/app.py` with the suite's "
        "flags on 127.0.0.1, one process; browsers: Selenium driving `/usr/bin/chromium --headless=new`. "
        "Uploads are real sklearn digits (" + ", ".join(str(d) for d in DIGITS) + ") as 28x28 PNGs.",
        "",
        "**Cold start** (seconds from launching `streamlit run`; the browser was already open; the image page "
        "is opened once the home page's first run has finished, which includes importing TensorFlow):",
        "",
        md_table(["health endpoint answers", "first rendered page (home title)", "first prediction on the image "
                  "page", "of which upload → `Prediction:` (includes the model load)"],
                 [[cold["health_s"], cold["first_page_s"], cold["first_prediction_s"],
                   cold["upload_to_prediction_s"]]]),
        "",
        f"**Load**: {r['sessions']} browser sessions against that one server. Chromium start-ups are limited to "
        f"{r['launch_concurrency']} at a time; each session then waits with its page open until all are "
        f"connected, and all upload at once. Most sessions connected at the same time: **{r['max_connected']}** "
        f"of {r['sessions']}" + (f" ({r['barrier_broken']} sessions gave up waiting for the others)"
                                 if r["barrier_broken"] else "") + ".",
        "",
        md_table(["sessions", "errors", "labels = serial ones", "upload → prediction p50 (s)", "p95 (s)",
                  "max (s)", "model loads on the server (whole run)", "server RSS before / peak / after (MB)"],
                 [[r["sessions"], len(r["errors"]), f"{r['ok'] - r['mismatches']}/{r['sessions']}",
                   r["latency_p50_s"] if r["latency_p50_s"] is not None else "-",
                   r["latency_p95_s"] if r["latency_p95_s"] is not None else "-",
                   r["latency_max_s"] if r["latency_max_s"] is not None else "-",
                   r["model_loads_total"],
                   f"{r['rss_before_mb']:.0f} / {r['rss_peak_mb']:.0f} / {r['rss_after_mb']:.0f}"]]),
        "",
        "Serial labels (one session per digit, one after another): "
        + ", ".join(f"{d}→{v['label']}" for d, v in r["serial"].items())
        + f"; they {'equal' if serial_ok else 'DIFFER from'} `Predictor.predict_one` on the same bytes in-process. "
        "Latency here is wall time in the browser from choosing the file to the label on the page (upload, "
        "rerun, prediction, render), with all sessions' browsers sharing the machine's CPUs with the server. "
        "RSS 'after' is read 5 s after the last browser closed.",
    ]
    if r["errors"]:
        lines += ["", "Errors: " + "; ".join(sorted(set(r["errors"])))[:600]]
    if quick:  # first contact trains every plugin's sample model: its own command, and the full run, measure it
        lines += ["", "First contact (every plugin page predicting on a fresh machine) is not part of the quick run: "
                  "`python -m bench.app --first-contact`."]
        return "\n".join(lines) + "\n"
    with tempfile.TemporaryDirectory(prefix="suite-app-fc-") as tmp:
        fc = first_contact(Path(tmp))
    save_results(NAME + "_first_contact", {"machine": machine(), **fc})
    lines += ["", first_contact_section(fc, cmd)]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    if "--first-contact" in sys.argv:
        print(run_first_contact_only())
    elif "--first-paint" in sys.argv:
        print(run_first_paint_only())
    else:
        print(run(quick="--full" not in sys.argv))
