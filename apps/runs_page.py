"""Runs: every run in the store, side-by-side comparison, deletion."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from suite_app.common import guard, is_running, is_sample, store


def render() -> None:
    st.title("Runs")
    runs = store().list()
    st.caption(f"Run folders under {store().root}")
    if flash := st.session_state.pop("runs:flash", None):
        st.success(flash)
    if not runs:
        st.info("No runs yet. Train one from a task's page, or import a model below.")
    else:
        _runs(runs)
    st.subheader("Import a model")
    with guard("Import"):
        import_section()


def _runs(runs) -> None:
    rows = []
    for run in runs:
        with guard(run.name):
            s = run.summary()
            metric = s["metrics"].get("accuracy", s["metrics"].get("bleu"))
            if isinstance(metric, float):  # rounded for reading, still a number so the column sorts by it
                metric = round(metric, 4)
            rows.append({"run": s["name"], "task": s["task"], "status": s["status"], "data": s["data"],
                         "epochs": s["epochs"], "accuracy/bleu": metric, "sample model": is_sample(run),
                         "distilled from": (run.info.get("distill") or {}).get("teacher_name") or "",
                         "created": s["created"]})
    st.dataframe(pd.DataFrame(rows), hide_index=True)
    names = [r.name for r in runs]

    st.subheader("Compare")
    chosen = st.multiselect("Runs to compare", names, key="runs:compare",
                            help="Two or more runs side by side: settings, metrics, size and speed.")
    if len(chosen) >= 2:
        with guard("Compare"):
            compare(chosen)
    elif chosen:
        st.caption("Pick at least two runs.")

    st.subheader("Delete")
    doomed = st.multiselect("Runs to delete", names, key="runs:delete",
                            help="Their folders are removed from the run store, model and exports included.")
    sure = st.checkbox("Yes, delete these run folders", key="runs:sure", help="Deleting cannot be undone.")
    # A callback, not code after the button: widget values set before the script runs reach the browser, while
    # state popped after the widgets were drawn is sent back by the browser on the next rerun (the deleted
    # names stayed selected, "Yes" stayed ticked).
    st.button("Delete", disabled=not (doomed and sure), key="runs:go", on_click=_delete_chosen)
    for line in st.session_state.pop("runs:delete-errors", []):
        st.error(line)


def _delete_chosen() -> None:
    deleted, errors = [], []
    for name in st.session_state.get("runs:delete") or []:
        try:
            run = store().get(name)
            if is_running(run):
                errors.append(f"{name} is training; stop it first.")
                continue
            store().delete(run)
            deleted.append(name)
        except Exception as err:
            errors.append(f"{name}: {str(err).splitlines()[0] if str(err) else type(err).__name__}")
    if deleted:
        st.session_state["runs:flash"] = f"Deleted {', '.join(deleted)}."
    st.session_state["runs:delete-errors"] = errors
    st.session_state["runs:delete"] = [n for n in st.session_state.get("runs:delete") or [] if n not in deleted]
    st.session_state["runs:sure"] = False
    # Runs still chosen for comparison stay chosen; only the deleted ones leave the comparison.
    st.session_state["runs:compare"] = [n for n in st.session_state.get("runs:compare") or [] if n not in deleted]


def _rounded(value):
    """Four significant digits: 0.9553072625698324 reads as 0.9553."""
    return float(f"{value:.4g}") if isinstance(value, float) else value


def _teacher(name: str) -> str:
    """The teacher run of a distilled student (run.json keeps it), or a dash."""
    return (store().get(name).info.get("distill") or {}).get("teacher_name") or "-"


def _model_mb(name: str):
    """The size a deployer ships, so a teacher and its student compare on it beside their metrics."""
    path = store().get(name).model_path
    return round(path.stat().st_size / 1e6, 2) if path.is_file() else "-"


def compare(names: list[str]) -> None:
    rows = store().compare(names)
    keys = sorted({k for r in rows for k in r["config"]})
    differing = [k for k in keys if len({repr(r["config"].get(k)) for r in rows}) > 1]
    metrics = sorted({k for r in rows for k in r["metrics"]})
    table = {"status": [r["status"] for r in rows], "task": [r["task"] for r in rows],
             "distilled from": [_teacher(r["name"]) for r in rows],
             "model.keras (MB)": [_model_mb(r["name"]) for r in rows],
             "one input, warm (ms)": [r.get("serving_latency_ms_p50") or "-" for r in rows]}
    table.update({f"config: {k}": [str(r["config"].get(k)) for r in rows] for k in differing})
    table.update({m: [_rounded(r["metrics"].get(m)) for r in rows] for m in metrics})
    df = pd.DataFrame(table, index=[r["name"] for r in rows]).T.astype(str)
    st.dataframe(df)
    curves = []
    for name in names:
        for e in store().get(name).history():
            for k, v in (e.get("metrics") or {}).items():
                if k.startswith("val_"):
                    curves.append({"run": name, "epoch": e["epoch"], "metric": k, "value": v})
    if curves:
        import altair as alt

        chart = alt.Chart(pd.DataFrame(curves)).mark_line(point=True).encode(
            x="epoch:Q", y="value:Q", color="run:N", strokeDash="metric:N", tooltip=["run", "metric", "value"])
        st.altair_chart(chart)


def import_section() -> None:
    """Upload a ``.keras`` file made elsewhere; it becomes a run only after the checked, isolated import."""
    import datetime as _dt

    from suite_app import importing
    from suite_app.common import registry

    st.caption("A `.keras` file made elsewhere. It is checked by its content (its `config.json`: no Lambda or "
               "TFSMLayer, only Keras and registered plugin classes; its zip members: sizes and compression) and "
               "loaded with `safe_mode=True` in a separate process with memory and time limits before it becomes "
               "a run. `.h5` files and SavedModel folders are refused.")
    up = st.file_uploader("Model file (.keras)", key="runs:import:file",
                          help="Checked by its content, not its name.")
    tasks = [t.name for t in registry().tasks()]
    c1, c2 = st.columns(2)
    task = c1.selectbox("Task whose inputs it takes", tasks, key="runs:import:task",
                        help="The task whose page will try, evaluate and export the model.")
    name = c2.text_input("Run name", value=f"imported-{_dt.datetime.now():%Y%m%d-%H%M%S}", key="runs:import:name",
                         help="The folder name the imported model gets in the run store.")
    c3, c4 = st.columns(2)
    classes = c3.text_input("Class names, comma-separated (optional; default 0..N-1)", key="runs:import:classes",
                            help="One name per output of the model, in output order.")
    meta_text = c4.text_input("Task metadata as JSON (optional)", key="runs:import:meta",
                              help='What the plugin needs to decode inputs, e.g. {"n_features": 4}.')
    if st.button("Import", type="primary", disabled=up is None or not tasks, key="runs:import:go"):
        meta = importing.parse_meta(meta_text)
        class_names = [c.strip() for c in classes.split(",") if c.strip()] or None
        with st.spinner("Checking the file and loading it in a separate, limited process…"):
            run = importing.import_upload(up.getvalue(), up.name, task=task, name=name, store=store(),
                                          class_names=class_names, meta=meta)
        st.session_state["runs:flash"] = (f"Imported {up.name} as run `{run.name}` ({run.task_name}): pick it on "
                                          "that task's page.")
        st.session_state.pop("runs:import:name", None)
        st.rerun()
