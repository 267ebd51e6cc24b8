"""The command line: a thin click layer over the library. The only module that imports click.

Exit codes are part of the contract (README "Exit codes", replay_cli/exitcodes.py); usage errors
exit 2 through click.UsageError. Signal handling lives with the CLI too (replay_cli/signals.py).
"""

from __future__ import annotations

import contextlib
import logging
import sys
from typing import TYPE_CHECKING, Any

import click

from replay_cli import __version__
from replay_cli.defaults import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_MEMORY,
    DEFAULT_TIMEOUT_S,
    WORKERS_ENV,
    default_workers,
)
from replay_cli.exitcodes import EXIT_FATAL, EXIT_OK, EXIT_SOME_FAILED
from replay_cli.result import DEFAULT_DEPTH, DEPTHS

if TYPE_CHECKING:
    from replay_cli.ingest import IngestOptions
    from replay_cli.report import Tally

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"]}
STDIN_MARKER = "-"
LOG_HANDLER_MARK = "_replaycli_handler"  # set on the handlers _configure_logging adds, to replace them

depth_option = click.option(
    "--depth",
    type=click.Choice(DEPTHS),
    default=DEFAULT_DEPTH,
    show_default=True,
    help="summary: players, chat (fast). stats: + build orders, stats timeline, benchmarks. "
    "full: + computed APM (slowest).",
)

# The bounds every parse runs under, in `ingest` and `parse` alike: hostile files arrive through both.
timeout_option = click.option(
    "--timeout", type=click.FloatRange(min=0.1), default=DEFAULT_TIMEOUT_S, show_default=True,
    envvar="REPLAYCLI_TIMEOUT", help="Seconds one file may take before its parsing process is killed "
                                     "(env REPLAYCLI_TIMEOUT).")
max_memory_option = click.option(
    "--max-memory", type=click.IntRange(min=0), default=DEFAULT_MAX_MEMORY // 2**20, show_default=True,
    envvar="REPLAYCLI_MAX_MEMORY", help="Memory cap per parsing process in MiB, 0 for none (env REPLAYCLI_MAX_MEMORY).")
max_size_option = click.option(
    "--max-size", type=click.IntRange(min=1), default=DEFAULT_MAX_BYTES // 2**20, show_default=True,
    envvar="REPLAYCLI_MAX_SIZE", help="Files larger than this many MiB are too_large, never read "
                                      "(env REPLAYCLI_MAX_SIZE).")


_DATE = click.DateTime(formats=["%Y-%m-%d"])
_DAY = "YYYY-MM-DD"
# `ingest` filters: each is decided on the cheapest parse that can decide it (see replay_cli/filters.py).
_FILTER_OPTIONS = (
    click.option("--game-type", metavar="TYPE,...", help="Keep only these game types, e.g. 1v1,2v2."),
    click.option("--ladder-only", is_flag=True, help="Keep only ladder games."),
    click.option("--exclude-ai", is_flag=True, help="Leave out games with a computer player."),
    click.option("--since", type=_DATE, metavar=_DAY, help="Keep games played on or after this UTC day."),
    click.option("--until", type=_DATE, metavar=_DAY, help="Keep games played on or before this UTC day."),
    click.option("--min-build", type=click.IntRange(min=0), help="Keep builds from this one (e.g. 89720)."),
    click.option("--max-build", type=click.IntRange(min=0), help="Keep builds up to this one."),
    click.option("--min-duration", type=click.FloatRange(min=0), metavar="SECONDS",
                 help="Keep games at least this many real seconds long."),
    click.option("--max-duration", type=click.FloatRange(min=0), metavar="SECONDS",
                 help="Keep games at most this many real seconds long."),
    click.option("--player", "players", multiple=True, metavar="NAME_OR_TOON",
                 help="Keep games one of these played (a name, any case, or a toon handle); repeatable."),
)


def _filter_options(command: Any) -> Any:
    """Add the filter options to a command, in the order listed."""
    for option in reversed(_FILTER_OPTIONS):
        command = option(command)
    return command


def _ingest_filters(values: dict[str, Any]) -> Any:
    """Build the IngestFilters of `ingest`'s filter options; raise UsageError when a range is empty."""
    from replay_cli.filters import IngestFilters

    for low, high in (("min_build", "max_build"), ("min_duration", "max_duration"), ("since", "until")):
        if values[low] is not None and values[high] is not None and values[low] > values[high]:
            raise click.UsageError(f"--{low.replace('_', '-')} exceeds --{high.replace('_', '-')}: nothing can match.")
    game_types = tuple(t.strip() for t in (values["game_type"] or "").split(",") if t.strip())
    return IngestFilters(
        game_types=game_types, ladder_only=values["ladder_only"], exclude_ai=values["exclude_ai"],
        since=values["since"].date() if values["since"] else None,
        until=values["until"].date() if values["until"] else None,
        min_build=values["min_build"], max_build=values["max_build"], min_duration=values["min_duration"],
        max_duration=values["max_duration"], players=tuple(values["players"]),
    )


@click.group(context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, prog_name="replaycli")
def cli() -> None:
    """Turn piles of StarCraft II replays into SQLite tables and JSON.

    \b
    Getting started:
        replaycli ingest ~/Replays          # every replay below the folder -> replays.db
        replaycli parse game.SC2Replay --json
        replaycli failures                   # what could not be parsed, and why
        sqlite3 replays.db 'select * from v_1v1 limit 5'

    \b
    Exit codes: 0 success; 1 some inputs failed (all others stored);
    2 usage error; 3 the run could not proceed; 130/143 interrupted.
    """


@cli.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, allow_dash=True))
@depth_option
@timeout_option
@max_memory_option
@max_size_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document (an array for several files).")
@click.option("--nl", is_flag=True, help="Print one JSON object per line.")
@click.option("--anonymize", "key_file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Replace names, clan tags, handles, chat senders and the source path with the keyed "
                   "pseudonyms `export --anonymize` writes.")
@click.option("--chat", type=click.Choice(["keep", "redact", "drop"]), default=None,
              show_default="keep; redact with --anonymize", help="What to do with chat text.")
def parse(files: tuple[str, ...], depth: str, timeout: float, max_memory: int, max_size: int, as_json: bool,
          nl: bool, key_file: str | None, chat: str | None) -> None:
    """Parse replays and print them, without touching any database.

    FILE may be - to read replay bytes from stdin. Exit 0 when every file parsed (fully or
    partially), 1 when any failed: its error object is still printed in --json/--nl modes.
    Each file is parsed in a child process under the same bounds as `ingest`: a bomb or a hang
    ends as a `memory` or `timeout` failure within the timeout, never as a stuck command.

    \b
    Example:
        replaycli parse game.SC2Replay
        replaycli parse --json --depth summary a.SC2Replay b.SC2Replay
        curl -s https://example.org/x.SC2Replay | replaycli parse - --nl
    """
    from replay_cli.isolate import parse_bounded
    from replay_cli.render import make_console, print_parse_summary, write_json, write_json_line

    disguise = _result_pseudonymizer(key_file, chat)

    if as_json and nl:
        raise click.UsageError("--json and --nl are mutually exclusive.")
    if files.count(STDIN_MARKER) > 1:
        raise click.UsageError("stdin (-) can be read only once.")
    results: list[dict[str, Any]] = []
    for name in files:
        stdin = sys.stdin.buffer if name == STDIN_MARKER else None
        result = disguise(parse_bounded(name, stdin, depth, timeout=timeout, max_memory=_mebibytes(max_memory),
                                        max_bytes=max_size * 2**20))
        if nl:
            write_json_line(result)
        results.append(dict(result))
    if as_json:
        write_json(results[0] if len(results) == 1 else results)
    elif not nl:
        print_parse_summary(results, make_console(stderr=False))
    failed = any(r["status"] == "failed" for r in results)
    sys.exit(EXIT_SOME_FAILED if failed else EXIT_OK)


@cli.command()
def schema() -> None:
    """Print the JSON Schema of one parse result (what --json and the database hold).

    \b
    Example:
        replaycli schema > result.schema.json
    """
    from replay_cli.schema import shipped_schema_text

    click.echo(shipped_schema_text(), nl=False)


def _result_pseudonymizer(key_file: str | None, chat: str | None) -> Any:
    """The function `parse` passes each result through: pseudonyms with a key, chat per --chat."""
    from replay_cli.pseudonym import KeyFileError, Pseudonymizer, chat_under, load_key, pseudonymise_result

    if key_file is None:
        if chat in (None, "keep"):
            return lambda result: result
        return lambda result: {**result, "chat": chat_under(result["chat"], chat)}
    try:
        pseudonymizer = Pseudonymizer(load_key(key_file))
    except KeyFileError as exc:
        raise click.UsageError(str(exc)) from exc
    return lambda result: pseudonymise_result(result, pseudonymizer, chat or "redact")


def _mebibytes(value: int | None) -> int | None:
    return None if not value else value * 1024 * 1024


@cli.command()
@click.argument("inputs", nargs=-1, type=click.Path(allow_dash=True))
@click.option("--db", "db_path", type=click.Path(dir_okay=False), default="replays.db", envvar="REPLAYCLI_DB",
              show_default=True, help="SQLite database to write (env REPLAYCLI_DB).")
@depth_option
@click.option("-w", "--workers", type=click.IntRange(min=0), default=default_workers,
              envvar=list(WORKERS_ENV), show_default="CPU count - 1",
              help="Worker processes; 0 parses in this process (env REPLAYCLI_WORKERS or WORKER_PROCESSES).")
@timeout_option
@max_memory_option
@max_size_option
@click.option("--force", is_flag=True, help="Re-parse every file, even unchanged ones.")
@click.option("--retry-failed", is_flag=True, help="Re-parse files that failed or were partial before.")
@click.option("--reparse-degraded", is_flag=True,
              help="Re-parse degraded replays stored by other replaycli or sc2reader versions (after an upgrade).")
@click.option("--null", "null_separated", is_flag=True, help="Paths read from stdin (-) are NUL-separated.")
@click.option("--archive", "archive_dir", type=click.Path(file_okay=False), default=None,
              help="Also keep each stored replay as DIR/<2 hex>/<sha256>.SC2Replay (never written twice).")
@click.option("--scheduler", envvar="REPLAYCLI_SCHEDULER", default=None,
              help="Parse on a Dask cluster, e.g. tcp://host:8786 (env REPLAYCLI_SCHEDULER; needs replaycli[cluster]).")
@click.option("--shared-fs", is_flag=True, help="With --scheduler: workers read the paths themselves (shared storage).")
@click.option("--batch-size", type=click.IntRange(min=1), default=None,
              help="With --scheduler: files per Dask task [default: 64].")
@click.option("--pack-password", envvar="REPLAYCLI_PACK_PASSWORD", default=None, metavar="TEXT",
              help="Unlocks password-protected (ZipCrypto) zip members (env REPLAYCLI_PACK_PASSWORD).")
@_filter_options
@click.option("--json", "as_json", is_flag=True, help="Print one JSON summary object to stdout at the end.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar and no summary on stderr.")
@click.option("-v", "--verbose", is_flag=True, help="Log one timing line per file on stderr.")
@click.option("--log-file", type=click.Path(dir_okay=False), help="Append per-file timing lines to this file.")
@click.option("--watch", is_flag=True, help="After ingesting, keep running: ingest each new or changed replay "
              "once it is complete, until Ctrl-C. With --json: one JSON line per committed file.")
@click.option("--settle", type=click.FloatRange(min=0.1), default=None, show_default="2",
              help="With --watch: seconds a file must stand still (and be a whole archive) before it is read.")
@click.option("--rescan", type=click.FloatRange(min=0.5), default=None, show_default="30",
              help="With --watch: seconds between rescans of the folders, which catch what events miss.")
@click.option("--no-events", is_flag=True, help="With --watch: rescans only, no filesystem events "
              "(network or Wine folders that deliver none).")
def ingest(inputs: tuple[str, ...], db_path: str, depth: str, workers: int, timeout: float, max_memory: int,
           max_size: int, force: bool, retry_failed: bool, reparse_degraded: bool, null_separated: bool, archive_dir: str | None,
           scheduler: str | None, shared_fs: bool, batch_size: int | None, as_json: bool, quiet: bool,
           verbose: bool, log_file: str | None, watch: bool, settle: float | None, rescan: float | None,
           no_events: bool, pack_password: str | None, **filter_values: Any) -> None:
    """Parse every replay under INPUTS into the database, in parallel and incrementally.

    INPUTS are files and folders (walked recursively); - reads a list of paths from stdin;
    none means the game's own replay folders (see `replaycli where`).
    Unchanged files already stored are skipped, so re-running is cheap and safe; one bad
    file never stops the batch: it is recorded with its reason (see `replaycli failures`).
    Packs (.zip, .tar, .tar.gz, .tgz, .tar.bz2, .tar.xz) are read in place, like folders. Filters combine
    with AND; a replay they leave out is recorded as `filtered`, with the rule, and never parsed deeper.

    \b
    Example:
        replaycli ingest ~/Replays
        replaycli ingest event-packs/ --game-type 1v1 --ladder-only --min-duration 300
        replaycli ingest --watch
        replaycli ingest --depth summary --workers 4 --db pack.db packs/
        find . -name '*.SC2Replay' -print0 | replaycli ingest --null -

    \b
    Exit codes: 0 every input stored or skipped; 1 some inputs failed (all others
    stored); 2 usage error; 3 the run could not proceed (database, worker pool);
    130/143 interrupted by SIGINT/SIGTERM after committing finished files.
    """
    from replay_cli.ingest import IngestOptions
    from replay_cli.render import make_console

    if inputs.count(STDIN_MARKER) > 1:
        raise click.UsageError("stdin (-) can be read only once.")
    if (shared_fs or batch_size) and not scheduler:
        raise click.UsageError("--shared-fs and --batch-size apply only with --scheduler.")
    console = make_console(stderr=True)
    rediscover = not inputs  # the game's folders: one a new account gets is watched from the next rescan on
    inputs = inputs or _game_folders(console)
    settings = _watch_settings(watch, inputs, settle, rescan, no_events)
    _configure_logging(verbose, log_file)
    options = IngestOptions(depth=depth, workers=workers, timeout=timeout, max_memory=_mebibytes(max_memory),
                            max_bytes=max_size * 2**20, force=force, retry_failed=retry_failed,
                            reparse_degraded=reparse_degraded,
                            archive_dir=archive_dir, filters=_ingest_filters(filter_values),
                            pack_password=pack_password.encode() if pack_password is not None else None)
    run_options = {"inputs": list(inputs), "depth": depth, "workers": workers, "timeout": timeout,
                   "force": force, "retry_failed": retry_failed, "reparse_degraded": reparse_degraded,
                   "max_memory_mib": max_memory, "max_size_mib": max_size,
                   "scheduler": scheduler, "archive": archive_dir,
                   "filters": options.filters.key() if options.filters else None,
                   "pack_password": pack_password is not None}  # whether one was given, never the password
    if settings is not None:
        sys.exit(_run_watch(db_path, inputs, options, settings, run_options, console=console, quiet=quiet,
                            as_json=as_json, rediscover=rediscover,
                            backend=_parse_backend(scheduler, options, batch_size, shared_fs)))
    sys.exit(_ingest_once(db_path, inputs, options, run_options, console=console, quiet=quiet, as_json=as_json,
                          null_separated=null_separated,
                          backend=_parse_backend(scheduler, options, batch_size, shared_fs)))


def _ingest_once(db_path: str, inputs: tuple[str, ...], options: IngestOptions, run_options: dict[str, Any], *,
                 console: Any, quiet: bool, as_json: bool, null_separated: bool, backend: Any) -> int:
    """Run one ingest, print its summary (or its one-line error) and return the exit code."""
    from replay_cli.errors import ReplayCliError
    from replay_cli.render import error_text, print_ingest_summary, write_json

    try:
        tally = _run_ingest(db_path, inputs, options, run_options, console=console, quiet=quiet,
                            null_separated=null_separated, backend=backend)
    except ReplayCliError as exc:
        if as_json:
            write_json({"replaycli_result_version": 1, "command": "ingest", "status": "error",
                        "exit_code": EXIT_FATAL, "db": db_path, "error": str(exc)})
        console.print(error_text(str(exc)), soft_wrap=True)
        return EXIT_FATAL
    summary = tally.as_json()
    if as_json:
        write_json(summary)
    if not quiet:
        print_ingest_summary(summary, tally.failure_groups, console)
    return tally.exit_code


def _run_ingest(db_path: str, inputs: tuple[str, ...], options: IngestOptions, run_options: dict[str, Any], *,
                console: Any, quiet: bool, null_separated: bool, backend: Any) -> Tally:
    """Run one ingest under signal handling and progress; return its tally. Raises ReplayCliError."""
    from replay_cli.discover import count_replay_paths, iter_replay_paths
    from replay_cli.ingest import ingest_paths
    from replay_cli.render import IngestProgress, safe
    from replay_cli.runner import stop_pool_helpers
    from replay_cli.signals import StopSignals
    from replay_cli.store import open_store

    def problem(found: Any) -> None:
        logging.getLogger("replay_cli.discover").warning("%s: %s", safe(found.path), found.message)

    with open_store(db_path) as store, backend as parse_backend, StopSignals() as stop, \
            IngestProgress(console, enabled=not quiet) as progress:
        if STDIN_MARKER not in inputs and progress.enabled:
            progress.discovered(count_replay_paths(inputs))
        paths = iter_replay_paths(inputs, stdin=sys.stdin.buffer, null_separated=null_separated, on_problem=problem)
        try:
            return ingest_paths(store, paths, options, progress=progress, stop_requested=stop,
                                run_options=run_options, backend=parse_backend)
        finally:
            stop_pool_helpers()  # no process this command started may outlive it


def _game_folders(console: Any) -> tuple[str, ...]:
    """The game's replay folders, for an ingest given no INPUTS; say which on stderr, or exit 2 when none."""
    import os
    from pathlib import Path

    from replay_cli.render import safe
    from replay_cli.where import find_replay_folders, search_roots

    found = find_replay_folders(Path.home(), os.environ)
    if not found:
        looked = "\n  ".join(safe(place, 500) for place in search_roots(Path.home(), os.environ).looked_in())
        raise click.UsageError(f"no INPUTS given and no StarCraft II replay folder found. Looked in:\n  {looked}")
    for folder in found:
        console.print(f"ingesting {safe(folder.path, 500)} ({folder.replays} replays)", markup=False,
                      highlight=False, soft_wrap=True)
    return tuple(folder.path for folder in found)


def _watch_settings(watch: bool, inputs: tuple[str, ...], settle: float | None, rescan: float | None,
                    no_events: bool) -> Any:
    """Check the --watch options; return WatchSettings, or None without --watch."""
    import os

    from replay_cli.watch import DEFAULT_RESCAN_S, DEFAULT_SETTLE_S, WatchSettings

    if not watch:
        if settle is not None or rescan is not None or no_events:
            raise click.UsageError("--settle, --rescan and --no-events apply only with --watch.")
        return None
    for item in inputs:
        if item == STDIN_MARKER or not os.path.isdir(item):
            raise click.UsageError(f"--watch watches folders: {item!r} is not one.")
    return WatchSettings(settle_s=DEFAULT_SETTLE_S if settle is None else settle,
                         rescan_s=DEFAULT_RESCAN_S if rescan is None else rescan, events=not no_events)


def _run_watch(db_path: str, inputs: tuple[str, ...], options: IngestOptions, settings: Any,
               run_options: dict[str, Any], *, console: Any, quiet: bool, as_json: bool, rediscover: bool,
               backend: Any) -> int:
    """Ingest, then watch the folders until SIGINT/SIGTERM; return the exit code (130/143, or 3 on an error)."""
    import os

    from replay_cli.errors import ReplayCliError
    from replay_cli.exitcodes import exit_code_for_signal
    from replay_cli.render import WatchDisplay, error_text, write_json_line
    from replay_cli.runner import stop_pool_helpers
    from replay_cli.signals import StopSignals
    from replay_cli.store import open_store
    from replay_cli.watch import watch_folders

    folders = tuple(os.path.abspath(item) for item in inputs)

    def find_folders() -> tuple[str, ...]:
        if not rediscover:
            return folders
        from pathlib import Path

        from replay_cli.where import find_replay_folders

        # The folders found at the start stay watched, even if one is gone for a while.
        found = find_replay_folders(Path.home(), os.environ, count=False)
        return tuple(dict.fromkeys(folders + tuple(f.path for f in found)))

    def committed(stored: Any) -> None:
        if as_json:
            write_json_line(stored.as_json())
        display.committed(stored.as_json())

    try:
        with open_store(db_path) as store, backend as parse_backend, StopSignals() as stop, \
                WatchDisplay(console, folders=len(folders), quiet=quiet) as display:
            report = watch_folders(store, find_folders, options, settings, progress=display, on_commit=committed,
                                   on_run=display.run_done, stop_requested=stop, run_options=run_options,
                                   backend=parse_backend)
    except ReplayCliError as exc:
        console.print(error_text(str(exc)), soft_wrap=True)
        return EXIT_FATAL
    finally:
        stop_pool_helpers()
    if not quiet:
        counts = report.counts
        console.print(f"Watch stopped: {counts['parsed']} parsed, {counts['ok']} ok, {counts['failed']} failed "
                      f"in {report.runs} runs; everything finished is committed.", markup=False, highlight=False,
                      soft_wrap=True)
    return exit_code_for_signal(report.stopped_by) if report.stopped_by is not None else EXIT_OK


def _parse_backend(scheduler: str | None, options: Any, batch_size: int | None, shared_fs: bool) -> Any:
    """The local pool (None) or, with --scheduler, a Dask session; Dask is imported only then."""
    if not scheduler:
        return contextlib.nullcontext(None)
    from replay_cli.cluster import DEFAULT_BATCH_SIZE, cluster_session

    return cluster_session(scheduler, depth=options.depth, timeout=options.timeout, max_bytes=options.max_bytes,
                           batch_size=batch_size or DEFAULT_BATCH_SIZE, shared_fs=shared_fs, filters=options.filters)


def _configure_logging(verbose: bool, log_file: str | None) -> None:
    """Per-file timing lines: on stderr with -v, into a file with --log-file; warnings always."""
    from replay_cli.render import make_log_handler

    root = logging.getLogger("replay_cli")
    # INFO only when a handler takes it: a batch logs a line per file, and a record no handler
    # wants still costs the main process its creation and formatting arguments.
    root.setLevel(logging.INFO if verbose or log_file else logging.WARNING)
    for old in [h for h in root.handlers if getattr(h, LOG_HANDLER_MARK, False)]:  # from an earlier call
        root.removeHandler(old)
        old.close()
    handlers = [make_log_handler(level=logging.INFO if verbose else logging.WARNING)]
    if log_file:
        to_file = logging.FileHandler(log_file, encoding="utf-8")
        to_file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
        to_file.setLevel(logging.INFO)
        handlers.append(to_file)
    for handler in handlers:
        setattr(handler, LOG_HANDLER_MARK, True)
        root.addHandler(handler)


@cli.command()
@click.option("--db", "db_path", type=click.Path(dir_okay=False, exists=True), default="replays.db",
              envvar="REPLAYCLI_DB", show_default=True, help="SQLite database to read.")
@click.option("--json", "as_json", is_flag=True, help="Print the failures as a JSON array.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Show at most this many.")
@click.option("--degraded", is_flag=True,
              help="List the stored replays flagged degraded instead, grouped by reason and release.")
def failures(db_path: str, as_json: bool, limit: int | None, degraded: bool) -> None:
    """List the files that could not be parsed, with their reasons.

    With --degraded: the replays that were stored but are not to be trusted as they stand (a
    newer patch than the parser's data, unknown units, missing members), by reason and release.

    \b
    Example:
        replaycli failures
        replaycli failures --json | jq -r '.[].path'
        replaycli failures --degraded --json | jq '.groups'
    """
    from replay_cli.render import make_console, print_degraded, print_failures, write_json
    from replay_cli.store import open_store

    with _opened(open_store, db_path) as store:
        report: Any = store.degraded(limit) if degraded else store.failures(limit)
    if as_json:
        write_json(report)
    elif degraded:
        print_degraded(report, make_console(stderr=False))
    else:
        print_failures(report, make_console(stderr=False))


@cli.command()
@click.option("--db", "db_path", type=click.Path(dir_okay=False, exists=True), default="replays.db",
              envvar="REPLAYCLI_DB", show_default=True, help="SQLite database to read.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object.")
def stats(db_path: str, as_json: bool) -> None:
    """Summarise the database: replays by build, type and map; players; ingest runs.

    \b
    Example:
        replaycli stats --db replays.db
    """
    from replay_cli.render import make_console, print_stats, write_json
    from replay_cli.store import open_store

    with _opened(open_store, db_path) as store:
        summary = store.summary()
    if as_json:
        write_json(summary)
    else:
        print_stats(summary, make_console(stderr=False))


def _opened(open_store: Any, db_path: str) -> Any:
    """Open the store for a read command; a broken database is a one-line error (exit 3)."""
    from replay_cli.errors import ReplayCliError

    try:
        return open_store(db_path)
    except ReplayCliError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(EXIT_FATAL)
@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the folders as a JSON array.")
def where(as_json: bool) -> None:
    """List the StarCraft II replay folders on this machine, with account, toon and replay count.

    Looks where the game saves replays on Windows (Documents, OneDrive too), macOS, and Linux
    under Wine (~/.wine, WINEPREFIX) or Lutris (~/Games/*), plus the folders in
    REPLAYCLI_REPLAY_DIRS (separated like PATH). `replaycli ingest` with no INPUTS reads these.

    \b
    Example:
        replaycli where
        replaycli where --json | jq -r '.[].path'
    """
    import os
    from pathlib import Path

    from replay_cli.render import safe, write_json
    from replay_cli.where import find_replay_folders, search_roots

    found = find_replay_folders(Path.home(), os.environ)
    if as_json:
        write_json([folder.as_json() for folder in found])
    for folder in [] if as_json else found:
        owner = f"{folder.account}/{folder.toon}" if folder.toon else "-"
        click.echo(f"{safe(folder.path, 1000)}\t{safe(owner)}\t{folder.replays} replay{'' if folder.replays == 1 else 's'}")
    if not found:
        looked = "\n  ".join(safe(place, 500) for place in search_roots(Path.home(), os.environ).looked_in())
        click.echo(f"No StarCraft II replay folder found. Looked in:\n  {looked}", err=True)




@cli.command()
@click.option("--out", "out_path", type=click.Path(dir_okay=False), default=None,
              help="HTML file to write: one self-contained page (needs replaycli[report]).")
@click.option("--db", "db_path", type=click.Path(dir_okay=False, exists=True), default="replays.db",
              envvar="REPLAYCLI_DB", show_default=True, help="SQLite database to read.")
@click.option("--player", "players", multiple=True, metavar="NAME_OR_TOON",
              help="Add a section about this player (a name or a toon handle such as 2-S2-1-123456); "
              "repeat it to merge several accounts into one person.")
@click.option("--since", default=None, metavar="WHEN",
              help="Only games played from WHEN: YYYY-MM-DD, an ISO-8601 time (UTC unless it says), or Nd "
              "(N days before --now).")
@click.option("--until", default=None, metavar="WHEN", help="Only games played until WHEN (a date includes its day).")
@click.option("--now", "now_text", default=None, metavar="TIME",
              help="The report's time (ISO-8601) instead of the clock: a fixed --now gives byte-identical reports.")
@click.option("--json", "as_json", is_flag=True, help="Print the report's numbers as one JSON object on stdout.")
def report(out_path: str | None, db_path: str, players: tuple[str, ...], since: str | None, until: str | None,
           now_text: str | None, as_json: bool) -> None:
    """Write one HTML page of charts about a player and the whole database.

    The page needs no network (no script, font or stylesheet is fetched), so it opens from
    a mail attachment and prints. It shows the whole database (games per month and release,
    matchups, game lengths, maps, failures, degraded replays) and, with --player, one
    person: MMR over time, win rates by matchup, map and length, APM, workers, openings,
    recent games. Copies of one game count once. --json prints the same numbers.

    \b
    Example:
        replaycli report --out report.html
        replaycli report --out me.html --player Alpha42 --player 2-S2-1-315071 --since 90d
        replaycli report --json --since 2025-01-01 | jq .database.totals

    \b
    Exit codes: 0 written; 2 usage error (unknown player, unreadable date, neither
    --out nor --json); 3 could not proceed (database unreadable, pygal missing,
    file unwritable).
    """
    from datetime import UTC, datetime
    from pathlib import Path

    from replay_cli.errors import ReplayCliError
    from replay_cli.render import write_json
    from replay_cli.report_data import ReportOptions, ReportUsageError, build_report
    from replay_cli.store import open_store

    if out_path is None and not as_json:
        raise click.UsageError("say where the report goes: --out FILE, --json, or both.")
    try:
        now = datetime.fromisoformat(now_text) if now_text else datetime.now(UTC).replace(microsecond=0)
    except ValueError as exc:
        raise click.UsageError(f"--now: cannot read {now_text!r} as an ISO-8601 time.") from exc
    now = now.replace(tzinfo=UTC) if now.tzinfo is None else now
    options = ReportOptions(now=now, players=players, since=since, until=until, db_name=Path(db_path).name)
    try:
        if out_path is not None:
            from replay_cli.report_charts import require_charts
            from replay_cli.report_html import render_report, write_page

            require_charts()  # before any work: a missing extra is a one-line error, not a traceback later
        with _opened(open_store, db_path) as store:
            data = build_report(store.db.conn, options)
        if out_path is not None:
            write_page(out_path, render_report(data))
            click.echo(f"wrote {out_path} ({data['database']['totals']['games']:,} games)", err=True)
    except ReportUsageError as exc:
        raise click.UsageError(str(exc)) from exc
    except ReplayCliError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(EXIT_FATAL)
    if as_json:
        write_json(data)


@cli.command()
@click.argument("outdir", type=click.Path(file_okay=False))
@click.option("--count", type=click.IntRange(min=1), default=100, show_default=True, help="How many replays.")
@click.option("--seed", type=int, default=0, show_default=True, help="Same seed, same bytes.")
@click.option("--workers", type=click.IntRange(min=1), default=None, help="Processes (default: CPU count).")
@click.option("--samples", "as_samples", is_flag=True, help="Write exactly the committed samples/ set instead.")
def synth(outdir: str, count: int, seed: int, workers: int | None, as_samples: bool) -> None:
    """Write valid synthetic replays: deterministic load-test data for your own pipelines.

    Games are 1v1, 2v2, 4v4 and vs AI, with chat, unicode and hostile names, long and
    very short games; each file is distinct. The paths written go to stdout.

    \b
    Example:
        replaycli synth /tmp/load --count 20000 --seed 7
        replaycli synth samples --samples
    """
    from pathlib import Path

    from replay_cli.synth import write_corpus, write_samples

    written = write_samples(Path(outdir)) if as_samples else write_corpus(Path(outdir), count, seed, workers=workers)
    for path in written:
        click.echo(str(path))


@cli.command()
@click.option("--format", "fmt", type=click.Choice(["parquet", "csv", "jsonl"]), required=True,
              help="parquet (typed columns; needs replaycli[parquet]), csv or jsonl.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), required=True,
              help="Folder to write: one sub-folder per table, and manifest.json.")
@click.option("--db", "db_path", type=click.Path(dir_okay=False, exists=True), default="replays.db",
              envvar="REPLAYCLI_DB", show_default=True, help="SQLite database to read.")
@click.option("--tables", default=None, metavar="NAME,...",
              help="Tables and views to export [default: replays, players, chat, build_order, "
              "player_stats, files, v_1v1, v_player_games, matches].")
@click.option("--where", default=None, metavar="SQL",
              help="Export only replays matching this SQL condition on the replays table, and their rows.")
@click.option("--partition-by", type=click.Choice(["release", "month"]), default=None,
              help="Write Hive-style folders (release=5.0.11.89720/, month=2023-03/) per replay release or month.")
@click.option("--anonymize", "key_file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Replace names, clan tags, toon handles, match keys and paths with keyed pseudonyms "
              "(HMAC under the key in this file).")
@click.option("--chat", type=click.Choice(["keep", "redact", "drop"]), default=None,
              show_default="keep; redact with --anonymize", help="What to do with chat text.")
@click.option("--overwrite", is_flag=True, help="Replace the tables' folders in a non-empty --out.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON summary object to stdout at the end.")
@click.option("-q", "--quiet", is_flag=True, help="No progress and no summary on stderr.")
def export(fmt: str, out_dir: str, db_path: str, tables: str | None, where: str | None, partition_by: str | None,
           key_file: str | None, chat: str | None, overwrite: bool, as_json: bool, quiet: bool) -> None:
    """Export tables and views to Parquet, CSV or JSON Lines files for analysis or publication.

    Rows are written in key order, a batch at a time, so memory stays flat and two exports of
    the same database are byte-identical. With --anonymize KEYFILE players get keyed pseudonyms
    (the same under the same key, on any machine) and file paths become <sha256>.SC2Replay;
    make a key with: head -c 32 /dev/urandom > replaycli.key

    \b
    Example:
        replaycli export --format parquet --out dataset/
        replaycli export --format csv --out 2023/ --where "played_at >= '2023'" --tables replays,players
        replaycli export --format parquet --out public/ --anonymize replaycli.key --partition-by month

    \b
    Exit codes: 0 exported; 2 usage error (bad option, --where or table, non-empty --out);
    3 the export could not proceed (database unreadable, pyarrow missing, folder unwritable).
    """
    from pathlib import Path

    from replay_cli.errors import ReplayCliError
    from replay_cli.export import ExportOptions, ExportUsageError, export_database
    from replay_cli.pseudonym import KeyFileError, load_key
    from replay_cli.render import write_json
    from replay_cli.store import open_store

    try:
        key = load_key(key_file) if key_file else None
    except KeyFileError as exc:
        raise click.UsageError(str(exc)) from exc
    names = tuple(name.strip() for name in tables.split(",") if name.strip()) if tables is not None else None
    options = ExportOptions(Path(out_dir), fmt, names, where, partition_by, key, chat, overwrite)
    progress = _ExportProgress() if not quiet and sys.stderr.isatty() else None
    try:
        with _opened(open_store, db_path) as store:
            summary = export_database(store, options, progress)
    except ExportUsageError as exc:
        raise click.UsageError(str(exc)) from exc
    except ReplayCliError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(EXIT_FATAL)
    finally:
        if progress is not None:
            progress.clear()
    if as_json:
        write_json(summary.as_json())
    if not quiet:
        done, plural = summary.as_json(), "" if len(summary.tables) == 1 else "s"
        click.echo(f"exported {done['rows']:,} rows of {len(summary.tables)} table{plural} to {out_dir} ({fmt})",
                   err=True)


class _ExportProgress:
    """One self-overwriting status line on a terminal's stderr: table and rows written."""

    def __call__(self, table: str, rows: int, total: int) -> None:
        click.echo(f"\rexporting {table}: {rows:,} / {total:,} rows\x1b[K", err=True, nl=False)

    def clear(self) -> None:
        click.echo("\r\x1b[K", err=True, nl=False)
