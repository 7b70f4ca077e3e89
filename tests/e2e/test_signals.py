"""SIGINT and SIGTERM at any moment of a command: gone within 10 s, one line, 130 or 143."""

from __future__ import annotations

import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from revmon.broker import EmbeddedBroker, free_port
from tests.e2e.running import (
    Background,
    background,
    clean_env,
    http_get,
    poll,
    revmon,
    revmon_argv,
    tail,
)

pytestmark = pytest.mark.e2e

GONE_WITHIN = 10.0
CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}


@dataclass(frozen=True)
class Moment:
    """When to send the signal: once `reached(command, web_port)` is true."""

    name: str
    reached: Callable[[Background, int], bool]


def _logged(event: str) -> Callable[[Background, int], bool]:
    return lambda command, _: f'"event":"{event}"' in command.stderr()


def _tansu_started(command: Background, _: int) -> bool:
    return any("tansu" in p.cmdline for p in command.descendants())


def _ready(_: Background, port: int) -> bool:
    answer = http_get(f"http://127.0.0.1:{port}/readyz")
    return answer is not None and answer[0] == 200


STARTING = Moment("broker-starting", _tansu_started)
JOINING = Moment("joining", _logged("web_started"))
PRODUCED = Moment("joining", _logged("produced"))
PROCESSING_REPLAY = Moment("processing", _logged("partitions_assigned"))
READY = Moment("processing", _ready)
WAITING = Moment("waiting-for-broker", _logged("broker_wait"))


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A simulated history long enough that a replay of it takes several seconds."""
    out = tmp_path_factory.mktemp("history") / "history.jsonl"
    result = revmon("simulate", "--days", "300", "--seed", "3", "--out", str(out), timeout=120)
    assert result.code == 0, result.stderr
    return out


@pytest.fixture(scope="module")
def short_history(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A short history: enough for the moments that do not need a long replay."""
    out = tmp_path_factory.mktemp("short") / "history.jsonl"
    result = revmon("simulate", "--days", "45", "--seed", "3", "--out", str(out), timeout=120)
    assert result.code == 0, result.stderr
    return out


def _env(port: int, **extra: str) -> dict[str, str]:
    return clean_env(REVMON_WEB_PORT=str(port), **extra)


def interrupt(
    argv: list[str],
    moment: Moment,
    sig: signal.Signals,
    tmp_path: Path,
    env: dict[str, str],
    port: int,
    before_signal: Callable[[], None] = lambda: None,
) -> None:
    """Start `argv`, wait for `moment`, send `sig`; check how the command ends."""
    with background(argv, env=env, cwd=tmp_path, logs=tmp_path / "logs") as command:

        def reached() -> bool:
            if command.proc.poll() is not None:
                raise AssertionError(f"exited before {moment.name}:\n{tail(command.stderr())}")
            return moment.reached(command, port)

        poll(reached, within=90, what=moment.name, interval=0.02)
        before_signal()
        command.descendants()  # remember the broker child, to check it is gone after
        command.proc.send_signal(sig)
        try:
            code = command.wait(timeout=GONE_WITHIN)
        except Exception:
            raise AssertionError(
                f"still running {GONE_WITHIN:.0f}s after {sig.name}:\n{tail(command.stderr())}"
            ) from None
        stderr = command.stderr()

        assert code == CODES[sig], (code, tail(stderr))
        assert "Traceback" not in stderr, tail(stderr, 40)
        lines = [line for line in stderr.splitlines() if line.startswith("revmon: ")]
        interrupted = [line for line in lines if " interrupted by " in line]
        assert len(interrupted) == 1, tail(stderr)
        assert interrupted[0].startswith(f"revmon: {argv[3]} interrupted by {sig.name} while ")
        poll(
            lambda: not any(p.alive() for p in command.seen.values()),
            within=5,
            what="every child to exit: "
            + ", ".join(p.cmdline for p in command.seen.values() if p.alive()),
        )


SIGNALS = [pytest.param(signal.SIGINT, id="sigint"), pytest.param(signal.SIGTERM, id="sigterm")]


@pytest.mark.parametrize("sig", SIGNALS)
@pytest.mark.parametrize(
    "moment",
    [
        pytest.param(STARTING, id="broker-starting"),
        pytest.param(PRODUCED, id="joining"),
        pytest.param(PROCESSING_REPLAY, id="processing"),
    ],
)
def test_replay_ends_on_a_signal(
    request: pytest.FixtureRequest, tmp_path: Path, moment: Moment, sig: signal.Signals
) -> None:
    """`revmon replay` ends within 10 s on SIGINT or SIGTERM, broker child included."""
    port = free_port()
    # Only a signal while processing needs a replay that takes several seconds.
    history = request.getfixturevalue("history" if moment is PROCESSING_REPLAY else "short_history")
    argv = revmon_argv("replay", str(history), "--metrics-out", str(tmp_path / "m.prom"))
    interrupt(argv, moment, sig, tmp_path, _env(port), port)


@pytest.mark.parametrize("sig", SIGNALS)
@pytest.mark.parametrize(
    "moment",
    [
        pytest.param(STARTING, id="broker-starting"),
        pytest.param(JOINING, id="joining"),
        pytest.param(READY, id="processing"),
    ],
)
def test_run_ends_on_a_signal(tmp_path: Path, moment: Moment, sig: signal.Signals) -> None:
    """`revmon run` on its embedded broker ends within 10 s on SIGINT or SIGTERM."""
    port = free_port()
    interrupt(revmon_argv("run"), moment, sig, tmp_path, _env(port), port)


@pytest.mark.parametrize("sig", SIGNALS)
def test_run_ends_on_a_signal_while_the_broker_is_gone(tmp_path: Path, sig: signal.Signals) -> None:
    """`revmon run` whose broker died under it still ends within 10 s on a signal."""
    port = free_port()
    with EmbeddedBroker() as lost:
        env = _env(
            port,
            REVMON_BROKER=f"kafka://{lost.bootstrap_servers}",
            REVMON_WORKER__STORE="memory",
            REVMON_WORKER__SESSION_TIMEOUT="6s",
        )
        interrupt(
            revmon_argv("run"),
            READY,
            sig,
            tmp_path,
            env,
            port,
            before_signal=lambda: _lose(lost, port),
        )


def _lose(broker: EmbeddedBroker, port: int) -> None:
    """Stop `broker` and wait until the daemon on `port` says it is not ready."""
    broker.stop()

    def not_ready() -> bool:
        answer = http_get(f"http://127.0.0.1:{port}/readyz")
        return answer is not None and answer[0] == 503

    poll(not_ready, within=15, what="/readyz 503 after the broker stopped")


@pytest.mark.parametrize("sig", SIGNALS)
@pytest.mark.parametrize("command", ["run", "produce", "replay"])
def test_waiting_for_the_broker_ends_on_a_signal(
    tmp_path: Path, command: str, sig: signal.Signals
) -> None:
    """`run`, `produce` and `replay` waiting for a broker that does not answer end on a signal."""
    port = free_port()
    events = tmp_path / "events.jsonl"
    events.write_text('{"event_id":"e1"}\n')
    argv = revmon_argv(command, *([] if command == "run" else [str(events)]))
    env = _env(port, REVMON_BROKER=f"kafka://127.0.0.1:{free_port()}")
    interrupt(argv, WAITING, sig, tmp_path, env, port)


@pytest.mark.parametrize("sig", SIGNALS)
@pytest.mark.parametrize(
    "moment",
    [
        pytest.param(STARTING, id="broker-starting"),
        pytest.param(JOINING, id="joining"),
        pytest.param(READY, id="processing"),
    ],
)
def test_demo_ends_on_a_signal(tmp_path: Path, moment: Moment, sig: signal.Signals) -> None:
    """`revmon demo` ends within 10 s on SIGINT or SIGTERM, broker child included."""
    port = free_port()
    interrupt(revmon_argv("demo"), moment, sig, tmp_path, _env(port), port)


@pytest.mark.parametrize("sig", SIGNALS)
def test_simulate_ends_on_a_signal(tmp_path: Path, sig: signal.Signals) -> None:
    """`revmon simulate` of a long history ends at once on SIGINT or SIGTERM."""
    port = free_port()
    argv = revmon_argv("simulate", "--days", "20000", "--out", str(tmp_path / "h.jsonl"))
    writing = Moment("writing", lambda _, __: (tmp_path / "h.jsonl").exists())
    interrupt(argv, writing, sig, tmp_path, _env(port), port)


@pytest.mark.parametrize(
    ("first", "second"),
    [
        pytest.param(signal.SIGTERM, signal.SIGINT, id="sigterm-then-sigint"),
        pytest.param(signal.SIGINT, signal.SIGTERM, id="sigint-then-sigterm"),
    ],
)
def test_a_signal_during_shutdown_ends_the_process_at_once(
    tmp_path: Path, first: signal.Signals, second: signal.Signals
) -> None:
    """A second signal while `revmon run` stops ends it at once, with the first one's code."""
    port = free_port()

    def stopping() -> None:
        command.proc.send_signal(first)
        poll(
            lambda: '"event":"worker_stopping"' in command.stderr(),
            within=5,
            what="the worker to be stopping",
            interval=0.01,
        )

    with background(revmon_argv("run"), env=_env(port), cwd=tmp_path, logs=tmp_path) as command:
        poll(lambda: _ready(command, port), within=60, what="/readyz 200")
        command.descendants()
        stopping()
        command.proc.send_signal(second)
        code = command.wait(timeout=GONE_WITHIN)
        stderr = command.stderr()

        assert code == CODES[first], (code, tail(stderr))
        assert "Traceback" not in stderr, tail(stderr, 40)
        interrupted = [line for line in stderr.splitlines() if " interrupted by " in line]
        assert len(interrupted) == 1, tail(stderr)
        assert interrupted[0].startswith(f"revmon: run interrupted by {first.name} while ")
        poll(
            lambda: not any(p.alive() for p in command.seen.values()),
            within=5,
            what="every child to exit",
        )
