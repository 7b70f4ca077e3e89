"""Structured logging: configured once; JSON via orjson, or the console renderer on a TTY."""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import structlog


def _orjson_dumps(value: Any, **_: Any) -> str:
    return orjson.dumps(value, default=str).decode()


#: The libraries whose records are throttled and kept at WARNING or above.
LIBRARIES = ("faust", "mode", "aiokafka", "kafka")


def _package_dirs() -> tuple[str, ...]:
    import aiokafka
    import faust
    import mode

    return tuple(str(Path(m.__file__).parent) for m in (faust, mode, aiokafka) if m.__file__)


class Chatter(logging.Filter):
    """Drops the library records below WARNING, wherever their logger is named.

    Faust's services log "Starting...", "Creating topic" and the like at INFO through
    mode's logging helpers, under the name of the module that defines the service, so
    revmon's own services (`revmon.delivery`, `revmon.partials`) would leak them too.
    """

    def __init__(self) -> None:
        super().__init__()
        self._dirs = _package_dirs()

    def filter(self, record: logging.LogRecord) -> bool:
        """False for an INFO or DEBUG record emitted from Faust, mode or aiokafka code."""
        return record.levelno >= logging.WARNING or not record.pathname.startswith(self._dirs)


class Throttle(logging.Filter):
    """At most one record per logger and message template every `every` seconds from the
    libraries: with the broker gone, aiokafka tries to reconnect dozens of times a second.

    The record let through after a quiet spell carries `suppressed=N`, how many were dropped.
    """

    def __init__(self, every: float = 5.0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self._every = every
        self._clock = clock
        self._seen: dict[tuple[str, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        """False for a repeat of a library record within `every` seconds."""
        if record.name.split(".", 1)[0] not in LIBRARIES:
            return True
        key = (record.name, str(record.msg))
        now = self._clock()
        last = self._seen.get(key)
        if last is not None and now - last[0] < self._every:
            self._seen[key] = (last[0], last[1] + 1)
            return False
        self._seen[key] = (now, 0)
        if last is not None and last[1]:
            record.suppressed = last[1]
        return True


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
    handler.addFilter(Throttle())
    if logging.getLevelName(level.upper()) != logging.DEBUG:  # DEBUG shows everything
        handler.addFilter(Chatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    threading.excepthook = _thread_failed
    # Faust and aiokafka are chatty at INFO about every rebalance step.
    for name in LIBRARIES:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))


def _thread_failed(args: threading.ExceptHookArgs) -> None:
    """A library thread that dies (Faust's consumer thread, cancelled while the broker is
    gone) is one log line, not a traceback on stderr."""
    if args.exc_type is SystemExit:
        return
    structlog.get_logger("revmon.threads").warning(
        "thread_failed",
        thread=args.thread.name if args.thread is not None else None,
        error=args.exc_type.__name__ + (f": {args.exc_value}" if args.exc_value else ""),
    )
    # Anyone who reaches the web port can make aiohttp log a traceback per malformed
    # request: keep that from flooding the log.
    server = logging.getLogger("aiohttp.server")
    server.filters[:] = [f for f in server.filters if not isinstance(f, ThrottleFilter)]
    server.addFilter(ThrottleFilter())


class RateLimit:
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
        self._limit = RateLimit(burst, period)

    def filter(self, record: logging.LogRecord) -> bool:
        """True for the records to emit."""
        show, suppressed = self._limit.allow(str(record.msg), record.created)
        if suppressed:
            record.msg = f"{record.msg} ({suppressed} similar records suppressed)"
        return show
