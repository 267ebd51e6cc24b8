"""`replaycli parse --anonymize KEYFILE`: no identity in what it prints, the export's pseudonyms.

Real CLI on the samples (unicode and hostile names among them) and, when present, a slice of
the corpus; the byte scan is over the raw stdout, as a published dataset would be read.
"""

from __future__ import annotations

import json
from pathlib import Path

from replay_cli.parse import parse_file
from replay_cli.pseudonym import Pseudonymizer, pseudonymise_result

KEY = b"k" * 32
MIN_SCANNED_CHARS = 4  # shorter names ("Bo") also occur inside unrelated words and numbers


def _identities(paths: list[Path]) -> set[str]:
    """Every name, clan tag, handle, chat text and file name the replays hold, as the tool reads them."""
    found: set[str] = set()
    for path in paths:
        result = parse_file(str(path), "summary")
        found.add(path.name)
        for player in result["players"]:
            found.update(v for v in (player["name"], player["clan_tag"], player["toon_handle"]) if v)
        found.update(line["text"] for line in result["chat"] if line["text"])
    return {value for value in found if len(value) >= MIN_SCANNED_CHARS}


def _strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for item in value.values() for s in _strings(item)]
    if isinstance(value, list):
        return [s for item in value for s in _strings(item)]
    return []


def _games(samples: Path, corpus_or_none: Path | None) -> list[Path]:
    games = sorted(samples.glob("*.SC2Replay"))
    if corpus_or_none is not None:
        games += sorted(corpus_or_none.rglob("*.SC2Replay"))[::40]
    return games


def test_anonymized_parse_output_holds_no_identity(tmp_path: Path, replaycli, samples: Path) -> None:
    from tests.conftest import _corpus_or_none

    key = tmp_path / "replaycli.key"
    key.write_bytes(KEY)
    games = _games(samples, _corpus_or_none())
    proc = replaycli.run("parse", *map(str, games), "--depth", "summary", "--json", "--anonymize", str(key))
    assert proc.returncode in (0, 1), proc.stderr
    printed = proc.stdout.decode("utf-8")
    results = json.loads(printed)
    # Scan the raw bytes and every decoded string too: JSON may escape a non-ASCII name.
    texts = "\n".join(_strings(results))
    leaks = sorted(value for value in _identities(games)
                   if value in printed or value.encode() in proc.stdout or value in texts)
    assert leaks == []
    assert all(result["chat"] == [] or {line["text"] for line in result["chat"]} == {"[redacted]"}
               for result in results)


def test_the_pseudonyms_are_the_exports(tmp_path: Path, replaycli, samples: Path) -> None:
    key = tmp_path / "replaycli.key"
    key.write_bytes(KEY)
    path = samples / "05-hostile.SC2Replay"
    proc = replaycli.run("parse", str(path), "--depth", "summary", "--json", "--anonymize", str(key),
                         "--chat", "keep", text=True)
    assert proc.returncode == 0, proc.stderr
    printed = json.loads(proc.stdout)
    expected = pseudonymise_result(parse_file(str(path), "summary"), Pseudonymizer(KEY), "keep")
    assert [p["name"] for p in printed["players"]] == [p["name"] for p in expected["players"]]
    assert printed["source"] == expected["source"] == f"{printed['sha256']}.SC2Replay"
    other = tmp_path / "other.key"
    other.write_bytes(b"o" * 32)
    again = json.loads(replaycli.run("parse", str(path), "--depth", "summary", "--json", "--anonymize",
                                     str(other), text=True).stdout)
    assert [p["name"] for p in again["players"]] != [p["name"] for p in printed["players"]]


def test_a_short_key_is_a_usage_error(tmp_path: Path, replaycli, samples: Path) -> None:
    key = tmp_path / "short.key"
    key.write_bytes(b"short")
    proc = replaycli.run("parse", str(samples / "00-1v1.SC2Replay"), "--anonymize", str(key), text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
