"""Pseudonymising parse results: no identity left, and the same pseudonyms the export writes."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from replay_cli.parse import parse_file
from replay_cli.pseudonym import REDACTED, Pseudonymizer, pseudonymise_result
from tests.test_export import SAMPLES, export, ingest, read_back

KEY = b"a test key of thirty-two bytes!!"


@pytest.fixture(scope="module")
def results() -> list[dict]:
    return [dict(parse_file(str(path), "summary")) for path in sorted(SAMPLES.glob("*.SC2Replay"))]


def leaves(document: object) -> list[str]:
    if isinstance(document, dict):
        return [leaf for value in document.values() for leaf in leaves(value)]
    if isinstance(document, list):
        return [leaf for value in document for leaf in leaves(value)]
    return [str(document)] if document is not None else []


def test_no_identity_is_left_in_a_pseudonymised_result(results: list[dict]):
    for result in results:
        before = copy.deepcopy(result)
        hidden = pseudonymise_result(result, Pseudonymizer(KEY))
        assert result == before  # the input is left alone
        needles = {p["name"] for p in result["players"]} | {p["toon_handle"] for p in result["players"]}
        needles |= {p["clan_tag"] for p in result["players"]} | {m["text"] for m in result["chat"]}
        needles |= {m["sender_name"] for m in result["chat"]} | {result["source"], Path(result["source"]).stem}
        needles -= {None, ""}
        text = json.dumps(hidden, ensure_ascii=False)
        values = set(leaves(hidden))
        for needle in needles:
            assert needle not in values, needle
            assert len(needle) < 6 or needle not in text, needle  # short ones occur inside hex by chance
        assert hidden["source"] == f"{result['sha256']}.SC2Replay"
        assert all(m["text"] == REDACTED for m in hidden["chat"])
        assert len(hidden["players"]) == len(result["players"]) > 0


def test_result_pseudonyms_match_the_export(results: list[dict], tmp_path: Path):
    db = tmp_path / "samples.db"
    ingest(SAMPLES, db)
    key_file = tmp_path / "key"
    key_file.write_bytes(KEY)
    export(db, tmp_path / "out", "--format", "jsonl", "--anonymize", str(key_file), "--tables", "players,replays")
    replays = read_back(tmp_path / "out", "replays", "jsonl")
    sha_of = {r["id"]: r["sha256"] for r in replays}
    exported = {(sha_of[p["replay_id"]], p["slot"]): p for p in read_back(tmp_path / "out", "players", "jsonl")}
    match_keys = {r["sha256"]: r["match_key"] for r in replays}
    for result in results:
        hidden = pseudonymise_result(result, Pseudonymizer(KEY), chat="keep")
        assert hidden["replay"]["match_key"] == match_keys[result["sha256"]]
        for slot, player in enumerate(hidden["players"]):
            row = exported[(result["sha256"], slot)]
            assert [player[k] for k in ("name", "clan_tag", "toon_handle", "toon_id")] == \
                [row[k] for k in ("name", "clan_tag", "toon_handle", "toon_id")]
        assert [m["text"] for m in hidden["chat"]] == [m["text"] for m in result["chat"]]
        assert pseudonymise_result(result, Pseudonymizer(KEY), chat="drop")["chat"] == []
