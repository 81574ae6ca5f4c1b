"""The Streamlit application (``app.py`` is the entry file)."""
