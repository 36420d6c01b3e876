"""Cached steps keyed by the fingerprint of what made them, and the study's progress line with an ETA.

A step (a training run, a prediction pass, an export, a simulation) writes its output under the
study's folder and a marker `stages/<name>.json` = {"fingerprint", "settings", "seconds"}. The
fingerprint hashes the step's settings, among them the fingerprints of the steps it reads (a
student's teacher, a QAT run's float student), so a changed setting reruns its step and everything
downstream of it, whatever the paths.

The protocol (`Step`):
- cached: the marker holds this fingerprint and the output exists -> skipped;
- otherwise `begin`: unless the marker already holds this fingerprint (a killed run of this very
  step, whose training checkpoints may be resumed), the step's old output is removed and the marker
  rewritten with the new fingerprint and no seconds; then the step runs and writes its output
  (atomically, last); `finish` records its seconds in the marker.
Outputs are removed before the marker changes and written after it, so an output beside a marker
was made with the marker's settings.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from models.files import write_text_atomic


def fingerprint(settings) -> str:
    """16 hex digits of the SHA-256 of `settings` as canonical JSON (sorted keys, no spaces).

    >>> fingerprint({"b": 1, "a": [2]}) == fingerprint({"a": [2], "b": 1})
    True
    """
    text = json.dumps(settings, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Step:
    """One cached step: its marker, the output whose presence means done (a file, or a run folder's
    metrics.json), what to remove before recomputing, and the settings that make it."""
    name: str
    marker: Path
    output: Path
    clear: Path
    settings: dict

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.settings)

    def stored(self) -> dict:
        """The marker's content ({} when there is none or it is unreadable)."""
        try:
            return json.loads(self.marker.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}

    def cached(self) -> bool:
        return self.stored().get("fingerprint") == self.fingerprint and self.output.exists()

    def begin(self, force: bool = False) -> bool:
        """Prepare to run: True when continuing a killed run of the same fingerprint (its files kept),
        False when starting afresh (old output removed, marker rewritten)."""
        if not force and self.stored().get("fingerprint") == self.fingerprint:
            return True
        if self.clear.is_dir():
            shutil.rmtree(self.clear)
        else:
            self.clear.unlink(missing_ok=True)
        self._write(None)
        return False

    def finish(self, seconds: float) -> None:
        self._write(round(seconds, 1))

    def _write(self, seconds: float | None) -> None:
        write_text_atomic(self.marker, json.dumps({"fingerprint": self.fingerprint, "settings": self.settings,
                                                   "seconds": seconds}, indent=1, sort_keys=True) + "\n")


# ---------------------------------------------------------------- progress

def kind(name: str) -> str:
    """A stage's kind, its name up to the first '-' ('float-inhibitor' -> 'float')."""
    return name.split("-")[0]


class Progress:
    """Prints `[study HH:MM:SS] seed s stage k/N <name> ... ETA hh:mm` before every stage it runs
    (`seed s stage k/N <name>: cached` for one it skips).

    The ETA is the wall-clock time the whole study ends if every remaining stage takes what the same
    stage took last (in a previous seed, or as recorded in its marker when it was cached), else the
    mean of the finished stages of its kind (all float students, all exports...). While some remaining
    stage has no estimate at all the line says `ETA > hh:mm (n stages not yet timed)`, the ETA of the
    timed ones."""

    def __init__(self, seeds: list[int], names: list[str], say: Callable[[str], None], clock=time.time):
        self.seeds, self.names, self.say, self.clock = list(seeds), list(names), say, clock
        self.times: dict[str, float] = {}

    def done(self, name: str, seconds: float | None) -> None:
        """Record how long `name` took (None: unknown, e.g. a cached stage without recorded seconds)."""
        if seconds is not None:
            self.times[name] = seconds

    def estimate(self, name: str) -> float | None:
        if name in self.times:
            return self.times[name]
        same = [t for n, t in self.times.items() if kind(n) == kind(name)]
        return sum(same) / len(same) if same else None

    def eta(self, seed: int, k: int) -> str:
        """The ETA text from stage `k` (0-based, not yet run) of `seed` on."""
        left = self.names[k:] + self.names * (len(self.seeds) - 1 - self.seeds.index(seed))
        guesses = [self.estimate(n) for n in left]
        end = time.strftime("%H:%M", time.localtime(self.clock() + sum(g for g in guesses if g is not None)))
        unknown = guesses.count(None)
        if unknown == len(guesses):
            return "ETA unknown until a stage is timed"
        return f"ETA {end}" if not unknown else f"ETA > {end} ({unknown} stage{'s' * (unknown > 1)} not yet timed)"

    def start(self, seed: int, k: int) -> None:
        """Stage `k` (0-based) of `seed` starts."""
        self.say(f"seed {seed} stage {k + 1}/{len(self.names)} {self.names[k]} ... {self.eta(seed, k)}")

    def cached(self, seed: int, k: int, seconds: float | None) -> None:
        """Stage `k` of `seed` is skipped; it took `seconds` when it ran."""
        self.done(self.names[k], seconds)
        took = f" (it took {seconds:.0f} s)" if seconds is not None else ""
        self.say(f"seed {seed} stage {k + 1}/{len(self.names)} {self.names[k]}: cached{took}")
