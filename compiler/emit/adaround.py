"""AdaRound (Nagel et al. 2020): learn whether each int8 weight rounds up or down, layer by layer (pure numpy).

Nearest rounding minimises each weight's own error, not the layer's output error: the errors of one output
channel's weights add up over its input patch. AdaRound keeps the scale and the zero point and chooses, per
weight, floor(w/s) or floor(w/s) + 1, minimising the layer's output reconstruction error on calibration inputs:

    min_V  sum_c |(W~_c - W_c) X|^2 / e_c  +  reg * sum_c mean_k (1 - |2 h(V_ck) - 1|^beta)
    W~ = s * clip(floor(W / s) + h(V), qmin, qmax),  h(V) = clip(sigmoid(V) (zeta - gamma) + gamma, 0, 1)

X are the layer's float inputs (im2col patches), e_c channel c's error under nearest rounding (so each
channel's term starts near 1 whatever its scale), and beta anneals from 20 to 2 after a warm-up without the
regulariser, which pushes every h(V) to 0 or 1. The output error is linear in W~ - W, so it is read through the
Gram matrix G = X^T X (|D X|^2 = D G D^T per channel): each Adam step costs one (O, K) x (K, K) product,
whatever the number of samples. Channels are independent; a channel whose learned rounding ends no better than
nearest on the optimised inputs keeps nearest.

Both formats' emitters (tflite_adaround, onnx_adaround) report in the records here (LayerRounding, Rounded), and
both builders describe a candidate through `facts` and `note`, so the TFLite and ONNX rows read alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from edgekiln.compiler.manifest_schema import AdaroundFacts

ZETA, GAMMA = 1.1, -0.1  # the rectified sigmoid's stretch (the paper's values)


@dataclass(frozen=True)
class Settings:
    """How hard AdaRound works. iterations: Adam steps per layer (the cap); lr: Adam's step on V; reg: the
    rounding regulariser's weight; beta: its annealing (start, end); warmup: the share of steps without it;
    samples: calibration samples whose inputs build each layer's Gram matrix; min_rows: a layer learns only from
    at least this many input rows (patches) per weight of a channel, else it keeps nearest (measured: a dense
    layer of 288 inputs fitted on 16 rows ended x1.15 nearest's error on held-back samples, x0.88 on its own);
    seconds: the whole model's budget
    (layers not reached keep nearest rounding); max_cost: a layer's multiply-adds per step above which it keeps
    nearest (a 3x3x512 conv's Gram matrix step is 1e10: too slow for a build)."""

    iterations: int = 300
    lr: float = 0.1
    reg: float = 5.0  # per channel, against its nearest-rounding error scaled to 1 (measured: 0.3-10 all help)
    beta: tuple[float, float] = (20.0, 2.0)
    warmup: float = 0.2
    samples: int = 32
    min_rows: int = 4
    seconds: float = 120.0
    max_cost: float = 2e8


@dataclass(frozen=True)
class Problem:
    """One layer's rounding problem: weights (O, K) as the output channels' rows, their per-channel scales (O,),
    the Gram matrices of the inputs (G, K, K) and which one each channel reads (O,): all channels read gram[0]
    for a conv or a dense layer, channel c reads its own input channel's for a depthwise conv."""

    weights: np.ndarray
    scales: np.ndarray
    gram: np.ndarray
    groups: np.ndarray
    qmin: int = -127  # TFLite's int8 weights are symmetric: zero point 0, [-127, 127]
    qmax: int = 127

    @property
    def cost(self) -> float:
        """Multiply-adds of one gradient step."""
        return float(self.weights.shape[0] * self.weights.shape[1] ** 2)


def nearest(p: Problem) -> np.ndarray:
    """Round to nearest, as the converter does (int32, clipped to the int8 range)."""
    return np.clip(np.round(p.weights / p.scales[:, None]), p.qmin, p.qmax).astype(np.int32)


def channel_errors(p: Problem, ints: np.ndarray, gram: np.ndarray | None = None) -> np.ndarray:
    """Each output channel's summed squared output error |(s q - w) X|^2 for integer weights `ints`, through
    `gram` (default: the problem's own; pass another inputs' Gram to measure on held-back samples)."""
    g = p.gram if gram is None else gram
    delta = p.scales[:, None] * ints - p.weights
    return np.einsum("ck,ck->c", _times_gram(delta, g, p.groups), delta)


def _times_gram(delta: np.ndarray, gram: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Row c of delta times the Gram matrix channel c reads."""
    if gram.shape[0] == 1:
        return delta @ gram[0]
    return np.einsum("ckl,cl->ck", gram[groups], delta)


def _h(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The rectified sigmoid and its derivative (zero where it is clipped)."""
    sig = 1.0 / (1.0 + np.exp(-v))
    raw = sig * (ZETA - GAMMA) + GAMMA
    slope = np.where((raw > 0) & (raw < 1), sig * (1 - sig) * (ZETA - GAMMA), 0.0)
    return np.clip(raw, 0.0, 1.0), slope


def _beta(step: int, s: Settings) -> float:
    """Cosine annealing from beta[0] to beta[1] over the steps after the warm-up."""
    start = int(s.warmup * s.iterations)
    t = (step - start) / max(s.iterations - start, 1)
    return s.beta[1] + 0.5 * (s.beta[0] - s.beta[1]) * (1 + np.cos(t * np.pi))


def learn(p: Problem, s: Settings = Settings()) -> np.ndarray:
    """The learned integer weights (int32, each floor(w/s) or floor(w/s) + 1, within [qmin, qmax])."""
    scaled = p.weights / p.scales[:, None]
    floor = np.floor(scaled)
    rest = np.clip(scaled - floor, 0.01, 0.99)
    v = -np.log((ZETA - GAMMA) / (rest - GAMMA) - 1)  # h(V) starts at the fractional part: W~ = W
    inside = ((floor + 1 <= p.qmax) & (floor >= p.qmin)).astype(np.float64)  # where both choices are in range
    base = channel_errors(p, nearest(p))
    norm = 1.0 / np.maximum(base, 1e-12 * max(float(base.max()), 1e-30))
    m, sq = np.zeros_like(v), np.zeros_like(v)
    warm, gram = int(s.warmup * s.iterations), p.gram.astype(np.float32)  # float32: twice as fast, ample here
    for step in range(s.iterations):
        h, slope = _h(v)
        delta = (p.scales[:, None] * np.clip(floor + h, p.qmin, p.qmax) - p.weights).astype(np.float32)
        grad_h = 2.0 * _times_gram(delta, gram, p.groups) * (p.scales * norm)[:, None] * inside
        if step >= warm:
            beta, centred = _beta(step, s), 2 * h - 1
            grad_h += s.reg / p.weights.shape[1] * -2 * beta * np.abs(centred) ** (beta - 1) * np.sign(centred)
        grad = grad_h * slope
        m = 0.9 * m + 0.1 * grad
        sq = 0.999 * sq + 0.001 * grad**2
        v -= s.lr * (m / (1 - 0.9 ** (step + 1))) / (np.sqrt(sq / (1 - 0.999 ** (step + 1))) + 1e-8)
    learned = np.clip(floor + (_h(v)[0] >= 0.5), p.qmin, p.qmax).astype(np.int32)
    better = channel_errors(p, learned) < base  # channels are independent: keep nearest where it is no worse
    return np.where(better[:, None], learned, nearest(p))


@dataclass(frozen=True)
class Window:
    """A conv's sliding window: kernel (kh, kw), strides, dilations, and SAME (zero) or VALID padding."""

    kernel: tuple[int, int]
    strides: tuple[int, int] = (1, 1)
    dilations: tuple[int, int] = (1, 1)
    same: bool = True


def positions(shape: tuple[int, ...], w: Window) -> int:
    """How many patches (rows of the Gram matrix) an NHWC input of `shape` gives."""
    reach = [(k - 1) * d + 1 for k, d in zip(w.kernel, w.dilations, strict=True)]
    sizes = [-(-n // s) if w.same else (n - r) // s + 1 for n, s, r in zip(shape[1:3], w.strides, reach, strict=True)]
    return shape[0] * sizes[0] * sizes[1]


def patches(x: np.ndarray, w: Window) -> np.ndarray:
    """im2col of NHWC inputs: (N * OH * OW, kh, kw, C), each row the inputs one output position reads (TF's
    SAME padding: out = ceil(in / stride), the odd padding pixel after)."""
    (kh, kw), (sh, sw), (dh, dw) = w.kernel, w.strides, w.dilations
    reach = ((kh - 1) * dh + 1, (kw - 1) * dw + 1)
    if w.same:
        pads = [max((-(-size // st) - 1) * st + r - size, 0)
                for size, st, r in zip(x.shape[1:3], (sh, sw), reach, strict=True)]
        x = np.pad(x, ((0, 0), *((p // 2, p - p // 2) for p in pads), (0, 0)))
    windows = np.lib.stride_tricks.sliding_window_view(x, reach, axis=(1, 2))[:, ::sh, ::sw, :, ::dh, ::dw]
    return windows.transpose(0, 1, 2, 4, 5, 3).reshape(-1, kh, kw, x.shape[3])


def conv_gram(inputs: list[np.ndarray], w: Window) -> np.ndarray:
    """(1, K, K) with K = kh * kw * C: the Gram matrix of a conv's patches, flattened as its [O, kh, kw, C] weights."""
    k = w.kernel[0] * w.kernel[1] * inputs[0].shape[-1]
    gram = np.zeros((k, k))
    for x in inputs:
        flat = patches(x.astype(np.float64), w).reshape(-1, k)
        gram += flat.T @ flat
    return gram[None]


def depthwise_gram(inputs: list[np.ndarray], w: Window) -> np.ndarray:
    """(C, kh * kw, kh * kw): each input channel's own patch Gram matrix (a depthwise conv mixes no channels)."""
    k, c = w.kernel[0] * w.kernel[1], inputs[0].shape[-1]
    gram = np.zeros((c, k, k))
    for x in inputs:
        flat = patches(x.astype(np.float64), w).reshape(-1, k, c)
        gram += np.einsum("pkc,plc->ckl", flat, flat)
    return gram


def dense_gram(inputs: list[np.ndarray], features: int) -> np.ndarray:
    """(1, K, K): a fully connected layer's inputs, every leading axis a row."""
    gram = np.zeros((features, features))
    for x in inputs:
        flat = x.astype(np.float64).reshape(-1, features)
        gram += flat.T @ flat
    return gram[None]


@dataclass(frozen=True)
class LayerRounding:
    """One layer's outcome: its weight tensor, op, weights, how many integers changed (each by one step), its
    output error under the learned rounding as a share of nearest rounding's on the optimised samples and on
    the held-back ones (None: none held back), or why it kept nearest rounding (`kept`)."""

    tensor: str
    op: str
    weights: int
    changed: int = 0
    error_ratio: float | None = None
    held_back: float | None = None
    kept: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if v not in ("", None)}


@dataclass(frozen=True)
class Rounded:
    """The int8 model with learned rounding (TFLite flatbuffer or ONNX bytes), each layer's outcome and the
    seconds it took."""

    model: bytes
    layers: tuple[LayerRounding, ...]
    seconds: float

    @property
    def moved(self) -> int:
        """Integer weights rounded the other way than nearest, over every layer."""
        return sum(r.changed for r in self.layers)


def facts(rounded: Rounded, s: Settings, feeds: int) -> AdaroundFacts:
    """The candidate's `details.adaround` (both formats): the step cap, the samples optimised and held back out of
    `feeds` calibration feeds (the first half optimises, as tflite_adaround / onnx_adaround split them), the
    seconds, the weights moved and every layer's outcome."""
    half = min(s.samples, max(feeds // 2, 1))
    return {"iterations": s.iterations, "samples": half, "held_back": min(half, feeds - half),
            "seconds": round(rounded.seconds, 1), "weights_changed": rounded.moved,
            "layers": [r.to_dict() for r in rounded.layers]}


def note(rounded: Rounded, unchanged_on: int = 0) -> str:
    """The candidate's note: how many integer weights moved, in how many of the weighted layers, in how long;
    unchanged_on: the number of judged samples on which every output stayed bit-identical to nearest rounding's
    model (0: some output changed), said so that figures equal to the base's are explained, not puzzling."""
    learned = sum(1 for r in rounded.layers if not r.kept)
    said = (f"AdaRound: {rounded.moved} of {sum(r.weights for r in rounded.layers)} int8 weights rounded the other "
            f"way in {learned} of {len(rounded.layers)} layers ({rounded.seconds:.0f} s)")
    if unchanged_on:
        said += (f"; no judged output changed: on the {unchanged_on} tuning samples its outputs equal nearest "
                 "rounding's bit for bit (the moved weights shift no output by a whole int8 step)")
    return said
