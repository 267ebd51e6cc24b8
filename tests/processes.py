"""Process-tree helpers for tests that must prove no worker outlives its pool."""

from __future__ import annotations

import multiprocessing.forkserver
import multiprocessing.resource_tracker
import os
from pathlib import Path


def alive(pid: int) -> bool:
    """Return whether pid exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def descendants(root: int | None = None) -> set[int]:
    """Every live descendant of root (this process by default): pool workers are the fork server's children."""
    found: set[int] = set()
    todo = [root or os.getpid()]
    while todo:
        for children in _children(todo.pop()):
            todo.append(children)
            found.add(children)
    return {pid for pid in found if alive(pid)}


def _children(pid: int) -> list[int]:
    """pid's children, or none once it has exited (a process can vanish between two reads)."""
    children: list[int] = []
    try:
        for tasks in Path(f"/proc/{pid}/task").glob("*/children"):
            children += [int(child) for child in tasks.read_text().split()]
    except OSError:
        return children
    return children


def multiprocessing_helpers() -> set[int]:
    """The fork server and resource tracker: per-process helpers that outlive any one pool."""
    pids = {getattr(multiprocessing.forkserver._forkserver, "_forkserver_pid", None),
            getattr(multiprocessing.resource_tracker._resource_tracker, "_pid", None)}
    return {pid for pid in pids if pid}
