"""Every command has help; import boundaries hold; the README's commands are the ones CI runs."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from replay_cli.cli import cli

PACKAGE = Path(__file__).resolve().parent.parent / "replay_cli"
README = PACKAGE.parent / "README.md"
CI_SCRIPT = PACKAGE.parent / ".ci" / "run"
# Which of our modules may import each third-party package (STYLE.md §1).
IMPORT_OWNERS = {
    "click": {"cli.py"},
    "rich": {"render.py"},
    "sc2reader": {"parse.py"},
    "sqlite_utils": {"store.py", "migrations.py"},
    "pebble": {"runner.py"},
    "dask": {"cluster.py"},
    "distributed": {"cluster.py"},
}


def _imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("package", sorted(IMPORT_OWNERS))
def test_import_boundaries(package: str):
    importers = {p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*.py") if package in _imported_roots(p)}
    assert importers <= IMPORT_OWNERS[package], f"{package} imported outside its module: {importers}"


@pytest.mark.parametrize("command", sorted(cli.commands))
def test_every_command_has_help_with_an_example(command: str):
    result = CliRunner().invoke(cli, [command, "--help"], catch_exceptions=False)
    assert result.exit_code == 0
    assert "Example:" in result.output
    assert f"`replaycli {command}" in README.read_text(encoding="utf-8") or command in ("schema",)


def test_readme_test_command_is_what_ci_runs():
    readme = README.read_text(encoding="utf-8")
    quick_start = re.search(r"## Quick start.*?```console\n(.*?)```", readme, re.S)
    assert quick_start is not None
    commands = [line.removeprefix("$ ").strip() for line in quick_start.group(1).splitlines() if line.startswith("$ ")]
    assert len(commands) == 2
    assert "replaycli ingest samples/" in commands[0]
    test_command = commands[1].removeprefix("python3 ").removeprefix("python ")
    ci_lines = [line.strip() for line in CI_SCRIPT.read_text(encoding="utf-8").splitlines()]
    assert any(line.endswith(test_command) for line in ci_lines if not line.startswith("#"))


def test_exit_codes_are_documented():
    section = README.read_text(encoding="utf-8").split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    help_text = CliRunner().invoke(cli, ["ingest", "--help"]).output
    for code in ("0", "1", "2", "3", "130", "143"):
        assert re.search(rf"\b{code}\b", section), code
        assert re.search(rf"\b{code}\b", help_text), code
