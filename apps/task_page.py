"""The page every plugin gets without writing UI code: Try it, Train, Evaluate, Export, from its metadata."""

from __future__ import annotations

import base64
import datetime as _dt
import io
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from suite.errors import InputError, RunError
from suite.outputs import is_text, text_of
from suite.runstore import Run
from suite.strategy import PRECISIONS, STRATEGIES
from suite_app import charts, samples, training
from suite_app.common import (
    ACTIVE,
    FIELD_WIDTH,
    USABLE_STATUSES,
    field_row,
    get_predictor,
    guard,
    human_bytes,
    is_running,
    is_sample,
    path_size,
    registry,
    run_label,
    show_error,
    store,
    timed_predict,
    usable_runs,
)

EXPORT_FORMATS = ("keras", "saved_model", "tflite", "onnx")
QUANTIZE = ("none", "float16", "dynamic", "int8")
TABS = ("Try it", "Train", "Evaluate", "Export")


def render(task_name: str) -> None:
    task = registry().get(task_name)
    st.title(task.title)
    if task.description:
        st.caption(task.description)
    runs = usable_runs(task.name)
    with guard("Sample model"):
        sample_banner(task, runs)
    run = select_run(task, runs)
    # Keyed, so "Try it now" on a finished run can bring the user back to the first tab.
    tabs = st.tabs(list(TABS), key=f"{task.name}:tab", on_change="rerun")
    sections = {}
    with guard("Plugin sections"):
        sections = dict(task.page_sections() or {})
    for tab, title, draw in zip(tabs, TABS, (lambda: try_tab(task, run), lambda: train_tab(task),
                                            lambda: evaluate_tab(task, run), lambda: export_tab(task, run)),
                                strict=True):
        with tab:
            with guard(title):
                draw()
            if title in sections:  # the plugin's own section, under the generic tab
                with guard(f"{title}: {task.title} section"):
                    sections[title](st, run)


# ---- model selection ------------------------------------------------------------------------------
def select_run(task, runs: list[Run]) -> Run | None:
    """The model to use: newest usable run by default, or the run that just finished; says so when the chosen
    one was deleted."""
    key = f"{task.name}:run"
    # Options are the labels themselves (no format_func), so the widget's value round-trips everywhere.
    by_label = {run_label(r): r for r in runs}
    pending = st.session_state.pop(f"{task.name}:select-next", None)
    if pending:
        st.session_state[key] = next((label for label, r in by_label.items() if r.name == pending),
                                     st.session_state.get(key))
    chosen = st.session_state.get(key)
    if chosen and chosen not in by_label:
        name = chosen.split(" · ")[0]
        if name not in {r.name for r in runs}:
            gone = not (store().root / name).exists()
            reason = "its folder was deleted" if gone else "it has no usable model now (training again?)"
            st.error(f"Run {name!r} is gone: {reason}." + (" Using the newest remaining run." if runs else ""))
        del st.session_state[key]
    if not runs:
        return None
    label = st.selectbox("Model (a trained run of this task)", list(by_label), key=key,
                         help="Newest first. Runs stopped before their last epoch are used from their best "
                              "checkpoint. Sample models were trained on the plugin's built-in sample.")
    return by_label.get(label)


def sample_banner(task, runs: list[Run]) -> None:
    """While the first-start process prepares this task's sample model: when it will be ready, live.

    As soon as this task's own model is done the page reruns and predicts with it (the others may still train).
    """
    state = samples.status(store())
    task_state = (state.get("tasks") or {}).get(task.name)
    if task_state and task_state.startswith("failed"):
        st.warning(f"The sample model could not be trained: {task_state[len('failed: '):]}")
        return
    if runs or samples.describe(state, task.name, store()) is None:
        return

    @st.fragment(run_every=2.0, key=f"{task.name}-sample-banner")
    def banner():
        now = samples.status(store())
        line = samples.describe(now, task.name, store())
        if line is None or usable_runs(task.name):
            st.rerun(scope="app")  # this task's sample model is ready: redraw the page with it
        prog = training.progress(store().root / samples.sample_name(task.name))
        st.progress(float(prog["fraction"]), text=line[0].upper() + line[1:] + " (trained on the plugin's "
                    "built-in sample, shown as a *sample model*; this page predicts as soon as it is ready)")

    banner()


# ---- Try it ---------------------------------------------------------------------------------------
def try_tab(task, run: Run | None) -> None:
    if run is None:
        if samples.describe(samples.status(store()), task.name, store()):
            st.info("A sample model for this task is on its way (see above): this tab predicts with it as soon "
                    "as it is ready.")
            return
        st.info("No trained model for this task yet. Train one in the **Train** tab, or in one click:")
        quick_train_button(task, key="try")
        return
    if is_sample(run):
        about = task.sample_description or "the plugin's built-in sample"
        st.info(f"Using the **sample model** `{run.name}`, trained on {about}. Train on your own data in the "
                "**Train** tab for real inputs.")
    meta = run.meta
    if not meta and not run.path.exists():
        raise RunError(f"run {run.name!r} is gone: its folder {run.path} was deleted")
    examples = []
    with guard("Examples"):
        examples = list(task.examples(meta))
    raw, clicked = _input_widgets(task, examples, meta)
    if raw is None:
        return
    if isinstance(raw, str) and not raw.strip():
        msg = "The input is empty: type something to predict on."
        # Before anything was typed (no example to start from) it is a hint; after that, an error.
        st.info(msg) if not examples and not clicked else st.error(msg)
        return
    predictor = get_predictor(run)
    top_k = 5
    try:
        result, ms = timed_predict(predictor, raw, top_k=top_k)
    except InputError as err:
        st.error(f"This input cannot be used: {err}")
        return
    show_result(result, ms, task)
    with guard("Input views"):
        draw_views(task.input_views(predictor.decode(raw), predictor.meta))
    if st.toggle("Explain this prediction", key=f"{task.name}:explain",
                 help="Shows which parts of the input the answer rests on (the task's own explanation view)."):
        with guard("Explanation"), st.spinner("Explaining…"):
            explanation = predictor.explain(raw)
            if explanation is None:
                st.caption("This task has no explanation view.")
            else:
                draw_explanation(explanation)


def _box_help(task, meta: dict) -> str:
    if task.input_kind != "table":
        return "Any text, in the language the model was trained on; press Predict for its answer."
    features = meta.get("features") or []
    named = f" in this order: {', '.join(map(str, features))}" if features else ""
    return f"One row of numbers, separated by commas{named}."


def _input_widgets(task, examples, meta: dict) -> tuple[Any, bool]:
    """The input widgets for the task's input kind. Returns (raw input or None, whether Predict was pressed)."""
    kind = task.input_kind
    key = task.name
    if kind in ("text", "table"):
        texts = [e for e in examples if isinstance(e.value, str)]
        if texts:

            def use_example():
                pick = st.session_state[f"{key}:example"]
                for e in texts:
                    if e.name == pick:
                        st.session_state[f"{key}:text"] = e.value

            st.selectbox("Example inputs", [e.name for e in texts], key=f"{key}:example", on_change=use_example,
                         help="Inputs the model did not train on, to try it with; picking one fills the box below.")
        label = "A row of comma-separated numbers" if kind == "table" else "Text"
        if f"{key}:text" not in st.session_state:
            st.session_state[f"{key}:text"] = texts[0].value if texts else ""
        if task.upload_types:  # a file of the plugin's kinds fills the box (a CSV of a signal, a .txt review)
            _text_upload(task, key)
        if kind == "text" and st.toggle("Predict as you type", key=f"{key}:as_you_type",
                                        help="Answers after each pause in typing, without pressing Predict."):
            return _typed_live(key, label), False
        draft = st.session_state.pop(f"{key}:draft", None)
        if draft is not None:  # typed in the live box: set in this run, so the browser's box shows it too
            st.session_state[f"{key}:text"] = draft
        text = st.text_area(label, key=f"{key}:text", height=100 if kind == "text" else 68,
                            help=_box_help(task, meta))
        clicked = st.button("Predict", key=f"{key}:predict", type="primary")
        return text, clicked
    # image or audio: example, upload, camera/microphone, drawing pad
    live = "Camera" if kind == "image" else "Microphone"
    binary = [e for e in examples if isinstance(e.value, bytes)]
    pad = task.drawing(meta) if kind == "image" else None
    modes = (["Example"] if binary else []) + ["Upload", live] + (["Draw"] if pad else [])
    mode = st.radio("Input", modes, horizontal=True, key=f"{key}:mode",
                    help=f"An example the model did not train on, a file of yours, the {live.lower()}"
                         + (", or a drawing" if pad else "") + ".")
    accepted = ", ".join(task.upload_types) or "any"
    raw = None
    if mode == "Example":
        pick = st.selectbox("Example inputs", [e.name for e in binary], key=f"{key}:example",
                            help="Inputs the model did not train on, to try it with.")
        example = next(e for e in binary if e.name == pick)
        if example.expected:
            st.caption(f"expected: {example.expected}")
        raw = example.value
    elif mode == "Upload":
        up = st.file_uploader(f"Upload {'an image' if kind == 'image' else 'a sound'} ({accepted})",
                              key=f"{key}:upload",
                              help="Checked by its content, not its name: anything that is not a valid "
                                   f"{kind} is refused with a message.")
        raw = up.getvalue() if up is not None else None
    elif mode == "Draw":
        raw = _drawn(key, pad)
        if raw is None:
            return None, False
    elif kind == "image":
        shot = st.camera_input("Take a picture", key=f"{key}:camera")
        raw = shot.getvalue() if shot is not None else None
    else:
        rec = st.audio_input("Record a sound", key=f"{key}:mic")
        raw = rec.getvalue() if rec is not None else None
    if raw is not None:
        from suite_app.settings import MAX_PREDICT_UPLOAD_BYTES

        if len(raw) > MAX_PREDICT_UPLOAD_BYTES:
            st.error(f"The file is {human_bytes(len(raw))}; the limit for a prediction is "
                     f"{human_bytes(MAX_PREDICT_UPLOAD_BYTES)}.")
            return None, False
        if mode != "Draw":  # the pad already shows the drawing
            _show_input(kind, raw)
    return raw, False


def _typed_live(key: str, label: str) -> str:
    """A one-line box that reruns the page after each pause in typing (streamlit-keyup, debounced so a fast
    typist is not answered per letter); it shares its text with the ordinary box."""
    from st_keyup import st_keyup

    start = st.session_state.get(f"{key}:draft", st.session_state.get(f"{key}:text", ""))
    text = st_keyup(label, value=start, key=f"{key}:live", debounce=300) or ""
    # Not the box's own key: a widget's value set in a run where it is not drawn reaches the server but not
    # the browser, which then showed an empty box. The box takes the draft in the run that draws it.
    st.session_state[f"{key}:draft"] = text
    return text


def _drawn(key: str, pad) -> bytes | None:
    """The drawing pad's picture as PNG bytes (decoded like an upload), or None until something is drawn."""
    from streamlit_drawable_canvas import st_canvas

    st.caption(pad.hint)
    drawn = st_canvas(stroke_width=pad.pen_width, stroke_color=pad.pen, background_color=pad.background,
                      width=pad.side, height=pad.side, drawing_mode="freedraw", return_image_data=True,
                      key=f"{key}:canvas")
    if drawn is None or not (drawn.json_data or {}).get("objects"):
        return None
    return drawn.image_bytes


def _text_upload(task, key: str) -> None:
    """An uploader whose file, read as UTF-8 text, becomes the text box's content (once per new file)."""
    from suite_app.settings import MAX_PREDICT_UPLOAD_BYTES

    accepted = ", ".join(task.upload_types)
    up = st.file_uploader(f"Or upload a file ({accepted})", type=list(task.upload_types), key=f"{key}:text_upload")
    if up is None or st.session_state.get(f"{key}:text_upload_seen") == up.file_id:
        return
    st.session_state[f"{key}:text_upload_seen"] = up.file_id
    raw = up.getvalue()
    if len(raw) > MAX_PREDICT_UPLOAD_BYTES:
        st.error(f"The file is {human_bytes(len(raw))}; the limit for a prediction is "
                 f"{human_bytes(MAX_PREDICT_UPLOAD_BYTES)}.")
        return
    st.session_state[f"{key}:text"] = raw.decode("utf-8", errors="replace")


def _show_input(kind: str, raw: bytes) -> None:
    """Show the input back; a file that cannot be shown is left to the task's decoder to refuse."""
    try:
        if kind == "image":
            from PIL import Image

            Image.open(io.BytesIO(raw)).verify()
            st.image(raw, width=160)
        else:
            st.audio(raw)
    except Exception:
        pass


def show_result(result: dict, ms: float, task=None) -> None:
    if is_text(result):
        st.markdown(f"**{task.output_title if task else 'Output'}**")
        st.success(text_of(result) or "(empty)")
    else:
        top = result.get("top") or [{"label": result.get("label"), "score": result.get("score", 0.0)}]
        st.markdown(f"### Prediction: {result.get('label')}  \n{result.get('score', 0.0):.1%} confident")
        st.altair_chart(charts.topk_bars(top), height=60 + 32 * len(top))
    for note in result.get("notices") or []:  # what was done to the input, and reasons to doubt the answer
        st.warning(note)
    st.caption(f"Answered in {ms:.1f} ms on the server (reading the input, the model and the answer).")


def draw_views(views: list) -> None:
    """A plugin's ``input_views`` (``suite.views.View``), side by side, two to a row."""
    views = list(views or [])
    for start in range(0, len(views), 2):
        for col, view in zip(st.columns(2), views[start:start + 2], strict=False):
            with col:
                _draw_view(view)


def _draw_view(view) -> None:
    if view.kind == "line":
        st.line_chart(pd.DataFrame({k: np.asarray(v) for k, v in view.data.items()}), x=view.x or None, height=180)
        if view.caption:
            st.caption(view.caption)
    elif view.kind == "heatmap":
        st.image(charts.spectrogram_image(view.data), width="stretch", caption=view.caption or None)
    elif view.kind == "image":
        st.image(np.asarray(view.data, np.uint8), width="stretch", caption=view.caption or None)
    else:
        st.dataframe(pd.DataFrame(view.data), hide_index=True)
        if view.caption:
            st.caption(view.caption)


def draw_explanation(exp) -> None:
    data = exp.data
    if exp.kind == "heatmap":
        image = np.asarray(data["image"])
        heat = np.asarray(data["heatmap"], dtype=np.float32)
        cols = st.columns(2)
        cols[0].image(charts.to_rgb(image), caption="Input", width="stretch")
        cols[1].image(charts.heatmap_overlay(image, heat), caption="Where the model looked", width="stretch")
    elif exp.kind == "tokens":
        st.markdown(charts.token_html(data["tokens"], data["scores"]), unsafe_allow_html=True)
        st.caption("Green pushes toward the prediction, red away from it.")
    elif exp.kind == "attention":
        st.altair_chart(charts.attention_chart(data["source"], data["target"], data["weights"]))
    else:
        st.json(data)
    if exp.caption:
        st.caption(exp.caption)


# ---- Train ----------------------------------------------------------------------------------------
def quick_train_button(task, key: str) -> None:
    if st.button("Train on the built-in sample", key=f"{task.name}:quick:{key}",
                 type="primary" if key == "try" else "secondary",
                 help="A small model with the plugin's sample settings; takes well under a minute."):
        with guard("Train"):
            defaults = {f["name"]: f["default"] for f in task.config_class.describe()}
            run, proc = training.start_training(
                task.name, "sample", dict(task.sample_overrides), defaults,
                name=f"{task.name}-sample-{_stamp()}", store=store())
            _remember(task, run, proc)
            st.rerun()


def _stamp() -> str:
    return _dt.datetime.now().strftime("%Y%m%d-%H%M%S")


def _remember(task, run: Run, proc) -> None:
    st.session_state.setdefault("procs", {})[str(run.path)] = proc
    st.session_state[f"{task.name}:watch"] = run.name


def train_tab(task) -> None:
    key = task.name
    st.subheader("Data")
    choice = st.radio("Data source", ["Built-in sample", "TFDS data set", "Local path", "Upload a zip"],
                      horizontal=True, key=f"{key}:source",
                      help="The built-in sample works offline in seconds; a TFDS name downloads when online; a "
                           "path or a zip holds your own data in one of the layouts listed below.")
    tfds_name = path = upload = None
    if choice == "TFDS data set":
        tfds_name = st.text_input("TFDS name", value=(task.tfds_examples or ("tfds:",))[0], key=f"{key}:tfds",
                                  help="tfds:NAME[/CONFIG]; downloaded by TFDS when online.")
    elif choice == "Local path":
        path = st.text_input("Path on the server", key=f"{key}:path",
                             help="A file or folder on the machine running the app, in one of the layouts "
                                  "below; read where it is, not copied.")
    elif choice == "Upload a zip":
        upload = st.file_uploader("Zip of your data", type=["zip"], key=f"{key}:zip",
                                  help="Extracted safely on the server (no paths outside it, size limits).")
    if choice in ("Local path", "Upload a zip") and task.data_formats:
        st.caption(task.data_formats)

    st.subheader("Settings")
    values = config_form(task)
    row = field_row(f"{key}-run-settings")
    strategy = row.selectbox("Strategy", STRATEGIES, key=f"{key}:strategy", width=FIELD_WIDTH,
                            help="How training spreads over devices. auto: one device as is, several GPUs "
                                 "mirrored, TF_CONFIG multi-worker, a TPU its own; the run says what it chose "
                                 "and why.")
    precision = row.selectbox("Precision", PRECISIONS, key=f"{key}:precision", width=FIELD_WIDTH,
                             help="auto: mixed bfloat16 or float16 where the hardware computes faster in it (recent "
                                  "GPUs, TPUs, CPUs with native bfloat16), else float32.")
    name = row.text_input("Run name", value=f"{task.name}-{_stamp()}", key=f"{key}:name", width=2 * FIELD_WIDTH,
                         help="The run's folder name under the run store; must be new.")
    b1, b2 = st.columns([1, 3])
    if b1.button("Start training", type="primary", key=f"{key}:start"):
        with guard("Start training"):
            data = _resolve_data(choice, tfds_name, path, upload)
            task.config_class.from_dict(values)  # one clear line for a bad value, before starting anything
            defaults = {f["name"]: f["default"] for f in task.config_class.describe()}
            run, proc = training.start_training(task.name, data, values, defaults, name=name.strip(),
                                                strategy=strategy, precision=precision, store=store())
            _remember(task, run, proc)
            st.success(f"Started run `{run.name}` as a separate process (pid {proc.pid}).")
    with b2:
        quick_train_button(task, key="train")

    st.subheader("Progress")
    watch_panel(task)


def config_form(task) -> dict[str, Any]:
    """Widgets typed from ``config_class.describe()``: ``ui_fields`` first, the rest under 'More settings'."""
    fields = {f["name"]: f for f in task.config_class.describe()}
    main = [n for n in task.config_class.ui_fields if n in fields]
    rest = [n for n in fields if n not in main]
    values: dict[str, Any] = {}
    with field_row(f"{task.name}-settings"):
        for name in main:
            values[name] = _field_widget(task, fields[name])
    with st.expander("More settings"), field_row(f"{task.name}-more-settings"):
        for name in rest:
            values[name] = _field_widget(task, fields[name])
    return values


def _field_widget(task, f: dict) -> Any:
    key = f"{task.name}:cfg:{f['name']}"
    label, default, kind = f.get("label") or f["name"], f["default"], f["type"]
    # the CLI key under the explanation: what the user types to set the same field from a script
    helptext = f"{f.get('help') or ''}\n\nCLI: `--set {f['name']}=...`".strip()
    if kind == "choice":
        choices = list(f["choices"])
        return st.selectbox(label, choices, index=choices.index(default) if default in choices else 0,
                            key=key, help=helptext, width=FIELD_WIDTH)
    if kind == "bool":
        return st.checkbox(label, value=bool(default), key=key, help=helptext, width=FIELD_WIDTH)
    if kind == "int":
        return int(st.number_input(label, value=int(default), step=1, key=key, help=helptext, width=FIELD_WIDTH))
    if kind == "float":
        return float(st.number_input(label, value=float(default), format="%g", key=key, help=helptext,
                                     step=None, width=FIELD_WIDTH))
    if kind == "list":
        text = st.text_input(label, value=",".join(str(v) for v in default or []), key=key,
                             help="Comma-separated. " + helptext, width=FIELD_WIDTH)
        return [v.strip() for v in text.split(",") if v.strip()]
    return st.text_input(label, value="" if default is None else str(default), key=key, help=helptext, width=FIELD_WIDTH)


def _resolve_data(choice: str, tfds_name, path, upload) -> str:
    from suite.errors import DataSourceError

    if choice == "Built-in sample":
        return "sample"
    if choice == "TFDS data set":
        name = (tfds_name or "").strip()
        name = name if name.startswith("tfds:") else f"tfds:{name}"
        if name == "tfds:":
            raise DataSourceError("give a TFDS name, for example tfds:mnist")
        return name
    if choice == "Local path":
        p = Path((path or "").strip()).expanduser()
        if not str(path or "").strip() or not p.exists():
            raise DataSourceError(f"no such path on the server: {path!r}")
        return str(p.resolve())
    if upload is None:
        raise DataSourceError("upload a zip of your data first")
    return str(training.extract_zip(upload.getvalue(), store().root / ".uploads"))


def watch_panel(task) -> None:
    """Live progress of one run of this task: the one just started, or any recent one."""
    runs = [r for r in store().list(task=task.name)]
    watched = st.session_state.get(f"{task.name}:watch")
    names = [r.name for r in runs]
    if watched and watched not in names:
        names.insert(0, watched)  # started, but the trainer has not written run.json yet
    if not names:
        st.caption("No runs of this task yet.")
        return
    select_key = f"{task.name}:watch-select"
    if watched and st.session_state.get(f"{task.name}:watch-shown") != watched:
        st.session_state[select_key] = watched  # a run was just started: follow it
        st.session_state[f"{task.name}:watch-shown"] = watched
    if st.session_state.get(select_key) not in names:
        st.session_state.pop(select_key, None)
    name = st.selectbox("Run", names, key=select_key,
                        help="The run whose progress is shown: a live one updates as it trains.")
    run_dir = store().root / name
    live = _is_live(run_dir)
    if live:
        st.fragment(run_every=1.5, key=f"{task.name}-progress-live")(_progress_view)(task, run_dir, True)
    else:
        _progress_view(task, run_dir, False)


def _is_live(run_dir: Path) -> bool:
    proc = (st.session_state.get("procs") or {}).get(str(run_dir))
    if proc is not None and proc.poll() is None:
        return True
    return run_dir.exists() and is_running(Run(run_dir))


def _progress_view(task, run_dir: Path, was_live: bool) -> None:
    run = Run(run_dir)
    if not run_dir.exists():
        st.error(f"Run {run_dir.name!r} is gone: its folder was deleted.")
        return
    proc = (st.session_state.get("procs") or {}).get(str(run_dir))
    code = proc.poll() if proc is not None else None
    live = _is_live(run_dir)
    info = run.info
    status = info.get("status") or ("starting" if live else "not started")
    if live and status not in ACTIVE:
        status = "starting"
    prog = training.progress(run_dir)
    text = f"{run.name}: {status}"
    if prog["epochs"]:
        text += f" · epoch {prog['epoch']}/{prog['epochs']}"
    if live and prog["eta_s"] is not None:
        text += f" · about {prog['eta_s']:.0f} s left"
    st.progress(float(prog["fraction"]), text=text)
    if prog["history"]:
        hist = pd.DataFrame(prog["history"]).set_index("epoch")
        losses = [c for c in hist.columns if c.endswith("loss")]
        others = [c for c in hist.columns if c not in losses and c != "learning_rate"]
        c1, c2 = st.columns(2)
        if losses:
            c1.markdown("Loss")
            c1.line_chart(hist[losses])
        if others:
            c2.markdown("Metrics")
            c2.line_chart(hist[others])
    elif prog["steps"]:
        st.line_chart(pd.DataFrame(prog["steps"]).set_index("t"), x_label="step", y_label="loss")
    b1, b2, _ = st.columns([1, 1, 3])
    if live and b1.button("Stop", key=f"{run.name}:stop"):
        with guard("Stop"):
            training.request_stop(run)
            st.info("Asked the run to stop after the current batch.")
    if not live and status in ("stopped", "failed", "interrupted") and b2.button("Resume", key=f"{run.name}:resume"):
        with guard("Resume"):
            proc = training.resume_training(run, store())
            _remember(task, run, proc)
            st.rerun(scope="app")
    if not live and status == "failed":
        st.error(f"The run failed: {info.get('error') or 'see the log'}")
    elif not live and status == "stopped":
        st.info(f"Stopped after {info.get('epochs_done', 0)} epoch(s); Resume continues it.")
    elif not live and code not in (None, 0) and status in ("starting", "not started", "running", "created"):
        st.error(f"The training process exited with code {code} before the run started; see the log.")
    if not live:
        _finished_view(task, run, status, b1)
    if prog["message"] and status != "failed":
        st.caption(prog["message"])
    log = training.log_tail(run_dir)
    if log:
        with st.expander("Log"):
            st.code(log)
    if was_live and not live:
        if run.has_model():
            st.session_state[f"{task.name}:select-next"] = run.name  # the model selector picks the new run
        st.rerun(scope="app")  # finished: refresh the model list and stop polling


def _finished_view(task, run: Run, status: str, column) -> None:
    """A run that ended with a model: what it scored, and one click to try it (selected, on the first tab)."""
    if status not in USABLE_STATUSES or not run.has_model():
        return
    metrics = run.metrics
    test = {k: v for k, v in (metrics.get("test") or {}).items() if isinstance(v, (int, float))}
    if status == "completed":
        scores = ", ".join(f"{k} {v:.3f}" for k, v in list(test.items())[:3])
        st.success(f"Finished{': ' + scores + ' on the test split' if scores else ''}.")
    else:
        st.success(f"Its best checkpoint (epoch {metrics.get('best_epoch')}) is saved as a model: it can be "
                   "tried, evaluated and exported now.")

    def try_now():
        st.session_state[f"{task.name}:run"] = run_label(run)
        st.session_state[f"{task.name}:tab"] = TABS[0]

    column.button("Try it now", key=f"{run.name}:try-now", type="primary", on_click=try_now)
    if status == "completed" and (task.output_kind == "classes" or task.distill_students) and not (
            run.info.get("distill")):
        _distill_action(task, run)


def _distill_action(task, run: Run) -> None:
    """Compress this run into a small student trained on its outputs; the student's curve shows here."""
    students = list(task.distill_students or {})
    how = ("its soft outputs" if task.output_kind == "classes" else
           "its own outputs for every training input, decoded once first (sequence-level)")
    with st.expander("Distill into a smaller, faster model"):
        st.caption(f"Trains a small student on this run's data to copy this model, from {how}: knowledge "
                   "distillation. The student is a new run you can try, evaluate and export. See docs/DISTILL.md.")
        choice = st.selectbox("Student", students, key=f"{run.name}:student",
                              help="The smaller model the task offers to distill into.") if students else None
        if st.button("Distill", key=f"{run.name}:distill"):
            with guard("Distill"):
                student, proc = training.start_distillation(run, choice, store=store())
                _remember(task, student, proc)
                st.rerun(scope="app")


# ---- Evaluate -------------------------------------------------------------------------------------
def evaluate_tab(task, run: Run | None) -> None:
    if run is None:
        st.info("No trained model to evaluate yet: train one on the Train tab.")
        return
    metrics = run.metrics
    if not metrics and not run.path.exists():
        raise RunError(f"run {run.name!r} is gone: its folder was deleted")
    test = metrics.get("test") or {}
    if not test:
        st.info("This run has no test metrics.")
        return
    scalars = {k: v for k, v in test.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    if scalars:
        cols = st.columns(min(5, len(scalars)))
        for i, (k, v) in enumerate(scalars.items()):
            cols[i % len(cols)].metric(k.replace("_", " "), metric_text(v))
    if test.get("confusion_matrix") and test.get("class_names"):
        st.markdown("**Confusion matrix** (rows: true class, columns: predicted)")
        st.altair_chart(charts.confusion_chart(test["confusion_matrix"], test["class_names"]))
    if test.get("per_class"):
        st.markdown("**Per class**")
        st.dataframe(pd.DataFrame(test["per_class"]), hide_index=True)
    mistakes = test.get("confident_mistakes") or []
    if mistakes:
        st.markdown("**Most confident mistakes**")
        cols = st.columns(4)
        for i, m in enumerate(mistakes):
            with cols[i % 4]:
                if m.get("preview_png"):
                    st.image(base64.b64decode(m["preview_png"]), width=96)
                elif m.get("preview"):
                    st.code(str(m["preview"])[:200], wrap_lines=True)
                st.caption(f"true **{m.get('true')}** · predicted **{m.get('predicted')}** "
                           f"({float(m.get('confidence', 0)):.0%})")
    elif "confident_mistakes" in test:
        st.caption("No mistakes on the test split.")
    for key, value in test.items():  # task-specific tables (e.g. sample translations)
        if key in ("per_class", "confident_mistakes", "confusion_matrix", "class_names"):
            continue
        if isinstance(value, list) and value and isinstance(value[0], dict):
            st.markdown(f"**{key.replace('_', ' ').capitalize()}**")
            st.dataframe(pd.DataFrame(value), hide_index=True)
    history = run.history()
    if history:
        hist = pd.DataFrame([{"epoch": e["epoch"], **e.get("metrics", {})} for e in history])
        hist = hist.drop_duplicates("epoch", keep="last").set_index("epoch")
        with st.expander("Training curves"):
            st.line_chart(hist[[c for c in hist.columns if c != "learning_rate"]])
    card = run.file("README.md")
    if card.is_file():
        with st.expander("Model card"):
            st.markdown(card.read_text(encoding="utf-8"))


def metric_text(v: int | float) -> str:
    """Four significant digits: 0.9874, 81.19 BLEU, 209.3 sentences/s (not 81.1900 or 209.3000)."""
    return f"{v:,}" if isinstance(v, int) else f"{v:,.4g}" if abs(v) < 1e4 else f"{v:,.0f}"


# ---- Export ---------------------------------------------------------------------------------------
def export_tab(task, run: Run | None) -> None:
    if run is None:
        st.info("No trained model to export yet: train one on the Train tab.")
        return
    key = f"{task.name}:export"
    limits = {}
    with guard("Export limits"):
        limits = task.export_limits() or {}
    for fmt, why in limits.items():  # a format the model cannot be carried in is not offered: say why here
        st.caption(f"Not offered: {fmt}: {why}")
    possible = [f for f in EXPORT_FORMATS if f not in limits]
    # the page's whole width: in a row of fields the last format's chip hid under the clear button
    formats = st.container(key=f"{task.name}-export-formats").multiselect(
        "Formats", possible, default=possible, key=f"{key}:formats",
        help="keras: this suite or Keras; saved_model: TF Serving and TF.js; tflite: phones and microcontrollers "
             "(LiteRT); onnx: onnxruntime and other runtimes.")
    row = field_row(f"{task.name}-export-options")
    quantize = row.selectbox("Quantization", QUANTIZE, key=f"{key}:quantize", width=FIELD_WIDTH,
                            help="Applies to TFLite: float16 halves the size, dynamic/int8 quantize weights.")
    examples = int(row.number_input("Verify on held-out examples", min_value=1, max_value=5000, value=200,
                                    key=f"{key}:examples", width=FIELD_WIDTH,
                                    help="Each exported file is run on this many held-out examples and its "
                                         "outputs compared with the Keras model's; more is surer and slower."))
    results_key = f"{key}:reports:{run.name}"
    if st.button("Export and verify", type="primary", key=f"{key}:go", disabled=not formats):
        try:
            from suite.export import export_run
        except ImportError as err:
            st.error(f"Export is not available in this installation (suite.export could not be imported: {err}).")
            return
        with st.status("Exporting…", expanded=True) as box:
            try:
                reports = export_run(str(run.path), formats=",".join(formats), quantize=quantize,
                                     examples=examples, progress=lambda text: box.write(str(text)))
            except Exception as err:
                box.update(label="Export failed", state="error")
                show_error(err, "Export")
                return
            made = [name for name, rep in reports.items() if rep.get("supported") is not False]
            box.update(label=f"Exported: {', '.join(made)}" if made else "Nothing was exported (see below)",
                       state="complete" if made else "error", expanded=False)
        st.session_state[results_key] = reports
    reports = st.session_state.get(results_key)
    if reports:
        st.markdown("**Verification report**")
        st.dataframe(pd.DataFrame([_report_row(name, rep) for name, rep in reports.items()]), hide_index=True)
        for name, rep in reports.items():
            if rep.get("supported") is False:
                st.warning(f"{name}: not exported: {rep.get('reason')}")
            elif rep.get("notes"):  # e.g. what the file takes as input, quantization choices
                with st.expander(f"{name}: inputs and how it was built"):
                    st.markdown("\n".join(f"- {note}" for note in rep["notes"]))
    _download_buttons(run)
    with guard("Use this model"):
        usage_snippets(run)


USAGE_TITLES = {"python": "Python, with the suite", "saved_model": "TensorFlow SavedModel",
                "tflite": "LiteRT (TFLite) interpreter", "onnx": "onnxruntime"}


def usage_snippets(run: Run) -> None:
    """Code that loads each exported file and predicts one input; the plugin tests run each of them."""
    from suite.usage import snippets

    codes = snippets(run)
    st.markdown("**Use this model**")
    st.caption("Copy, set INPUT, run. The same code is printed by `suite snippets " + run.name + "`; formats "
               "not exported yet appear here once exported.")
    tabs = st.tabs([USAGE_TITLES.get(fmt, fmt) for fmt in codes])
    for tab, code in zip(tabs, codes.values(), strict=True):
        tab.code(code, language="python")


def _report_row(name: str, rep: dict) -> dict:
    ver = rep.get("verification") or {}
    return {
        "format": rep.get("format", name),
        "exported": rep.get("supported") is not False,
        "size": human_bytes(rep.get("size_bytes")) if rep.get("size_bytes") else "-",
        "top-1 agreement": ver.get("top1_agreement"),
        "max |diff|": ver.get("max_abs_diff"),
        ver.get("metric_name") or "metric": ver.get("metric"),
        "keras metric": ver.get("keras_metric"),
        "latency p50 (ms)": ver.get("latency_ms_p50"),
        "examples": ver.get("examples"),
        "note": rep.get("reason") or "",
    }


def _download_buttons(run: Run) -> None:
    items = [("model.keras", run.model_path)] if run.model_path.is_file() else []
    if run.exports_dir.is_dir():
        items += [(p.name, p) for p in sorted(run.exports_dir.iterdir()) if not p.name.startswith(".")]
    if not items:
        return
    st.markdown("**Downloads**")
    for label, path in items:
        is_dir = path.is_dir()
        file_name = f"{run.name}-{label}" + (".zip" if is_dir else "")
        st.download_button(f"{label}{' (zip)' if is_dir else ''} · {human_bytes(path_size(path))}",
                           data=(lambda p=path: _zip_dir(p)) if is_dir else (lambda p=path: p.read_bytes()),
                           file_name=file_name, key=f"dl:{run.name}:{label}", mime="application/octet-stream")


def _zip_dir(path: Path) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in sorted(path.rglob("*")):
            if p.is_file():
                zf.write(p, p.relative_to(path.parent).as_posix())
    return buf.getvalue()

