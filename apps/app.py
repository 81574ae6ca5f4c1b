"""The Streamlit app (``suite app``): navigation built from the plugin registry.

Home, one page per registered plugin (generated from its UI metadata, or the plugin's own ``page``), and Runs.
An exception on one page becomes an error message on that page; the server keeps serving.
"""

from __future__ import annotations

import sys
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent
if str(_ROOT) not in sys.path:  # `streamlit run apps/app.py` from a checkout that is not pip-installed
    sys.path.insert(0, str(_ROOT))

import streamlit as st  # noqa: E402

from suite_app import samples, server_log  # noqa: E402
from suite_app.common import guard, store  # noqa: E402

server_log.install()


@st.cache_resource(show_spinner=False)
def _start_samples_early(root: str) -> int | None:
    """An empty run store (a first start): start the sample models now, before this server spends seconds
    importing TensorFlow and the plugins; the background process finds which plugins need one itself."""
    s = store()
    if s.list() or (s.root / samples.STATUS_NAME).exists():
        return None  # decided by _prepare_samples_once, once the registry is loaded
    proc = samples.start_background(None, s)
    return proc.pid if proc else None


if samples.enabled():
    with guard("Sample models"):
        _start_samples_early(str(store().root))

# Home and the sidebar draw without TensorFlow (the registry reads plugins without importing it), so the first
# paint takes a second, not the ten that importing TensorFlow takes; pages that need it import it first.
from suite.heavy_imports import import_tensorflow_and_keras  # noqa: E402
from suite_app import home  # noqa: E402
from suite_app.common import registry  # noqa: E402


@st.cache_resource(show_spinner=False)
def _prepare_samples_once(root: str) -> int | None:
    """On the server's first start, train sample models for plugins that have none (one background process)."""
    s = store()
    proc = samples.start_background(samples.tasks_needing_samples(registry(), s), s)
    return proc.pid if proc else None


def _page(name: str, render, *args, tensorflow: bool = True):
    def page():
        with guard():
            if tensorflow:
                # Under one lock: concurrent first sessions must not race to import TensorFlow and Keras.
                with st.spinner("Loading TensorFlow…"):
                    import_tensorflow_and_keras()
            render(*args)

    page.__name__ = name
    return page


def _custom_page(task):
    def page():
        with guard(f"{task.title} (plugin page)"):
            import_tensorflow_and_keras()
            # `page` is a plain callable(task): set on the instance, or a function/staticmethod on the class.
            fn = task.__dict__.get("page") or type(task).page
            fn(task)

    page.__name__ = task.name
    return page


def main() -> None:
    st.set_page_config(page_title="Keras Task Suite", page_icon=":material/neurology:", layout="wide")
    with st.spinner("Loading the task plugins…"):
        reg = registry()
    if samples.enabled():
        with guard("Sample models"):
            _prepare_samples_once(str(store().root))
    task_pages = {}
    from suite_app import runs_page, task_page

    for task in reg.tasks():
        fn = _custom_page(task) if callable(task.page) else _page(task.name, task_page.render, task.name)
        task_pages[task.name] = st.Page(fn, title=task.title, url_path=task.name)
    home_page = st.Page(_page("home", home.render, task_pages, tensorflow=False), title="Home", icon=":material/home:",
                        url_path="home", default=True)
    runs = st.Page(_page("runs", runs_page.render), title="Runs", icon=":material/folder:", url_path="runs")
    nav = st.navigation({"Suite": [home_page], "Tasks": list(task_pages.values()), "Manage": [runs]})
    nav.run()


main()
