"""Log set-up for ``seamcut serve`` and ``seamcut engine``: text or JSON lines.

``--log-format json`` (``server.log_format``) writes one JSON object per line with
``timestamp`` (UTC, RFC 3339, milliseconds), ``level``, ``logger`` and ``message``,
plus ``session_id``, ``request_id`` and ``trace_id`` when the line is about a stream
(the servicer passes them as ``extra`` fields), and ``exception`` with the traceback.
"""

from __future__ import annotations

import json
import logging
import time

STREAM_FIELDS = ("session_id", "request_id", "trace_id")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {
            "timestamp": _rfc3339(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in STREAM_FIELDS:
            value = getattr(record, name, None)
            if value:
                out[name] = value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


def _rfc3339(created: float) -> str:
    ms = int(created * 1000) % 1000
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + f".{ms:03d}Z"


def configure(level: str, fmt: str, *, text_format: str) -> None:
    """Root logging at ``level`` in ``fmt`` ("text": ``text_format``, or "json")."""
    handler = logging.StreamHandler()
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(text_format))
    logging.basicConfig(level=level.upper(), handlers=[handler])
