"""The `revmon` command line (SPEC §7)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import NoReturn

import orjson
import yaml

from revmon import __version__, shutdown
from revmon.errors import ConfigError, OutputFileError, RevmonError
from revmon.settings import Settings, load_settings, masked

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2


def _settings(args: argparse.Namespace, **overrides: object) -> Settings:
    return load_settings(args.config, **overrides)


def check_writable(path: Path, option: str) -> None:
    """Fail before any work starts when `path` cannot be written as a file.

    Raises:
        OutputFileError: its directory is missing or not writable, or it is a directory.
    """
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise OutputFileError(f"{option} {path}: is a directory, not a file")
    if not parent.is_dir():
        raise OutputFileError(f"{option} {path}: no such directory {parent}")
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise OutputFileError(f"{option} {path}: permission denied")


def _positive(text: str) -> int:
    """argparse type of a count of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


def _above_zero(text: str) -> float:
    """argparse type of a number above 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be above 0, got {text}")
    return value


def _day(text: str) -> date:
    """argparse type of a calendar date, YYYY-MM-DD."""
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date like 2026-12-31") from None


def cmd_check_config(args: argparse.Namespace) -> int:
    """Validate the configuration and print it with secrets masked."""
    settings = _settings(args)
    sys.stdout.write(yaml.safe_dump(masked(settings), sort_keys=False, allow_unicode=True))
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    """The daemon."""
    from revmon import app as app_module
    from revmon.broker import Connection, broker_for, wait_for_broker
    from revmon.logs import configure
    from revmon.web import check_bindable
    from revmon.worker import serve

    settings = _settings(args)
    configure(args.log_level)
    check_bindable(settings.web_host, settings.web_port)
    with broker_for(settings) as servers:
        connection = Connection(servers, settings.kafka)

        async def go() -> None:
            await wait_for_broker(connection, settings.broker_wait)
            await app_module.prepare_topics(settings, connection)
            await serve(app_module.build(settings, connection))

        shutdown.run(go())
    return EXIT_OK


def cmd_produce(args: argparse.Namespace) -> int:
    """Send a JSON-lines file to the input topics."""
    from revmon.broker import Connection, ensure_topics, wait_for_broker
    from revmon.logs import configure
    from revmon.produce import check_readable, produce_file

    settings = _settings(args)
    configure(args.log_level)
    servers = settings.bootstrap_servers
    if servers is None:
        raise RevmonError(
            "produce needs a running broker: set `broker: kafka://host:port` "
            "(the embedded broker lives inside `revmon run`)"
        )
    check_readable(args.file)
    connection = Connection(servers, settings.kafka)

    from revmon.progress import lines_in, progress

    async def go() -> None:
        await wait_for_broker(connection, settings.broker_wait)
        await ensure_topics(connection, settings.topics.inputs, settings.partitions)
        with progress(lines_in(args.file), "produce") as advance:
            report = await produce_file(
                args.file, connection, settings.topics, batch=args.batch, progress=advance
            )
        print(f"sent {report.lines} lines in {report.messages} messages")

    shutdown.run(go())
    return EXIT_OK


def cmd_replay(args: argparse.Namespace) -> int:
    """Replay a file end to end and write the final exposition."""
    from revmon.logs import configure
    from revmon.replay import Cutoff, replay

    settings = _settings(args)
    configure(args.log_level)
    for option, path in (("--metrics-out", args.metrics_out), ("--alerts-out", args.alerts_out)):
        if path is not None:
            check_writable(path, option)
    from revmon.progress import lines_in, progress

    until = Cutoff.parse(args.until, settings.timezone) if args.until is not None else None
    with progress(lines_in(args.file), "replay") as advance:
        result = replay(
            args.file,
            settings,
            batch=args.batch,
            timeout=args.timeout,
            step=args.alert_step,
            until=until,
            progress=advance,
        )
    if not result.caught_up:
        raise RevmonError(f"replay did not catch up within {args.timeout:.0f}s")
    if args.metrics_out is not None:
        _write(args.metrics_out, result.exposition, "--metrics-out")
    else:
        sys.stdout.buffer.write(result.exposition)
    if args.alerts_out is not None:
        _write(
            args.alerts_out,
            b"".join(orjson.dumps(m) + b"\n" for m in result.alerts),
            "--alerts-out",
        )
    produced, tally = result.produced, result.tally
    print(
        f"replayed {produced.lines} lines in {produced.messages} messages: {tally.summary()}; "
        f"produced in {result.produce_seconds:.1f}s, processed in {result.process_seconds:.1f}s",
        file=sys.stderr,
    )
    if args.strict and tally.rejected_total:
        raise RevmonError(
            f"{tally.rejected_total} rejected (--strict): the line_rejected log lines name them"
        )
    return EXIT_OK


def _write(path: Path, data: bytes, option: str) -> None:
    try:
        path.write_bytes(data)
    except OSError as exc:
        raise OutputFileError(f"{option} {path}: {exc.strerror}") from exc


def cmd_report(args: argparse.Namespace) -> int:
    """Write the weekly revenue review to a directory."""
    from revmon.logs import configure
    from revmon.replay import Cutoff
    from revmon.report import Source, write

    settings = _settings(args)
    configure(args.log_level)
    until = Cutoff.parse(args.until, settings.timezone) if args.until is not None else None
    if args.from_log is not None:
        from revmon.report.log import from_log

        weeks = from_log(
            args.from_log, settings, weeks=args.weeks, until=until, timeout=args.timeout
        )
        source = Source(f"replay of {args.from_log.name} (event time)")
    else:
        from revmon.report.prometheus import from_prometheus

        weeks, source = from_prometheus(args.prometheus, settings, weeks=args.weeks, until=until)
    page = write(args.out, weeks, settings, source)
    print(f"wrote {page} ({len(weeks)} weeks)", file=sys.stderr)
    return EXIT_OK


def _weeks(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of weeks: {text!r}") from None
    if not 1 <= value <= 520:
        raise argparse.ArgumentTypeError("must be between 1 and 520")
    return value


def cmd_simulate(args: argparse.Namespace) -> int:
    """Write a simulated event history."""
    from revmon.simulate import SimulationConfig, simulate, write_jsonl

    settings = _settings(args)
    check_writable(args.out, "--out")
    end = datetime.combine(args.end or datetime.now(UTC).date(), time(), tzinfo=UTC)
    start = end - timedelta(days=args.days)
    config = SimulationConfig.from_settings(
        settings,
        days=args.days,
        seed=args.seed,
        start=start,
        snapshot_load=not args.no_snapshots,
    )
    shutdown.phase(f"writing {args.out}")
    from revmon.progress import over_days

    try:
        events = over_days(simulate(config), config.start, config.days, "simulate")
        count = write_jsonl(events, args.out)
    except OSError as exc:
        raise OutputFileError(f"--out {args.out}: {exc.strerror}") from exc
    print(
        f"wrote {count} events to {args.out} ({start:%Y-%m-%d} to {end:%Y-%m-%d})",
        file=sys.stderr,
    )
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    """Embedded broker, worker and a live simulated revenue engine."""
    from revmon.demo import run_demo
    from revmon.logs import configure
    from revmon.web import check_bindable

    settings = _settings(args)
    configure(args.log_level)
    check_bindable(settings.web_host, settings.web_port)
    return run_demo(settings, speed=args.speed, seed=args.seed, history_days=args.history_days)


def cmd_rules(args: argparse.Namespace) -> int:
    """Print the Prometheus alerting rules (or their promtool tests) generated from the config."""
    from revmon.rules import RULES_FILE, dump, render_rules
    from revmon.ruletests import promtool_tests

    settings = _settings(args)
    if args.promtool_tests:
        sys.stdout.write(dump(promtool_tests(settings, RULES_FILE), header=TESTS_HEADER))
    else:
        sys.stdout.write(render_rules(settings))
    return EXIT_OK


TESTS_HEADER = (
    "# Generated by `revmon rules --promtool-tests`; run with `promtool test rules` beside\n"
    "# the rule file of `revmon rules` saved as revmon-rules.yml.\n"
)


def cmd_schema(args: argparse.Namespace) -> int:
    """Print the JSON Schemas."""
    from revmon.schemas import all_schemas

    schemas = all_schemas()
    if args.out is not None:
        if not args.out.parent.is_dir():
            raise OutputFileError(f"--out {args.out}: no such directory {args.out.parent}")
        try:
            args.out.mkdir(exist_ok=True)
            for name, schema in schemas.items():
                (args.out / f"{name}.schema.json").write_bytes(
                    orjson.dumps(schema, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"
                )
        except OSError as exc:
            raise OutputFileError(f"--out {args.out}: {exc.strerror}") from exc
        return EXIT_OK
    sys.stdout.buffer.write(
        orjson.dumps(schemas, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"
    )
    return EXIT_OK


def _duration(text: str) -> float:
    from revmon.settings import parse_duration

    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if seconds <= 0:
        raise argparse.ArgumentTypeError("must be longer than zero")
    return seconds


class _Parser(argparse.ArgumentParser):
    """argparse with usage errors in one line (`revmon: ...`), exit code 2."""

    def error(self, message: str) -> NoReturn:
        """Print one line naming the option and how to get help, exit 2."""
        self.exit(EXIT_USAGE, f"revmon: {message} (see `{self.prog} --help`)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="revmon", description="Revenue performance monitoring on Kafka and Prometheus."
    )
    parser.add_argument("--version", action="version", version=f"revmon {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(
        name: str, func: Callable[[argparse.Namespace], int], help_: str
    ) -> argparse.ArgumentParser:
        cmd = sub.add_parser(name, help=help_, description=help_)
        cmd.add_argument(
            "--config", type=Path, default=None, help="YAML config (or $REVMON_CONFIG)"
        )
        cmd.add_argument(
            "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"]
        )
        cmd.set_defaults(func=func)
        return cmd

    add("run", cmd_run, "the daemon: consume, compute, serve /metrics /healthz /readyz")
    demo = add("demo", cmd_demo, "embedded broker + worker + a live simulated revenue engine")
    demo.add_argument(
        "--speed", type=_above_zero, default=3600.0, help="simulated seconds per second"
    )
    demo.add_argument("--seed", type=int, default=7)
    demo.add_argument("--history-days", type=_positive, default=120, help="history replayed first")
    sim = add("simulate", cmd_simulate, "write a realistic JSON-lines event history")
    sim.add_argument("--days", type=_positive, required=True)
    sim.add_argument("--seed", type=int, default=1)
    sim.add_argument("--out", type=Path, required=True)
    sim.add_argument(
        "--no-snapshots",
        action="store_true",
        help="open the history with created leads and deals instead of snapshot loads",
    )
    sim.add_argument(
        "--end",
        type=_day,
        default=None,
        help="the history ends at the start of this day, UTC (default: today)",
    )
    produce = add("produce", cmd_produce, "send a JSON-lines file to the input topics")
    produce.add_argument("file", type=Path)
    produce.add_argument("--batch", type=_positive, default=1, help="group N lines per message")
    replay = add("replay", cmd_replay, "a file end to end through the real pipeline")
    replay.add_argument("file", type=Path)
    replay.add_argument("--metrics-out", type=Path, default=None)
    replay.add_argument("--alerts-out", type=Path, default=None)
    replay.add_argument("--batch", type=_positive, default=500, help="group N lines per message")
    replay.add_argument(
        "--strict", action="store_true", help="exit 1 when any line or message was rejected"
    )
    replay.add_argument("--timeout", type=_above_zero, default=3600.0, help="give up after seconds")
    replay.add_argument(
        "--alert-step",
        type=_duration,
        default="1d",
        metavar="DURATION",
        help="event time between evaluations of the alert rules (default 1d)",
    )
    replay.add_argument(
        "--until",
        default=None,
        metavar="DATE",
        help="replay only the events up to DATE (a date, its whole day, in `timezone`; "
        "or an RFC 3339 timestamp)",
    )
    report = add("report", cmd_report, "the weekly revenue review: an HTML page with charts")
    report.add_argument("--out", type=Path, required=True, help="directory for index.html")
    report_source = report.add_mutually_exclusive_group(required=True)
    report_source.add_argument(
        "--from-log", type=Path, default=None, metavar="FILE", help="replay a JSON-lines history"
    )
    report_source.add_argument(
        "--prometheus", default=None, metavar="URL", help="read a Prometheus that scrapes revmon"
    )
    report.add_argument("--weeks", type=_weeks, default=13, help="weeks to show (default 13)")
    report.add_argument(
        "--until",
        default=None,
        metavar="DATE",
        help="end at the last complete week up to DATE (default: the latest complete week)",
    )
    report.add_argument("--timeout", type=float, default=3600.0, help="give up after seconds")
    schema = add("schema", cmd_schema, "JSON Schemas of events, metric and alert messages")
    schema.add_argument("--out", type=Path, default=None, help="write one file per schema here")
    add("check-config", cmd_check_config, "validate and print the effective config")
    rules = add("rules", cmd_rules, "Prometheus alerting rules generated from the config")
    rules.add_argument(
        "--promtool-tests",
        action="store_true",
        help="print `promtool test rules` tests of the rules instead",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `revmon` console script; returns the exit code."""
    # Every command, present and future, ends the same way on SIGINT and SIGTERM.
    shutdown.install()
    try:
        parser = _parser()
        if not (sys.argv[1:] if argv is None else argv):
            parser.print_usage(sys.stderr)
            return EXIT_USAGE
        args = parser.parse_args(argv)
        shutdown.command(args.command)
        return int(args.func(args))
    except shutdown.Interrupted as exc:
        return shutdown.report(exc)
    except RevmonError as exc:
        print(f"revmon: {exc}", file=sys.stderr)
        return EXIT_USAGE if isinstance(exc, ConfigError) else EXIT_ERROR
