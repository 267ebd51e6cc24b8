"""The command line: a thin click layer over the library. The only module that imports click.

Exit codes are part of the contract (README "Exit codes"):
0 success; 1 some inputs failed (everything else stored); 2 usage error; 3 the run itself could
not proceed; 130 / 143 interrupted by SIGINT / SIGTERM after committing finished work.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from replay_cli import __version__
from replay_cli.result import DEFAULT_DEPTH, DEPTHS

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"]}
STDIN_MARKER = "-"
EXIT_OK = 0
EXIT_SOME_FAILED = 1
EXIT_USAGE = 2
EXIT_FATAL = 3

depth_option = click.option(
    "--depth",
    type=click.Choice(DEPTHS),
    default=DEFAULT_DEPTH,
    show_default=True,
    help="summary: players, chat (fast). stats: + build orders, stats timeline, benchmarks. "
    "full: + computed APM (slowest).",
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
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document (an array for several files).")
@click.option("--nl", is_flag=True, help="Print one JSON object per line.")
def parse(files: tuple[str, ...], depth: str, as_json: bool, nl: bool) -> None:
    """Parse replays and print them, without touching any database.

    FILE may be - to read replay bytes from stdin. Exit 0 when every file parsed (fully or
    partially), 1 when any failed: its error object is still printed in --json/--nl modes.

    \b
    Example:
        replaycli parse game.SC2Replay
        replaycli parse --json --depth summary a.SC2Replay b.SC2Replay
        curl -s https://example.org/x.SC2Replay | replaycli parse - --nl
    """
    from replay_cli.parse import parse_file, parse_replay
    from replay_cli.render import make_console, print_parse_summary, write_json, write_json_line

    if as_json and nl:
        raise click.UsageError("--json and --nl are mutually exclusive.")
    if files.count(STDIN_MARKER) > 1:
        raise click.UsageError("stdin (-) can be read only once.")
    results: list[dict[str, Any]] = []
    for name in files:
        if name == STDIN_MARKER:
            result = parse_replay(sys.stdin.buffer.read(), depth, source=STDIN_MARKER)
        else:
            result = parse_file(name, depth)
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
