"""Running the revmon CLI as a user does: subprocesses in their own group, polling, /metrics."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parents[2]
T = TypeVar("T")


def revmon_argv(*args: str) -> list[str]:
    """The argv of `revmon ARGS...` under the interpreter running the tests."""
    return [sys.executable, "-m", "revmon", *args]


def clean_env(**extra: str) -> dict[str, str]:
    """The test's environment without any REVMON_* variable, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("REVMON_")}
    env.update(extra)
    return env


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the process group `proc` leads (started with start_new_session) and reap it."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)


@dataclass(frozen=True)
class Result:
    """What a finished command left: its exit code and its output as text."""

    code: int
    stdout: str
    stderr: str
    seconds: float


def revmon(
    *args: str,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 60.0,
) -> Result:
    """Run `revmon ARGS...` to its end (at most `timeout` s); kill its group whatever happens."""
    started = time.monotonic()
    proc = subprocess.Popen(
        revmon_argv(*args),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=dict(env) if env is not None else clean_env(),
        cwd=cwd,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        out, err = proc.communicate()
        raise AssertionError(
            f"revmon {' '.join(args)} still ran after {timeout:.0f}s; stderr ends:\n"
            + tail(err.decode(errors="replace"))
        ) from None
    finally:
        _kill_group(proc)
    return Result(
        proc.returncode,
        out.decode(errors="replace"),
        err.decode(errors="replace"),
        time.monotonic() - started,
    )


def poll(
    probe: Callable[[], T | None],
    *,
    within: float,
    what: str,
    interval: float = 0.05,
) -> T:
    """The first truthy value of `probe()` within `within` seconds, else an assertion error."""
    deadline = time.monotonic() + within
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"gave up after {within:.0f}s waiting for {what}")
        time.sleep(interval)


def http_get(url: str, timeout: float = 2.0) -> tuple[int, str] | None:
    """(status, body) of a GET on loopback, or None when nothing answers yet."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read().decode()
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None


def samples(exposition: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a Prometheus text exposition by (name, labels)."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
    }


def sample(exposition: str, name: str, **labels: str) -> float | None:
    """One sample's value, or None when the exposition has no such series."""
    return samples(exposition).get((name, frozenset(labels.items())))


# -- processes --------------------------------------------------------------------------


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name, or None if there is no such pid."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return text[text.rindex(")") + 2 :].split()


@dataclass(frozen=True)
class Proc:
    """A process identified by pid and start time, so a reused pid is never mistaken for it."""

    pid: int
    start: str
    cmdline: str

    @classmethod
    def of(cls, pid: int) -> Proc | None:
        """The process `pid` as it is now, or None if it is gone."""
        fields = _stat(pid)
        if fields is None:
            return None
        try:
            raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (FileNotFoundError, ProcessLookupError):
            return None
        return cls(pid, fields[19], raw.replace(b"\0", b" ").decode(errors="replace").strip())

    def alive(self) -> bool:
        """True while this very process exists and is not a zombie."""
        fields = _stat(self.pid)
        return fields is not None and fields[19] == self.start and fields[0] not in ("Z", "X")

    def kill(self) -> None:
        """SIGKILL it if it is still this process."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)


def children(pid: int) -> list[int]:
    """Direct children of `pid`, over all of its threads."""
    found: list[int] = []
    for path in Path(f"/proc/{pid}/task").glob("*/children"):
        with contextlib.suppress(OSError):
            found.extend(int(p) for p in path.read_text().split())
    return found


def descendants(pid: int) -> list[Proc]:
    """Every live descendant of `pid` (children, grandchildren, ...)."""
    result: list[Proc] = []
    todo = children(pid)
    while todo:
        child = todo.pop()
        proc = Proc.of(child)
        if proc is not None:
            result.append(proc)
            todo.extend(children(child))
    return result


def group_members(pgid: int) -> list[Proc]:
    """Every live, non-zombie process whose process group is `pgid`."""
    members: list[Proc] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat(int(entry.name))
        if fields is not None and fields[2] == str(pgid) and fields[0] not in ("Z", "X"):
            proc = Proc.of(int(entry.name))
            if proc is not None:
                members.append(proc)
    return members


@dataclass
class Background:
    """A long-running command in its own process group, its output going to files."""

    proc: subprocess.Popen[bytes]
    stdout_path: Path
    stderr_path: Path
    seen: dict[int, Proc] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        """The command's process id (also its process group id)."""
        return self.proc.pid

    def stdout(self) -> str:
        """What it wrote to stdout so far."""
        return self.stdout_path.read_text(errors="replace")

    def stderr(self) -> str:
        """What it wrote to stderr so far."""
        return self.stderr_path.read_text(errors="replace")

    def descendants(self) -> list[Proc]:
        """Its live descendants now; remembered, so cleanup can reach them after it died."""
        found = descendants(self.pid)
        self.seen.update((p.pid, p) for p in found)
        return found

    def wait(self, timeout: float) -> int:
        """Its exit code, waiting at most `timeout` seconds."""
        return self.proc.wait(timeout=timeout)


@contextlib.contextmanager
def background(
    argv: Sequence[str], *, env: Mapping[str, str], cwd: Path, logs: Path
) -> Iterator[Background]:
    """Start `argv` in a new session; on exit SIGKILL its group and every descendant seen."""
    logs.mkdir(parents=True, exist_ok=True)
    out_path, err_path = logs / "stdout.txt", logs / "stderr.txt"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            env=dict(env),
            cwd=cwd,
            start_new_session=True,
        )
    running = Background(proc, out_path, err_path)
    try:
        yield running
    finally:
        if proc.poll() is None:
            running.descendants()
        _kill_group(proc)
        for seen in running.seen.values():
            seen.kill()


def tail(text: str, lines: int = 15) -> str:
    """The last lines of some output, for assertion messages."""
    return "\n".join(text.splitlines()[-lines:])
