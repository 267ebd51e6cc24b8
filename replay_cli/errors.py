"""Library errors: the CLI turns each into a one-line `Error: ...` and an exit code. No click here."""

from __future__ import annotations


class ReplayCliError(Exception):
    """Base class of every error the library raises on purpose; its message is one user-facing line."""


class StoreError(ReplayCliError):
    """The SQLite store cannot be opened, migrated, read or written."""


class NoInputs(ReplayCliError):
    """The inputs named no replay files at all."""
