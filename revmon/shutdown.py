"""How every command ends on SIGINT or SIGTERM: within seconds, in one line, exit 130 or 143.

The CLI calls `install()` once, before any command runs, so every command (and any
command added later) gets the same behaviour for free:

- in synchronous code (starting the embedded broker, reading a file) the signal raises
  `Interrupted` at once, and the `with`/`finally` blocks on the way out stop what was
  started;
- inside `run()` (revmon's `asyncio.run`) it cancels the command's main task, so the
  worker stops in order (offsets committed, web server closed);
- whatever happens, `GRACE` seconds after the first signal the process ends anyway (a
  Kafka client stopping against a broker that is gone may wait for minutes), and a second
  signal ends it at once. The embedded broker dies with revmon (PR_SET_PDEATHSIG).

The line printed says which command was interrupted, by which signal, and what it was
doing (`phase()`), e.g. `revmon: replay interrupted by SIGINT while joining the group`.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")

#: Seconds a command has to stop in order after the first signal before it is ended hard.
GRACE = 5.0
SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived.

    A BaseException, as KeyboardInterrupt is, so that no `except Exception` on the way
    out swallows it.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        """128 + the signal number: 130 for SIGINT, 143 for SIGTERM (the shell convention)."""
        return 128 + self.signum


@dataclass
class _State:
    command: str = "revmon"
    phase: str = "starting"
    signum: int | None = None
    interrupted_phase: str = ""
    reported: bool = False
    cancel: Callable[[], None] | None = None


_state = _State()


def install(command: str = "revmon") -> None:
    """Handle SIGINT and SIGTERM from now on (main thread only); forget earlier signals."""
    global _state
    _state = _State(command=command)
    for sig in SIGNALS:
        signal.signal(sig, _handle)


def command(name: str) -> None:
    """Name the command being run, for the interrupt line."""
    _state.command = name


def phase(doing: str) -> None:
    """Say what the command is doing now (`joining the group`), for the interrupt line."""
    _state.phase = doing


def message() -> str:
    """The line that says what was interrupted (without the `revmon: ` prefix)."""
    name = signal.Signals(_state.signum).name if _state.signum is not None else "a signal"
    doing = _state.interrupted_phase or _state.phase
    return f"{_state.command} interrupted by {name} while {doing}"


def report(interrupted: Interrupted) -> int:
    """Print the interrupt line once to stderr; return the exit code."""
    if not _state.reported:
        _state.reported = True
        print(f"revmon: {message()}", file=sys.stderr, flush=True)
    return interrupted.exit_code


def run(coro: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run(coro)`, where SIGINT or SIGTERM cancel `coro` and raise `Interrupted`.

    The cancellation runs the coroutine's `finally` blocks (the worker stops in order).

    Raises:
        Interrupted: a signal arrived while `coro` ran.
    """

    async def main() -> T:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None

        def cancel() -> None:
            loop.call_soon_threadsafe(task.cancel)

        _state.cancel = cancel
        try:
            return await coro
        finally:
            _state.cancel = None

    try:
        result = asyncio.run(main())
    except asyncio.CancelledError:
        if _state.signum is not None:
            raise Interrupted(_state.signum) from None
        raise
    if _state.signum is not None:
        raise Interrupted(_state.signum)  # the coroutine swallowed the cancellation
    return result


def _handle(signum: int, _frame: object) -> None:
    if _state.signum is not None:
        _exit_now()  # a second signal: the user means it
    _state.signum = signum
    _state.interrupted_phase = _state.phase
    timer = threading.Timer(GRACE, _exit_now)
    timer.daemon = True
    timer.start()
    if _state.cancel is not None:
        _state.cancel()
    else:
        raise Interrupted(signum)


def _exit_now() -> None:
    """End the process now; the kernel kills the embedded broker with it."""
    signum = _state.signum or signal.SIGTERM
    if not _state.reported:
        _state.reported = True
        with_note = f"{message()} (stopped without waiting for the worker after {GRACE:.0f}s)"
        os.write(2, f"revmon: {with_note}\n".encode())
    os._exit(128 + signum)
