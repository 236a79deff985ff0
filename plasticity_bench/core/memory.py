"""The process's memory allocator, set for training: freed blocks stay in the process."""

from __future__ import annotations

import ctypes
import platform
import sys

# glibc's mallopt parameters (malloc.h) and the largest mmap threshold it takes on 64-bit Linux
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD_MAX = 32 * 1024 * 1024
TRIM_THRESHOLD = 1 << 30


def keep_freed_memory() -> bool:
    """Keep freed blocks for the next allocation instead of giving them back to the kernel.
    By default glibc maps blocks over an adaptive threshold fresh from the kernel and trims
    the heap's free top, so an update's activations and gradients, freed when it ends, come
    back as new pages that fault in (and are zeroed) one by one, a large share of a PPO Atari
    update (make bench). It is what jemalloc or tcmalloc would do, which PyTorch's CPU tuning guide
    suggests, with nothing to install; the cost is that the process keeps its peak heap.
    Blocks of 32 MiB and more (glibc's ceiling on 64-bit Linux) are still mapped per
    allocation. Returns whether glibc took both settings; with another C library (musl, macOS)
    nothing changes."""
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    mapped = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX))  # (each call on its own: one may be refused)
    trimmed = bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return mapped and trimmed
