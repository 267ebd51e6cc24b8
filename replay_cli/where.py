"""Find the StarCraft II replay folders on this machine, from a home folder and an environment passed in.

The game saves replays under `<Documents>/StarCraft II/Accounts/<account>/<toon>/Replays/<kind>/`
(kind: Multiplayer, VersusAI, ...). Where Documents is depends on the platform and on how the game
was installed; every layout is checked on every platform, because the checks are a few stats and a
Wine or Lutris prefix can sit beside a native install.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from replay_cli.discover import iter_replay_paths

REPLAY_DIRS_ENV = "REPLAYCLI_REPLAY_DIRS"  # more folders, separated like PATH (os.pathsep)
GAME_FOLDER = "StarCraft II"
ACCOUNTS = "Accounts"
REPLAYS = "Replays"
# Environment variables Windows sets to the OneDrive root when Documents may be redirected into it.
ONEDRIVE_ENVS = ("OneDrive", "OneDriveConsumer", "OneDriveCommercial")
# Documents inside a Wine user folder: "Documents" since Wine 5, "My Documents" before.
WINE_DOCUMENTS = ("Documents", "My Documents")


@dataclass(frozen=True, slots=True)
class ReplayFolder:
    """One folder the game saves replays into, and what it holds now."""

    path: str
    layout: str  # windows, onedrive, macos, wine, lutris or env
    account: str | None  # the Battle.net account folder (a number)
    toon: str | None  # the profile, e.g. 2-S2-1-1234567 (region-S2-realm-id)
    kind: str | None  # the Replays sub-folder: Multiplayer, VersusAI, ...
    replays: int

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Search:
    """Where to look: the Accounts folders' glob patterns by layout, and the extra folders named."""

    accounts: tuple[tuple[str, str], ...]  # (layout, glob pattern of an Accounts folder)
    extra: tuple[str, ...]  # from REPLAYCLI_REPLAY_DIRS

    def looked_in(self) -> list[str]:
        """Every place searched, in words, for a message saying nothing was found."""
        extra = list(self.extra) or [f"{REPLAY_DIRS_ENV} (unset)"]
        return [pattern for _layout, pattern in self.accounts] + extra


def search_roots(home: str | os.PathLike[str], environ: Mapping[str, str]) -> Search:
    """Return where the game may keep replays for this home folder and environment."""
    home_path = Path(home)
    docs_tail = (GAME_FOLDER, ACCOUNTS)
    roots: list[tuple[str, Path]] = [("windows", home_path / "Documents")]
    roots += [("onedrive", Path(environ[name]) / "Documents") for name in ONEDRIVE_ENVS if environ.get(name)]
    # OneDrive renames Documents in the user's language ("Dokumente"), and business accounts are
    # "OneDrive - <organisation>": any folder one level below any OneDrive* folder may be Documents.
    roots.append(("onedrive", home_path / "OneDrive*" / "*"))
    roots.append(("macos", home_path / "Library" / "Application Support" / "Blizzard"))
    prefixes = [("wine", home_path / ".wine")]
    if environ.get("WINEPREFIX"):
        prefixes.append(("wine", Path(environ["WINEPREFIX"])))
    prefixes.append(("lutris", home_path / "Games" / "*"))
    for layout, prefix in prefixes:
        roots += [(layout, prefix / "drive_c" / "users" / "*" / docs) for docs in WINE_DOCUMENTS]
    accounts = tuple((layout, str(root.joinpath(*docs_tail))) for layout, root in roots)
    extra = tuple(item for item in environ.get(REPLAY_DIRS_ENV, "").split(os.pathsep) if item.strip())
    return Search(accounts, extra)


def find_replay_folders(home: str | os.PathLike[str], environ: Mapping[str, str], *,
                        count: bool = True) -> list[ReplayFolder]:
    """List the replay folders that exist, each once, in a stable order; never raises for a bad folder.

    count=False leaves each folder's `replays` at 0 instead of walking it: a watch's rescan walks
    the folders itself right after.
    """
    search = search_roots(home, environ)
    found: dict[str, ReplayFolder] = {}
    for layout, pattern in search.accounts:
        for accounts in sorted(glob.glob(glob.escape(pattern).replace(glob.escape("*"), "*"))):
            for folder in _toon_folders(Path(accounts), layout, count):
                found.setdefault(_identity(folder.path), folder)
    for item in search.extra:
        path = os.path.abspath(os.path.expanduser(item))
        if os.path.isdir(path):
            found.setdefault(_identity(path), ReplayFolder(path, "env", None, None, None, _count(path, count)))
    return list(found.values())


def _toon_folders(accounts: Path, layout: str, count: bool) -> list[ReplayFolder]:
    """The Replays/<kind> folders of every account and toon below one Accounts folder."""
    folders = []
    for replays in sorted(accounts.glob(f"*/*/{REPLAYS}")):
        if not replays.is_dir():
            continue
        toon, account = replays.parent.name, replays.parent.parent.name
        for kind in sorted(p for p in replays.iterdir() if p.is_dir()):
            folders.append(ReplayFolder(str(kind), layout, account, toon, kind.name, _count(str(kind), count)))
    return folders


def _count(folder: str, count: bool) -> int:
    """Count the replays a walk of the folder finds (what `ingest` would read); 0 when not counting."""
    return sum(1 for _ in iter_replay_paths([folder])) if count else 0


def _identity(path: str) -> str:
    """One key per folder, however it was reached (a symlinked Documents, a prefix named twice)."""
    return os.path.realpath(path)
