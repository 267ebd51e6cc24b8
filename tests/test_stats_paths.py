"""The direct tracker path and sc2reader's give the same parse result, file for file.

`stats` decodes tracker events with tracker.py unless REPLAYCLI_TRACKER=sc2reader; tests/
test_tracker.py compares the records, this compares whole results as parse_file returns them
(rows, benchmarks, quality, status), on the samples and, when present, every corpus replay.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from replay_cli.parse import TRACKER_PATH_ENV, parse_file

MEASURED = ("parse_seconds", "cpu_seconds", "peak_rss_bytes", "parser")


def _both(path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[dict, dict]:
    monkeypatch.delenv(TRACKER_PATH_ENV, raising=False)
    direct = parse_file(str(path), "stats")
    monkeypatch.setenv(TRACKER_PATH_ENV, "sc2reader")
    reference = parse_file(str(path), "stats")
    monkeypatch.delenv(TRACKER_PATH_ENV)
    return direct, reference


def _same(direct: dict, reference: dict) -> bool:
    return {k: v for k, v in direct.items() if k not in MEASURED} == {
        k: v for k, v in reference.items() if k not in MEASURED}


def test_samples_parse_the_same_on_both_paths(samples: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for path in sorted(samples.glob("*.SC2Replay")):
        direct, reference = _both(path, monkeypatch)
        assert direct["parser"]["tracker_events"] == "replaycli", path
        assert reference["parser"]["tracker_events"] == "sc2reader", path
        assert _same(direct, reference), path


def test_every_replay_parses_the_same_on_both_paths(replay_files: list[Path], corpus_present: bool,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Every corpus replay; without the corpus, the samples and the session's synthetic games."""
    differences, direct_count = [], 0
    for path in replay_files:
        direct, reference = _both(path, monkeypatch)
        direct_count += (direct["parser"] or {}).get("tracker_events") == "replaycli"
        if not _same(direct, reference):
            differences.append(str(path))
    assert differences == []
    # The direct path really ran: the corpus's LotV and HotS replays, or every synthetic game.
    assert direct_count > (100 if corpus_present else len(replay_files) // 2)
