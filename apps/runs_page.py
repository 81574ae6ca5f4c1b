"""Runs: every run in the store, side-by-side comparison, deletion."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from apps.common import guard, is_running, is_sample, show_error, store


def render() -> None:
    st.title("Runs")
    runs = store().list()
    st.caption(f"Run folders under {store().root}")
    if flash := st.session_state.pop("runs:flash", None):
        st.success(flash)
    if not runs:
        st.info("No runs yet. Train one from a task's page.")
        return
    rows = []
    for run in runs:
        with guard(run.name):
            s = run.summary()
            metric = s["metrics"].get("accuracy", s["metrics"].get("bleu"))
            rows.append({"run": s["name"], "task": s["task"], "status": s["status"], "data": s["data"],
                         "epochs": s["epochs"], "accuracy/bleu": metric, "sample model": is_sample(run),
                         "created": s["created"]})
    st.dataframe(pd.DataFrame(rows), hide_index=True)
    names = [r.name for r in runs]

    st.subheader("Compare")
    chosen = st.multiselect("Runs to compare", names, key="runs:compare")
    if len(chosen) >= 2:
        with guard("Compare"):
            compare(chosen)
    elif chosen:
        st.caption("Pick at least two runs.")

    st.subheader("Delete")
    doomed = st.multiselect("Runs to delete", names, key="runs:delete")
    sure = st.checkbox("Yes, delete these run folders", key="runs:sure")
    if st.button("Delete", disabled=not (doomed and sure), key="runs:go"):
        deleted = []
        for name in doomed:
            try:
                run = store().get(name)
                if is_running(run):
                    st.error(f"{name} is training; stop it first.")
                    continue
                store().delete(run)
                deleted.append(name)
            except Exception as err:
                show_error(err, name)
        if deleted:
            st.session_state["runs:flash"] = f"Deleted {', '.join(deleted)}."
            for key in ("runs:delete", "runs:sure", "runs:compare"):
                st.session_state.pop(key, None)
            st.rerun()


def compare(names: list[str]) -> None:
    rows = store().compare(names)
    keys = sorted({k for r in rows for k in r["config"]})
    differing = [k for k in keys if len({repr(r["config"].get(k)) for r in rows}) > 1]
    metrics = sorted({k for r in rows for k in r["metrics"]})
    table = {"status": [r["status"] for r in rows], "task": [r["task"] for r in rows]}
    table.update({f"config: {k}": [str(r["config"].get(k)) for r in rows] for k in differing})
    table.update({m: [r["metrics"].get(m) for r in rows] for m in metrics})
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
