"""The direct tracker-event path gives exactly the records sc2reader's level-3 path gives.

Reference: sc2reader at load level 3 with the GameHeartNormalizer and ContextLoader plugins (the
`stats` depth's engine), then extract.py and derive.py. Direct: sc2reader at load level 2 for the
replay's facts, the raw `replay.tracker.events` member, then replay_cli.tracker. Run as a script
with `--write-names` to regenerate replay_cli/tracker_names.py from the installed sc2reader.
"""

from __future__ import annotations

import contextlib
import io
import logging
import random
import sys
import types
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # run as a script from anywhere

from replay_cli import derive, extract, tracker  # noqa: E402
from replay_cli.parse import direct_stats  # noqa: E402

sc2reader = pytest.importorskip("sc2reader")
from sc2reader.engine import GameEngine  # noqa: E402
from sc2reader.engine.plugins import ContextLoader, GameHeartNormalizer  # noqa: E402
from sc2reader.utils import extract_data_file  # noqa: E402

NAMES_MODULE = REPO / "replay_cli" / "tracker_names.py"
SAMPLES = sorted((REPO / "samples").glob("*.SC2Replay"))
SYNTH_SEED = 15  # extra synthetic games beyond the samples, a different seed from theirs
SYNTH_GAMES = 8  # one of each scenario

# Replays the direct path hands back to sc2reader on purpose, by path suffix, with the reason.
EXPECTED_REFUSALS = {
    "gameheart/gameheart.SC2Replay": "GameHeart: sc2reader turns casters into observers and shifts every loop",
    "gameheart/gh_sameteam.SC2Replay": "GameHeart: sc2reader turns casters into observers and shifts every loop",
}

logging.getLogger("sc2reader").setLevel(logging.CRITICAL)


def _read(data: bytes, level: int, engine: Any) -> Any:
    with contextlib.redirect_stdout(io.StringIO()):
        return sc2reader.resources.Replay(io.BytesIO(data), load_level=level, engine=engine, debug=False)


def _stats_engine() -> Any:
    engine = GameEngine()
    engine.register_plugin(GameHeartNormalizer())
    engine.register_plugin(ContextLoader())
    return engine


def _metadata(replay: Any) -> dict[str, Any]:
    meta = extract.read_gamemetadata(replay)
    return meta[0] if isinstance(meta, tuple) else meta  # (meta, state) in newer extract.py


def _rows(replay: Any, stats: list[Any], units: list[Any], upgrades: list[Any]) -> dict[str, Any]:
    """Everything the stats depth stores that comes from tracker events."""
    per_second = extract.loops_per_real_second(replay)
    players = extract.player_rows(replay, _metadata(replay))
    derive.apply_benchmarks(players, stats, units, replay.frames, per_second)
    return {
        "player_stats": stats,
        "units": units,
        "upgrades": upgrades,
        "build_order": extract.build_order_rows(units, upgrades, per_second),
        "benchmarks": players,
    }


def reference_rows(data: bytes) -> dict[str, Any] | None:
    """Today's path; None when sc2reader cannot give a stats result for this replay."""
    try:
        replay = _read(data, 3, _stats_engine())
    except Exception:
        return None
    if not replay.players or not replay.frames:
        return None
    units = extract.unit_records(replay)
    rows = _rows(replay, extract.player_stats_rows(replay), units, extract.upgrade_records(replay))
    return {**rows, "event_count": len(replay.tracker_events)}


def tracker_member(replay: Any) -> bytes:
    """The raw member exactly as sc2reader reads it (forced decompression, then a plain read)."""
    return extract_data_file("replay.tracker.events", replay.archive) or b""


def direct_records(replay: Any) -> tracker.StatsRecords:
    """The direct path as parse.py calls it, from a level-2 replay."""
    return direct_stats(replay)


def direct_rows(data: bytes) -> dict[str, Any] | None:
    """The direct path; None when the replay is no game (parse.py stops at summary for those)."""
    replay = _read(data, 2, None)
    if not replay.players or not replay.frames:
        return None
    records = direct_records(replay)
    rows = _rows(replay, records.player_stats, records.units, records.upgrades)
    return {**rows, "event_count": records.event_count}


def differences(want: dict[str, Any], got: dict[str, Any]) -> list[str]:
    """Name each table that differs, with its first differing row."""
    found = []
    for table, rows in want.items():
        if got[table] == rows:
            continue
        if not isinstance(rows, list):
            found.append(f"{table}: {rows} vs {got[table]}")
            continue
        first = next((i for i, (a, b) in enumerate(zip(rows, got[table])) if a != b), min(len(rows), len(got[table])))
        found.append(f"{table}: {len(rows)} vs {len(got[table])} rows, first difference at {first}")
    return found


def compare(data: bytes) -> str:
    """Return "equal", "refused: ...", "both fail", "no tracker events", "not a game" or the differences."""
    want = reference_rows(data)
    try:
        got = direct_rows(data)
    except (tracker.TrackerError, tracker.TrackerUnsupported) as exc:
        return "both fail" if want is None else f"refused: {type(exc).__name__}: {exc}"
    if got is None:
        return "not a game"
    if want is None:
        return "direct path succeeded where sc2reader fails"
    found = differences(want, got)
    if found:
        return "; ".join(found)
    return "equal" if got["event_count"] else "no tracker events"


# -- equivalence ------------------------------------------------------------------------------


@pytest.mark.parametrize("path", SAMPLES, ids=[p.name for p in SAMPLES])
def test_samples_match_sc2reader(path: Path):
    assert compare(path.read_bytes()) == "equal"


@pytest.mark.parametrize("index", range(SYNTH_GAMES))
def test_synthetic_games_match_sc2reader(index: int):
    from replay_cli.synth import describe_game, write_replay

    assert compare(write_replay(describe_game(SYNTH_SEED, index))) == "equal"


def test_corpus_matches_sc2reader(manifest):
    # Every file, not only those past 2.0.8: the header's base build of 2.0.8-2.0.9 replays is
    # an older one (24944), and a file without tracker events must give none on both paths.
    outcomes = {row.path.as_posix(): compare(row.path.read_bytes()) for row in manifest}
    unexpected = {}
    for path, outcome in outcomes.items():
        refusal = next((reason for suffix, reason in EXPECTED_REFUSALS.items() if path.endswith(suffix)), None)
        expected = ("refused: TrackerUnsupported",) if refusal else ("equal", "both fail", "no tracker events", "not a game")
        if not outcome.startswith(expected):
            unexpected[path] = outcome
    assert not unexpected, "\n".join(f"{path}: {outcome}" for path, outcome in sorted(unexpected.items()))
    assert sum(outcome == "equal" for outcome in outcomes.values()) > 0


# -- tables generated from sc2reader ----------------------------------------------------------


def render_names_module() -> str:
    """Render replay_cli/tracker_names.py from the installed sc2reader's datapacks."""
    from sc2reader.data import datapacks

    keys = [f"{expansion}/{version}" for expansion, packs in datapacks.items() for version in packs]
    known: dict[str, int] = {}
    titles: dict[str, str] = {}
    buildings: set[str] = set()
    workers: set[str] = set()
    for bit, key in enumerate(keys):
        expansion, version = key.split("/")
        for str_id, unit_type in datapacks[expansion][version].units.items():
            if not isinstance(str_id, str):
                continue  # integer type ids are keys too; tracker events name types by string
            known[str_id] = known.get(str_id, 0) | (1 << bit)
            if unit_type.name != str_id:
                titles[str_id] = unit_type.name
            if unit_type.is_building:
                buildings.add(unit_type.name)
            if unit_type.is_worker:
                workers.add(unit_type.name)
    lines = [
        '"""Unit type names known to sc2reader 1.9.0\'s datapacks: generated, do not edit.',
        "",
        "Regenerate with `python tests/test_tracker.py --write-names`; tests/test_tracker.py checks",
        "that this file matches the installed sc2reader. Names only: no ids, costs or other balance data.",
        '"""',
        "",
        "# Datapack keys (expansion/version); bit i of a KNOWN mask is DATAPACKS[i].",
        "DATAPACKS: tuple[str, ...] = (",
        *(f'    "{key}",' for key in keys),
        ")",
        "",
        "# Display names that differ from the type name tracker events carry.",
        "TITLES: dict[str, str] = {",
        *(f'    "{key}": "{value}",' for key, value in sorted(titles.items())),
        "}",
        "",
        "# Display names of the types flagged as buildings and as workers.",
        "BUILDINGS: frozenset[str] = frozenset({",
        *(f'    "{name}",' for name in sorted(buildings)),
        "})",
        "WORKERS: frozenset[str] = frozenset({",
        *(f'    "{name}",' for name in sorted(workers)),
        "})",
        "",
        "# Type name -> mask of the datapacks that know it.",
        "KNOWN: dict[str, int] = {",
        *(f'    "{key}": 0x{value:06x},' for key, value in sorted(known.items())),
        "}",
        "",
    ]
    return "\n".join(lines)


def test_names_table_matches_sc2reader():
    assert NAMES_MODULE.read_text(encoding="utf-8") == render_names_module(), (
        "run `python tests/test_tracker.py --write-names`"
    )


def test_name_table_gives_sc2reader_types():
    from sc2reader.data import datapacks

    from replay_cli.tracker_names import BUILDINGS, DATAPACKS, KNOWN, TITLES, WORKERS

    for bit, key in enumerate(DATAPACKS):
        expansion, version = key.split("/")
        units = datapacks[expansion][version].units
        names = {name for name, mask in KNOWN.items() if mask & (1 << bit)}
        assert names == {name for name in units if isinstance(name, str)}, key
        for name in names:
            title = TITLES.get(name, name)
            assert (title, title in BUILDINGS, title in WORKERS) == (
                units[name].name,
                bool(units[name].is_building),
                bool(units[name].is_worker),
            ), (key, name)


def _sc2reader_datapack_rules() -> list[tuple[Any, Any]]:
    """sc2reader's own (filter, datapack) registrations, collected from a stand-in replay."""
    stand_in = types.SimpleNamespace(registered_datapacks=[])
    stand_in.register_datapack = lambda pack, test: stand_in.registered_datapacks.insert(0, (test, pack))
    sc2reader.resources.Replay.register_default_datapacks(stand_in)
    return stand_in.registered_datapacks


@pytest.mark.parametrize("expansion", ["WoL", "HotS", "LotV", ""])
def test_datapack_choice_matches_sc2reader(expansion: str):
    from sc2reader.data import datapacks

    from replay_cli.tracker_names import DATAPACKS

    key_of = {id(pack): f"{exp}/{version}" for exp, packs in datapacks.items() for version, pack in packs.items()}
    edges = {b for _, lo, hi, _ in tracker._DATAPACK_RULES for b in (lo, hi) if b is not None}
    builds = sorted({0, 16116, 99999, 120000} | edges | {b - 1 for b in edges} | {b + 1 for b in edges})
    for build in builds:
        stand_in = types.SimpleNamespace(expansion=expansion, build=build)
        pack = next((p for test, p in _sc2reader_datapack_rules() if test(stand_in)), None)
        mask = tracker.datapack_mask(expansion, build)
        assert (DATAPACKS[mask.bit_length() - 1] if mask else None) == (key_of[id(pack)] if pack else None), build


# -- hostile input ----------------------------------------------------------------------------


def _sample_member() -> bytes:
    return tracker_member(_read(SAMPLES[0].read_bytes(), 2, None))


def _records(data: bytes, build: int = 95299) -> tracker.StatsRecords:
    return tracker.stats_records(
        data, build=build, expansion="LotV", player_pids={1, 2}, observer_pids={3}, per_second=22.4
    )


def _vint(value: int) -> bytes:
    """Encode a signed varint: sign in bit 0, then seven bits per byte, low bits first."""
    rest = abs(value) << 1 | (value < 0)
    out = bytearray()
    while True:
        out.append(rest & 0x7F | (0x80 if rest > 0x7F else 0))
        rest >>= 7
        if not rest:
            return bytes(out)


def _encode(value: Any) -> bytes:
    if value is None:
        return b"\x04\x00"
    if isinstance(value, bytes):
        return b"\x02" + _vint(len(value)) + value
    if isinstance(value, dict):
        return b"\x05" + _vint(len(value)) + b"".join(_vint(tag) + _encode(item) for tag, item in value.items())
    return b"\x09" + _vint(value)


def _event(delta: int, event_id: int, fields: dict[int, Any]) -> bytes:
    return b"\x03\x00\x09" + _vint(delta) + b"\x09" + _vint(event_id) + _encode(fields)


def _unit(event_id: int, delta: int, index: int, name: bytes, upkeep: int) -> bytes:
    """A UnitBorn (1) or UnitInit (6) event."""
    return _event(delta, event_id, {0: index, 1: 1, 2: name, 3: upkeep, 4: upkeep, 5: 0, 6: 0})


def _records(data: bytes, build: int = 95299) -> tracker.StatsRecords:
    return tracker.stats_records(
        data, build=build, expansion="LotV", player_pids={1, 2}, observer_pids={3}, per_second=22.4
    )


def test_truncations_are_refused_or_a_shorter_stream():
    member = _sample_member()
    whole = _records(member)
    for cut in [*range(1, 300), *range(300, len(member), 97)]:
        try:
            records = _records(member[:cut])
        except tracker.TrackerError:
            continue
        # A cut between two events is a valid, shorter stream: a prefix of the whole one.
        assert records.player_stats == whole.player_stats[: len(records.player_stats)]


def test_flipped_bytes_raise_only_tracker_errors():
    member = _sample_member()
    rng = random.Random(15)
    for _ in range(300):
        mutant = bytearray(member)
        for _ in range(rng.randint(1, 4)):
            mutant[rng.randrange(len(mutant))] = rng.randrange(256)
        with contextlib.suppress(tracker.TrackerError, tracker.TrackerUnsupported):
            _records(bytes(mutant))


def test_random_garbage_is_refused():
    rng = random.Random(2026)
    for size in (1, 2, 3, 7, 64, 4096):
        with pytest.raises(tracker.TrackerError):
            _records(bytes(rng.randrange(256) for _ in range(size)))


HEADER = b"\x03\x00\x09\x00\x09\x00"  # loop delta 0, event id 0


@pytest.mark.parametrize(
    ("member", "message"),
    [
        (HEADER + b"\x05" + b"\x80" * 10 + b"\x01", "count"),  # a struct of 2**70 fields
        (HEADER + b"\x05" + b"\x80" * 20 + b"\x01", "varint longer than 64 bits"),
        (HEADER + b"\x05\x02\x00\x00" + _vint(1 << 31), "count"),  # an array of 2**31 items
        (HEADER + b"\x05\x02\x00\x02" + _vint(1 << 20), "count"),  # a blob longer than the data
        (HEADER + b"\x05\x02\x00" + b"\x04\x01" * 40 + b"\x09\x00", "nested deeper"),
        (HEADER + b"\x05\x02\x00\x0c", "unknown value type"),
        (HEADER + b"\x05\x02\x00\x01\x06\x00", "not byte aligned"),
        (_event(0, 11, {}), "unknown tracker event id"),
        (_event(0, 0, {0: 1}), "lacks fields"),
        (_event(0, 0, {0: 1, 1: {0: 5}}), "lacks score fields"),
        (b"\x04" + _event(0, 0, {})[1:], "no event header"),
        (b"\x03\x00\x09", "truncated"),
        (_unit(1, 0, 1, b"\xff", 1), "UnicodeDecodeError"),
        (_event(0, 7, {0: b"x", 1: 1}), "TypeError"),  # a unit index that is no integer
    ],
)
def test_malformed_members_raise_clean_errors(member: bytes, message: str):
    with pytest.raises(tracker.TrackerError, match=message):
        _records(member)


def test_observer_owning_a_unit_is_left_to_sc2reader():
    with pytest.raises(tracker.TrackerUnsupported, match="observer"):
        _records(_unit(1, 0, 1, b"SCV", 3))


def test_no_member_gives_no_records():
    assert _records(b"") == tracker.StatsRecords([], [], [], 0)


def _only_unit(member: bytes) -> dict[str, Any]:
    (unit,) = _records(member).units
    return unit


def test_unit_life_follows_context_loader():
    unit = _only_unit(
        _unit(6, 10, 1, b"Hatchery", 1)  # started
        + _event(90, 7, {0: 1, 1: 1})  # done
        + _event(50, 4, {0: 1, 1: 1, 2: b"Lair"})  # morphs
        + _event(50, 2, {0: 1, 1: 1, 2: 2, 3: 0, 4: 0, 5: None, 6: None})  # killed by player 2
    )
    assert unit == {
        "pid": 1, "name": "Hatchery", "final_name": "Lair", "is_building": True, "is_worker": False,
        "started_loop": 10, "finished_loop": 100, "died_loop": 200, "killer_pid": 2,
    }


def test_a_second_type_on_the_first_loop_replaces_the_first_name():
    unit = _only_unit(_unit(1, 5, 1, b"VikingFighter", 1) + _event(0, 4, {0: 1, 1: 1, 2: b"VikingAssault"}))
    assert (unit["name"], unit["final_name"]) == ("VikingAssault", "VikingAssault")


def test_unknown_type_names_keep_the_last_known_type():
    unit = _only_unit(_unit(1, 5, 1, b"NoSuchUnit", 1) + _event(5, 4, {0: 1, 1: 1, 2: b"LocustMP"})
                      + _event(5, 4, {0: 1, 1: 1, 2: b"AlsoNoSuchUnit"}))
    assert (unit["name"], unit["final_name"]) == ("Locust", "Locust")
    unknown = _only_unit(_unit(1, 5, 1, b"NoSuchUnit", 1))
    assert (unknown["name"], unknown["final_name"], unknown["is_building"]) == ("Unknown", "Unknown", False)


def test_neutral_units_and_non_player_killers_are_left_out():
    member = (_unit(1, 0, 1, b"MineralField", 0) + _unit(1, 0, 2, b"Probe", 2)
              + _event(5, 2, {0: 2, 1: 1, 2: 16, 3: 0, 4: 0, 5: None, 6: None}))
    (probe,) = _records(member).units
    assert (probe["pid"], probe["is_worker"], probe["died_loop"], probe["killer_pid"]) == (2, True, 5, None)


def test_out_of_order_loops_are_visited_sorted_as_sc2reader_does():
    # The SCV comes last in the stream but at the earliest loop: sc2reader's engine sorts by loop,
    # so it meets the SCV first and lists it first.
    member = _unit(1, 10, 1, b"Hatchery", 1) + _event(20, 4, {0: 1, 1: 1, 2: b"Lair"}) + _unit(1, -25, 2, b"SCV", 1)
    records = _records(member)
    assert [(u["name"], u["final_name"], u["started_loop"]) for u in records.units] == [
        ("SCV", "SCV", 5), ("Hatchery", "Lair", 10)
    ]


def test_upgrades_drop_cosmetics():
    member = _event(0, 5, {0: 1, 1: b"SprayTerran", 2: 1}) + _event(100, 5, {0: 2, 1: b"Stimpack", 2: 1})
    assert _records(member).upgrades == [{"pid": 2, "name": "Stimpack", "loop": 100}]


if __name__ == "__main__" and "--write-names" in sys.argv:
    NAMES_MODULE.write_text(render_names_module(), encoding="utf-8")
    print(f"wrote {NAMES_MODULE}")
