"""Generated bad inputs for the hardening tests: never committed binaries.

Each builder writes one file (or special file) into a folder and returns its name and what
ingest must record for it: (status, error kind).
"""

from __future__ import annotations

import bz2
import os
import random
from collections.abc import Callable
from pathlib import Path

from replay_cli.synth import generate_descriptions
from replay_cli.synth.details import encode_header
from replay_cli.synth.game import replay_members
from replay_cli.synth.mpq import COMPRESSION_BZIP2, build_archive

MPQ_ARCHIVE_MAGIC = b"MPQ\x1a"
USER_DATA_MAGIC = b"MPQ\x1b"
BOMB_CHUNK = 1 << 20
BOMB_SIZE = 1 << 30  # 1 GiB once decompressed, from a file of about 60 KB
OVER_SIZE_CAP = 60 * 1024 * 1024  # over the default 50 MiB cap; sparse, so it costs no disk

Expected = tuple[str, str | None]


def bomb_replay(member: str = "replay.tracker.events") -> bytes:
    """A valid synthetic replay whose `member` decompresses to 1 GiB of zeros.

    bz2 streams concatenate: one compressed MiB repeated 1,024 times is a 1 GiB member, and
    mpyq hands the whole block to bz2.decompress, which has no size limit.
    """
    desc = generate_descriptions(1, seed=5)[0]
    chunk = bz2.compress(bytes(BOMB_CHUNK), 9)
    stored = bytes((COMPRESSION_BZIP2,)) + chunk * (BOMB_SIZE // BOMB_CHUNK)
    return build_archive(replay_members(desc), encode_header(desc), precompressed={member: (stored, BOMB_SIZE)})


def _write(folder: Path, name: str, data: bytes) -> str:
    (folder / name).write_bytes(data)
    return name


def build_catalogue(folder: Path, real_replay: bytes, seed: int = 2026) -> dict[str, Expected]:
    """Write every bad input of the catalogue into folder; return name -> expected outcome."""
    rng = random.Random(seed)
    expected: dict[str, Expected] = {}
    parse_error: Expected = ("failed", "parse_error")
    for name, data in {
        "empty.SC2Replay": b"",
        "one-byte.SC2Replay": b"\x00",
        "magic-then-random.SC2Replay": USER_DATA_MAGIC + rng.randbytes(4096),
        "random-1k.SC2Replay": rng.randbytes(1024),
        "random-1m.SC2Replay": rng.randbytes(1024 * 1024),
        "truncated-10.SC2Replay": real_replay[: len(real_replay) // 10],
        "truncated-50.SC2Replay": real_replay[: len(real_replay) // 2],
        "truncated-90.SC2Replay": real_replay[: len(real_replay) * 9 // 10],
        # A valid MPQ without SC2's user-data block: sc2reader raises a bare KeyError.
        "no-user-data.SC2Replay": real_replay[real_replay.index(MPQ_ARCHIVE_MAGIC):],
    }.items():
        expected[_write(folder, name, data)] = parse_error
    desc = generate_descriptions(1, seed=6)[0]
    # sc2reader reports "ok" for an archive with no members: 0 players, not a game.
    expected[_write(folder, "no-members.SC2Replay", build_archive([], encode_header(desc)))] = (
        "failed", "invalid_replay")
    expected[_write(folder, "bomb.SC2Replay", bomb_replay())] = ("failed", "memory")
    with open(folder / "over-size-cap.SC2Replay", "wb") as handle:
        handle.truncate(OVER_SIZE_CAP)
    expected["over-size-cap.SC2Replay"] = ("failed", "too_large")
    for name, make in _special_files().items():
        make(folder / name)
        expected[name] = ("failed", "unreadable" if name.startswith("dangling") else "not_regular_file")
    return expected


def _special_files() -> dict[str, Callable[[Path], None]]:
    return {
        "fifo.SC2Replay": lambda path: os.mkfifo(path),
        "dev-zero-link.SC2Replay": lambda path: path.symlink_to("/dev/zero"),
        "dangling-link.SC2Replay": lambda path: path.symlink_to(path.parent / "nowhere"),
        # A folder named like a replay is recorded, and walked (it is empty).
        "folder.SC2Replay": lambda path: path.mkdir(),
    }
