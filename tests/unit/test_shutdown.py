"""The exit codes and line of an interrupted command."""

from __future__ import annotations

import signal

import pytest

from revmon import shutdown
from revmon.shutdown import Interrupted


@pytest.mark.parametrize(
    ("sig", "code"),
    [
        pytest.param(signal.SIGINT, 130, id="sigint"),
        pytest.param(signal.SIGTERM, 143, id="sigterm"),
    ],
)
def test_an_interrupt_exits_with_128_plus_the_signal(sig: signal.Signals, code: int) -> None:
    """SIGINT gives 130 and SIGTERM 143, as shells expect."""
    assert Interrupted(sig).exit_code == code


def test_the_line_names_the_command_signal_and_what_it_was_doing() -> None:
    """`report` prints `revmon: <command> interrupted by <SIGNAL> while <phase>` once."""
    state = shutdown._State(command="replay", phase="processing", signum=signal.SIGINT)
    state.interrupted_phase = "joining the consumer group"
    saved, shutdown._state = shutdown._state, state
    try:
        assert shutdown.message() == (
            "replay interrupted by SIGINT while joining the consumer group"
        )
    finally:
        shutdown._state = saved


def test_run_returns_the_coroutines_value_without_a_signal() -> None:
    """Without a signal `run` is `asyncio.run`."""

    async def answer() -> int:
        return 42

    assert shutdown.run(answer()) == 42
