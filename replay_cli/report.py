"""What an ingest run reports: the tally behind the summary and exit code, and the progress interface."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Protocol

from replay_cli.exitcodes import EXIT_OK, EXIT_SOME_FAILED, exit_code_for_signal
from replay_cli.result import STATUS_FAILED, Result
from replay_cli.store import BatchCounts

MAX_FAILURES_LISTED = 1000  # in the --json summary; the database keeps all of them
COUNT_KEYS = ("discovered", "skipped", "parsed", "ok", "partial", "duplicate", "failed", "filtered")


class ProgressSink(Protocol):
    """What the ingest loop tells the display (render.IngestProgress implements it)."""

    def discovered(self, total: int | None) -> None: ...
    def skipped(self, count: int) -> None: ...
    def finished(self, result: Result) -> None: ...
    def stored(self, counts: BatchCounts) -> None: ...
    def refresh(self) -> None: ...


class NullProgress:
    """A sink that shows nothing (quiet runs, library callers)."""

    def discovered(self, total: int | None) -> None:
        pass

    def skipped(self, count: int) -> None:
        pass

    def finished(self, result: Result) -> None:
        pass

    def stored(self, counts: BatchCounts) -> None:
        pass

    def refresh(self) -> None:
        pass


@dataclass
class Tally:
    """What one ingest run did; its exit_code is the CLI's."""

    run_id: int
    db_path: str
    counts: Counter[str] = field(default_factory=Counter)
    failures: list[dict[str, Any]] = field(default_factory=list)
    failure_groups: Counter[tuple[str, str, str]] = field(default_factory=Counter)  # (kind, type, build)
    wall_seconds: float = 0.0
    interrupted_by: int | None = None  # the signal number
    pool: dict[str, Any] | None = None  # PoolNumbers.as_dict() of the local pool; None when none was watched

    @property
    def exit_code(self) -> int:
        if self.interrupted_by is not None:
            return exit_code_for_signal(self.interrupted_by)
        return EXIT_SOME_FAILED if self.counts["failed"] else EXIT_OK

    @property
    def files_per_second(self) -> float:
        handled = self.counts["parsed"] + self.counts["skipped"]
        return round(handled / self.wall_seconds, 1) if self.wall_seconds else 0.0

    def record(self, result: Result) -> None:
        """Count a parsed result; the stored statuses are counted by add_stored."""
        self.counts["parsed"] += 1
        error = result["error"]
        if result["status"] == STATUS_FAILED and error is not None:
            self.failure_groups[(error["kind"], error["type"], error.get("release") or "unknown")] += 1
            if len(self.failures) < MAX_FAILURES_LISTED:
                self.failures.append({"path": result["source"], **error})

    def add_stored(self, stored: BatchCounts) -> None:
        """Count what a batch stored; a file whose rows could not be written is listed as a failure."""
        for key in ("ok", "partial", "duplicate", "failed", "filtered"):
            self.counts[key] += getattr(stored, key)
        for path, error_type, message in stored.store_errors:
            self.failure_groups[("store_error", error_type, "unknown")] += 1
            if len(self.failures) < MAX_FAILURES_LISTED:
                self.failures.append({"path": path, "kind": "store_error", "type": error_type, "message": message,
                                      "stage": "store", "release": None})

    def count_dict(self) -> dict[str, int]:
        """Return the counts under COUNT_KEYS, as the runs table and the summary hold them."""
        return {key: self.counts[key] for key in COUNT_KEYS}

    def as_json(self) -> dict[str, Any]:
        """Return the --json envelope; its keys are API (pinned by a test)."""
        status = "interrupted" if self.interrupted_by is not None else (
            "partial" if self.counts["failed"] else "success")
        return {
            "replaycli_result_version": 1,
            "command": "ingest",
            "status": status,
            "exit_code": self.exit_code,
            "run_id": self.run_id,
            "db": self.db_path,
            "counts": self.count_dict(),
            "failures": self.failures,
            "failures_listed": len(self.failures),
            "wall_seconds": round(self.wall_seconds, 3),
            "files_per_second": self.files_per_second,
            "pool": self.pool,
        }
