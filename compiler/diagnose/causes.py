"""The likely causes of a poor int8 model, in words a user can act on.

Two kinds, most damaging first: int8 ops that leave the fast kernel library (measured by coverage.py),
and layers that carry a large share of the int8 error, with what makes them hard to quantize: a standalone
MUL / ADD (a BatchNormalization the converter could not fold) with a wide per-channel scale spread, an
activation whose channels span orders of magnitude, or weights that do within an output channel.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from edgekiln.compiler.tf_env import quiet_fds

if TYPE_CHECKING:
    from edgekiln.compiler.analyze.coverage import Coverage
    from edgekiln.compiler.diagnose.layer_error import LayerError
    from edgekiln.compiler.emit.calibrate import TensorStats
    from edgekiln.compiler.keras_types import KerasModel

Describe = Callable[[str], str]  # a diagnosed layer's name -> how people should read it

CULPRIT_SHARE = 0.25   # a layer with at least this share of the int8 error is named
MAX_LAYER_CAUSES = 2
SPREAD_NOTABLE = 10.0  # an order of magnitude between channels is worth saying
CONVERSIONS = ("QUANTIZE", "DEQUANTIZE")


def find(errors: list[LayerError], cover: Coverage, stats: dict[int, TensorStats], calibrated: bytes,
         keras_model: KerasModel | None, accurate: str = "") -> list[str]:
    """The causes, most damaging first; never empty.

    Ops outside the fast path come first when they split it (each piece boundary costs a round trip
    through slow kernels); one such op at the start or end of the graph costs little and comes last.
    `accurate` (how plain int8 meets the accuracy criterion, empty when it does not): then the layer
    with the largest share of a small error is no cause worth naming.
    """
    found = []
    culprits = [e for e in errors[:MAX_LAYER_CAUSES]
                if e.share >= CULPRIT_SHARE and e.channel_nsr >= 0.01 and not accurate]
    if culprits:
        operands, describe = op_operands(calibrated), describer(keras_model)
        found += [_layer_cause(e, stats, operands, describe) for e in culprits]
    slow = {op: n for op, n in cover.slow_ops.items() if op not in CONVERSIONS}
    if slow:
        ops = ", ".join(f"{op} x{n}" for op, n in sorted(slow.items(), key=lambda kv: -kv[1]))
        split = f"the graph is split into {cover.pieces} pieces and these ops run" if cover.pieces > 1 else \
            "the fast path stays in one piece; these ops run outside it"
        text = f"int8 {ops} not in the fast path (XNNPACK): {split} on LiteRT's slower built-in kernels"
        found.insert(0 if cover.pieces > 1 else len(found), text)
    if not found and accurate:
        found.append(f"none: plain int8 is accurate enough here ({accurate}) and every op runs in XNNPACK")
    if not found:
        found.append("no dominant cause: the int8 error is spread over the layers and every op runs in XNNPACK")
    return found


def _layer_cause(worst: LayerError, stats: dict[int, TensorStats], operands: dict[str, tuple[str, np.ndarray]],
                 describe: Describe) -> str:
    share = f"carries {worst.share:.0%} of the int8 error"
    crush = "one int8 scale for the whole tensor crushes the small channels"
    for tensor in worst.tensors:
        op, constant = operands.get(tensor, ("", None))
        if op == "MUL" and constant is not None and constant.size > 1:
            spread = spread_of(np.abs(constant.reshape(-1)))
            return (f"standalone int8 {worst.op} ({describe(worst.layer)}) {share}: a {spread:.0f}-fold per-channel "
                    f"scale spread, and {crush}")
    by_name = {s.name: s for s in stats.values()}
    spread = max((spread_of(by_name[t].channel_absmax) for t in worst.tensors if t in by_name), default=1.0)
    if spread >= SPREAD_NOTABLE:
        return f"{worst.op} output of {describe(worst.layer)} {share}: its channels span a {spread:.0f}-fold range, " \
               f"and {crush}"
    weights = max((_weight_spread(*operands[t]) for t in worst.tensors if t in operands), default=1.0)
    if weights >= SPREAD_NOTABLE:
        return (f"{worst.op} of {describe(worst.layer)} {share}: within an output channel its weights span a "
                f"{weights:.0f}-fold range, so int8 weights (one scale per output channel) lose the small ones")
    sqnr = "exact" if worst.sqnr_db is None else f"SQNR {worst.sqnr_db:.1f} dB"
    return f"{worst.op} output of {describe(worst.layer)} {share} ({sqnr})"


def _weight_spread(op: str, kernel: np.ndarray) -> float:
    """Median over output channels of the input-channel range spread (CONV_2D [O,kh,kw,I], FC [O,I])."""
    if op not in ("CONV_2D", "FULLY_CONNECTED") or kernel.ndim < 2:
        return 1.0
    per_input = np.abs(kernel).reshape(kernel.shape[0], -1, kernel.shape[-1]).max(axis=1)  # [O, I]
    return float(np.median([spread_of(row) for row in per_input]))


def spread_of(values: np.ndarray) -> float:
    """Largest over the 10th-percentile magnitude of the live channels (a few dead channels do not count)."""
    live = values[values > 0]
    return float(live.max() / np.percentile(live, 10)) if live.size else 1.0


def op_operands(calibrated: bytes) -> dict[str, tuple[str, np.ndarray]]:
    """Output tensor name -> (op, constant operand): the scale of an elementwise MUL / ADD, a conv's filter."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    with quiet_fds():
        interp = Interpreter(model_content=calibrated,
                             experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        interp.allocate_tensors()
    ops = interp._get_ops_details()  # noqa: SLF001  (the only API listing the op graph)
    produced = {int(t) for op in ops for t in op["outputs"]} | {d["index"] for d in interp.get_input_details()}
    names = {d["index"]: d["name"] for d in interp.get_tensor_details()}
    found = {}
    for op in ops:
        constant = [int(t) for t in op["inputs"][:2] if t >= 0 and int(t) not in produced]
        if constant and op["op_name"] in ("MUL", "ADD", "CONV_2D", "FULLY_CONNECTED"):
            found[names[int(op["outputs"][0])]] = (op["op_name"], interp.get_tensor(constant[0]))
    return found


def describer(keras_model: KerasModel | None) -> Describe:
    """A function naming a diagnosed layer for people: "BatchNormalization 'bn' after ReLU 'relu1'"."""
    if keras_model is None:
        return lambda layer: f"'{layer}'"
    layers = {layer.name: layer for layer in keras_model.layers}

    def describe(layer: str) -> str:
        parts = layer.split("+")
        text = " + ".join(f"{type(layers[p]).__name__} '{p}'" if p in layers else f"'{p}'" for p in parts)
        first = layers.get(parts[0])
        nodes = first._inbound_nodes if first is not None else []  # noqa: SLF001
        sources = [t._keras_history.operation for t in nodes[0].input_tensors] if nodes else []  # noqa: SLF001
        if len(sources) == 1 and type(sources[0]).__name__ != "InputLayer":
            text += f" after {type(sources[0]).__name__} '{sources[0].name}'"
        return text

    return describe
