"""How torch's OpenMP threads wait for work, set before torch is imported (`hwsim`, the benches).

GNU OpenMP threads spin `GOMP_SPINCOUNT` iterations (300,000 by default) before they sleep. Spinning
long starves the working threads where cores are shared; sleeping at once (`OMP_WAIT_POLICY=PASSIVE`)
pays a wake-up per parallel region, and a QAT step runs thousands of small ones. A short spin is the
fastest of the three both ways (docs/QUANT.md "Thread waiting"; bench/train_profile.py, 2 threads,
wall ms per step): idle cores, float dot 295 (short spin) / 318 (default) / 362 (passive), QAT W8A8 dot
659 / 607-656 / 942-1004; both cores busy with other work, float dot 809 / 1,122 / 941.
"""
from __future__ import annotations

import os

SPINCOUNT = "10000"


def set_thread_waiting() -> None:
    """A short spin (`GOMP_SPINCOUNT=10000`) unless the user chose a wait policy or a spin count."""
    if "OMP_WAIT_POLICY" not in os.environ:
        os.environ.setdefault("GOMP_SPINCOUNT", SPINCOUNT)
