"""Activation ranges for int8: min/max (what the converter records), percentile, and entropy (KL).

The converter's calibrated model (emit/tflite_int8.calibrate) is a float .tflite whose activation tensors
carry their min/max. `collect` runs it on calibration samples and keeps, per such tensor, a histogram of |x|
and each channel's largest |x|. `ranges` turns those into clipped ranges, and `with_ranges` writes them back
into the calibrated model, so the same quantizer then uses them. Model inputs and outputs keep min/max:
clipping the data or the logits would change what the user measures, not just rounding.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from edgekiln.compiler.errors import ConversionError
from edgekiln.compiler.recipe import PERCENTILE
from edgekiln.compiler.tf_env import quiet_fds

METHODS = ("minmax", "percentile", "entropy")
BINS = 2048
ENTROPY_STEP = 16   # threshold candidates every 16 bins: 2048 / 16 = 128 KL evaluations per tensor


@dataclass(frozen=True)
class RangedTensor:
    """A tensor the calibration gave a (min, max): its index and name in the calibrated model's first subgraph."""

    index: int
    name: str
    lo: float
    hi: float


@dataclass
class TensorStats:
    """What calibration saw of one activation tensor (index in the calibrated model)."""

    name: str
    lo: float
    hi: float
    hist: np.ndarray            # counts of |x| over [0, max(|lo|, |hi|)] in BINS bins
    channel_absmax: np.ndarray  # largest |x| per channel (last axis)
    internal: bool              # neither a model input nor a model output

    @property
    def top(self) -> float:
        return max(abs(self.lo), abs(self.hi))


def collect(calibrated: bytes, feeds: list[dict[str, np.ndarray]]) -> dict[int, TensorStats]:
    """Run the calibrated model on each feed (signature name -> one sample) and record every ranged tensor."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    with quiet_fds():  # no XNNPACK: it fuses ops and would not keep their intermediate tensors
        interp = Interpreter(model_content=calibrated, experimental_preserve_all_tensors=True,
                             experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        interp.allocate_tensors()
    inputs = interp.get_signature_runner().get_input_details()
    boundary = {d["index"] for d in interp.get_input_details() + interp.get_output_details()}
    stats = {t.index: TensorStats(t.name, t.lo, t.hi, np.zeros(BINS, np.int64), np.zeros(0), t.index not in boundary)
             for t in ranged_tensors(calibrated)}
    for feed in feeds:
        for name, detail in inputs.items():
            interp.set_tensor(detail["index"], feed[name].astype(detail["dtype"]))
        interp.invoke()
        for index, s in stats.items():
            _accumulate(s, interp.get_tensor(index))
    return stats


def _accumulate(s: TensorStats, value: np.ndarray) -> None:
    magnitude = np.abs(value.astype(np.float32))
    if 0 < s.top < np.inf:  # tflite_int8.calibrate refuses non-finite ranges; a histogram needs a finite one
        s.hist += np.histogram(np.minimum(magnitude, s.top), bins=BINS, range=(0.0, s.top))[0]
    per_channel = magnitude.reshape(-1, value.shape[-1]).max(axis=0) if value.ndim else magnitude.reshape(1)
    s.channel_absmax = per_channel if s.channel_absmax.size == 0 else np.maximum(s.channel_absmax, per_channel)


def ranged_tensors(calibrated: bytes) -> list[RangedTensor]:
    """Every tensor the calibration gave a range (first subgraph), in index order."""
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(calibrated))
    found = []
    for i, tensor in enumerate(model.subgraphs[0].tensors):
        q = tensor.quantization
        if q is not None and q.min is not None and q.max is not None and len(q.min) == 1:
            found.append(RangedTensor(i, tensor.name.decode(), float(q.min[0]), float(q.max[0])))
    return found


def ranges(stats: dict[int, TensorStats], method: str) -> dict[int, tuple[float, float]]:
    """Clipped (min, max) per internal tensor for 'percentile' or 'entropy' ('minmax' changes nothing)."""
    if method == "minmax":
        return {}
    pick = _percentile if method == "percentile" else _entropy
    clipped = {}
    for index, s in stats.items():
        if not s.internal or not 0 < s.top < np.inf or s.hist.sum() == 0:
            continue
        levels = 128 if s.lo < 0 else 256  # a signed tensor spends half of int8's 256 steps on each side
        t = pick(s.hist, levels) * s.top / BINS
        clipped[index] = (max(s.lo, -t), min(s.hi, t))
    return clipped


FLOAT32_MAX = float(np.finfo(np.float32).max)


def non_finite(calibrated: bytes) -> list[tuple[str, float, float]]:
    """The tensors whose calibrated (min, max) is infinite or NaN, or float32's largest value (TensorFlow's
    calibrator records an activation that overflowed as +-3.4e38): no int8 scale represents them, and the
    quantizer must never see them (measured: XNNPACK then refuses the int8 model, 'failed to prepare')."""
    return [(t.name, t.lo, t.hi) for t in ranged_tensors(calibrated)
            if not (np.isfinite(t.lo) and np.isfinite(t.hi)) or max(abs(t.lo), abs(t.hi)) >= FLOAT32_MAX]


def _percentile(hist: np.ndarray, levels: int) -> int:
    """The bin edge below which PERCENTILE % of |x| lies."""
    cumulative = np.cumsum(hist) / hist.sum()
    return int(np.searchsorted(cumulative, PERCENTILE / 100.0) + 1)


def _entropy(hist: np.ndarray, levels: int) -> int:
    """TensorRT's threshold (as onnxruntime computes it): the clip point whose `levels`-step quantization
    loses least information, KL(reference || quantized), both smoothed so empty bins stay finite.

    All clip points at once: each is a segment of one flat array of its window's bins (`_clip_grid`), so the
    search is some twenty array operations, not a loop of twenty per clip point (bench/bench_calibration.py
    prints the CPU time of both). Only occupied bins (count > 0, and the last, where the outliers clip) are
    computed: in an empty bin smoothing gives p and q the same eps, whose term eps * log(eps / eps) is 0."""
    grid, counts = _clip_grid(len(hist), levels), hist.astype(np.float64)
    outliers = counts.sum() - np.concatenate([[0.0], np.cumsum(counts)])[grid.clips]  # exact: integers
    p_all = counts[grid.column]
    p_all[grid.last] += outliers
    cells = np.flatnonzero(p_all)
    first = np.searchsorted(cells, grid.starts)  # each window's first occupied cell (every window has one)
    n_p = np.diff(np.append(first, len(cells)))
    p, step = p_all[cells], grid.step[cells]
    mass = np.bincount(step, counts[grid.column[cells]], grid.steps)  # sums of integers: exact in any order
    with np.errstate(divide="ignore", invalid="ignore"):  # 0 / 0 in the steps no occupied bin falls in
        q = (mass / np.bincount(step, minlength=grid.steps))[step]  # each step's mass shared by its occupied bins
        q_total, n_q = np.add.reduceat(q, first), np.add.reduceat(q > 0, first)
        p_n = p / counts.sum() - np.repeat(_taken(n_p, grid.clips), n_p)  # every window holds all the mass
        q_n = np.maximum(np.where(q > 0, q / np.repeat(q_total, n_p) - np.repeat(_taken(n_q, grid.clips), n_p),
                                  _EPS), 1e-12)
        terms = p_n * np.log(np.maximum(p_n, 1e-300) / q_n) * (p_n > 0)  # a bin smoothed below 0 counts nothing
    kl = np.add.reduceat(terms, first)
    kl[q_total == 0] = np.inf  # a clip point whose quantized histogram is empty is never chosen
    return int(grid.clips[np.argmin(kl)]) if np.isfinite(kl).any() else len(hist)  # argmin: the first minimum


_EPS = 1e-4  # onnxruntime's smooth_distribution eps


def _taken(full: np.ndarray, bins: np.ndarray) -> np.ndarray:
    """What smoothing takes from each full bin of a window with `full` of `bins` bins full: eps per empty bin,
    shared (0 when no bin is empty)."""
    return _EPS * (bins - full) / np.maximum(full, 1)


@dataclass(frozen=True)
class ClipGrid:
    """The windows of every clip point laid end to end: cell i is bin `column[i]` of its window, in quantization
    step `step[i]` (numbered across clip points: np.array_split's split of the window into `levels` steps, the
    first clip % levels steps one bin longer)."""

    clips: np.ndarray   # each clip point: the window's length in bins
    starts: np.ndarray  # each window's first cell
    last: np.ndarray    # each window's last cell (where its outliers clip)
    column: np.ndarray
    step: np.ndarray
    steps: int


@functools.cache
def _clip_grid(bins: int, levels: int) -> ClipGrid:
    """The same for every tensor of a level count: built once."""
    clips = np.arange(levels, bins + 1, ENTROPY_STEP)
    starts = np.concatenate([[0], np.cumsum(clips)[:-1]])
    row = np.repeat(np.arange(len(clips)), clips)
    column = np.arange(int(clips.sum())) - starts[row]
    size, longer = (clips // levels)[row], (clips % levels)[row]
    split = longer * (size + 1)
    step = np.where(column < split, column // (size + 1), longer + (column - split) // np.maximum(size, 1))
    return ClipGrid(clips, starts, starts + clips - 1, column, row * levels + step, len(clips) * levels)


def smooth(distribution: np.ndarray, eps: float = 1e-4) -> np.ndarray:
    """Move eps of mass onto every empty bin, taken evenly from the others (onnxruntime's smoothing)."""
    empty = distribution == 0
    if empty.all() or not empty.any():
        return distribution
    taken = eps * empty.sum() / (~empty).sum()
    return distribution + eps * empty - taken * ~empty


def with_ranges(calibrated: bytes, clipped: dict[int, tuple[float, float]]) -> bytes:
    """The calibrated model with some tensors' (min, max) replaced; a non-finite range is refused (the
    quantizer must never see one)."""
    for index, (lo, hi) in clipped.items():
        if not (np.isfinite(lo) and np.isfinite(hi)):
            raise ConversionError(f"int8 calibration: non-finite range [{lo}, {hi}] for tensor {index}")
    if not clipped:
        return calibrated
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(calibrated))
    tensors = model.subgraphs[0].tensors
    for index, (lo, hi) in clipped.items():
        tensors[index].quantization.min = np.array([lo], np.float32)
        tensors[index].quantization.max = np.array([hi], np.float32)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))
