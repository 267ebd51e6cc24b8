"""Tests for replay_cli.discover on real temporary trees."""

from __future__ import annotations

import io
import os
import shutil
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from replay_cli import discover
from replay_cli.discover import DiscoveryProblem, count_replay_paths, iter_replay_paths


def touch(path: Path | bytes) -> Path | bytes:
    """Create an empty file (bytes paths allow non-UTF-8 names), making parent directories."""
    if isinstance(path, Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    else:
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o644))
    return path


def run(inputs: list[str], **kwargs: object) -> tuple[list[str], list[DiscoveryProblem]]:
    """Collect the yielded paths and the reported problems."""
    problems: list[DiscoveryProblem] = []
    paths = list(iter_replay_paths(inputs, on_problem=problems.append, **kwargs))  # type: ignore[arg-type]
    return paths, problems


@pytest.mark.parametrize("name", ["a.SC2Replay", "a.sc2replay", "a.SC2REPLAY", "a.Sc2RePlAy"])
def test_extension_matches_in_any_case(tmp_path: Path, name: str) -> None:
    touch(tmp_path / name)
    assert run([str(tmp_path)]) == ([str(tmp_path / name)], [])


def test_nested_dirs_sorted_and_other_files_ignored(tmp_path: Path) -> None:
    for rel in [
        "b.SC2Replay",
        "a.sc2replay",
        "notes.txt",
        "x.SC2Replay.bak",
        "SC2Replay",
        "sub/z.SC2Replay",
        "sub/deeper/y.SC2Replay",
        "sub/readme.md",
        "another/c.SC2Replay",
    ]:
        touch(tmp_path / rel)
    paths, problems = run([str(tmp_path)])
    # Each directory's files come first (sorted), then its subdirectories, depth-first in sorted order.
    expected = [
        "a.sc2replay",
        "b.SC2Replay",
        "another/c.SC2Replay",
        "sub/z.SC2Replay",
        "sub/deeper/y.SC2Replay",
    ]
    assert paths == [str(tmp_path / rel) for rel in expected]
    assert problems == []


def test_explicit_file_is_yielded_whatever_its_extension(tmp_path: Path) -> None:
    named = touch(tmp_path / "renamed.bin")
    assert run([str(named)]) == ([str(named)], [])


def test_relative_inputs_become_absolute_without_resolving_symlinks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    touch(tmp_path / "real" / "r.SC2Replay")
    (tmp_path / "link").symlink_to(tmp_path / "real")
    monkeypatch.chdir(tmp_path)
    assert run(["link/./r.SC2Replay"])[0] == [str(tmp_path / "link" / "r.SC2Replay")]
    assert run(["./link"])[0] == [str(tmp_path / "link" / "r.SC2Replay")]


NAMES = [
    "with space.SC2Replay",
    "quo'te\"s (1).SC2Replay",
    "ünïcødé 日本.SC2Replay",
    os.fsdecode(b"bad\xff\xfe.SC2Replay"),  # not UTF-8: survives as surrogate escapes
]


@pytest.mark.parametrize("name", NAMES)
def test_awkward_names_walked(tmp_path: Path, name: str) -> None:
    touch(os.fsencode(os.path.join(tmp_path, name)))
    assert run([str(tmp_path)]) == ([os.path.join(tmp_path, name)], [])


@pytest.mark.parametrize("name", NAMES + ["new\nline.SC2Replay"])
def test_awkward_names_from_nul_separated_stdin(tmp_path: Path, name: str) -> None:
    path = os.path.join(tmp_path, name)
    touch(os.fsencode(path))
    stdin = io.BytesIO(os.fsencode(path) + b"\0")
    assert run(["-"], stdin=stdin, null_separated=True) == ([path], [])


@pytest.mark.parametrize("name", NAMES)
def test_awkward_names_from_newline_stdin(tmp_path: Path, name: str) -> None:
    path = os.path.join(tmp_path, name)
    touch(os.fsencode(path))
    assert run(["-"], stdin=io.BytesIO(os.fsencode(path) + b"\r\n")) == ([path], [])


@pytest.mark.parametrize(
    ("separator", "null_separated"),
    [(b"\n", False), (b"\r\n", False), (b"\0", True)],
    ids=["lf", "crlf", "nul"],
)
def test_stdin_lists_skip_blanks_and_walk_directories(
    tmp_path: Path, separator: bytes, null_separated: bool
) -> None:
    a = touch(tmp_path / "a.SC2Replay")
    other = touch(tmp_path / "other.dat")  # listed explicitly, so yielded despite its name
    touch(tmp_path / "dir" / "b.SC2Replay")
    items = [b"", os.fsencode(a), b"", os.fsencode(other), os.fsencode(tmp_path / "dir"), b""]
    stdin = io.BytesIO(separator.join(items))
    paths, problems = run(["-"], stdin=stdin, null_separated=null_separated)
    assert paths == [str(a), str(other), str(tmp_path / "dir" / "b.SC2Replay")]
    assert problems == []


def test_nul_list_split_across_read_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(discover, "STDIN_CHUNK_BYTES", 7)  # force names to straddle chunk boundaries
    names = [touch(tmp_path / f"replay number {i}.SC2Replay") for i in range(5)]
    stdin = io.BytesIO(b"\0".join(os.fsencode(n) for n in names))  # no trailing NUL, like printf
    assert run(["-"], stdin=stdin, null_separated=True)[0] == [str(n) for n in names]


def test_newline_mode_keeps_inner_whitespace(tmp_path: Path) -> None:
    path = touch(tmp_path / " lead and trail .SC2Replay ")
    assert run(["-"], stdin=io.BytesIO(os.fsencode(path) + b"\n"))[0] == [str(path)]


def test_symlink_loop_terminates_and_yields_each_file_once(tmp_path: Path) -> None:
    touch(tmp_path / "top.SC2Replay")
    touch(tmp_path / "sub" / "inner.SC2Replay")
    (tmp_path / "sub" / "back").symlink_to(tmp_path)  # sub/back -> its own parent
    (tmp_path / "sub" / "self").symlink_to(tmp_path / "sub")
    paths, problems = run([str(tmp_path)])
    assert paths == [str(tmp_path / "top.SC2Replay"), str(tmp_path / "sub" / "inner.SC2Replay")]
    assert problems == []


def test_directory_reached_through_two_symlinks_yields_each_file_once(tmp_path: Path) -> None:
    touch(tmp_path / "real" / "x.SC2Replay")
    (tmp_path / "alink").symlink_to(tmp_path / "real")
    (tmp_path / "blink").symlink_to(tmp_path / "real")
    paths, _ = run([str(tmp_path), str(tmp_path / "real"), str(tmp_path / "blink")])
    assert paths == [str(tmp_path / "alink" / "x.SC2Replay")]  # first in sorted order, the path as seen


@pytest.mark.parametrize("order", ["file_first", "dir_first"])
def test_file_named_and_walked_is_yielded_once(tmp_path: Path, order: str) -> None:
    replay = touch(tmp_path / "a.SC2Replay")
    inputs = [str(replay), str(tmp_path)] if order == "file_first" else [str(tmp_path), str(replay)]
    assert run(inputs + [str(replay)])[0] == [str(replay)]


def test_overlapping_directory_inputs_yield_each_file_once(tmp_path: Path) -> None:
    touch(tmp_path / "sub" / "a.SC2Replay")
    touch(tmp_path / "b.SC2Replay")
    for inputs in ([str(tmp_path), str(tmp_path / "sub")], [str(tmp_path / "sub"), str(tmp_path)]):
        paths = run(inputs)[0]
        assert sorted(paths) == [str(tmp_path / "b.SC2Replay"), str(tmp_path / "sub" / "a.SC2Replay")]


def test_directory_replaced_by_file_mid_walk_is_reported_and_walk_continues(tmp_path: Path) -> None:
    for rel in ["a/1.SC2Replay", "b/2.SC2Replay", "c/3.SC2Replay", "d/4.SC2Replay"]:
        touch(tmp_path / rel)
    problems: list[DiscoveryProblem] = []
    stream = iter_replay_paths([str(tmp_path)], on_problem=problems.append)
    assert next(stream) == str(tmp_path / "a" / "1.SC2Replay")
    # Real races, no root needed: the walk listed the root before these changed.
    shutil.rmtree(tmp_path / "b")
    touch(tmp_path / "b")
    shutil.rmtree(tmp_path / "c")
    assert list(stream) == [str(tmp_path / "d" / "4.SC2Replay")]
    assert problems == [
        DiscoveryProblem(str(tmp_path / "b"), "not a directory"),
        DiscoveryProblem(str(tmp_path / "c"), "no such file or directory"),
    ]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads directories whatever their mode")
def test_unreadable_directory_is_reported_and_walk_continues(tmp_path: Path) -> None:
    touch(tmp_path / "locked" / "hidden.SC2Replay")
    touch(tmp_path / "open" / "seen.SC2Replay")
    (tmp_path / "locked").chmod(0)
    try:
        paths, problems = run([str(tmp_path)])
    finally:
        (tmp_path / "locked").chmod(0o755)
    assert paths == [str(tmp_path / "open" / "seen.SC2Replay")]
    assert problems == [DiscoveryProblem(str(tmp_path / "locked"), "permission denied")]


@pytest.mark.parametrize(
    ("rel", "message"),
    [
        ("missing.SC2Replay", "no such file or directory"),
        ("file.txt/below", "not a directory"),
        ("", "empty path"),
    ],
)
def test_bad_named_input_is_reported_and_others_continue(tmp_path: Path, rel: str, message: str) -> None:
    touch(tmp_path / "file.txt")
    good = touch(tmp_path / "good.SC2Replay")
    bad = os.path.join(tmp_path, rel) if rel else ""
    paths, problems = run([bad, str(good)])
    assert paths == [str(good)]
    assert problems == [DiscoveryProblem(bad, message)]


def _make_fifo(path: Path) -> None:
    os.mkfifo(path)


def _make_dangling(path: Path) -> None:
    path.symlink_to(path.parent / "nowhere")


def _make_self_loop(path: Path) -> None:
    path.symlink_to(path)


def _make_socket(path: Path) -> None:
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(path))
    except OSError:
        pytest.skip("socket path too long for AF_UNIX")
    finally:
        sock.close()


@pytest.mark.parametrize("make", [_make_fifo, _make_dangling, _make_self_loop, _make_socket])
def test_non_regular_replay_names_are_yielded_walked_and_named(
    tmp_path: Path, make: Callable[[Path], None]
) -> None:
    odd = tmp_path / "odd.SC2Replay"
    make(odd)  # the parser records these as not_regular_file / unreadable; discovery must not block on them
    assert run([str(tmp_path)]) == ([str(odd)], [])
    assert run([str(odd)]) == ([str(odd)], [])


def test_directory_named_like_a_replay_is_yielded_and_walked(tmp_path: Path) -> None:
    inner = touch(tmp_path / "folder.SC2Replay" / "inner.SC2Replay")
    assert run([str(tmp_path)])[0] == [str(tmp_path / "folder.SC2Replay"), str(inner)]


@pytest.fixture
def big_tree(tmp_path: Path) -> Path:
    """Build 20,000 empty replays in 200 directories."""
    for d in range(200):
        folder = tmp_path / f"d{d:03}"
        folder.mkdir()
        for f in range(100):
            (folder / f"{f:03}.SC2Replay").touch()
    return tmp_path


def test_walk_streams_before_touching_the_whole_tree(big_tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real_scandir = os.scandir

    def counting_scandir(path: str) -> Iterator[os.DirEntry[str]]:
        calls.append(path)
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", counting_scandir)
    stream = iter_replay_paths([str(big_tree)])
    assert calls == []  # a generator: nothing happens until asked
    assert next(stream) == str(big_tree / "d000" / "000.SC2Replay")
    assert calls == [str(big_tree), str(big_tree / "d000")]  # 2 of 201 directories listed
    assert sum(1 for _ in stream) == 19_999
    assert len(calls) == 201


def test_two_runs_give_the_same_order_and_count_matches(big_tree: Path) -> None:
    touch(big_tree / "d007" / "extra.txt")
    (big_tree / "alias").symlink_to(big_tree / "d005")
    first, second = run([str(big_tree)])[0], run([str(big_tree)])[0]
    assert first == second
    assert len(first) == len(set(first)) == 20_000
    assert count_replay_paths([str(big_tree)]) == 20_000


def test_count_matches_yield_with_dedup_and_named_files(tmp_path: Path) -> None:
    touch(tmp_path / "a.SC2Replay")
    touch(tmp_path / "sub" / "b.sc2replay")
    other = touch(tmp_path / "other.bin")
    inputs = [str(tmp_path), str(tmp_path / "sub"), str(other), str(tmp_path / "a.SC2Replay"), "/no/such"]
    assert count_replay_paths(inputs) == len(run(inputs)[0]) == 3


def test_count_with_stdin_is_unknown_unless_paths_are_given(tmp_path: Path) -> None:
    a = touch(tmp_path / "a.SC2Replay")
    touch(tmp_path / "dir" / "b.SC2Replay")
    assert count_replay_paths(["-", str(tmp_path)]) is None
    assert count_replay_paths(["-", str(tmp_path)], stdin_paths=[str(a), str(tmp_path / "dir")]) == 2
