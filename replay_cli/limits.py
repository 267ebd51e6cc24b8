"""Limits a parsing process puts on itself: the memory cap.

RLIMIT_AS turns a decompression bomb into a MemoryError inside the process that parses it,
which the worker classifies as `memory`, instead of an OOM kill of whatever process the kernel
picks. Where the resource module is missing (Windows) the cap cannot be set here and the caller
is told so.
"""

from __future__ import annotations


def cap_address_space(max_memory: int | None) -> bool:
    """Cap this process's address space at max_memory bytes (never above the hard limit).

    Returns whether a cap is in force; None or 0 means no cap.
    """
    if not max_memory:
        return False
    try:
        import resource
    except ImportError:
        return False
    _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = max_memory if hard == resource.RLIM_INFINITY else min(max_memory, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    return True
