"""A BatchNormalization layer of the working copy, read and rewritten as a per-channel affine y = s x + t."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from edgekiln.compiler.rewrite.layer_state import LayerState


def bn_affine(state: LayerState) -> tuple[np.ndarray, np.ndarray]:
    """A BatchNormalization layer as y = s * x + t per channel (inference mode)."""
    w, eps = state.weights, state.config["epsilon"]
    inv_std = 1.0 / np.sqrt(w["moving_variance"].astype(np.float64) + eps)
    gamma = w.get("gamma", np.ones_like(inv_std))
    beta = w.get("beta", np.zeros_like(inv_std))
    s = gamma * inv_std
    return s, beta - w["moving_mean"] * s


def set_bn_affine(state: LayerState, s: np.ndarray | None, t: np.ndarray | None) -> None:
    """Edits in place: the BatchNormalization becomes y = s x + t, without the parts given as None (no
    scale: the converter emits no MUL; no shift: no ADD; neither: it drops the layer)."""
    eps = state.config["epsilon"]
    channels = state.weights["moving_mean"].shape
    state.config.update(scale=s is not None, center=t is not None)
    state.weights = {"moving_mean": np.zeros(channels, np.float32),
                     "moving_variance": np.full(channels, 1.0 - eps, np.float32)}
    if s is not None:
        state.weights["gamma"] = np.asarray(s, np.float32)
    if t is not None:
        state.weights["beta"] = np.asarray(t, np.float32)


def set_bn_shift(state: LayerState, t: np.ndarray) -> None:
    """Edits in place: the BatchNormalization becomes y = x + t (one ADD)."""
    set_bn_affine(state, None, t)


def channels_last_bn(state: LayerState) -> bool:
    """A BatchNormalization over the last axis (the only kind the passes rewrite)."""
    axis = state.config.get("axis", -1)
    axis = axis[0] if isinstance(axis, list | tuple) and len(axis) == 1 else axis
    return state.kind == "BatchNormalization" and not state.identity and axis in (-1, state.rank - 1)


def identity_bn(state: LayerState) -> bool:
    """A BatchNormalization an earlier rewrite turned into a no-op (no scale, no shift, mean 0, var 1 - eps)."""
    if state.kind != "BatchNormalization" or state.config.get("scale") or state.config.get("center"):
        return False
    w = state.weights
    return not np.any(w["moving_mean"]) and np.allclose(w["moving_variance"], 1.0 - state.config["epsilon"])


def sign_and_shift(state: LayerState) -> tuple[np.ndarray, np.ndarray] | None:
    """(sign, t) of a BatchNormalization an earlier pass left as y = sign x + t (sign +-1), else None."""
    w = state.weights
    if np.any(w["moving_mean"]) or not np.allclose(w["moving_variance"], 1.0 - state.config["epsilon"]):
        return None
    sign = w.get("gamma", np.ones_like(w["moving_mean"]))
    if not np.all(np.abs(sign) == 1):
        return None
    return sign, w.get("beta", np.zeros_like(w["moving_mean"]))
