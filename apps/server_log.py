"""The server log stays for real problems: a browser that closes while a message is on its way is not one.

Streamlit's Starlette server sends each session's messages from a queue; when the browser has gone, the next
send raises Starlette's ``WebSocketDisconnected`` and Streamlit logs it with a full traceback ("Error sending
websocket payload"), once for every closed tab. The session is cleaned up either way; only the log line is
dropped here, and any other send error is still logged.
"""

from __future__ import annotations

import logging

# Where Streamlit logs that send error (its module's logger); tests/test_app.py checks it still does.
SEND_LOGGER = "streamlit.web.server.starlette.starlette_websocket"


def _is_closed_browser(exc: BaseException | None) -> bool:
    try:
        from starlette.websockets import WebSocketDisconnect, WebSocketDisconnected
    except ImportError:  # a Streamlit server without Starlette logs no such error
        return False
    return isinstance(exc, (WebSocketDisconnect, WebSocketDisconnected))


class ClosedBrowserFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not _is_closed_browser(exc)


def install() -> None:
    """Idempotent: the entry file runs on every rerun of every session."""
    logger = logging.getLogger(SEND_LOGGER)
    if not any(isinstance(f, ClosedBrowserFilter) for f in logger.filters):
        logger.addFilter(ClosedBrowserFilter())
