"""Shared fixtures: the real-replay corpus beside the checkout, isolated environment."""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
REPLAYS_ENV = "REPLAYCLI_TEST_REPLAYS"
DEFAULT_REPLAYS = REPO_ROOT.parent / "shared" / "replays"


def replays_dir() -> Path:
    """Return the real-replay corpus folder (env REPLAYCLI_TEST_REPLAYS overrides)."""
    return Path(os.environ.get(REPLAYS_ENV) or DEFAULT_REPLAYS)


@dataclass(frozen=True)
class ManifestRow:
    path: Path
    fields: dict[str, str]

    def __getitem__(self, key: str) -> str:
        return self.fields[key]


@pytest.fixture(scope="session")
def corpus() -> Path:
    """The folder of real replays; skip when it is absent."""
    folder = replays_dir()
    if not (folder / "MANIFEST.tsv").is_file():
        pytest.skip(f"real-replay corpus not found at {folder} (set {REPLAYS_ENV} to point at it)")
    return folder


@pytest.fixture(scope="session")
def manifest(corpus: Path) -> list[ManifestRow]:
    """MANIFEST.tsv rows, each with the replay's path on disk."""
    with open(corpus / "MANIFEST.tsv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    return [ManifestRow(corpus / (row["source"].replace("/", "+")) / row["path"], row) for row in rows]


@pytest.fixture(scope="session")
def replay(corpus: Path):
    """Look a corpus replay up by the end of its path."""

    def find(suffix: str) -> Path:
        matches = [p for p in corpus.rglob("*.SC2Replay") if p.as_posix().endswith(suffix)]
        assert len(matches) == 1, f"{suffix!r} matched {len(matches)} corpus files"
        return matches[0]

    return find


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees the developer's REPLAYCLI_* settings (the corpus location excepted)."""
    for name in list(os.environ):
        if name.startswith("REPLAYCLI_") and name != REPLAYS_ENV:
            monkeypatch.delenv(name)
    monkeypatch.delenv("WORKER_PROCESSES", raising=False)
