"""Library errors: the CLI turns each into a one-line `Error: ...` and an exit code. No click here."""

from __future__ import annotations


class ReplayCliError(Exception):
    """Base class of every error the library raises on purpose; its message is one user-facing line."""


class StoreError(ReplayCliError):
    """The SQLite store cannot be opened, migrated, read or written."""


class PoolUnrecoverable(ReplayCliError):
    """The parse backend (worker pool or cluster) broke repeatedly without completing a single file."""
