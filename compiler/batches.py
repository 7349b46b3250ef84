"""Data larger than memory: a memory-mapped .npy is read in batches of bounded bytes, never whole.

A model run over a dataset (the source's reference outputs, a candidate's judged outputs) and the data checks go
through here. Each batch is copied out of the mapping and the mapping's pages are then handed back to the kernel
(madvise DONTNEED): pages of a file mapping that were read stay in the process's resident set until then, so
without it a pass over a 1 GB .npy would leave 1 GB resident. The peak is then about one batch (BATCH_BYTES) of
inputs plus the outputs, which are kept whole (N x the output's size: small for a classifier or an embedding).
Data under one batch take the path they always took: one call on the whole arrays.
"""

from __future__ import annotations

import mmap
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

BATCH_BYTES = 16 * 2**20  # inputs copied out of a mapping at a time
PROGRESS_AFTER_S = 10.0  # a pass this long reports its progress on stderr even when stderr is not a terminal
PROGRESS_EVERY_S = 10.0  # how often, then (a terminal gets one line redrawn at most twice a second)


def rows_per_batch(arrays: list[np.ndarray]) -> int:
    """How many samples of `arrays` (one per input, samples along axis 0) make at most BATCH_BYTES."""
    per_sample = sum(a.dtype.itemsize * int(np.prod(a.shape[1:])) for a in arrays)
    return max(1, BATCH_BYTES // max(per_sample, 1))


def release(arrays: list[np.ndarray]) -> None:
    """Hand the pages of the files under these (memory-mapped) arrays back to the kernel: they stay in the page
    cache, out of this process's resident set, and are read again if touched again. Other arrays: nothing."""
    for array in arrays:
        mapping = getattr(array, "_mmap", None)  # np.memmap and its views share the file's mmap object
        if isinstance(mapping, mmap.mmap) and hasattr(mmap, "MADV_DONTNEED") and not mapping.closed:
            mapping.madvise(mmap.MADV_DONTNEED)


def chunks(array: np.ndarray, what: str = "") -> Iterator[np.ndarray]:
    """`array` in batches along axis 0, each an in-memory copy; a mapping's pages are released after each."""
    step = rows_per_batch([array])
    if array.shape[0] <= step:
        yield array
        return
    progress = Progress(what or "reading", array.shape[0])
    for start in range(0, array.shape[0], step):
        part = np.array(array[start:start + step])
        release([array])
        yield part
        progress.advance(part.shape[0])
    progress.finish()


def in_batches(run: Callable[[dict[str, np.ndarray]], list[np.ndarray]], inputs: dict[str, np.ndarray],
               what: str) -> list[np.ndarray]:
    """`run` (inputs by name -> outputs along the samples) over `inputs` in batches of at most BATCH_BYTES, its
    outputs concatenated: what one call on the whole arrays gives, with one batch of inputs in memory at a time."""
    arrays = list(inputs.values())
    total, step = arrays[0].shape[0], rows_per_batch(arrays)
    if total <= step:  # a mapped array (or a view of one: a fold) is read into memory, as one batch
        return run({name: np.array(a) if isinstance(a, np.memmap) else a for name, a in inputs.items()})
    progress = Progress(what, total)
    parts: list[list[np.ndarray]] = []
    for start in range(0, total, step):
        batch = {name: np.array(array[start:start + step]) for name, array in inputs.items()}
        release(arrays)
        parts.append(run(batch))
        progress.advance(next(iter(batch.values())).shape[0])
    progress.finish()
    return [np.concatenate(outputs) for outputs in zip(*parts, strict=True)]


@dataclass
class Progress:
    """'what: done / total samples' on stderr: redrawn in place on a terminal; elsewhere (logs, tests) only when
    the pass has run PROGRESS_AFTER_S, then a line every PROGRESS_EVERY_S, so short passes stay silent."""

    what: str
    total: int
    done: int = 0
    started: float = 0.0
    shown: float = 0.0
    terminal: bool = False

    def __post_init__(self) -> None:
        self.started = self.shown = time.monotonic()
        self.terminal = sys.stderr.isatty()

    def advance(self, samples: int) -> None:
        self.done += samples
        now = time.monotonic()
        if self.terminal and now - self.shown >= 0.5:
            sys.stderr.write(f"\r{self._line()}")
        elif not self.terminal and now - self.started >= PROGRESS_AFTER_S and now - self.shown >= PROGRESS_EVERY_S:
            sys.stderr.write(f"{self._line()}\n")
        else:
            return
        sys.stderr.flush()
        self.shown = now

    def finish(self) -> None:
        if self.terminal and self.shown > self.started:
            sys.stderr.write(f"\r{self._line()}\n")
            sys.stderr.flush()

    def _line(self) -> str:
        elapsed = time.monotonic() - self.started
        return f"{self.what}: {self.done:,} / {self.total:,} samples ({elapsed:.0f} s)"


def hint(line: str) -> None:
    """A one-line hint on stderr about how the data are read (the build goes on): 'hint: ...'."""
    sys.stderr.write(f"hint: {line}\n")
    sys.stderr.flush()


def summarise(array: np.ndarray, what: str = "") -> tuple[Any, Any, bool]:
    """(min, max, every value finite) of a non-empty numeric array, read in batches (data.py's checks); min and
    max are numpy scalars of the array's dtype, as array.min() gives them."""
    lows, highs, finite = [], [], True
    for part in chunks(array, what):
        lows.append(part.min())
        highs.append(part.max())
        finite = finite and (part.dtype.kind != "f" or bool(np.all(np.isfinite(part))))
    return min(lows), max(highs), finite
