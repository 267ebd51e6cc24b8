"""Replay packs read in place: zip, tar.gz, a zip of zips, encrypted, hostile and damaged packs.

Every pack here is written by the test itself, from the shipped samples and synthetic games, and
ingested through the real CLI. Paths of members are checked exactly (`PACK!/inner/path`).
"""

from __future__ import annotations

import io
import json
import os
import sqlite3
import struct
import tarfile
import zipfile
import zlib
from pathlib import Path
from typing import Any

import pytest

from replay_cli.packs import Member, PackWalk, is_pack_name
from replay_cli.synth import describe_game, write_replay

FIXED_TIME = (2024, 1, 2, 3, 4, 6)  # every member the same recorded time, so a rebuilt pack is unchanged
PASSWORD = "gl hf"
SYNTH_SEED = 41
BOMB_BYTES = 300 * 2**20  # zeros: deflate packs them into well under a MiB


def sample(samples: Path, index: int) -> bytes:
    return sorted(samples.glob("*.SC2Replay"))[index].read_bytes()


def synth(index: int) -> bytes:
    return write_replay(describe_game(SYNTH_SEED, index))


def write_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as pack:
        for name, data in members.items():
            pack.writestr(zipfile.ZipInfo(name, FIXED_TIME), data, zipfile.ZIP_DEFLATED)
    return path


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    write_zip(buffer, members)  # type: ignore[arg-type]
    return buffer.getvalue()


def write_tar(path: Path, members: dict[str, bytes], mode: str = "w:gz") -> Path:
    with tarfile.open(path, mode) as pack:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), 1_700_000_000
            pack.addfile(info, io.BytesIO(data))
    return path


# --- a ZipCrypto writer: the standard library reads classic zip encryption but cannot write it --------

def _crc_table() -> list[int]:
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0xEDB88320 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC_TABLE = _crc_table()


class _ZipCrypto:
    def __init__(self, password: bytes) -> None:
        self.keys = [0x12345678, 0x23456789, 0x34567890]
        for byte in password:
            self._update(byte)

    def _update(self, byte: int) -> None:
        k0, k1, k2 = self.keys
        k0 = (k0 >> 8) ^ _CRC_TABLE[(k0 ^ byte) & 0xFF]
        k1 = ((k1 + (k0 & 0xFF)) * 134775813 + 1) & 0xFFFFFFFF
        k2 = (k2 >> 8) ^ _CRC_TABLE[(k2 ^ (k1 >> 24)) & 0xFF]
        self.keys = [k0, k1, k2]

    def encrypt(self, plain: bytes) -> bytes:
        out = bytearray()
        for byte in plain:
            temp = (self.keys[2] | 2) & 0xFFFF
            out.append(byte ^ (((temp * (temp ^ 1)) >> 8) & 0xFF))
            self._update(byte)
        return bytes(out)


def write_locked_zip(path: Path, members: list[tuple[str, bytes, bool]], password: bytes) -> Path:
    """A zip of stored members, those flagged True encrypted with ZipCrypto under password."""
    local, central = bytearray(), bytearray()
    for name, data, locked in members:
        crc, raw_name = zlib.crc32(data), name.encode()
        body = data
        if locked:
            body = _ZipCrypto(password).encrypt(bytes(11) + bytes([crc >> 24]) + data)  # the check byte last
        flags, offset = (0x1 if locked else 0), len(local)
        local += struct.pack("<4s2B4HL2L2H", b"PK\003\004", 20, 0, flags, 0, 0, 0x21, crc, len(body), len(data),
                             len(raw_name), 0) + raw_name + body
        central += struct.pack("<4s4B4HL2L5H2L", b"PK\001\002", 20, 0, 20, 0, flags, 0, 0, 0x21, crc, len(body),
                               len(data), len(raw_name), 0, 0, 0, 0, 0, offset) + raw_name
    end = struct.pack("<4s4H2LH", b"PK\005\006", 0, 0, len(members), len(members), len(central), len(local), 0)
    path.write_bytes(bytes(local + central + end))
    return path


# --- helpers ------------------------------------------------------------------------------------------


def ingest(replaycli: Any, db: Path, *inputs: Path, workers: int = 0, env: dict[str, str] | None = None,
           extra: tuple[str, ...] = ()) -> tuple[dict[str, Any], Any]:
    proc = replaycli.run("ingest", *map(str, inputs), "--db", str(db), "--workers", str(workers), "--depth",
                         "summary", "--json", *extra, env=env, text=True)
    assert "Traceback" not in proc.stderr, proc.stderr
    return json.loads(proc.stdout), proc


def files(db: Path) -> dict[str, tuple[str, str | None]]:
    with sqlite3.connect(db) as conn:
        return {path: (status, kind) for path, status, kind in conn.execute(
            "SELECT path, status, error_kind FROM files")}


def scalar(db: Path, sql: str, *params: Any) -> Any:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql, params).fetchone()[0]


@pytest.fixture
def tree(tmp_path: Path, samples: Path) -> Path:
    """loose/ with one replay, and packs/ with a zip (sub-folders, a nested zip, a copy of the loose
    replay, a non-replay member, a member named to escape), a tar.gz and a zip with an encrypted member."""
    (tmp_path / "loose").mkdir()
    (tmp_path / "loose" / "00-1v1.SC2Replay").write_bytes(sample(samples, 0))
    packs = tmp_path / "in" / "packs"
    packs.mkdir(parents=True)
    write_zip(packs / "event.zip", event_members(samples))
    write_tar(packs / "community.tar.gz", {"pack/a.SC2Replay": sample(samples, 4), "pack/b.SC2Replay": synth(2),
                                           "pack/readme.md": b"# thanks"})
    write_locked_zip(packs / "locked.ZIP", [("secret.SC2Replay", sample(samples, 5), True),
                                            ("open.SC2Replay", synth(3), False)], PASSWORD.encode())
    return tmp_path


def event_members(samples: Path, **changes: bytes) -> dict[str, bytes]:
    members = {
        "day1/00-1v1.sc2replay": sample(samples, 0),  # byte-identical to the loose replay, lower-case extension
        "day1/01-2v2.SC2Replay": sample(samples, 1),
        "day2/games/synth-0.SC2Replay": synth(0),
        "notes.txt": b"not a replay",
        "../../escape.SC2Replay": sample(samples, 2),
        "finals.zip": zip_bytes({"g1.SC2Replay": synth(1), "g2.SC2REPLAY": sample(samples, 3)}),
    }
    members.update(changes)
    return members


def expected_paths(tree: Path) -> set[str]:
    packs = tree / "in" / "packs"
    return {
        f"{tree}/loose/00-1v1.SC2Replay",
        f"{packs}/event.zip!/day1/00-1v1.sc2replay",
        f"{packs}/event.zip!/day1/01-2v2.SC2Replay",
        f"{packs}/event.zip!/day2/games/synth-0.SC2Replay",
        f"{packs}/event.zip!/../../escape.SC2Replay",
        f"{packs}/event.zip!/finals.zip!/g1.SC2Replay",
        f"{packs}/event.zip!/finals.zip!/g2.SC2REPLAY",
        f"{packs}/community.tar.gz!/pack/a.SC2Replay",
        f"{packs}/community.tar.gz!/pack/b.SC2Replay",
        f"{packs}/locked.ZIP!/secret.SC2Replay",
        f"{packs}/locked.ZIP!/open.SC2Replay",
    }


# --- tests --------------------------------------------------------------------------------------------


def test_pack_names() -> None:
    assert all(map(is_pack_name, ["a.zip", "b.TAR", "c.tar.gz", "d.TGZ", "e.tar.bz2", "f.tar.xz"]))
    assert not any(map(is_pack_name, ["a.SC2Replay", "b.gz", "c.7z", "zip"]))


def test_packs_ingest_in_place_with_exact_paths_and_statuses(replaycli: Any, tree: Path, tmp_path: Path) -> None:
    db = tmp_path / "packs.db"
    summary, proc = ingest(replaycli, db, tree, workers=2)
    assert proc.returncode == 1, proc.stderr  # the encrypted member, without a password
    stored = files(db)
    assert set(stored) == expected_paths(tree)
    packs = tree / "in" / "packs"
    assert stored[f"{packs}/locked.ZIP!/secret.SC2Replay"] == ("failed", "encrypted")
    copies = [stored[f"{tree}/loose/00-1v1.SC2Replay"][0], stored[f"{packs}/event.zip!/day1/00-1v1.sc2replay"][0]]
    assert sorted(copies) == ["duplicate", "ok"]  # whichever committed first owns the replay
    assert summary["counts"] == {"discovered": 11, "skipped": 0, "parsed": 11, "ok": 9, "partial": 0,
                                 "duplicate": 1, "failed": 1, "filtered": 0}
    assert scalar(db, "SELECT count(*) FROM replays") == 9
    assert [f["path"] for f in summary["failures"]] == [f"{packs}/locked.ZIP!/secret.SC2Replay"]
    # Nothing was extracted: no file appeared anywhere a member name points at.
    assert not (tree / "escape.SC2Replay").exists() and not (tree.parent / "escape.SC2Replay").exists()
    assert not (packs / "day1").exists() and sorted(p.name for p in packs.iterdir()) == [
        "community.tar.gz", "event.zip", "locked.ZIP"]


def test_unchanged_packs_are_not_opened_and_changed_members_are_reread(replaycli: Any, tree: Path, tmp_path: Path,
                                                                       samples: Path) -> None:
    db = tmp_path / "packs.db"
    first, _ = ingest(replaycli, db, tree)
    assert first["counts"]["parsed"] == 11
    packs = sorted((tree / "in" / "packs").iterdir())
    originals = {path: (path.read_bytes(), path.stat()) for path in packs}
    # Proof that an unchanged pack is never opened: garbage of the same size and mtime is not noticed.
    for path, (data, info) in originals.items():
        path.write_bytes(b"\0" * len(data))
        os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns))
    second, proc = ingest(replaycli, db, tree)
    assert proc.returncode == 0, proc.stderr
    assert second["counts"] == {"discovered": 11, "skipped": 11, "parsed": 0, "ok": 0, "partial": 0,
                                "duplicate": 0, "failed": 0, "filtered": 0}
    for path, (data, _info) in originals.items():
        path.write_bytes(data)  # a new mtime: every pack is opened again, its members compared one by one
    event = tree / "in" / "packs" / "event.zip"
    write_zip(event, event_members(samples, **{"day1/01-2v2.SC2Replay": sample(samples, 6),
                                               "day3/new.SC2Replay": sample(samples, 7)}))
    third, proc = ingest(replaycli, db, tree)
    assert proc.returncode == 0, proc.stderr
    assert third["counts"] == {"discovered": 12, "skipped": 10, "parsed": 2, "ok": 2, "partial": 0,
                               "duplicate": 0, "failed": 0, "filtered": 0}
    assert files(db)[f"{event}!/day3/new.SC2Replay"] == ("ok", None)


def test_password_unlocks_zipcrypto_members(replaycli: Any, tree: Path, tmp_path: Path) -> None:
    locked = tree / "in" / "packs" / "locked.ZIP"
    db = tmp_path / "locked.db"
    _summary, proc = ingest(replaycli, db, locked, extra=("--pack-password", "wrong"))
    assert proc.returncode == 1
    assert files(db)[f"{locked}!/secret.SC2Replay"] == ("failed", "encrypted")
    right, proc = ingest(replaycli, db, locked, env={"REPLAYCLI_PACK_PASSWORD": PASSWORD},
                         extra=("--retry-failed",))
    assert proc.returncode == 0, proc.stderr
    assert right["counts"]["ok"] == 1 and right["counts"]["skipped"] == 1  # the open member was already stored
    assert files(db) == {f"{locked}!/secret.SC2Replay": ("ok", None), f"{locked}!/open.SC2Replay": ("ok", None)}
    with sqlite3.connect(db) as conn:
        options = json.loads(conn.execute("SELECT options FROM runs ORDER BY id DESC").fetchone()[0])
    assert options["pack_password"] is True and PASSWORD not in json.dumps(options)


def test_zip_bomb_member_is_too_large_before_any_worker_sees_it(replaycli: Any, tmp_path: Path,
                                                                samples: Path) -> None:
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as pack:
        info = zipfile.ZipInfo("bomb.SC2Replay", FIXED_TIME)
        info.compress_type = zipfile.ZIP_DEFLATED
        with pack.open(info, "w") as member:
            zeros = bytes(2**20)
            for _ in range(BOMB_BYTES // len(zeros)):
                member.write(zeros)
        pack.writestr(zipfile.ZipInfo("fine.SC2Replay", FIXED_TIME), sample(samples, 8))
    assert bomb.stat().st_size < 2**20
    db = tmp_path / "bomb.db"
    summary, proc = ingest(replaycli, db, bomb, workers=2, extra=("--max-memory", "256"))
    assert proc.returncode == 1
    assert files(db) == {f"{bomb}!/bomb.SC2Replay": ("failed", "too_large"), f"{bomb}!/fine.SC2Replay": ("ok", None)}
    [failure] = summary["failures"]
    assert failure["kind"] == "too_large" and f"{BOMB_BYTES} bytes" in failure["message"]


def read_members(pack: Path, max_bytes: int) -> list[bytes | dict[str, Any]]:
    """Read each member as the walk lists it, while its pack is open."""
    return [item.read() for item in PackWalk(str(pack), None, max_bytes).walk() if isinstance(item, Member)]


def test_member_decompressing_past_the_cap_is_too_large(tmp_path: Path, samples: Path) -> None:
    data = sample(samples, 9)
    pack = write_zip(tmp_path / "p.zip", {"a.SC2Replay": data})
    [result] = read_members(pack, len(data) - 1)
    assert isinstance(result, dict) and result["error"]["kind"] == "too_large"
    assert "decompressed past" in result["error"]["message"]
    assert read_members(pack, len(data)) == [data]


def test_damaged_packs_record_what_was_read_and_one_failure(replaycli: Any, tmp_path: Path, samples: Path) -> None:
    whole = write_tar(tmp_path / "whole.tar", {"a.SC2Replay": sample(samples, 10), "b.SC2Replay": sample(samples, 11)},
                      mode="w")
    cut = tmp_path / "cut.tar"
    b_data_starts = 512 + -(-len(sample(samples, 10)) // 512) * 512 + 512  # a's header and blocks, b's header
    cut.write_bytes(whole.read_bytes()[: b_data_starts + 100])
    broken_zip = tmp_path / "broken.zip"
    broken_zip.write_bytes(zip_bytes({"c.SC2Replay": sample(samples, 0)})[:-40])  # no central directory
    db = tmp_path / "damaged.db"
    summary, proc = ingest(replaycli, db, cut, broken_zip)
    assert proc.returncode == 1
    # The tar: its first member read whole, the cut one failed, and the pack named as damaged.
    assert files(db) == {f"{cut}!/a.SC2Replay": ("ok", None), f"{cut}!/b.SC2Replay": ("failed", "bad_pack"),
                         str(cut): ("failed", "bad_pack"), str(broken_zip): ("failed", "bad_pack")}
    assert summary["counts"]["failed"] == 3
    write_zip(broken_zip, {"c.SC2Replay": sample(samples, 0)})  # mended: its bad_pack row goes
    mended, proc = ingest(replaycli, db, broken_zip)
    assert proc.returncode == 0 and mended["counts"]["ok"] == 1
    assert files(db)[f"{broken_zip}!/c.SC2Replay"] == ("ok", None) and str(broken_zip) not in files(db)


def test_watch_rescans_name_a_changed_pack_once_by_its_own_path(tmp_path: Path, samples: Path) -> None:
    from replay_cli.discover import iter_replay_paths
    from replay_cli.ingest import IngestOptions, ingest_paths
    from replay_cli.store import open_store
    from replay_cli.watch import _changed

    folder = tmp_path / "Replays"
    folder.mkdir()
    pack = write_zip(folder / "p.zip", {"a.SC2Replay": sample(samples, 0), "b.SC2Replay": sample(samples, 1)})
    options = IngestOptions(depth="summary", workers=0)
    with open_store(tmp_path / "watch.db") as store:
        assert list(_changed(store, [str(folder)], options)) == [str(pack)]
        tally = ingest_paths(store, iter_replay_paths([str(folder)]), options)
        assert tally.counts["ok"] == 2
        assert list(_changed(store, [str(folder)], options)) == []
        write_zip(pack, event_members(samples, **{"c.SC2Replay": sample(samples, 2)}))
        assert list(_changed(store, [str(folder)], options)) == [str(pack)]
