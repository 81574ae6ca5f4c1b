"""Concurrent sessions against one running app: no errors, one model load, the same labels as in-process.

A small version of ``bench/app.py``'s load test (which runs 20 sessions): 4 headless Chromium sessions upload
digit PNGs at once to one ``streamlit run`` server on 127.0.0.1. Skips with the reason when Chromium,
chromedriver or Selenium is missing.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import app as bench_app  # noqa: E402

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.xdist_group("app-browser")]
SESSIONS = 4


def test_four_concurrent_sessions_share_one_model_and_agree_with_serial_predictions(tmp_path):
    why = bench_app.browser_available()
    if why:
        pytest.skip(f"browser load test skipped: {why}")
    from suite.predictor import Predictor
    from suite.registry import get_registry
    from suite.runstore import RunStore
    from suite.trainer import TrainOptions, train

    if bench_app.TASK not in get_registry():
        pytest.skip("browser load test skipped: the image_classification plugin is not installed")
    home = tmp_path / "runs"
    run = train(bench_app.TASK, "sample", {"model": "cnn_small", "image_size": 16, "epochs": 1, "batch_size": 64,
                                           "max_train_examples": 512},
                name="app-load", store=RunStore(home), options=TrainOptions(tensorboard=False))
    assert run.status == "completed"
    pngs = bench_app.digit_pngs()
    pictures = {}
    for digit, data in pngs.items():
        pictures[digit] = tmp_path / f"digit{digit}.png"
        pictures[digit].write_bytes(data)
    predictor = Predictor(run)
    serial = {d: {"label": str(predictor.predict_one(data)["label"])} for d, data in pngs.items()}
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    server = bench_app.Server(home, workdir)
    try:
        server.wait_healthy()
        # One session first, so the plugin and TensorFlow are imported before the concurrent ones arrive
        # (concurrent first imports of tensorflow and keras in two threads deadlock: a known app issue).
        driver = bench_app.new_driver()
        try:
            bench_app.open_upload(driver, server.base, 90)
        finally:
            bench_app.quit_driver(driver)
        result = bench_app.load_test(server, pictures, SESSIONS, launch_concurrency=SESSIONS, timeout=90)
        loads = server.model_loads()
        log_tail = server.log()[-1500:]
    finally:
        server.stop()
    records = result["records"]
    assert [r.get("error") for r in records if "error" in r] == [], log_tail
    assert result["max_connected"] == SESSIONS  # all were connected before any uploaded
    assert [r["label"] for r in records] == [serial[r["digit"]]["label"] for r in records]
    assert loads == 1, log_tail  # one Predictor for the whole server, whatever the number of sessions
    assert result["rss_after_mb"] <= result["rss_peak_mb"] * 1.05
