"""Static input shapes for an ONNX source, and the shape arithmetic that becomes constant once they are.

edgekiln compiles static shapes for the device. An exporter leaves axes open (`images [batch, 3, height,
width]`, `x [-1, 3, 48, -1]`); each is fixed, in this order, by:
  1. the user's `--input-shape NAME=DIMS` (or `input_shape` in the recipe), checked against the model;
  2. for the batch axis, the recipe's batch;
  3. for any other axis, the sample shape of the calibration / evaluation data when it is unambiguous
     (the summary and the manifest say so).
Then `fold` evaluates what has become constant (Shape -> Gather -> Concat -> Reshape chains PyTorch writes
for `x.view(b, 4, -1)`) into initializers and infers every tensor's now static shape.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgekiln.compiler.errors import InputModelError, RecipeError
from edgekiln.compiler.input_shapes import EXAMPLE, UNNAMED, shape_text

if TYPE_CHECKING:
    import onnx

    from edgekiln.compiler import manifest_schema

# Ops folded when all their inputs are constant: shape arithmetic. Their outputs are small integer tensors;
# weights are never recomputed (FOLD_MAX_ELEMENTS keeps it that way).
FOLDABLE = {"Shape", "Size", "Gather", "Concat", "Unsqueeze", "Squeeze", "Slice", "Cast", "Add", "Sub", "Mul",
            "Div", "Floor", "Ceil", "Reshape", "ConstantOfShape", "Range", "Equal", "Where", "Expand",
            "ReduceProd", "Max", "Min", "Identity", "Neg", "Abs"}
FOLD_MAX_ELEMENTS = 64


@dataclass(frozen=True)
class FixedInput:
    """How one input's open axes were closed (for the summary and the manifest)."""

    name: str
    shape: tuple[int, ...]
    declared: str          # the model's own shape, symbols included, e.g. [batch, 3, height, width]
    origin: str            # "input_shape", "batch" or the data role ("calibration data")

    def to_dict(self) -> manifest_schema.FixedInput:
        return {"name": self.name, "shape": list(self.shape), "declared": self.declared, "origin": self.origin}

    def describe(self) -> str:
        source = {"input_shape": "--input-shape", "batch": "--batch"}.get(self.origin, f"the {self.origin}'s samples")
        return f"input '{self.name}' {self.declared} fixed to [{shape_text(self.shape)}] from {source}"


def fix_inputs(model: onnx.ModelProto, batch: int, given: dict[str, tuple[int, ...]] | None,
               data: dict[str, dict[str, tuple[int, ...]]], source: Path) -> list[FixedInput]:
    """Give every input static dims, in place; return what was fixed and how (inputs already static: nothing)."""
    inputs = _graph_inputs(model)
    given = _named(dict(given or {}), [v.name for v in inputs], source)
    if len(inputs) == 1:  # data.py's rule: a single input may be stored as `x`
        name = inputs[0].name
        data = {role: {name: arrays["x"]} if name not in arrays and "x" in arrays else arrays
                for role, arrays in data.items()}
    symbols: dict[str, int] = {}
    fixed = []
    for value in inputs:
        dims = value.type.tensor_type.shape.dim
        declared = shape_of(dims)
        current = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in dims]
        if value.name in given:
            shape, origin = _given(value.name, given[value.name], current, declared, data), "input_shape"
        elif None not in current:
            continue
        elif None not in current[1:]:
            shape, origin = (batch, *[d for d in current[1:] if d is not None]), "batch"  # none is None here
        else:
            shape, origin = _from_data(value.name, current, declared, batch, data, source)
        for dim, size in zip(dims, shape, strict=True):
            if dim.HasField("dim_param") and dim.dim_param:
                symbols.setdefault(dim.dim_param, size)
            dim.Clear()
            dim.dim_value = size
        fixed.append(FixedInput(value.name, tuple(shape), declared, origin))
    _replace_symbols(model, symbols)
    return fixed


def _graph_inputs(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    initializers = {t.name for t in model.graph.initializer}
    return [v for v in model.graph.input if v.name not in initializers]


def _named(given: dict[str, tuple[int, ...]], names: list[str], source: Path) -> dict[str, tuple[int, ...]]:
    """The given shapes keyed by input name (an unnamed one belongs to the only input); unknown names refused."""
    if UNNAMED in given:
        if len(names) != 1:
            raise RecipeError(f"an input shape without a name needs a single-input model; {source.name} has inputs "
                              f"{', '.join(names)}", f"name it: --input-shape {names[0]}=...")
        given[names[0]] = given.pop(UNNAMED)
    unknown = [name for name in given if name not in names]
    if unknown:
        raise RecipeError(f"input_shape names input '{unknown[0]}', which {source.name} does not have "
                          f"(its inputs: {', '.join(names)})", EXAMPLE)
    return given


def _given(name: str, wanted: tuple[int, ...], current: list[int | None], declared: str,
           data: dict[str, dict[str, tuple[int, ...]]]) -> tuple[int, ...]:
    """The user's shape, if it fits the model (rank, static axes) and the data (sample shape)."""
    flag = f"--input-shape {name}={shape_text(wanted)}"
    if len(wanted) != len(current):
        raise RecipeError(f"{flag} has {len(wanted)} dims, but input '{name}' {declared} has rank {len(current)}",
                          f"give {len(current)} dims")
    for axis, (have, want) in enumerate(zip(current, wanted, strict=True)):
        if have is not None and have != want:
            raise RecipeError(f"{flag}: axis {axis} of input '{name}' {declared} is fixed to {have} by the model",
                              "only its dynamic axes can be set")
    for role, shapes in data.items():
        if name in shapes and tuple(shapes[name]) != wanted[1:]:
            raise RecipeError(f"{flag} does not match the {role}'s samples [{shape_text(shapes[name])}]",
                              "give the data's size, or resize the data to the shape you want compiled")
    return wanted


def _from_data(name: str, current: list[int | None], declared: str, batch: int,
               data: dict[str, dict[str, tuple[int, ...]]], source: Path) -> tuple[tuple[int, ...], str]:
    """The open axes from the data's sample shape, when there is one shape that fits."""
    open_axes = ", ".join(str(axis) for axis, have in enumerate(current) if have is None and axis > 0)
    hint = f"pass --input-shape {name}=" + ",".join(str(d) if d else "N" for d in [batch, *current[1:]])
    found = {role: tuple(shapes[name]) for role, shapes in data.items() if name in shapes}
    if not found:
        raise InputModelError(f"{source.name}: input '{name}' {declared} has dynamic axes {open_axes} and no "
                              ".npz/.npy data gives its size", hint)
    if len(set(found.values())) > 1:
        sizes = "; ".join(f"{role} [{shape_text(s)}]" for role, s in found.items())
        raise InputModelError(f"{source.name}: input '{name}' {declared} has dynamic axes {open_axes}, and the "
                              f"data's samples differ ({sizes})", hint)
    role, sample = next(iter(found.items()))
    shape = (current[0] or batch, *sample)
    fits = len(shape) == len(current) and all(h is None or h == s for h, s in zip(current, shape, strict=True))
    if not fits:
        raise InputModelError(f"{source.name}: the {role}'s samples [{shape_text(sample)}] do not fit input "
                              f"'{name}' {declared}", "give data shaped like the model's input, per sample")
    return shape, role


def _replace_symbols(model: onnx.ModelProto, symbols: dict[str, int]) -> None:
    """Every other use of a symbol now fixed (outputs, value_info) gets its value."""
    for value in [*model.graph.output, *model.graph.value_info]:
        for dim in value.type.tensor_type.shape.dim:
            if dim.HasField("dim_param") and dim.dim_param in symbols:
                size = symbols[dim.dim_param]
                dim.Clear()
                dim.dim_value = size


def shape_of(dims: Iterable[onnx.TensorShapeProto.Dimension]) -> str:
    """The dims as text, symbols kept: `[batch, 3, 224, 224]` (`?` for an open axis without a name)."""
    return "[" + ", ".join(str(d.dim_value) if d.HasField("dim_value") else (d.dim_param or "?")
                           for d in dims) + "]"


def fold(model: onnx.ModelProto) -> int:
    """Evaluate the shape arithmetic whose inputs are now constant into initializers, in place, then infer
    every tensor's shape again (outputs included); returns how many nodes were folded."""
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
    shapes = _static_shapes(inferred)
    constants = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    kept, folded = [], 0
    for node in model.graph.node:
        value = _evaluate(node, constants, shapes)
        if value is None or len(node.output) != 1:
            kept.append(node)
            continue
        constants[node.output[0]] = value
        model.graph.initializer.append(onnx.numpy_helper.from_array(value, node.output[0]))
        folded += 1
    if folded:
        del model.graph.node[:]
        model.graph.node.extend(kept)
        _drop_unused_initializers(model)
    del model.graph.value_info[:]
    for output in model.graph.output:
        output.type.tensor_type.ClearField("shape")
    model.CopyFrom(onnx.shape_inference.infer_shapes(model, data_prop=True))
    return folded


def _static_shapes(model: onnx.ModelProto) -> dict[str, tuple[int, ...]]:
    shapes = {}
    for value in [*model.graph.input, *model.graph.value_info, *model.graph.output]:
        dims = value.type.tensor_type.shape.dim
        if value.type.tensor_type.HasField("shape") and all(d.HasField("dim_value") for d in dims):
            shapes[value.name] = tuple(d.dim_value for d in dims)
    return shapes


def _evaluate(node: onnx.NodeProto, constants: dict[str, np.ndarray], shapes: dict[str, tuple[int, ...]]
              ) -> np.ndarray | None:
    """The node's output if it is shape arithmetic over known values (a Shape of a static tensor included)."""
    if node.op_type not in FOLDABLE or node.domain not in ("", "ai.onnx"):
        return None
    if node.op_type in ("Shape", "Size"):
        shape = shapes.get(node.input[0]) or (constants[node.input[0]].shape if node.input[0] in constants else None)
        if shape is None:
            return None
        if node.op_type == "Size":
            return np.array(int(np.prod(shape)), np.int64)
        attrs = {a.name: a.i for a in node.attribute}
        return np.array(shape[attrs.get("start", 0):attrs.get("end")], np.int64)
    present = [name for name in node.input if name]
    if not present or any(name not in constants for name in present):
        return None
    if any(constants[name].size > FOLD_MAX_ELEMENTS for name in present):
        return None
    return _run_node(node, constants)


def _run_node(node: onnx.NodeProto, constants: dict[str, np.ndarray]) -> np.ndarray | None:
    from onnx.reference import ReferenceEvaluator

    try:
        (value,) = ReferenceEvaluator(node).run(None, {n: constants[n] for n in node.input if n})
    except Exception:  # noqa: BLE001  (an op the reference cannot evaluate here simply stays a node)
        return None
    value = np.asarray(value)
    return value if value.size <= FOLD_MAX_ELEMENTS else None


def _drop_unused_initializers(model: onnx.ModelProto) -> None:
    used = {name for node in model.graph.node for name in node.input} | {o.name for o in model.graph.output}
    kept = [t for t in model.graph.initializer if t.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept)
