"""Recovery after pruning: the methods, and least-squares reconstruction (framework-neutral).

Reconstruction (He et al. 2017, "Channel pruning"; Luo et al. 2017, ThiNet) re-fits a conv or dense
layer whose input lost channels so that, on calibration data, its output from the PRUNED network's
activations matches the ORIGINAL layer's output from the original activations:

    min_W,b || P(x_pruned) W + b - (P(x_orig) W_orig + b_orig) ||^2 + lam ||W||^2

P is im2col (each output position's receptive field as one row); the target is the layer's linear
output, before its activation, so a fused softmax or ReLU does not matter. Layers are re-fit in
topological order, each from the already re-fitted network, so later layers absorb earlier errors.
Only a sample of output positions is used per image (He et al. sample 10), which bounds the cost.
Fine-tuning and distillation train the model and live in the framework adapter.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgekiln.compiler.prune.channels import Plan
from edgekiln.compiler.prune.groups import COUPLING, Analysis, Role
from edgekiln.compiler.recipe import Recover

ROWS_PER_LAYER = 10_000  # sampled output positions per re-fitted layer
RIDGE = 1e-3             # lam relative to the mean diagonal of P^T P: keeps near-dead channels stable


def resolve(method: Recover | str, trainable: bool) -> Recover:
    """`auto` becomes distill where a training framework is at hand, else reconstruct."""
    method = Recover(str(method))
    if method is Recover.auto:
        return Recover.distill if trainable else Recover.reconstruct
    return method


def affected(analysis: Analysis, plan: Plan) -> list[str]:
    """Producers, in topological order, whose input differs from the original: re-fit candidates.

    A producer's input differs when one of its input channels was removed, or when anything
    upstream changed (a removed channel, or an earlier re-fit, which never matches exactly).
    """
    changed: set[str] = set()
    found = []
    for node in analysis.graph.nodes:
        upstream = any(i in changed for i in node.inputs)
        producer = COUPLING.get(node.op) is Role.PRODUCER and len(node.inputs) == 1
        if producer and (upstream or not analysis.mask(node.inputs[0], plan).all()):
            found.append(node.name)
        if upstream or node.name in found or not analysis.mask(node.name, plan).all():
            changed.add(node.name)
    return found


@dataclass(frozen=True)
class Geometry:
    """A 2-D convolution's window in NHWC terms; a dense layer is the 1x1 case without padding."""

    kh: int = 1
    kw: int = 1
    stride: tuple[int, int] = (1, 1)
    dilation: tuple[int, int] = (1, 1)
    pads: tuple[int, int, int, int] = (0, 0, 0, 0)  # top, left, bottom, right

    @staticmethod
    def same_pads(size: tuple[int, int], kernel: tuple[int, int], stride: tuple[int, int],
                  dilation: tuple[int, int]) -> tuple[int, int, int, int]:
        """TensorFlow's 'same' padding (the extra row/column goes bottom/right)."""
        pads = []
        for n, k, s, d in zip(size, kernel, stride, dilation, strict=True):
            out = -(-n // s)
            pads.append(max((out - 1) * s + (k - 1) * d + 1 - n, 0))
        return pads[0] // 2, pads[1] // 2, pads[0] - pads[0] // 2, pads[1] - pads[1] // 2

    def out_size(self, h: int, w: int) -> tuple[int, int]:
        top, left, bottom, right = self.pads
        ho = (h + top + bottom - (self.kh - 1) * self.dilation[0] - 1) // self.stride[0] + 1
        wo = (w + left + right - (self.kw - 1) * self.dilation[1] - 1) // self.stride[1] + 1
        return ho, wo


def sample_positions(x: np.ndarray, geometry: Geometry, seed: int = 0) -> np.ndarray:
    """(rows, 3) indices (sample, out_row, out_col) to fit on; all of them if few enough."""
    n = x.shape[0]
    ho, wo = geometry.out_size(x.shape[1], x.shape[2]) if x.ndim == 4 else (1, 1)
    total = n * ho * wo
    flat = np.arange(total) if total <= ROWS_PER_LAYER else \
        np.sort(np.random.default_rng(seed).choice(total, ROWS_PER_LAYER, replace=False))
    return np.stack(np.unravel_index(flat, (n, ho, wo)), axis=1)


def patches(x: np.ndarray, geometry: Geometry, positions: np.ndarray) -> np.ndarray:
    """im2col rows (len(positions), kh*kw*C), in the (kh, kw, C) order of an HWIO kernel."""
    if x.ndim == 2:
        return x[positions[:, 0]].astype(np.float64)
    top, left, bottom, right = geometry.pads
    padded = np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))
    n, oh, ow = positions.T
    cols = [padded[n, oh * geometry.stride[0] + i * geometry.dilation[0],
                   ow * geometry.stride[1] + j * geometry.dilation[1], :]
            for i in range(geometry.kh) for j in range(geometry.kw)]
    return np.stack(cols, axis=1).reshape(len(positions), -1).astype(np.float64)


def reconstruct(x_orig: np.ndarray, x_pruned: np.ndarray, in_keep: np.ndarray, out_keep: np.ndarray,
                kernel: np.ndarray, bias: np.ndarray | None, geometry: Geometry,
                seed: int = 0) -> tuple[np.ndarray, np.ndarray | None]:
    """Re-fit one layer. kernel: HWIO (kh, kw, I, O) or (I, O) for dense, ORIGINAL (unpruned) shape.

    x_orig: the layer's input in the original network (all I channels), NHWC or (N, I);
    x_pruned: its input in the pruned network (the kept channels only). Returns the new kernel
    (kept inputs, kept outputs) and bias (kept outputs), or None for a layer without bias.
    """
    positions = sample_positions(x_orig, geometry, seed)
    w = kernel.reshape(-1, kernel.shape[-1]).astype(np.float64)
    target = patches(x_orig, geometry, positions) @ w[:, out_keep]
    if bias is not None:
        target += bias[out_keep]
    p = patches(x_pruned, geometry, positions)
    if bias is not None:
        p = np.concatenate([p, np.ones((len(p), 1))], axis=1)
    gram = p.T @ p
    lam = RIDGE * max(float(np.mean(np.diag(gram))), 1e-12)
    solved = np.linalg.solve(gram + lam * np.eye(len(gram)), p.T @ target)
    shape = (*kernel.shape[:-2], int(in_keep.sum()), int(out_keep.sum()))
    new_kernel = solved[: np.prod(shape[:-1])].reshape(shape).astype(kernel.dtype)
    new_bias = None if bias is None else solved[-1].astype(bias.dtype)
    return new_kernel, new_bias
