"""Deterministic catalogue of synthetic games, and writers for corpora/samples.

Game ``index`` of seed ``seed`` depends only on (seed, index), never on the
requested count, so corpora of different sizes share their prefixes.
"""

from __future__ import annotations

import os
import random
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

from replay_cli.synth.game import write_replay
from replay_cli.synth.model import (
    AI_DIFFICULTIES,
    PLAYER_COLORS,
    STATS_INTERVAL_LOOPS,
    BuildItem,
    ChatLine,
    GameDescription,
    ObserverDescription,
    PlayerDescription,
    StatsSample,
)

# The scenario of a game is chosen by index, so every slice of eight
# consecutive games covers all of them.
SCENARIOS = ("1v1", "2v2", "4v4", "vs-ai", "unicode", "hostile", "short", "long")
SAMPLES_SEED = 2026
SAMPLES_COUNT = 12
# The corrupt sample lives below samples/ under a name that does not end in .SC2Replay, so
# `replaycli ingest samples/` (which walks for that extension) stores every game and exits 0;
# naming the file explicitly still ingests it and records the failure.
CORRUPT_SAMPLE_NAME = "broken/truncated.SC2Replay.corrupt"
EPOCH = datetime(2025, 1, 1, tzinfo=UTC)
CORPUS_CHUNK = 250  # games per worker task
LOOPS_PER_MINUTE = 1344  # 22.4 loops per second at Faster speed

MAP_NAMES = (
    "Synthetic Station LE",
    "Quiet Orbit LE",
    "Glass Canyon LE",
    "Test Flats",
    "Harbor of Echoes LE",
    "Null Island LE",
)
PLAIN_NAMES = ("Alpha", "Bravo", "Charlie", "Delta", "Echo", "Foxtrot", "Golf", "Hotel")
UNICODE_NAMES = ("Zoë", "Ωmega", "李小龍", "Светлана", "한국어", "عربي", "😀Smiley", "Ünïcødé")
HOSTILE_NAMES = (
    "[bold red]x[/]",
    "\x1b[31mRedAlert\x1b[0m",
    "'); DROP TABLE replays;--",
    "Quote\"Name's",
    "<script>alert(1)</script>",
    "%s%n{0}${HOME}",
    "../../etc/passwd",
    "Tab\tComma,Semi;",
)
CLAN_TAGS = ("", "", "ABC", "Lqd", "TSM", "ŁÓD")
HOSTILE_CLAN_TAGS = ("[/]", "\x1b[1m", "'--", '"', "[i]")
CHAT_TEXTS = ("glhf", "gl hf", "gg", "wp", "nice drop", "brb", "!!!", "gg wp")
UNICODE_CHAT = ("こんにちは", "добрый вечер", "🙂 gg", "ça va?")
HOSTILE_CHAT = (
    "[link=file:///etc/passwd]click[/link]",
    "\x1b[2J\x1b[Hcleared",
    "'; DELETE FROM chat; --",
    "line one\nline two",
)
BUILD_ORDERS = {
    "Terran": (
        ("SCV", "unit"),
        ("SupplyDepot", "structure"),
        ("Barracks", "structure"),
        ("Refinery", "structure"),
        ("Marine", "unit"),
        ("CommandCenter", "structure"),
        ("Factory", "structure"),
        ("Stimpack", "upgrade"),
        ("Marauder", "unit"),
        ("ShieldWall", "upgrade"),
    ),
    "Protoss": (
        ("Probe", "unit"),
        ("Pylon", "structure"),
        ("Gateway", "structure"),
        ("Assimilator", "structure"),
        ("CyberneticsCore", "structure"),
        ("Nexus", "structure"),
        ("Stalker", "unit"),
        ("WarpGateResearch", "upgrade"),
        ("Zealot", "unit"),
        ("BlinkTech", "upgrade"),
    ),
    "Zerg": (
        ("Drone", "unit"),
        ("Overlord", "unit"),
        ("SpawningPool", "structure"),
        ("Hatchery", "structure"),
        ("Extractor", "structure"),
        ("Queen", "unit"),
        ("Zergling", "unit"),
        ("zerglingmovementspeed", "upgrade"),
        ("RoachWarren", "structure"),
        ("Roach", "unit"),
    ),
}
STRUCTURE_BUILD_LOOPS = 480


def _toon_handle(rng: random.Random, region: int) -> str:
    return f"{region}-S2-{rng.choice((1, 2))}-{rng.randrange(100_000, 99_999_999)}"


def _build_order(rng: random.Random, race: str, duration: int) -> tuple[BuildItem, ...]:
    """A plausible build order that fits inside the game."""
    items = []
    loop = rng.randrange(0, 64)
    for name, kind in BUILD_ORDERS[race]:
        if loop > duration:
            break
        done = min(duration, loop + STRUCTURE_BUILD_LOOPS) if kind == "structure" else None
        items.append(BuildItem(loop=loop, name=name, kind=kind, done_loop=done))
        loop += rng.randrange(150, 900)
    return tuple(items)


def _stats(rng: random.Random, duration: int) -> tuple[StatsSample, ...]:
    """A stats sample every 160 loops with resources that grow over time."""
    samples = []
    workers, minerals, army = 12, 50, 0
    for loop in range(STATS_INTERVAL_LOOPS, duration + 1, STATS_INTERVAL_LOOPS):
        workers = min(80, workers + rng.randrange(0, 3))
        minerals = max(0, minerals + rng.randrange(-200, 260))
        army = max(0, army + rng.randrange(-150, 250))
        samples.append(
            StatsSample(
                loop=loop,
                minerals_current=minerals,
                vespene_current=rng.randrange(0, 600),
                minerals_collection_rate=workers * 55,
                vespene_collection_rate=rng.randrange(0, 900),
                workers_active=workers,
                food_used=min(200, workers + army // 100),
                food_made=min(200, workers + army // 100 + 8),
                minerals_used_current_army=army,
                vespene_used_current_army=army // 3,
                minerals_lost_army=rng.randrange(0, 500),
                minerals_killed_army=rng.randrange(0, 500),
            )
        )
    return tuple(samples)


def _names(rng: random.Random, scenario: str, count: int, index: int) -> list[str]:
    if scenario == "hostile":
        # Walk the hostile list in order so the first hostile game already has
        # rich markup and ANSI escapes, and later ones cover the rest.
        start = (index // len(SCENARIOS)) * count
        return [HOSTILE_NAMES[(start + k) % len(HOSTILE_NAMES)] for k in range(count)]
    pool = UNICODE_NAMES if scenario == "unicode" else PLAIN_NAMES
    picked = rng.sample(pool, count)
    # Suffix a number so names stay distinct across games.
    return [f"{name}{rng.randrange(1, 99)}" for name in picked]


def _team_sizes(rng: random.Random, scenario: str) -> tuple[int, int]:
    if scenario == "vs-ai":
        return rng.choice(((1, 1), (2, 2)))
    # Hostile games are 2v2 so one game carries four kinds of hostile name.
    return {"2v2": (2, 2), "4v4": (4, 4), "hostile": (2, 2)}.get(scenario, (1, 1))


def _duration(rng: random.Random, scenario: str) -> int:
    if scenario == "short":
        return rng.randrange(22, 400)  # one second to a quarter minute
    if scenario == "long":
        return rng.randrange(30, 45) * LOOPS_PER_MINUTE
    return rng.randrange(4, 16) * LOOPS_PER_MINUTE + rng.randrange(0, LOOPS_PER_MINUTE)


def _chat(rng: random.Random, scenario: str, human_count: int, observer_count: int, duration: int) -> list[ChatLine]:
    """A few chat lines from the humans; observers (the last senders) write to the observers' channel."""
    chat_pool = {"unicode": UNICODE_CHAT, "hostile": HOSTILE_CHAT}.get(scenario, CHAT_TEXTS)
    chat = []
    chatty = scenario in ("1v1", "unicode", "hostile")
    for _ in range(rng.randrange(1 if chatty else 0, 5)):
        sender = rng.randrange(human_count)
        channel = "observers" if sender >= human_count - observer_count else "all"
        if channel == "all" and rng.random() < 0.3:
            channel = "allies"
        chat.append(ChatLine(rng.randrange(0, duration + 1), sender, rng.choice(chat_pool), channel))
    return chat


def _map_name(rng: random.Random, scenario: str) -> str:
    """A ladder map's name; the hostile scenario replaces it with markup, SQL or a terminal escape."""
    map_name = rng.choice(MAP_NAMES)
    if scenario == "hostile":
        map_name = rng.choice(("[blink]Map[/blink]", "Map'; DROP TABLE maps;--", "\x1b[7mMap"))
    return map_name


def describe_game(seed: int, index: int) -> GameDescription:
    """The game number ``index`` of catalogue ``seed``."""
    rng = random.Random(f"replaycli-synth:{seed}:{index}")
    scenario = SCENARIOS[index % len(SCENARIOS)]
    duration = _duration(rng, scenario)
    region = rng.choice((1, 2, 3))
    sizes = _team_sizes(rng, scenario)
    names = _names(rng, scenario, sum(sizes), index)
    winner = rng.choices((1, 2, 0), weights=(45, 45, 10))[0]  # 0: tie/undecided
    draw_result = rng.choice(("Tie", "Undecided"))
    colors = rng.sample(PLAYER_COLORS, sum(sizes))
    ladder = scenario not in ("vs-ai", "hostile") and rng.random() < 0.7
    players = []
    for position, name in enumerate(names):
        team = 1 if position < sizes[0] else 2
        is_ai = scenario == "vs-ai" and team == 2
        race = rng.choice(("Terran", "Protoss", "Zerg"))
        result = draw_result if winner == 0 else ("Win" if team == winner else "Loss")
        players.append(
            PlayerDescription(
                name=f"A.I. {position + 1}" if is_ai else name,
                race=race,
                team=team,
                result=result,
                clan_tag=""
                if is_ai
                else rng.choice(HOSTILE_CLAN_TAGS if scenario == "hostile" else CLAN_TAGS),
                toon_handle=_toon_handle(rng, region),
                is_ai=is_ai,
                ai_difficulty=rng.choice(AI_DIFFICULTIES) if is_ai else "Medium",
                mmr=rng.randrange(1500, 6500) if ladder and not is_ai else None,
                apm=rng.randrange(10, 60) if is_ai else rng.randrange(40, 420),
                color=colors[position],
                handicap=100 if rng.random() < 0.9 else rng.choice((50, 70, 90)),
                build_order=_build_order(rng, race, duration),
                stats=_stats(rng, duration),
            )
        )
    observer_count = 0 if ladder or scenario == "short" else rng.randrange(0, 3)
    observers = tuple(
        ObserverDescription(name=f"Obs{n}", toon_handle=_toon_handle(rng, region))
        for n in range(observer_count)
    )
    human_count = sum(1 for p in players if not p.is_ai) + observer_count
    chat = _chat(rng, scenario, human_count, observer_count, duration)
    map_name = _map_name(rng, scenario)
    # Spacing games 17 minutes (+ the seed) apart keeps every index distinct.
    start = EPOCH + timedelta(minutes=17 * index, seconds=seed % 86_400)
    return GameDescription(
        map_name=map_name,
        start_time=start,
        duration_loops=duration,
        players=tuple(players),
        observers=observers,
        chat=tuple(sorted(chat, key=lambda line: line.loop)),
        utc_offset_hours=rng.choice((-8.0, -5.0, 0.0, 1.0, 2.0, 5.5, 9.0)),
        game_mode="Ladder" if ladder else rng.choice(("Private", "Public")),
        map_author=_toon_handle(rng, region),
    )


def generate_descriptions(count: int, seed: int) -> list[GameDescription]:
    """``count`` distinct, deterministic game descriptions for ``seed``."""
    return [describe_game(seed, index) for index in range(count)]


def replay_file_name(seed: int, index: int) -> str:
    """The stable file name of game ``index`` of catalogue ``seed``."""
    scenario = SCENARIOS[index % len(SCENARIOS)]
    return f"synth-{seed}-{index:06d}-{scenario}.SC2Replay"


def _write_corpus_range(outdir: Path, seed: int, start: int, stop: int, compression: str) -> None:
    """Write games ``start`` to ``stop - 1`` (one worker's share)."""
    for index in range(start, stop):
        data = write_replay(describe_game(seed, index), compression)
        (outdir / replay_file_name(seed, index)).write_bytes(data)


def write_corpus(
    outdir: Path,
    count: int,
    seed: int,
    *,
    workers: int | None = None,
    compression: str = "zlib",
) -> list[Path]:
    """Write ``count`` synthetic replays into ``outdir``; return their paths.

    Files are named by seed and index, so re-running overwrites them with the
    same bytes.  ``workers`` processes share the work (default: one per CPU);
    zlib is the default compression because it is ~4x faster than bzip2.
    """
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    workers = max(1, min(workers or os.cpu_count() or 1, count // CORPUS_CHUNK + 1))
    if workers == 1:
        _write_corpus_range(outdir, seed, 0, count, compression)
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            futures = [
                pool.submit(
                    _write_corpus_range,
                    outdir,
                    seed,
                    start,
                    min(count, start + CORPUS_CHUNK),
                    compression,
                )
                for start in range(0, count, CORPUS_CHUNK)
            ]
            for future in futures:
                future.result()  # re-raise a worker's exception here
    return [outdir / replay_file_name(seed, index) for index in range(count)]


def sample_file_name(index: int) -> str:
    """The file name of committed sample ``index``."""
    return f"{index:02d}-{SCENARIOS[index % len(SCENARIOS)]}.SC2Replay"


def corrupt_sample(valid_replay: bytes) -> bytes:
    """A replay cut off mid-archive: the header survives, the tables do not."""
    return valid_replay[: len(valid_replay) // 2]


def write_samples(outdir: Path) -> list[Path]:
    """Write exactly the committed ``samples/`` set (12 replays + 1 corrupt)."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    paths = []
    first_replay = b""
    for index in range(SAMPLES_COUNT):
        data = write_replay(describe_game(SAMPLES_SEED, index))
        first_replay = first_replay or data
        path = outdir / sample_file_name(index)
        path.write_bytes(data)
        paths.append(path)
    corrupt_path = outdir / CORRUPT_SAMPLE_NAME
    corrupt_path.parent.mkdir(exist_ok=True)
    corrupt_path.write_bytes(corrupt_sample(first_replay))
    paths.append(corrupt_path)
    return paths
