"""Process-level tuning applied once by entry points (never at import time)."""

from __future__ import annotations

import ctypes
import os

import torch

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def tune_process(threads: int | None = None) -> None:
    """Keep freed tensor memory in the heap (glibc returns and re-faults it otherwise,
    which costs training on CPU about a third of its time) and set torch's thread count."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(_M_MMAP_THRESHOLD, 1 << 30)
        libc.mallopt(_M_TRIM_THRESHOLD, 1 << 30)
    except (OSError, AttributeError):
        pass  # not glibc: nothing to tune
    if threads is None:
        threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    torch.set_num_threads(max(1, threads))
