"""Shared fixtures: paths, the real CLI in a subprocess, replays to test on, an isolated environment.

Replays come from the real-replay corpus beside the checkout when it is there (env
REPLAYCLI_TEST_REPLAYS overrides its location), else from the shipped samples/ and from games the
suite writes with the project's synthetic replay writer. So a fresh clone runs the end-to-end tests
too; only the tests that check values known from particular real games need the corpus, and they
skip saying so.
"""

from __future__ import annotations

import csv
import hashlib
import os
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from replay_cli.synth import GameDescription, describe_game, write_corpus
from replay_cli.synth.build import BASE_BUILD, GAME_LOOPS_PER_SECOND, RELEASE_STRING
from replay_cli.synth.catalogue import SAMPLES_COUNT, SAMPLES_SEED, sample_file_name

REPO_ROOT = Path(__file__).resolve().parent.parent
# Test workers unpickle helpers such as tests.faults.fault_parse by reference, and the fork server
# copies sys.path once when it starts: the repository root must be importable before any pool exists.
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

SAMPLES_DIR = REPO_ROOT / "samples"
CORRUPT_SAMPLE = SAMPLES_DIR / "broken" / "truncated.SC2Replay.corrupt"
REPLAYS_ENV = "REPLAYCLI_TEST_REPLAYS"
DEFAULT_REPLAYS = REPO_ROOT.parent / "shared" / "replays"
NEEDS_CORPUS = "it checks values known from particular real games"
# Without the corpus, tests that need many distinct replays get the samples plus this many
# synthetic games; 64 keeps more than 50 of them longer than a minute (one scenario in eight is short).
SYNTH_GAMES = 64
SYNTH_SEED = 9
CLI_TIMEOUT_S = 120
# Set when the suite runs as on Windows: PYTHONPATH=tests/portable_site (see its sitecustomize.py).
PORTABLE_SITE = ([str(REPO_ROOT / "tests" / "portable_site")]
                 if getattr(sys.modules.get("sitecustomize"), "PORTABLE", False) else [])

# Without the corpus, each corpus replay a test names is played by a sample of the same shape; no two
# corpus replays share a stand-in, so a batch of them never holds an accidental byte-identical copy.
STAND_INS = {
    "tests/replays/1v1.SC2Replay": "00-1v1.SC2Replay",
    "tests/replays/2v2.SC2Replay": "01-2v2.SC2Replay",  # 4 players
    "tests/replays/1v1_computer.SC2Replay": "03-vs-ai.SC2Replay",
    "tests/replays/1v1_obs.SC2Replay": "09-2v2.SC2Replay",  # an observer
    "spawningtool/replays/patch_5_0_14_tvp.SC2Replay": "08-1v1.SC2Replay",
    "spawningtool/replays/patch_5_0_16.SC2Replay": "02-4v4.SC2Replay",  # the costliest sample to parse
    "test_replays/1.0.0.16117/1.SC2Replay": "04-unicode.SC2Replay",
}


def replays_dir() -> Path:
    """Return the real-replay corpus folder (env REPLAYCLI_TEST_REPLAYS overrides)."""
    return Path(os.environ.get(REPLAYS_ENV) or DEFAULT_REPLAYS)


def _corpus_or_none() -> Path | None:
    folder = replays_dir()
    return folder if (folder / "MANIFEST.tsv").is_file() else None


def sample_games() -> list[Path]:
    """The shipped sample games (the corrupt sample is not among them)."""
    return sorted(SAMPLES_DIR.glob("*.SC2Replay"))


@dataclass(frozen=True)
class ManifestRow:
    path: Path
    fields: dict[str, str]

    def __getitem__(self, key: str) -> str:
        return self.fields[key]


# --- paths ------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The checkout's root folder."""
    return REPO_ROOT


@pytest.fixture(scope="session")
def samples() -> Path:
    """The shipped samples/ folder."""
    return SAMPLES_DIR


@pytest.fixture(scope="session")
def corrupt_sample() -> Path:
    """The deliberately corrupt sample, kept where a walk of samples/ does not find it."""
    return CORRUPT_SAMPLE


# --- the real CLI in a subprocess -------------------------------------------------------------------


class ReplayCli:
    """Run `python -m replay_cli` (or a test entry point wrapping it) as a real child process.

    The child runs from the repository root with it on PYTHONPATH (so `tests.*` modules import there
    and in its workers), stdin closed unless given, and none of the developer's REPLAYCLI_* settings
    nor the FAULT_* switches of tests/fault_cli.py unless a test passes them.
    """

    def environment(self, extra: Mapping[str, str] | None = None, *, inherit: bool = True) -> dict[str, str]:
        """The child's environment: this one without REPLAYCLI_* or FAULT_* (or only PATH), plus extra."""
        if inherit:
            env = {k: v for k, v in os.environ.items()
                   if not k.startswith(("REPLAYCLI_", "FAULT_")) and k != "WORKER_PROCESSES"}
        else:
            env = {"PATH": "/usr/bin:/bin"}
        # A suite run in the portable simulation keeps it in every CLI it starts.
        env["PYTHONPATH"] = os.pathsep.join([*PORTABLE_SITE, str(REPO_ROOT)])
        env.update(extra or {})
        return env

    def start(self, *args: str, module: str = "replay_cli", env: Mapping[str, str] | None = None,
              inherit_env: bool = True, **popen: Any) -> subprocess.Popen:
        """Start the CLI; popen keywords (stdout, stderr, stdin, start_new_session, ...) pass through."""
        popen.setdefault("stdin", subprocess.DEVNULL)
        return subprocess.Popen([sys.executable, "-m", module, *args], cwd=REPO_ROOT,
                                env=self.environment(env, inherit=inherit_env), **popen)

    def run(self, *args: str, input: bytes | str | None = None, timeout: float = CLI_TIMEOUT_S,
            **options: Any) -> subprocess.CompletedProcess:
        """Run the CLI to completion and capture stdout and stderr (text=True for str)."""
        if input is not None:
            options["stdin"] = subprocess.PIPE
        proc = self.start(*args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **options)
        try:
            stdout, stderr = proc.communicate(input, timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise
        return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


@pytest.fixture(scope="session")
def replaycli() -> ReplayCli:
    """The real command line, run as a child process: `replaycli.run(...)` or `replaycli.start(...)`."""
    return ReplayCli()


@pytest.fixture
def seeded_db(replaycli: ReplayCli) -> Callable[..., Path]:
    """Make a database by ingesting replays with the real CLI: seeded_db(db_path, *replays) -> db_path."""

    def seed(db_path: Path, *replays: Path, depth: str = "summary") -> Path:
        proc = replaycli.run("ingest", *map(str, replays), "--db", str(db_path), "--workers", "0", "--depth", depth,
                             text=True)
        assert proc.returncode == 0, proc.stderr
        return db_path

    return seed


# --- replays ----------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def corpus() -> Path:
    """The folder of real replays; skip, saying why, when it is absent."""
    folder = _corpus_or_none()
    if folder is None:
        pytest.skip(f"real-replay corpus not found at {replays_dir()} (set {REPLAYS_ENV} to point at it), "
                    f"and {NEEDS_CORPUS}")
    return folder


@pytest.fixture(scope="session")
def corpus_present() -> bool:
    """Whether the real-replay corpus is there, for tests that pick their inputs by it."""
    return _corpus_or_none() is not None


@pytest.fixture(scope="session")
def manifest(corpus: Path) -> list[ManifestRow]:
    """MANIFEST.tsv rows, each with the replay's path on disk."""
    with open(corpus / "MANIFEST.tsv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    return [ManifestRow(corpus / (row["source"].replace("/", "+")) / row["path"], row) for row in rows]


def _find_in(folder: Path, suffix: str) -> Path:
    matches = [p for p in folder.rglob("*.SC2Replay") if p.as_posix().endswith(suffix)]
    assert len(matches) == 1, f"{suffix!r} matched {len(matches)} corpus files"
    return matches[0]


@pytest.fixture(scope="session")
def replay(corpus: Path) -> Callable[[str], Path]:
    """Look a corpus replay up by the end of its path (tests that need that very game)."""
    return lambda suffix: _find_in(corpus, suffix)


@pytest.fixture(scope="session")
def game() -> Callable[[str], Path]:
    """Look a corpus replay up by the end of its path, or its sample stand-in without the corpus.

    For tests that need a valid game of some shape, not the values of that particular game.
    """
    folder = _corpus_or_none()

    def find(suffix: str) -> Path:
        if folder is not None:
            return _find_in(folder, suffix)
        assert suffix in STAND_INS, f"no sample stands in for {suffix!r}: add one to STAND_INS in conftest.py"
        return SAMPLES_DIR / STAND_INS[suffix]

    return find


@pytest.fixture(scope="session")
def replay_folder() -> Path:
    """A folder whose *.SC2Replay files all parse: the corpus (its one broken file included), else samples/."""
    return _corpus_or_none() or SAMPLES_DIR


@pytest.fixture(scope="session")
def synth_games(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """SYNTH_GAMES distinct synthetic replays, written once per session."""
    return write_corpus(tmp_path_factory.mktemp("synth"), SYNTH_GAMES, SYNTH_SEED, workers=1)


def _manifest_row(path: Path, desc: GameDescription) -> ManifestRow:
    """What MANIFEST.tsv would say about a synthetic game, from the description it was written from."""
    team_sizes: dict[int, int] = {}
    for player in desc.players:
        team_sizes[player.team] = team_sizes.get(player.team, 0) + 1
    ended = desc.start_time + timedelta(seconds=desc.duration_loops / GAME_LOOPS_PER_SECOND)
    return ManifestRow(path, {
        "source": "synthetic", "path": path.name, "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "sc2reader2_status": "ok", "sc2reader4_status": "ok", "map_name": desc.map_name,
        "release": RELEASE_STRING, "base_build": str(BASE_BUILD), "category": desc.game_mode,
        "date": ended.date().isoformat(), "players": str(len(desc.players)), "observers": str(len(desc.observers)),
        "game_type": "v".join(str(team_sizes[team]) for team in sorted(team_sizes)),
        "ai_players": str(sum(player.is_ai for player in desc.players)),
    })


@pytest.fixture(scope="session")
def replay_manifest(request: pytest.FixtureRequest) -> list[ManifestRow]:
    """MANIFEST.tsv rows of the corpus, else rows for the samples and synthetic games, made from their descriptions."""
    if _corpus_or_none() is not None:
        return request.getfixturevalue("manifest")
    rows = [_manifest_row(SAMPLES_DIR / sample_file_name(index), describe_game(SAMPLES_SEED, index))
            for index in range(SAMPLES_COUNT)]
    rows += [_manifest_row(path, describe_game(SYNTH_SEED, index))
             for index, path in enumerate(request.getfixturevalue("synth_games"))]
    return rows


@pytest.fixture(scope="session")
def replay_files(replay_manifest: list[ManifestRow]) -> list[Path]:
    """Many replays to parse: every corpus file in manifest order, else the samples and synthetic games."""
    return [row.path for row in replay_manifest]


@pytest.fixture(scope="session")
def distinct_replays(request: pytest.FixtureRequest) -> list[Path]:
    """Replays that parse at every depth, no two byte-identical: from the corpus, else samples and synth."""
    if _corpus_or_none() is None:
        return [*sample_games(), *request.getfixturevalue("synth_games")]
    seen: set[str] = set()
    picked = []
    for row in sorted(request.getfixturevalue("manifest"), key=lambda r: r["sha256"]):
        if row["sha256"] in seen or row["sc2reader4_status"] != "ok" or not row.path.is_file():
            continue
        seen.add(row["sha256"])
        picked.append(row.path)
    return picked


@dataclass(frozen=True)
class IngestSet:
    """Inputs for a whole-folder ingest, and what storing them must give: exactly one input fails."""

    inputs: tuple[str, ...]
    files: int  # one files row per input file
    stored: int  # replays stored
    hashes: frozenset[str]  # every sha256 a stored replay may have
    failure: tuple[str, str, str]  # (file name, error kind, error type) of the one failing input
    failure_release: str | None  # the release a failure row carries, read from the header when it survives

    def paths(self) -> list[str]:
        """Every input file, as a walk of the folders and the named files give them, sorted."""
        found = []
        for item in map(Path, self.inputs):
            found += item.rglob("*.SC2Replay") if item.is_dir() else [item]
        return sorted(map(str, found))


@pytest.fixture(scope="session")
def ingest_set(request: pytest.FixtureRequest) -> IngestSet:
    """The corpus with its header-only testError2, else samples/ plus the corrupt sample named explicitly."""
    folder = _corpus_or_none()
    if folder is not None:
        rows = request.getfixturevalue("manifest")
        hashes = frozenset(row["sha256"] for row in rows)
        return IngestSet((str(folder),), len(rows), len(hashes) - 1, hashes,
                         ("testError2.SC2Replay", "invalid_replay", "InvalidReplay"), "5.0.10.88500")
    games = sample_games()
    hashes = frozenset(hashlib.sha256(p.read_bytes()).hexdigest() for p in games)
    return IngestSet((str(SAMPLES_DIR), str(CORRUPT_SAMPLE)), len(games) + 1, len(games), hashes,
                     (CORRUPT_SAMPLE.name, "parse_error", "MPQError"), None)


# --- isolation --------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees the developer's REPLAYCLI_* settings (the corpus location excepted)."""
    for name in list(os.environ):
        if name.startswith("REPLAYCLI_") and name != REPLAYS_ENV:
            monkeypatch.delenv(name)
    monkeypatch.delenv("WORKER_PROCESSES", raising=False)

