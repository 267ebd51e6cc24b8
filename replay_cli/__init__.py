"""replaycli: batch-ingest StarCraft II replays into analyst-ready SQLite tables.

Importing the package does no work: the public names below load their modules on first use,
so `replaycli --help` and worker start-up stay fast.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["SCHEMA_VERSION", "__version__", "failed_result", "parse_file", "parse_replay"]

_LAZY = {
    "parse_file": "replay_cli.parse",
    "parse_replay": "replay_cli.parse",
    "failed_result": "replay_cli.failures",
    "SCHEMA_VERSION": "replay_cli.result",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'replay_cli' has no attribute {name!r}")
