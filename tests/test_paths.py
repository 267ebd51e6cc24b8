"""The path rules of replay_cli.paths, Windows' included, run on any machine through the path flavour."""

from __future__ import annotations

import zipfile
from pathlib import Path, PurePosixPath, PureWindowsPath

import pytest

from replay_cli.discover import iter_replay_paths
from replay_cli.packs import PackWalk
from replay_cli.paths import input_path, member_name, on_disk_spelling, open_path, path_key, stored_path

WIN = PureWindowsPath
POSIX = PurePosixPath
# A Windows tree as its folders list it: the listing function a test gives the rules.
WIN_TREE = {
    "C:\\": ["Users", "pagefile.sys"],
    "C:\\Users": ["Åsa", "Public"],
    "C:\\Users\\Åsa": ["Documents"],
    "C:\\Users\\Åsa\\Documents": ["StarCraft II", "starcraft ii backup", "StarCraft II Old"],
    "C:\\Users\\Åsa\\Documents\\StarCraft II": ["Replays"],
    "C:\\Users\\Åsa\\Documents\\StarCraft II\\Replays": ["Game.SC2Replay"],
}


def _win_listdir(path: str) -> list[str]:
    for folder, names in WIN_TREE.items():
        if path_key(folder, WIN) == path_key(path, WIN):
            return names
    raise FileNotFoundError(path)


@pytest.mark.parametrize(("given", "stored"), [
    ("c:\\Replays\\a.SC2Replay", "C:\\Replays\\a.SC2Replay"),
    ("C:/Replays/a.SC2Replay", "C:\\Replays\\a.SC2Replay"),
    ("\\\\?\\C:\\Replays\\a.SC2Replay", "C:\\Replays\\a.SC2Replay"),
    ("\\\\?\\UNC\\nas\\games\\a.SC2Replay", "\\\\nas\\games\\a.SC2Replay"),
    ("\\\\nas\\games\\a.SC2Replay", "\\\\nas\\games\\a.SC2Replay"),
])
def test_windows_paths_are_stored_as_windows_spells_them(given: str, stored: str) -> None:
    assert stored_path(given, WIN) == stored
    assert stored_path(stored, WIN) == stored  # a stored path reads back the same


@pytest.mark.parametrize("path", ["/home/a/Replays/x.SC2Replay", "/tmp/C:\\odd\\name.SC2Replay", "/a//b"])
def test_posix_paths_are_stored_untouched(path: str) -> None:
    assert stored_path(path, POSIX) == path
    assert open_path(path, POSIX) == path
    assert path_key(path, POSIX) == path


def test_windows_keys_ignore_case_and_separators_posix_keys_do_not() -> None:
    assert path_key("c:/REPLAYS/Å.sc2replay", WIN) == path_key("C:\\Replays\\å.SC2Replay", WIN)
    assert path_key("/r/A.SC2Replay", POSIX) != path_key("/r/a.SC2Replay", POSIX)


def test_long_windows_paths_open_through_their_long_form() -> None:
    deep = "C:\\" + "\\".join(["folder" + str(i).zfill(3) for i in range(40)]) + "\\game.SC2Replay"
    assert len(deep) > 260
    assert open_path(deep, WIN) == "\\\\?\\" + deep
    assert open_path(deep.replace("\\", "/"), WIN) == "\\\\?\\" + deep  # the long form takes no `/`
    unc = "\\\\nas\\share\\" + "x" * 300
    assert open_path(unc, WIN) == "\\\\?\\UNC\\nas\\share\\" + "x" * 300
    assert open_path("C:\\short.SC2Replay", WIN) == "C:\\short.SC2Replay"
    assert stored_path(open_path(deep, WIN), WIN) == deep


def test_a_named_input_takes_the_spelling_its_folders_list() -> None:
    typed = "c:\\users\\ÅSA\\documents\\starcraft ii\\replays\\game.sc2replay"
    assert on_disk_spelling(typed, _win_listdir, WIN) == "C:\\Users\\Åsa\\Documents\\StarCraft II\\Replays\\Game.SC2Replay"
    # "starcraft ii backup" matches nothing else and stays; an exact listing wins over a case-insensitive one
    assert on_disk_spelling("C:\\Users\\Åsa\\Documents\\starcraft ii backup", _win_listdir, WIN).endswith(
        "\\starcraft ii backup")
    # below a folder that cannot be listed, the given spelling is kept
    assert on_disk_spelling("c:\\users\\nobody\\x", _win_listdir, WIN) == "C:\\Users\\nobody\\x"


def test_macos_decomposed_names_match_composed_input() -> None:
    tree = {"/": ["Users"], "/Users": ["a\u030asa"], "/Users/a\u030asa": ["R"]}
    assert on_disk_spelling("/Users/\u00e5sa/r", lambda p: tree[p], POSIX) == "/Users/a\u030asa/R"


def test_input_paths_are_respelled_only_where_names_ignore_case() -> None:
    typed = "c:\\users\\åsa\\documents"
    assert input_path(typed, _win_listdir, WIN, case_insensitive=True) == "C:\\Users\\Åsa\\Documents"
    assert input_path(typed, _win_listdir, WIN, case_insensitive=False) == "C:\\users\\åsa\\documents"


def test_member_names_use_slashes_whatever_the_archive_wrote() -> None:
    assert member_name("C:\\Packs\\p.zip", "season 1\\game.SC2Replay") == "C:\\Packs\\p.zip!/season 1/game.SC2Replay"
    assert member_name("/p/p.zip", "a/b.SC2Replay") == "/p/p.zip!/a/b.SC2Replay"


def test_a_zip_written_on_windows_lists_slash_members(tmp_path: Path) -> None:
    pack = tmp_path / "p.zip"
    with zipfile.ZipFile(pack, "w") as archive:
        archive.writestr("season 1\\game.SC2Replay", b"not a replay")
    walk = PackWalk(str(pack), None, 1 << 20)
    names = [item.stat.path for item in walk.walk() if hasattr(item, "stat")]
    assert names == [f"{pack}!/season 1/game.SC2Replay"]


def test_discovery_stores_each_file_once_however_it_is_named(tmp_path: Path) -> None:
    (tmp_path / "r").mkdir()
    game = tmp_path / "r" / "g.SC2Replay"
    game.write_bytes(b"x")
    found = list(iter_replay_paths([str(tmp_path / "r"), str(game), str(tmp_path / "r" / "." / "g.SC2Replay")]))
    assert found == [str(game)]


def test_named_inputs_in_any_case_are_one_stored_path_where_names_ignore_case(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # What Windows and macOS do by default, run here on a case-sensitive file system: the input is
    # spelled as its folders list it before it is used, so it is found, and stored as the walk stores it.
    monkeypatch.setattr("replay_cli.paths.CASE_INSENSITIVE_NAMES", True)
    (tmp_path / "Replays").mkdir()
    game = tmp_path / "Replays" / "Game.SC2Replay"
    game.write_bytes(b"x")
    typed = tmp_path / "replays" / "game.sc2replay"
    assert list(iter_replay_paths([str(typed)])) == [str(game)]
    assert list(iter_replay_paths([str(tmp_path / "REPLAYS"), str(typed)])) == [str(game)]
