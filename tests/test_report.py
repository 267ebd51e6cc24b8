"""`replaycli report`: its numbers against independent SQL, its page in a real headless browser.

The database is made by really ingesting samples/ (and the corrupt sample, for a failure), plus
synthetic games written here: one person under two accounts, a player named like a script tag, a
map named like an <img> tag, two copies of one game and games spread over several months. The
oracle below recomputes every number of `report --json` with its own queries and Python, and the
page is opened in Debian's chromium driven over the DevTools pipe, with a proxy to an unused local
port so nothing it might fetch could leave the machine.
"""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import sqlite3
import struct
import subprocess
from collections import Counter
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from replay_cli.report_charts import TOP_BARS, esc, visible
from replay_cli.synth import ChatLine, describe_game, write_replay
from tests.conftest import CORRUPT_SAMPLE, ReplayCli, sample_games

NOW = "2026-01-01T00:00:00Z"
SEED = 77
GAMES = 40
HERO, HERO_TOON, HERO_EU, HERO_EU_TOON = "Hero", "1-S2-1-424242", "HeroEU", "2-S2-1-434343"
HOSTILE = "<script>alert(1)</script>"
HOSTILE_TOON = "1-S2-1-6666"
HOSTILE_MAP = '<img src=x onerror="window.__pwned=1">'
SUPPLY = {"SupplyDepot", "Pylon"}
PLAYER_LENGTHS = (("<5", 5), ("5-10", 10), ("10-15", 15), ("15-20", 20), ("20-30", 30), ("30+", None))
ONE_V_ONE = ("1v1", "unicode", "short", "long")  # synth scenarios played one against one
MISSING_PYGAL = "Error: replaycli report needs pygal for its charts: pip install 'replaycli[report]'"


# --- the database -----------------------------------------------------------------------------------


def _game(index: int) -> Any:
    """Synthetic game `index`, nine days after the previous one, with Hero (or HeroEU) in slot 1 of 1v1 and 2v2."""
    desc = describe_game(SEED, index)
    desc = replace(desc, start_time=datetime(2025, 1, 1, tzinfo=UTC) + timedelta(days=9 * index, minutes=index))
    scenario_is_1v1 = len(desc.players) == 2 and not any(p.is_ai for p in desc.players)
    if scenario_is_1v1 or (len(desc.players) == 4 and not any(p.is_ai for p in desc.players)):
        me = (HERO, HERO_TOON) if index % 3 else (HERO_EU, HERO_EU_TOON)
        players = list(desc.players)
        players[0] = replace(players[0], name=me[0], toon_handle=me[1])
        if index % 4 == 0:
            # A toon of its own per game: copies of one game are told apart by their players' toons and map.
            players[-1] = replace(players[-1], name=HOSTILE, toon_handle=f"{HOSTILE_TOON}{index:02d}")
        desc = replace(desc, players=tuple(players))
    if index == 3:
        desc = replace(desc, map_name=HOSTILE_MAP)
    return desc


@pytest.fixture(scope="module")
def report_db(tmp_path_factory: pytest.TempPathFactory, replaycli: ReplayCli) -> Path:
    """samples/ + the corrupt sample + GAMES synthetic games + a second copy of game 0, ingested at stats depth."""
    folder = tmp_path_factory.mktemp("report-games")
    for index in range(GAMES):
        (folder / f"game-{index:02d}.SC2Replay").write_bytes(write_replay(_game(index)))
    copy = _game(0)  # the other player's copy of game 0: other bytes, the same match_key
    copy = replace(copy, chat=(*copy.chat, ChatLine(0, 0, "second copy", "all")))
    (folder / "game-00-copy.SC2Replay").write_bytes(write_replay(copy))
    db = folder / "report.db"
    proc = replaycli.run("ingest", str(folder), *map(str, sample_games()), str(CORRUPT_SAMPLE), "--db", str(db),
                         "--workers", "0", "--depth", "stats", "-q", text=True)
    assert proc.returncode == 1, proc.stderr  # the corrupt sample fails; everything else is stored
    with sqlite3.connect(db) as conn:
        copies = conn.execute("SELECT max(copies) FROM matches").fetchone()[0]
    assert copies == 2, "the two copies of game 0 should share a match_key"
    return db


def report_json(replaycli: ReplayCli, db: Path, *args: str) -> dict[str, Any]:
    proc = replaycli.run("report", "--db", str(db), "--json", "--now", NOW, *args, text=True)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


# --- the oracle: every number again, by other queries ------------------------------------------------


@dataclass(frozen=True)
class Rounded:
    """An exact value the report shows rounded to one decimal."""

    exact: float


def _rate(wins: int, losses: int) -> Rounded | None:
    return Rounded(100.0 * wins / (wins + losses)) if wins + losses else None


def _decided(rows: list[dict[str, Any]]) -> dict[str, Any]:
    wins = sum(r["result"] == "Win" for r in rows)
    losses = sum(r["result"] == "Loss" for r in rows)
    return {"games": len(rows), "wins": wins, "losses": losses, "win_rate": _rate(wins, losses)}


def _dicts(conn: sqlite3.Connection, sql: str) -> list[dict[str, Any]]:
    cursor = conn.execute(sql)
    names = [c[0] for c in cursor.description]
    return [dict(zip(names, row)) for row in cursor]


class Oracle:
    """The report's numbers, from plain SELECTs of whole tables and Python."""

    def __init__(self, db: Path, since: str | None, until: str | None, who: tuple[str, ...]) -> None:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        replays = _dicts(conn, "SELECT * FROM replays")
        first_copy: dict[str, str] = {}
        for r in replays:
            key = r["match_key"] or r["sha256"]
            first_copy[key] = min(first_copy.get(key, r["sha256"]), r["sha256"])

        def in_period(r: dict[str, Any]) -> bool:
            when = r["played_at"]
            return (since is None or (when is not None and when >= since)) and \
                (until is None or (when is not None and when < until))

        self.replays_in_period = sum(map(in_period, replays))
        self.games = {r["sha256"]: r for r in replays if in_period(r) and first_copy[r["match_key"] or r["sha256"]]
                      == r["sha256"]}
        self.players = [p for p in _dicts(conn, "SELECT r.sha256 AS replay_sha256, p.* FROM players p "
                                                  "JOIN replays r ON r.id = p.replay_id WHERE p.is_observer = 0")
                        if p["replay_sha256"] in self.games]
        self.files = _dicts(conn, "SELECT status, error_kind FROM files")
        self.build_order = _dicts(conn, "SELECT r.sha256 AS replay_sha256, b.* FROM build_order b "
                                                "JOIN replays r ON r.id = b.replay_id")
        self.who = who
        self.since, self.until = since, until

    def _by_game(self) -> dict[str, list[dict[str, Any]]]:
        grouped: dict[str, list[dict[str, Any]]] = {}
        for p in sorted(self.players, key=lambda p: p["slot"]):
            grouped.setdefault(p["replay_sha256"], []).append(p)
        return grouped

    def database(self) -> dict[str, Any]:
        games = list(self.games.values())
        when = [g["played_at"] for g in games if g["played_at"] is not None]
        reasons = Counter(reason for g in games if g["degraded"] == 1 for reason in json.loads(g["quality"])["reasons"])
        return {
            "totals": {"replays": self.replays_in_period, "games": len(games),
                       "degraded_games": sum(g["degraded"] == 1 for g in games),
                       "first_played_at": min(when, default=None), "last_played_at": max(when, default=None),
                       "players": len(self.players),
                       "toons": len({p["toon_handle"] for p in self.players if p["toon_handle"] is not None})},
            "games_per_month": [{"month": m, "games": n} for m, n in sorted(
                Counter((g["played_at"] or "unknown")[:7] if g["played_at"] else "unknown" for g in games).items())],
            "games_per_release": _counted(Counter(g["release"] or "unknown" for g in games), "release", "games"),
            "matchups": self._matchups(),
            "game_length": self._lengths(games),
            "maps": _counted(Counter(g["map_name"] or "unknown" for g in games), "map_name", "games"),
            "files_by_status": _counted(Counter(f["status"] for f in self.files), "status", "files"),
            "failures": _counted(Counter(f["error_kind"] or "unknown" for f in self.files if f["status"] == "failed"),
                                 "error_kind", "files"),
            "degraded": _counted(reasons, "reason", "games"),
        }

    def _matchups(self) -> list[dict[str, Any]]:
        sides: dict[tuple[str, str], list[str]] = {}
        for sha, people in self._by_game().items():
            game = self.games[sha]
            if game["game_type"] != "1v1" or game["player_count"] != 2 or len(people) != 2:
                continue
            one, two = people
            if one["play_race"] is None or two["play_race"] is None:
                continue
            first, second = (one, two) if one["play_race"] <= two["play_race"] else (two, one)
            sides.setdefault((first["play_race"], second["play_race"]), []).append(first["result"])
        rows = []
        for (a, b), results in sides.items():
            decided = _decided([{"result": r} for r in results])
            mirror = a == b
            rows.append({"matchup": f"{a[0]}v{b[0]}", "race_a": a, "race_b": b, "games": len(results),
                         "wins": None if mirror else decided["wins"], "losses": None if mirror else decided["losses"],
                         "win_rate": None if mirror else decided["win_rate"]})
        return sorted(rows, key=lambda r: (-r["games"], r["matchup"]))

    @staticmethod
    def _lengths(games: list[dict[str, Any]]) -> list[dict[str, Any]]:
        bins = Counter(min(int(g["duration_s"] // 120), 20) for g in games if g["duration_s"] is not None)
        return [{"from_min": b * 2, "to_min": None if b == 20 else b * 2 + 2, "games": bins.get(b, 0)}
                for b in range(max(bins, default=-1) + 1)]

    # --- the person ---

    def me(self) -> list[dict[str, Any]]:
        rows = []
        for p in self.players:
            if p["name"] in self.who or p["toon_handle"] in self.who:
                game = self.games[p["replay_sha256"]]
                rows.append({**p, "played_at": game["played_at"], "map_name": game["map_name"],
                             "game_type": game["game_type"], "duration_s": game["duration_s"],
                             "mmr": p["mmr_meta"] if p["mmr_meta"] is not None else p["mmr_lobby"]})
        return rows

    def opponents(self, mine: dict[str, Any]) -> list[dict[str, Any]]:
        return [o for o in self._by_game()[mine["replay_sha256"]] if o["slot"] != mine["slot"]
                and (o["team"] != mine["team"] or mine["team"] is None)]

    def player(self) -> dict[str, Any]:
        me = self.me()
        in_time = sorted(me, key=lambda m: (m["played_at"], m["replay_sha256"], m["slot"]))
        toons = Counter(m["toon_handle"] for m in me)
        return {
            "asked": list(self.who),
            "toons": [{"toon_handle": t, "games": n, "names": sorted({m["name"] for m in me if m["toon_handle"] == t})}
                      for t, n in sorted(toons.items(), key=lambda item: (-item[1], item[0] or ""))],
            "totals": _decided(me),
            "mmr": [{"played_at": m["played_at"], "race": m["play_race"] or "unknown",
                     "queue": m["game_type"] or "unknown", "mmr": m["mmr"]} for m in in_time if m["mmr"] is not None],
            "apm": [{"played_at": m["played_at"], "apm": m["apm_blizzard"]} for m in in_time
                    if m["apm_blizzard"] is not None],
            "matchups": self._player_matchups(me),
            "maps": _grouped(me, lambda m: m["map_name"] or "unknown", "map_name"),
            "lengths": self._player_lengths(me),
            "workers": self._workers(me),
            "openings": self._openings(me),
            "recent": self._recent(me),
        }

    def _player_matchups(self, me: list[dict[str, Any]]) -> list[dict[str, Any]]:
        pairs = [{"matchup": f"{(m['play_race'] or '?')[0]}v{(o['play_race'] or '?')[0]}", "result": m["result"]}
                 for m in me if m["game_type"] == "1v1" for o in self.opponents(m)]
        return _grouped(pairs, lambda p: p["matchup"], "matchup")

    @staticmethod
    def _player_lengths(me: list[dict[str, Any]]) -> list[dict[str, Any]]:
        def bucket(seconds: float) -> str:
            return next(label for label, to in PLAYER_LENGTHS if to is None or seconds < to * 60)

        rows = _grouped([m for m in me if m["duration_s"] is not None], lambda m: bucket(m["duration_s"]), "length")
        order = [label for label, _ in PLAYER_LENGTHS]
        return sorted(rows, key=lambda r: order.index(r["length"]))

    def _workers(self, me: list[dict[str, Any]]) -> list[dict[str, Any]]:
        rows = []
        for minute in (6, 8, 10):
            column = f"workers_{minute}m"
            mine = [m[column] for m in me if m[column] is not None]
            theirs = [o[column] for m in me for o in self.opponents(m) if o[column] is not None]
            rows.append({"minute": minute, "player": Rounded(sum(mine) / len(mine)) if mine else None,
                         "player_games": len(mine), "opponents": Rounded(sum(theirs) / len(theirs)) if theirs else None,
                         "opponent_rows": len(theirs)})
        return rows

    def _openings(self, me: list[dict[str, Any]]) -> list[dict[str, Any]]:
        mine = {(m["replay_sha256"], m["pid"]): m for m in me}
        firsts: dict[tuple[str, int], list[dict[str, Any]]] = {}
        for b in self.build_order:
            if (b["replay_sha256"], b["pid"]) in mine and b["kind"] == "structure" and b["name"] not in SUPPLY:
                firsts.setdefault((b["replay_sha256"], b["pid"]), []).append(b)
        played = []
        for key, items in firsts.items():
            items.sort(key=lambda b: (b["started_loop"] is not None, b["started_loop"] or 0, b["seq"]))
            played.append({"race": mine[key]["play_race"] or "unknown", "result": mine[key]["result"],
                           "opening": " > ".join(b["name"] for b in items[:3])})
        groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for p in played:
            groups.setdefault((p["race"], p["opening"]), []).append(p)
        rows = [{"race": race, "opening": opening, **_decided(rows)} for (race, opening), rows in groups.items()]
        return sorted(rows, key=lambda r: (-r["games"], r["race"], r["opening"]))[:10]

    def _recent(self, me: list[dict[str, Any]]) -> list[dict[str, Any]]:
        ordered = sorted(sorted(me, key=lambda m: (m["replay_sha256"], m["slot"])), key=lambda m: m["played_at"],
                         reverse=True)
        return [{"sha256": m["replay_sha256"], "played_at": m["played_at"], "map_name": m["map_name"],
                 "game_type": m["game_type"], "name": m["name"], "race": m["play_race"], "result": m["result"],
                 "duration_s": m["duration_s"], "mmr": m["mmr"], "apm": m["apm_blizzard"],
                 "opponents": [o["name"] for o in self.opponents(m)]} for m in ordered[:20]]


def _counted(counts: Counter[str], label: str, value: str) -> list[dict[str, Any]]:
    return [{label: key, value: n} for key, n in sorted(counts.items(), key=lambda item: (-item[1], item[0]))]


def _grouped(rows: list[dict[str, Any]], key: Any, label: str) -> list[dict[str, Any]]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(key(row), []).append(row)
    out = [{label: name, **_decided(members)} for name, members in groups.items()]
    return sorted(out, key=lambda r: (-r["games"], r[label]))


def assert_same(actual: Any, expected: Any, where: str = "report") -> None:
    """Equal, except that a Rounded value must be the exact one rounded to one decimal."""
    if isinstance(expected, Rounded):
        assert isinstance(actual, (int, float)), f"{where}: {actual!r} is not a number"
        assert abs(actual - expected.exact) <= 0.05 + 1e-9, f"{where}: {actual} is not {expected.exact} rounded"
        assert round(actual, 1) == actual, f"{where}: {actual} has more than one decimal"
    elif isinstance(expected, dict):
        assert isinstance(actual, dict) and set(actual) == set(expected), f"{where}: keys {actual!r} vs {expected!r}"
        for key in expected:
            assert_same(actual[key], expected[key], f"{where}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), f"{where}: {actual!r} vs {expected!r}"
        for n, (a, e) in enumerate(zip(actual, expected)):
            assert_same(a, e, f"{where}[{n}]")
    else:
        assert actual == expected, f"{where}: {actual!r} != {expected!r}"


def check_against_oracle(report: dict[str, Any], db: Path, who: tuple[str, ...]) -> Oracle:
    oracle = Oracle(db, report["period"]["since"], report["period"]["until"], who)
    assert_same(report["database"], oracle.database(), "database")
    assert_same(report["player"], oracle.player() if who else None, "player")
    return oracle


# --- numbers -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("who", "period"), [
    ((), ()),
    ((HERO, HERO_EU_TOON), ()),  # a name and a toon handle merged into one person
    ((HERO, HERO_EU_TOON), ("--since", "2025-03-01", "--until", "2025-06-30")),
    ((HOSTILE,), ("--since", "200d")),  # 200 days before --now
], ids=["database", "person", "person-in-a-period", "hostile-relative-period"])
def test_json_numbers_equal_independent_sql(replaycli: ReplayCli, report_db: Path, who: tuple[str, ...],
                                            period: tuple[str, ...]):
    args = [arg for name in who for arg in ("--player", name)]
    report = report_json(replaycli, report_db, *args, *period)
    if period and period[1] == "200d":
        assert report["period"] == {"since": "2025-06-15T00:00:00Z", "until": None}
    elif period:
        assert report["period"] == {"since": "2025-03-01T00:00:00Z", "until": "2025-07-01T00:00:00Z"}
    oracle = check_against_oracle(report, report_db, who)
    # The data exercise what the report is about: a merged person, copies, periods, failures.
    copy_in_period = not period  # both copies of game 0 were played on 2025-01-01, before every period here
    assert report["database"]["totals"]["replays"] == report["database"]["totals"]["games"] + copy_in_period
    if period:  # the period leaves games out
        assert 0 < report["database"]["totals"]["games"] < len(Oracle(report_db, None, None, ()).games)
    assert report["database"]["failures"] == [{"error_kind": "parse_error", "files": 1}]
    if who:
        assert report["player"]["totals"]["games"] == len(oracle.me()) > 0
    if who == (HERO, HERO_EU_TOON) and not period:
        assert {t["toon_handle"] for t in report["player"]["toons"]} == {HERO_TOON, HERO_EU_TOON}
        assert report["player"]["openings"] and report["player"]["mmr"] and report["player"]["matchups"]


# --- the page in a browser ----------------------------------------------------------------------------


def _chromium() -> str:
    found = shutil.which("chromium")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing: .ci/run installs it with apt-get")
        pytest.skip("Debian's chromium is not installed (apt-get install chromium; .ci/run does it)")
    return found


BROWSER_SILENCE_S = 300
UNUSED_PROXY = "http://127.0.0.1:9"  # the discard port, closed here: nothing the page asks for can leave
BROWSER_FLAGS = ("--headless", "--disable-gpu", "--no-sandbox", "--no-first-run", "--hide-scrollbars",
                 f"--proxy-server={UNUSED_PROXY}", "--proxy-bypass-list=<-loopback>",
                 "--host-resolver-rules=MAP * ~NOTFOUND")


class Browser:
    """Chromium driven over the DevTools protocol on a pipe (fds 3 and 4), one page, its events kept."""

    def __init__(self, profile: Path) -> None:
        commands_read, self._commands = os.pipe()
        self._replies, replies_write = os.pipe()
        self.proc = subprocess.Popen(
            ["bash", "-c", f'exec "$@" 3<&{commands_read} 4>&{replies_write}', "chromium", _chromium(),
             *BROWSER_FLAGS, "--remote-debugging-pipe", f"--user-data-dir={profile}", "about:blank"],
            pass_fds=(commands_read, replies_write), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        os.close(commands_read)
        os.close(replies_write)
        self._buffer, self._next_id, self.events = b"", 0, []
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Network", "Runtime", "Log", "Page"):
            self.send(f"{domain}.enable", session=True)

    def _message(self) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            # A guard against a hung browser, not a timing check: a healthy answer takes milliseconds.
            ready, _, _ = select.select([self._replies], [], [], BROWSER_SILENCE_S)
            assert ready, f"chromium said nothing for {BROWSER_SILENCE_S} s"
            chunk = os.read(self._replies, 1 << 16)
            assert chunk, "chromium closed the DevTools pipe"
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def send(self, method: str, params: dict[str, Any] | None = None, session: bool = False) -> dict[str, Any]:
        self._next_id += 1
        command: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            command["sessionId"] = self.session
        os.write(self._commands, json.dumps(command).encode() + b"\0")
        while True:
            message = self._message()
            if message.get("id") == self._next_id:
                assert "error" not in message, message
                return message["result"]
            self.events.append(message)

    def open(self, url: str) -> None:
        self.send("Page.navigate", {"url": url}, session=True)
        while not any(e.get("method") == "Page.loadEventFired" for e in self.events):
            self.events.append(self._message())

    def value(self, expression: str) -> Any:
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True}, session=True)
        assert "exceptionDetails" not in result, result
        return result["result"].get("value")

    def requests(self) -> list[str]:
        return [e["params"]["request"]["url"] for e in self.events if e.get("method") == "Network.requestWillBeSent"]

    def complaints(self) -> list[Any]:
        """Console errors and warnings, uncaught exceptions, and browser log errors (CSP refusals, failed loads)."""
        return [e["params"] for e in self.events if e.get("method") == "Runtime.exceptionThrown"
                or (e.get("method") == "Runtime.consoleAPICalled" and e["params"]["type"] in ("error", "warning"))
                or (e.get("method") == "Log.entryAdded" and e["params"]["entry"]["level"] in ("error", "warning"))]

    def close(self) -> None:
        try:
            self.send("Browser.close")
            self.proc.wait(timeout=60)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            os.close(self._commands)
            os.close(self._replies)


@pytest.fixture
def browser(tmp_path: Path) -> Any:
    opened = Browser(tmp_path / "profile")
    yield opened
    opened.close()


# The marks pygal draws: one <g class="bar"> per bar, one <circle class="dot ..."> per point.
COUNT_MARKS = """Object.fromEntries([...document.querySelectorAll('figure.chart')].map(f => [f.dataset.chart,
  [Number(f.dataset.points), f.querySelectorAll('svg g.bar').length + f.querySelectorAll('svg circle.dot').length]]))"""


class _Markup(HTMLParser):
    """Every tag or attribute of a page that could fetch or run something."""

    FETCHING_TAGS = frozenset({"script", "img", "image", "link", "iframe", "object", "embed", "use", "audio", "video",
                               "source", "base", "form"})

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._in_style = tag == "style"
        if tag in self.FETCHING_TAGS:
            self.found.append(f"<{tag}>")
        self.found += [f"{tag} {name}=" for name, _ in attrs if name in ("src", "href", "xlink:href", "action")
                       or name.startswith("on") or "url(" in (_ or "")]

    def handle_endtag(self, tag: str) -> None:
        self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_style and ("url(" in data or "@import" in data):
            self.found.append("style url( or @import")


def _fetching_markup(page: str) -> list[str]:
    parser = _Markup()
    parser.feed(page)
    parser.close()
    return parser.found


def expected_marks(report: dict[str, Any]) -> dict[str, int]:
    """How many bars or dots each chart must draw, from the report's numbers."""
    db, player = report["database"], report["player"]

    def lumped(rows: list[Any]) -> int:
        return min(len(rows), TOP_BARS) + (len(rows) > TOP_BARS)

    def rated(rows: list[Any]) -> int:
        return sum(row["win_rate"] is not None for row in rows)

    marks = {"db-months": len(db["games_per_month"]), "db-releases": lumped(db["games_per_release"]),
             "db-lengths": len(db["game_length"]), "db-matchups": rated(db["matchups"]),
             "db-maps": lumped(db["maps"]), "db-failures": lumped(db["failures"]),
             "db-degraded": lumped(db["degraded"])}
    if player:
        marks.update({"pl-mmr": len(player["mmr"]), "pl-matchups": rated(player["matchups"]),
                      "pl-maps": rated(player["maps"][:20]), "pl-lengths": rated(player["lengths"]),
                      "pl-apm": len(player["apm"]), "pl-openings": rated(player["openings"]),
                      "pl-workers": sum(w[k] is not None for w in player["workers"] for k in ("player", "opponents"))})
    return marks


def test_page_renders_every_chart_offline_with_hostile_names_as_text(replaycli: ReplayCli, report_db: Path,
                                                                      browser: Browser, tmp_path: Path):
    page = tmp_path / "report.html"
    who = (HOSTILE, HERO)
    args = [arg for name in who for arg in ("--player", name)]
    proc = replaycli.run("report", "--db", str(report_db), "--out", str(page), "--now", NOW, *args, text=True)
    assert proc.returncode == 0, proc.stderr
    report = report_json(replaycli, report_db, *args)
    check_against_oracle(report, report_db, who)
    assert _fetching_markup(page.read_text(encoding="utf-8")) == []

    browser.open(page.as_uri())
    marks = browser.value(COUNT_MARKS)
    expected = expected_marks(report)
    assert set(marks) == set(expected)
    assert {chart: drawn for chart, (_, drawn) in marks.items()} == expected
    assert {chart: said for chart, (said, _) in marks.items()} == expected
    assert sum(expected.values()) > 40 and all(expected[c] for c in ("pl-mmr", "pl-apm", "db-maps", "pl-openings"))
    # The hostile names are text, in the page and in the charts' SVG; none of them ran or made an element.
    assert browser.value("document.querySelector('#player .who').textContent") == f"{HOSTILE} + {HERO}"
    assert HOSTILE in browser.value("document.querySelector('table.recent').textContent")
    assert HOSTILE_MAP in browser.value("document.querySelector('[data-chart=db-maps]').textContent")
    assert browser.value("[document.scripts.length, document.images.length, typeof window.__pwned]") == \
        [0, 0, "undefined"]
    assert browser.requests() == [page.as_uri()]  # the page itself, and nothing else
    assert browser.complaints() == []


def test_the_browser_check_sees_requests_and_errors(browser: Browser, tmp_path: Path):
    """The harness is not blind: a page that fetches and fails is seen doing both."""
    page = tmp_path / "control.html"
    page.write_text('<!DOCTYPE html><img src="http://replaycli.invalid/x.png"><script>window.__pwned = 1; '
                    'console.error("boom")</script>', encoding="utf-8")
    browser.open(page.as_uri())
    assert "http://replaycli.invalid/x.png" in browser.requests()
    assert browser.value("window.__pwned") == 1
    assert any(c.get("type") == "error" for c in browser.complaints())


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_screenshot_of_the_page(replaycli: ReplayCli, report_db: Path, tmp_path: Path):
    page, shot = tmp_path / "report.html", tmp_path / "report.png"
    proc = replaycli.run("report", "--db", str(report_db), "--out", str(page), "--now", NOW, "--player", HERO,
                         "--player", HERO_EU, text=True)
    assert proc.returncode == 0, proc.stderr
    subprocess.run([_chromium(), *BROWSER_FLAGS, f"--user-data-dir={tmp_path / 'profile'}",
                    "--window-size=1280,4000", f"--screenshot={shot}", page.as_uri()],
                   capture_output=True, timeout=180, check=True)
    assert _png_size(shot) == (1280, 4000)
    keep = os.environ.get("REPLAYCLI_REPORT_SCREENSHOT")  # a place to keep it, to look at it
    if keep:
        shutil.copyfile(shot, keep)


# --- determinism, errors ----------------------------------------------------------------------------


def test_same_database_and_now_give_the_same_bytes(replaycli: ReplayCli, report_db: Path, tmp_path: Path):
    pages = []
    for n, now in enumerate((NOW, NOW, "2026-02-01T00:00:00Z")):
        page = tmp_path / f"r{n}.html"
        proc = replaycli.run("report", "--db", str(report_db), "--out", str(page), "--json", "--now", now,
                             "--player", HERO, text=True)
        assert proc.returncode == 0, proc.stderr
        pages.append((page.read_bytes(), proc.stdout))
    assert pages[0] == pages[1]
    assert pages[0][0] != pages[2][0]  # --now is written on the page: the comparison can fail
    assert json.loads(pages[2][1])["generated_at"] == "2026-02-01T00:00:00Z"


@pytest.mark.parametrize(("args", "message"), [
    (("--json", "--player", "Nobody Here"), "no player named or with the toon handle 'Nobody Here'"),
    ((), "say where the report goes: --out FILE, --json, or both."),
    (("--json", "--since", "last tuesday"), "cannot read 'last tuesday' as a date"),
    (("--json", "--now", "soon"), "--now: cannot read 'soon' as an ISO-8601 time."),
])
def test_usage_errors(replaycli: ReplayCli, report_db: Path, args: tuple[str, ...], message: str):
    proc = replaycli.run("report", "--db", str(report_db), *args, text=True)
    assert proc.returncode == 2
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert proc.stdout == ""


def test_without_pygal_the_page_is_a_one_line_error_and_json_still_works(replaycli: ReplayCli, report_db: Path,
                                                                          tmp_path: Path, repo_root: Path):
    hidden = tmp_path / "no-pygal" / "pygal"
    hidden.mkdir(parents=True)
    (hidden / "__init__.py").write_text("raise ImportError('No module named pygal')\n", encoding="utf-8")
    env = {"PYTHONPATH": f"{hidden.parent}{os.pathsep}{repo_root}"}
    page = tmp_path / "report.html"
    proc = replaycli.run("report", "--db", str(report_db), "--out", str(page), env=env, text=True)
    assert (proc.returncode, proc.stderr.strip()) == (3, MISSING_PYGAL)
    assert not page.exists()
    proc = replaycli.run("report", "--db", str(report_db), "--json", "--now", NOW, env=env, text=True)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["database"]["totals"]["games"] > 0


def test_unwritable_out_is_a_one_line_error(replaycli: ReplayCli, report_db: Path, tmp_path: Path):
    target = tmp_path / "missing-folder" / "report.html"
    proc = replaycli.run("report", "--db", str(report_db), "--out", str(target), text=True)
    assert proc.returncode == 3
    assert proc.stderr.startswith(f"Error: cannot write {target}: ") and "Traceback" not in proc.stderr


def test_untrusted_text_is_escaped_and_control_characters_shown():
    assert esc(HOSTILE) == "&lt;script&gt;alert(1)&lt;/script&gt;"
    assert esc('"\'&') == "&quot;&#x27;&amp;"
    assert visible("\x1b[31mRed\x1b[0m\ttab\x7f") == "\u241b[31mRed\u241b[0m\u2409tab\u2421"


# --- the real corpus ---------------------------------------------------------------------------------


def test_corpus_report_numbers_and_page(replaycli: ReplayCli, corpus: Path, tmp_path: Path, browser: Browser):
    db = tmp_path / "corpus.db"
    proc = replaycli.run("ingest", str(corpus), "--db", str(db), "--depth", "stats", "--workers", "2", "-q",
                         text=True, timeout=900)
    assert proc.returncode in (0, 1), proc.stderr
    with sqlite3.connect(db) as conn:
        toon = conn.execute("SELECT toon_handle FROM players WHERE is_observer = 0 AND is_human = 1 "
                            "AND toon_handle IS NOT NULL GROUP BY toon_handle "
                            "ORDER BY count(*) DESC, toon_handle LIMIT 1").fetchone()[0]
    report = report_json(replaycli, db, "--player", toon)
    check_against_oracle(report, db, (toon,))
    assert report["database"]["totals"]["games"] > 100
    page = tmp_path / "corpus.html"
    proc = replaycli.run("report", "--db", str(db), "--out", str(page), "--now", NOW, "--player", toon, text=True)
    assert proc.returncode == 0, proc.stderr
    browser.open(page.as_uri())
    marks = browser.value(COUNT_MARKS)
    assert {chart: drawn for chart, (_, drawn) in marks.items()} == expected_marks(report)
    assert browser.requests() == [page.as_uri()] and browser.complaints() == []


def test_a_period_with_no_games_still_gives_a_page(replaycli: ReplayCli, report_db: Path, tmp_path: Path):
    page = tmp_path / "empty.html"
    proc = replaycli.run("report", "--db", str(report_db), "--out", str(page), "--json", "--now", NOW,
                         "--player", HERO, "--since", "2030-01-01", text=True)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    check_against_oracle(report, report_db, (HERO,))
    assert report["database"]["totals"]["games"] == report["player"]["totals"]["games"] == 0
    figures = re.findall(r'<figure class="chart[^"]*" data-chart="([a-z-]+)" data-points="(\d+)"',
                         page.read_text(encoding="utf-8"))
    assert dict(figures) == {chart: str(count) for chart, count in expected_marks(report).items()}
    # Only the failed file is there: it has no date, so no period leaves it out.
    assert {chart: count for chart, count in figures if count != "0"} == {"db-failures": "1"}
