"""`replaycli where` and `replaycli ingest` without INPUTS, on real folder trees in a fake home."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
from pathlib import Path

import pytest

from replay_cli.where import REPLAY_DIRS_ENV, ReplayFolder, find_replay_folders, search_roots

ACCOUNTS = Path("StarCraft II", "Accounts")


def _plant(folder: Path, samples: Path, count: int) -> Path:
    """Make a replay folder holding `count` sample games (and a file that is not a replay)."""
    folder.mkdir(parents=True)
    for game in sorted(samples.glob("*.SC2Replay"))[:count]:
        shutil.copyfile(game, folder / game.name)
    (folder / "notes.txt").write_text("not a replay")
    return folder


def _expected(path: Path, layout: str, account: str | None, toon: str | None, count: int) -> ReplayFolder:
    return ReplayFolder(str(path), layout, account, toon, path.name if toon else None, count)


@pytest.fixture
def fake_home(tmp_path: Path, samples: Path) -> tuple[Path, dict[str, str], list[ReplayFolder]]:
    """A home folder with every layout the game uses planted, decoys beside them, and the environment."""
    home = tmp_path / "home"
    planted: list[ReplayFolder] = []

    def toon(documents: Path, layout: str, account: str, handle: str, kinds: dict[str, int]) -> None:
        for kind, count in kinds.items():
            folder = _plant(documents / ACCOUNTS / account / handle / "Replays" / kind, samples, count)
            planted.append(_expected(folder, layout, account, handle, count))

    toon(home / "Documents", "windows", "11111111", "2-S2-1-1000001", {"Multiplayer": 2, "VersusAI": 1})
    toon(home / "Documents", "windows", "11111111", "1-S2-1-1000002", {"Multiplayer": 0})
    toon(home / "OneDrive" / "Dokumente", "onedrive", "22222222", "2-S2-1-2000001", {"Multiplayer": 3})
    toon(home / "Business Drive" / "Documents", "onedrive", "23232323", "1-S2-1-2300001", {"Multiplayer": 1})
    toon(home / "Library" / "Application Support" / "Blizzard", "macos", "33333333", "1-S2-1-3000001",
         {"Multiplayer": 2})
    toon(home / ".wine" / "drive_c" / "users" / "player" / "Documents", "wine", "44444444", "3-S2-1-4000001",
         {"Multiplayer": 1})
    toon(home / "Games" / "starcraft-ii" / "drive_c" / "users" / "steamuser" / "Documents", "lutris", "55555555",
         "2-S2-2-5000001", {"Multiplayer": 2, "Custom": 1})
    extra = _plant(tmp_path / "tournament packs", samples, 4)
    planted.append(_expected(extra, "env", None, None, 4))
    # Decoys: an account folder's other contents, a toon without replays, a "Replays" that is a file.
    (home / "Documents" / ACCOUNTS / "11111111" / "Hotkeys").mkdir()
    (home / "Documents" / ACCOUNTS / "11111111" / "2-S2-1-1000009").mkdir()
    (home / "Documents" / ACCOUNTS / "11111111" / "Variables.txt").write_text("x")
    (home / "Documents" / ACCOUNTS / "66666666" / "1-S2-1-6000001").mkdir(parents=True)
    (home / "Documents" / ACCOUNTS / "66666666" / "1-S2-1-6000001" / "Replays").write_text("a file")
    (home / "Documents" / "StarCraft II" / "Replays").mkdir()  # not under Accounts: not the game's
    environ = {
        "OneDriveCommercial": str(home / "Business Drive"),
        # The same Wine prefix again through WINEPREFIX: listed once.
        "WINEPREFIX": str(home / ".wine"),
        REPLAY_DIRS_ENV: os.pathsep.join([str(extra), str(tmp_path / "missing"), ""]),
    }
    return home, environ, planted


def test_where_lists_exactly_the_planted_folders(fake_home):
    home, environ, planted = fake_home
    found = find_replay_folders(home, environ)
    assert sorted(found, key=lambda f: f.path) == sorted(planted, key=lambda f: f.path)
    assert len({folder.path for folder in found}) == len(found)


def test_where_finds_nothing_in_an_empty_home_and_says_where_it_looked(tmp_path: Path):
    assert find_replay_folders(tmp_path, {}) == []
    looked = search_roots(tmp_path, {}).looked_in()
    assert str(tmp_path / "Documents" / ACCOUNTS) in looked
    assert str(tmp_path / "Library" / "Application Support" / "Blizzard" / ACCOUNTS) in looked
    assert any("drive_c" in place and "Games" in place for place in looked)
    assert f"{REPLAY_DIRS_ENV} (unset)" in looked


def test_where_follows_a_symlinked_documents_folder_once(tmp_path: Path, samples: Path):
    real = tmp_path / "data" / "Documents"
    _plant(real / ACCOUNTS / "1" / "1-S2-1-1" / "Replays" / "Multiplayer", samples, 1)
    home = tmp_path / "home"
    home.mkdir()
    (home / "Documents").symlink_to(real)
    found = find_replay_folders(home, {REPLAY_DIRS_ENV: str(real / ACCOUNTS / "1" / "1-S2-1-1" / "Replays" / "Multiplayer")})
    assert [(f.layout, f.toon, f.replays) for f in found] == [("windows", "1-S2-1-1", 1)]


def test_where_command_json_and_lines(replaycli, fake_home):
    home, environ, planted = fake_home
    env = {"HOME": str(home), **environ}
    proc = replaycli.run("where", "--json", env=env, text=True)
    assert proc.returncode == 0, proc.stderr
    assert sorted(json.loads(proc.stdout), key=lambda f: f["path"]) == sorted(
        (folder.as_json() for folder in planted), key=lambda f: f["path"])
    proc = replaycli.run("where", env=env, text=True)
    lines = proc.stdout.splitlines()
    assert len(lines) == len(planted)
    assert f"{planted[0].path}\t11111111/2-S2-1-1000001\t2 replays" in lines


def test_where_command_with_nothing_found(replaycli, tmp_path: Path):
    proc = replaycli.run("where", "--json", env={"HOME": str(tmp_path)}, text=True)
    assert proc.returncode == 0
    assert json.loads(proc.stdout) == []
    assert "No StarCraft II replay folder found. Looked in:" in proc.stderr
    assert str(tmp_path / "Documents" / ACCOUNTS) in proc.stderr


def test_ingest_without_inputs_reads_the_game_folders(replaycli, fake_home, tmp_path: Path):
    home, environ, planted = fake_home
    db = tmp_path / "replays.db"
    proc = replaycli.run("ingest", "--db", str(db), "--workers", "0", "--depth", "summary", "-q",
                         env={"HOME": str(home), **environ}, text=True)
    assert proc.returncode == 0, proc.stderr
    for folder in planted:
        assert f"ingesting {folder.path} ({folder.replays} replays)" in proc.stderr
    with sqlite3.connect(db) as conn:
        stored = conn.execute("SELECT count(*) FROM files").fetchone()[0]
    assert stored == sum(folder.replays for folder in planted)


def test_ingest_without_inputs_and_no_game_folder_is_a_usage_error(replaycli, tmp_path: Path):
    proc = replaycli.run("ingest", "--db", str(tmp_path / "x.db"), env={"HOME": str(tmp_path)}, text=True)
    assert proc.returncode == 2
    assert "Error: no INPUTS given and no StarCraft II replay folder found. Looked in:" in proc.stderr
    assert str(tmp_path / "Documents" / ACCOUNTS) in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "x.db").exists()


def test_ingest_dash_still_reads_stdin(replaycli, samples: Path, tmp_path: Path):
    db = tmp_path / "replays.db"
    games = sorted(samples.glob("*.SC2Replay"))[:2]
    proc = replaycli.run("ingest", "-", "--db", str(db), "--workers", "0", "--depth", "summary", "-q",
                         input="".join(f"{game}\n" for game in games), env={"HOME": str(tmp_path)}, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "ingesting" not in proc.stderr
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM files").fetchone()[0] == 2
