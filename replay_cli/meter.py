"""Measure one parse's own peak memory, in the process that runs it.

On Linux, writing "5" to /proc/self/clear_refs resets the process's peak resident set size
(VmHWM in /proc/self/status), so the peak read after a parse belongs to that parse alone, even
in a worker that has parsed hundreds of files. Elsewhere only the process's lifetime peak is
known (getrusage); it is recorded with the scope "process" so nobody mistakes it for the file's.
"""

from __future__ import annotations

import sys
from pathlib import Path

SCOPE_FILE = "file"  # the peak of this parse alone
SCOPE_PROCESS = "process"  # the peak of the process so far: an upper bound for this parse
CLEAR_REFS = Path("/proc/self/clear_refs")
STATUS = Path("/proc/self/status")
RESET_PEAK = b"5"  # the clear_refs command that resets VmHWM (Linux 4.0+)


def reset_peak() -> bool:
    """Start a new peak for this process; False where the platform cannot."""
    try:
        with CLEAR_REFS.open("wb", buffering=0) as handle:
            handle.write(RESET_PEAK)
        return True
    except OSError:
        return False


def _vm_hwm_bytes() -> int | None:
    try:
        for line in STATUS.read_text(encoding="ascii", errors="replace").splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024  # reported in kB
    except (OSError, ValueError, IndexError):
        return None
    return None


def _lifetime_peak_bytes() -> int | None:
    try:
        import resource
    except ImportError:  # Windows: no getrusage
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # macOS reports bytes, Linux kB


def peak_since(reset_ok: bool) -> tuple[int | None, str | None]:
    """Return (peak RSS in bytes, its scope) for the parse that started with reset_peak()."""
    if reset_ok:
        peak = _vm_hwm_bytes()
        if peak is not None:
            return peak, SCOPE_FILE
    peak = _lifetime_peak_bytes()
    return (peak, SCOPE_PROCESS) if peak is not None else (None, None)
