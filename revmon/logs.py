"""Structured logging: configured once; JSON via orjson, or the console renderer on a TTY."""

from __future__ import annotations

import logging
import sys
from typing import Any

import orjson
import structlog


def _orjson_dumps(value: Any, **_: Any) -> str:
    return orjson.dumps(value, default=str).decode()


def configure(level: str = "INFO", *, json: bool | None = None) -> None:
    """Route structlog and the standard library's loggers (Faust, aiokafka) to stderr.

    `json=None` picks the console renderer when stderr is a terminal, JSON lines otherwise.
    """
    use_json = not sys.stderr.isatty() if json is None else json
    renderer: Any = (
        structlog.processors.JSONRenderer(serializer=_orjson_dumps)
        if use_json
        else structlog.dev.ConsoleRenderer()
    )
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder()],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Faust and aiokafka are chatty at INFO about every rebalance step.
    for name in ("faust", "mode", "aiokafka", "kafka"):
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
    # Anyone who reaches the web port can make aiohttp log a traceback per malformed
    # request: keep that from flooding the log.
    server = logging.getLogger("aiohttp.server")
    server.filters[:] = [f for f in server.filters if not isinstance(f, ThrottleFilter)]
    server.addFilter(ThrottleFilter())


class Throttle:
    """At most `burst` log lines per key in each `period` seconds; the rest are counted.

    A flood of bad input must not flood the log: the counters count every rejection,
    the log shows the first few of each kind per period and then how many it left out.
    """

    def __init__(self, burst: int = 10, period: float = 60.0) -> None:
        self._burst = burst
        self._period = period
        self._windows: dict[str, tuple[float, int]] = {}

    def allow(self, key: str, now: float) -> tuple[bool, int]:
        """(log this one?, lines left out of the period that just ended, to report once)."""
        start, seen = self._windows.get(key, (now, 0))
        suppressed = 0
        if now - start >= self._period:
            suppressed = max(0, seen - self._burst)
            start, seen = now, 0
        self._windows[key] = (start, seen + 1)
        return seen < self._burst, suppressed


class ThrottleFilter(logging.Filter):
    """A logging filter passing at most `burst` records per message and `period` seconds."""

    def __init__(self, burst: int = 10, period: float = 60.0) -> None:
        super().__init__()
        self._throttle = Throttle(burst, period)

    def filter(self, record: logging.LogRecord) -> bool:
        """True for the records to emit."""
        show, suppressed = self._throttle.allow(str(record.msg), record.created)
        if suppressed:
            record.msg = f"{record.msg} ({suppressed} similar records suppressed)"
        return show
