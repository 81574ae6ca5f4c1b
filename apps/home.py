"""Home: the installed plugins (and the ones that failed, with why), what `auto` picks here, recent runs."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from suite_app import samples
from suite_app.common import guard, is_sample, registry, store


@st.cache_resource(show_spinner="Looking at this machine…")
def machine() -> dict:
    """What ``--strategy auto`` and ``--precision auto`` would choose (detecting devices imports TensorFlow)."""
    from suite.heavy_imports import import_tensorflow_and_keras
    from suite.strategy import describe_auto

    import_tensorflow_and_keras()

    return describe_auto()


def render(pages: dict) -> None:
    st.title("Keras Task Suite")
    st.markdown("Try, train, evaluate, compare and export task models. Pick a task on the left, "
                "or open one below.")
    reg = registry()
    with guard("Sample models"):
        _samples_status()

    st.subheader("Installed plugins")
    if not reg.tasks():
        st.warning("No task plugins are installed.")
    for task in reg.tasks():
        with st.container(border=True):
            c1, c2 = st.columns([4, 1])
            c1.markdown(f"**{task.title}** · `{task.name}` · input: {task.input_kind} · output: {task.output_kind}")
            if task.description:
                c1.caption(task.description)
            c1.caption(f"from {reg.source(task.name)}")
            if task.name in pages:
                c2.page_link(pages[task.name], label="Open", icon=":material/arrow_forward:")
    if reg.failures:
        st.subheader("Plugins that failed to load")
        for f in reg.failures:
            st.error(f"**{f.name}** ({f.source}): {f.reason}")

    st.subheader("Recent runs")
    with guard("Runs"):
        rows = []
        for run in store().list()[:10]:
            summary = run.summary()
            metric = summary["metrics"].get("accuracy", summary["metrics"].get("bleu"))
            rows.append({"run": summary["name"], "task": summary["task"], "status": summary["status"],
                         "sample model": is_sample(run), "accuracy/bleu": metric, "created": summary["created"]})
        if rows:
            st.dataframe(pd.DataFrame(rows), hide_index=True)
        else:
            st.caption(f"No runs yet in {store().root}.")

    # Last: detecting devices imports TensorFlow, and everything above is already on screen meanwhile.
    st.subheader("This machine")
    with guard("Hardware"):
        auto = machine()
        s, p = auto["strategy"], auto["precision"]
        st.markdown(f"- Hardware: {auto['hardware']}\n"
                    f"- `--strategy auto` → **{s['kind']}** over {', '.join(s['devices'])}: {s['reason']}\n"
                    f"- `--precision auto` → **{p['policy']}**: {p['reason']}")


def _samples_status() -> None:
    """While the first-start sample models are prepared: one line per plugin, with when it will be ready."""
    if not samples.status(store()).get("alive"):
        return

    @st.fragment(run_every=2.0, key="home-samples")
    def live():
        now = samples.status(store())
        states = now.get("tasks") or {}
        done = [k for k, v in states.items() if v not in samples.ACTIVE_STATES]
        if not now.get("alive"):
            st.rerun(scope="app")  # all sample models are ready (or failed): redraw without this panel
        st.progress(len(done) / max(1, len(states)),
                    text="Preparing small **sample models** on each plugin's built-in sample, so every page can "
                         f"predict right away: {len(done)}/{len(states) or '?'} ready")
        lines = []
        for name, value in states.items():
            if value == "completed":
                lines.append(f"- **{name}**: sample model ready, open its page to try it")
            else:
                lines.append(f"- **{name}**: {samples.describe(now, name, store()) or value}")
        st.markdown("\n".join(lines) if lines else "Finding which plugins need a sample model…")

    live()
