"""Tests of the synthetic replay writer: sc2reader reads back what we wrote."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from io import BytesIO
from pathlib import Path

import mpyq
import pytest
import sc2reader
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sc2reader.engine import GameEngine
from sc2reader.engine.plugins import APMTracker, ContextLoader

from replay_cli.synth import (
    BuildItem,
    ChatLine,
    GameDescription,
    ObserverDescription,
    PlayerDescription,
    StatsSample,
    describe_game,
    generate_descriptions,
    write_corpus,
    write_replay,
    write_samples,
)
from replay_cli.synth.catalogue import CORRUPT_SAMPLE_NAME, SCENARIOS
from replay_cli.synth.model import AI_DIFFICULTIES, PLAYER_COLORS

SC2READER_RESULTS = {"Win": "Win", "Loss": "Loss", "Tie": None, "Undecided": None}
DETAILS_RESULT_CODES = {"Undecided": 0, "Win": 1, "Loss": 2, "Tie": 3}
CHAT_TARGETS = {"all": 0, "allies": 2, "observers": 4}
ROUND_TRIP_GAMES = 16  # two of every scenario


def load(data: bytes, level: int) -> sc2reader.resources.Replay:
    """Parse with sc2reader, with APM tracking at level 4, without global state."""
    engine = GameEngine(plugins=[ContextLoader(), APMTracker()])
    return sc2reader.load_replay(BytesIO(data), load_level=level, engine=engine)


def expected_build_order(desc: GameDescription, player_id: int) -> list[tuple]:
    """(loop, event kind, name) the tracker stream must hold for one player."""
    expected = []
    for item in desc.players[player_id - 1].build_order:
        if item.kind == "unit":
            expected.append((item.loop, "UnitBornEvent", item.name))
        elif item.kind == "upgrade":
            expected.append((item.loop, "UpgradeCompleteEvent", item.name))
        else:
            expected.append((item.loop, "UnitInitEvent", item.name))
            done = item.loop if item.done_loop is None else item.done_loop
            expected.append((done, "UnitDoneEvent", item.name))
    return sorted(expected)


def actual_build_order(replay: sc2reader.resources.Replay, player_id: int) -> list[tuple]:
    """The same triples, as sc2reader decoded them."""
    unit_names = {}
    actual = []
    for event in replay.tracker_events:
        kind = type(event).__name__
        if kind in ("UnitBornEvent", "UnitInitEvent"):
            unit_names[event.unit_id] = (event.control_pid, event.unit_type_name)
            if event.control_pid == player_id:
                actual.append((event.frame, kind, event.unit_type_name))
        elif kind == "UnitDoneEvent":
            owner, name = unit_names[event.unit_id]
            if owner == player_id:
                actual.append((event.frame, kind, name))
        elif kind == "UpgradeCompleteEvent" and event.pid == player_id:
            assert event.count == 1
            actual.append((event.frame, kind, event.upgrade_type_name))
    return sorted(actual)


def stats_tuple(sample: StatsSample) -> tuple:
    return (
        sample.loop,
        sample.minerals_current,
        sample.vespene_current,
        sample.minerals_collection_rate,
        sample.vespene_collection_rate,
        sample.workers_active,
        float(sample.food_used),
        float(sample.food_made),
        sample.minerals_used_current_army,
        sample.vespene_used_current_army,
        sample.minerals_lost_army,
        sample.minerals_killed_army,
    )


def event_stats_tuple(event) -> tuple:
    return (
        event.frame,
        event.minerals_current,
        event.vespene_current,
        event.minerals_collection_rate,
        event.vespene_collection_rate,
        event.workers_active_count,
        event.food_used,
        event.food_made,
        event.minerals_used_current_army,
        event.vespene_used_current_army,
        event.minerals_lost_army,
        event.minerals_killed_army,
    )


def assert_summary_round_trip(desc: GameDescription, replay) -> None:
    """Level-2 facts: map, time, people, chat."""
    assert replay.map_name == desc.map_name
    assert replay.start_time == desc.start_time
    assert replay.time_zone == desc.utc_offset_hours
    assert replay.frames == desc.duration_loops
    assert replay.release_string == "5.0.15.95299"
    assert replay.expansion == "LotV"
    assert len(replay.players) == len(desc.players)
    for player, wanted in zip(replay.players, desc.players):
        assert player.play_race == wanted.race
        assert player.pick_race == wanted.race
        assert player.result == SC2READER_RESULTS[wanted.result]
        assert player.detail_data["result"] == DETAILS_RESULT_CODES[wanted.result]
        assert player.team_id == wanted.team
        assert player.handicap == wanted.handicap
        assert player.color.name == wanted.color
        assert player.is_human is not wanted.is_ai
        assert player.name == wanted.name
        if wanted.is_ai:
            assert player.difficulty == wanted.ai_difficulty
        else:
            assert player.clan_tag == wanted.clan_tag
            assert player.toon_handle == wanted.toon_handle
            assert player.mmr == wanted.mmr
    assert [o.name for o in replay.observers] == [o.name for o in desc.observers]
    assert [o.toon_handle for o in replay.observers] == [o.toon_handle for o in desc.observers]
    humans = desc.humans
    expected_chat = [
        (line.loop, line.sender_uid, CHAT_TARGETS[line.channel], line.text)
        for line in sorted(desc.chat, key=lambda line: line.loop)
    ]
    actual_chat = [(m.frame, m.pid, m.target, m.text) for m in replay.messages]
    assert actual_chat == expected_chat
    for message in replay.messages:
        assert message.player.name == humans[message.pid].name


def assert_gamemetadata(desc: GameDescription, data: bytes) -> None:
    archive = mpyq.MPQArchive(BytesIO(data))
    metadata = json.loads(archive.read_file("replay.gamemetadata.json"))
    assert metadata["Title"] == desc.map_name
    for entry, wanted in zip(metadata["Players"], desc.players, strict=True):
        assert entry.get("MMR") == wanted.mmr
        assert entry["APM"] == wanted.apm
        assert entry["Result"] == wanted.result


def assert_tracker_round_trip(desc: GameDescription, replay) -> None:
    """Level-3 facts: build orders and the stats timeline."""
    for player_id, wanted in enumerate(desc.players, start=1):
        assert actual_build_order(replay, player_id) == expected_build_order(desc, player_id)
        stats = [
            event_stats_tuple(e)
            for e in replay.tracker_events
            if type(e).__name__ == "PlayerStatsEvent" and e.pid == player_id
        ]
        assert stats == sorted(stats_tuple(s) for s in wanted.stats)


def assert_game_events(desc: GameDescription, replay) -> None:
    """Level-4 facts: every human has events; players who build have APM."""
    assert replay.game_events
    for player, wanted in zip(replay.players, desc.players):
        if wanted.is_ai:
            continue
        assert player.events
        if wanted.build_order and desc.duration_loops >= 60 * 22.4:
            assert player.avg_apm > 0


@pytest.fixture(scope="module")
def catalogue() -> list[tuple[GameDescription, bytes]]:
    return [(desc, write_replay(desc)) for desc in generate_descriptions(ROUND_TRIP_GAMES, 5)]


@pytest.mark.parametrize("level", [2, 3, 4])
def test_catalogue_round_trip(catalogue, level: int) -> None:
    for desc, data in catalogue:
        replay = load(data, level)
        assert_summary_round_trip(desc, replay)
        assert_gamemetadata(desc, data)
        if level >= 3:
            assert_tracker_round_trip(desc, replay)
        if level >= 4:
            assert_game_events(desc, replay)


def test_catalogue_covers_every_scenario(catalogue) -> None:
    descs = [desc for desc, _ in catalogue]
    sizes = {len(d.players) for d in descs}
    assert {2, 4, 8} <= sizes
    assert any(p.is_ai for d in descs for p in d.players)
    assert any(d.chat for d in descs)
    assert any(d.observers for d in descs)
    assert any(
        "[bold red]" in p.name or "\x1b[" in p.name or "DROP TABLE" in p.name
        for d in descs
        for p in d.players
    ) or any("DROP TABLE" in d.map_name or "\x1b[" in d.map_name for d in descs)
    assert any(ord(ch) > 0x2FF for d in descs for p in d.players for ch in p.name)
    durations = [d.duration_loops for d in descs]
    assert min(durations) < 22.4 * 20 and max(durations) > 22.4 * 60 * 25


def test_same_seed_same_bytes_and_distinct_indexes() -> None:
    first = [write_replay(d) for d in generate_descriptions(24, 9)]
    again = [write_replay(d) for d in generate_descriptions(24, 9)]
    assert first == again
    assert len({hashlib.sha256(d).hexdigest() for d in first}) == len(first)
    other_seed = [write_replay(d) for d in generate_descriptions(24, 10)]
    assert not set(first) & set(other_seed)
    # A game depends on (seed, index) only, not on how many were requested.
    assert write_replay(describe_game(9, 23)) == first[23]


def test_zlib_compression_round_trips(catalogue) -> None:
    desc, bz2_data = catalogue[0]
    zlib_data = write_replay(desc, compression="zlib")
    assert zlib_data != bz2_data
    assert zlib_data == write_replay(desc, compression="zlib")
    assert_summary_round_trip(desc, load(zlib_data, 2))


def test_committed_samples_match_regeneration(tmp_path: Path, samples: Path) -> None:
    written = write_samples(tmp_path)
    committed = sorted(p.relative_to(samples).as_posix() for p in samples.rglob("*")
                       if p.is_file() and p.name != "README.md")
    assert sorted(p.relative_to(tmp_path).as_posix() for p in written) == committed
    for path in written:
        name = path.relative_to(tmp_path)
        assert path.read_bytes() == (samples / name).read_bytes(), name
        assert path.stat().st_size < 100_000


def test_committed_samples_parse_except_the_corrupt_one(samples: Path) -> None:
    # The corrupt sample's name does not end in .SC2Replay, so a walk of samples/ finds only games.
    assert not (samples / CORRUPT_SAMPLE_NAME).match("*.SC2Replay")
    for path in [*sorted(samples.glob("*.SC2Replay")), samples / CORRUPT_SAMPLE_NAME]:
        if path == samples / CORRUPT_SAMPLE_NAME:
            with pytest.raises(sc2reader.exceptions.MPQError):
                sc2reader.load_replay(str(path), load_level=2)
        else:
            assert sc2reader.load_replay(str(path), load_level=4).players


def test_write_corpus_names_and_bytes(tmp_path: Path) -> None:
    paths = write_corpus(tmp_path, 10, 3, workers=1)
    assert [p.name for p in paths] == sorted(p.name for p in tmp_path.iterdir())
    assert paths[0].name == f"synth-3-000000-{SCENARIOS[0]}.SC2Replay"
    for index, path in enumerate(paths):
        assert path.read_bytes() == write_replay(describe_game(3, index), compression="zlib")
    parallel = write_corpus(tmp_path / "parallel", 10, 3, workers=2)
    assert [p.read_bytes() for p in parallel] == [p.read_bytes() for p in paths]


def test_archive_layout() -> None:
    data = write_replay(describe_game(1, 0))
    assert data[:4] == b"MPQ\x1b" and data[0x400:0x404] == b"MPQ\x1a"
    archive = mpyq.MPQArchive(BytesIO(data))
    assert set(archive.files) >= {
        b"replay.details",
        b"replay.initData",
        b"replay.attributes.events",
        b"replay.message.events",
        b"replay.tracker.events",
        b"replay.game.events",
        b"replay.gamemetadata.json",
    }


def test_invalid_descriptions_are_rejected() -> None:
    good = describe_game(1, 0)
    with pytest.raises(ValueError):
        write_replay(GameDescription(**{**good.__dict__, "duration_loops": 0}))
    bad_chat = ChatLine(loop=1, sender_uid=99, text="x")
    with pytest.raises(ValueError):
        write_replay(GameDescription(**{**good.__dict__, "chat": (bad_chat,)}))


# --- property test ----------------------------------------------------------

names = st.text(min_size=1, max_size=24)
loops = st.integers(min_value=0, max_value=20_000)
stats_samples = st.builds(
    StatsSample,
    loop=loops,
    minerals_current=st.integers(0, 100_000),
    vespene_current=st.integers(0, 100_000),
    minerals_collection_rate=st.integers(0, 10_000),
    vespene_collection_rate=st.integers(0, 10_000),
    workers_active=st.integers(0, 200),
    food_used=st.integers(0, 200),
    food_made=st.integers(0, 200),
    minerals_used_current_army=st.integers(0, 2**31 - 1),
    vespene_used_current_army=st.integers(0, 100_000),
    minerals_lost_army=st.integers(0, 100_000),
    minerals_killed_army=st.integers(0, 100_000),
)
build_items = st.builds(
    lambda loop, name, kind, build_time: BuildItem(
        loop, name, kind, None if build_time is None else loop + build_time
    ),
    loops,
    st.sampled_from(("SCV", "Marine", "Barracks", "Stimpack", "Pylon", "Drone")),
    st.sampled_from(("unit", "structure", "upgrade")),
    st.one_of(st.none(), st.integers(0, 2_000)),
)
toon_handles = st.builds(
    lambda region, realm, toon: f"{region}-S2-{realm}-{toon}",
    st.sampled_from((1, 2, 3, 5, 6, 98)),
    st.integers(1, 2),
    st.integers(0, 2**32),
)


@st.composite
def descriptions(draw) -> GameDescription:
    duration = draw(st.integers(min_value=1, max_value=20_000))
    team_sizes = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    players = []
    for index in range(sum(team_sizes)):
        is_ai = index > 0 and draw(st.booleans())  # the first player is human
        players.append(
            PlayerDescription(
                name=draw(names),
                race=draw(st.sampled_from(("Terran", "Protoss", "Zerg"))),
                team=1 if index < team_sizes[0] else 2,
                result=draw(st.sampled_from(("Win", "Loss", "Tie", "Undecided"))),
                clan_tag="" if is_ai else draw(st.text(max_size=8)),
                toon_handle=draw(toon_handles),
                is_ai=is_ai,
                ai_difficulty=draw(st.sampled_from(AI_DIFFICULTIES)),
                mmr=None if is_ai else draw(st.one_of(st.none(), st.integers(1, 9000))),
                apm=draw(st.integers(0, 999)),
                color=draw(st.sampled_from(PLAYER_COLORS)),
                handicap=draw(st.sampled_from((50, 60, 70, 80, 90, 100))),
                build_order=tuple(
                    item
                    for item in draw(st.lists(build_items, max_size=6))
                    if item.loop <= duration and (item.done_loop or 0) <= duration
                ),
                stats=tuple(s for s in draw(st.lists(stats_samples, max_size=5)) if s.loop <= duration),
            )
        )
    observers = tuple(
        ObserverDescription(name=draw(names), toon_handle=draw(toon_handles))
        for _ in range(draw(st.integers(0, 2)))
    )
    human_count = sum(1 for p in players if not p.is_ai) + len(observers)
    chat = draw(
        st.lists(
            st.builds(
                ChatLine,
                loop=st.integers(0, duration),
                sender_uid=st.integers(0, human_count - 1),
                text=st.text(max_size=80),
                channel=st.sampled_from(("all", "allies", "observers")),
            ),
            max_size=4,
        )
    )
    return GameDescription(
        map_name=draw(st.text(max_size=40)),
        start_time=datetime.fromtimestamp(draw(st.integers(1_300_000_000, 2_000_000_000)), tz=UTC),
        duration_loops=duration,
        players=tuple(players),
        observers=observers,
        chat=tuple(sorted(chat, key=lambda line: line.loop)),
        utc_offset_hours=draw(st.sampled_from((-8.0, -3.5, 0.0, 1.0, 5.75, 13.0))),
        game_mode=draw(st.sampled_from(("Ladder", "Private", "Public"))),
    )


@settings(
    max_examples=30,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(descriptions())
def test_property_write_parse_compare(desc: GameDescription) -> None:
    data = write_replay(desc)
    assert write_replay(desc) == data
    replay = load(data, 4)
    assert_summary_round_trip(desc, replay)
    assert_gamemetadata(desc, data)
    assert_tracker_round_trip(desc, replay)
    assert replay.game_events


# --- cross-check with Blizzard's own decoder ---------------------------------


def test_s2protocol_decodes_every_member(catalogue) -> None:
    versions = pytest.importorskip("s2protocol.versions")
    for desc, data in catalogue[:8]:
        archive = mpyq.MPQArchive(BytesIO(data))
        header = versions.latest().decode_replay_header(archive.header["user_data_header"]["content"])
        assert header["m_elapsedGameLoops"] == desc.duration_loops
        protocol = versions.build(header["m_version"]["m_baseBuild"])
        details = protocol.decode_replay_details(archive.read_file("replay.details"))
        assert details["m_title"].decode("utf-8") == desc.map_name
        init_data = protocol.decode_replay_initdata(archive.read_file("replay.initData"))
        users = init_data["m_syncLobbyState"]["m_userInitialData"]
        assert [u["m_name"].decode("utf-8") for u in users] == [h.name for h in desc.humans]
        tracker = list(protocol.decode_replay_tracker_events(archive.read_file("replay.tracker.events")))
        assert sum(1 for e in tracker if e["_eventid"] == 0) == sum(len(p.stats) for p in desc.players)
        game = list(protocol.decode_replay_game_events(archive.read_file("replay.game.events")))
        assert game
        messages = list(protocol.decode_replay_message_events(archive.read_file("replay.message.events")))
        assert [m["m_string"].decode("utf-8") for m in messages] == [
            line.text for line in sorted(desc.chat, key=lambda line: line.loop)
        ]
        protocol.decode_replay_attributes_events(archive.read_file("replay.attributes.events"))
