"""`replaycli parse` is bounded like `ingest`: a bomb or a slow file ends as a classified failure.

Real CLI subprocesses on replays the synth writer makes: a game whose replay.game.events member
decompresses to hundreds of MiB of zeros, and a game large enough to outlast a tiny timeout.
"""

from __future__ import annotations

import json
from pathlib import Path

from replay_cli.synth import describe_game, write_replay
from replay_cli.synth.game import with_units
from tests.hostile import bomb_replay

SEED = 41
CAP_MIB = 256


def _game_events_bomb() -> bytes:
    """A replay whose replay.game.events decompresses to 1 GiB of zeros."""
    return bomb_replay("replay.game.events")


def _big_game() -> bytes:
    """A 35-minute game with 15,000 units: seconds of work at full depth, far past a 0.3 s timeout."""
    return write_replay(with_units(describe_game(SEED, 7), 15_000))


def _parse(replaycli, path: Path, *options: str):
    proc = replaycli.run("parse", str(path), "--json", *options, text=True)
    return proc, None


def test_a_bomb_in_game_events_is_a_memory_failure(tmp_path: Path, replaycli) -> None:
    bomb = tmp_path / "bomb.SC2Replay"
    bomb.write_bytes(_game_events_bomb())
    assert bomb.stat().st_size < 2 * 1024**2
    proc, _seconds = _parse(replaycli, bomb, "--depth", "full", "--max-memory", str(CAP_MIB), "--timeout", "60")
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 1
    result = json.loads(proc.stdout)
    assert result["status"] == "failed" and result["error"]["kind"] == "memory", result["error"]


def test_a_parse_past_its_timeout_is_killed_and_classified(tmp_path: Path, replaycli) -> None:
    big = tmp_path / "big.SC2Replay"
    big.write_bytes(_big_game())
    timeout = 0.3
    proc, _seconds = _parse(replaycli, big, "--depth", "full", "--timeout", str(timeout))
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 1
    result = json.loads(proc.stdout)
    assert (result["status"], result["error"]["kind"]) == ("failed", "timeout"), result["error"]
    assert result["source"] == str(big)


def test_over_the_size_cap_is_never_read(tmp_path: Path, replaycli, samples: Path) -> None:
    path = tmp_path / "big.SC2Replay"
    path.write_bytes((samples / "00-1v1.SC2Replay").read_bytes() + bytes(2 * 1024**2))
    proc, _seconds = _parse(replaycli, path, "--max-size", "1")
    assert proc.returncode == 1
    assert json.loads(proc.stdout)["error"]["kind"] == "too_large"
    stdin = replaycli.run("parse", "-", "--json", "--max-size", "1", input=path.read_bytes(), text=False)
    assert stdin.returncode == 1
    assert json.loads(stdin.stdout)["error"]["kind"] == "too_large"


def test_bounds_come_from_the_environment_too(tmp_path: Path, replaycli) -> None:
    big = tmp_path / "big.SC2Replay"
    big.write_bytes(_big_game())
    proc = replaycli.run("parse", str(big), "--json", "--depth", "full", env={"REPLAYCLI_TIMEOUT": "0.3"}, text=True)
    assert proc.returncode == 1
    assert json.loads(proc.stdout)["error"]["kind"] == "timeout"


def test_a_healthy_file_parses_the_same_as_in_process(replaycli, samples: Path) -> None:
    from replay_cli.parse import parse_file

    path = samples / "00-1v1.SC2Replay"
    proc, _seconds = _parse(replaycli, path)
    assert proc.returncode == 0, proc.stderr
    printed = json.loads(proc.stdout)
    here = parse_file(str(path), "stats")
    volatile = ("parse_seconds", "cpu_seconds", "peak_rss_bytes")
    assert {k: v for k, v in printed.items() if k not in volatile} == {
        k: v for k, v in json.loads(json.dumps(here)).items() if k not in volatile}
