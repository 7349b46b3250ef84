"""Emitters: one module per artifact format; conversion and quantization belong to the target runtime.

Every emitter has the same shape, `emit(graph, calib, options) -> Emitted`: it returns the
compiled artifact and its float32 baseline, converted the same way in the same run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..recipe import CalibrationMethod, Quantize


@dataclass(frozen=True)
class EmitOptions:
    """What an emitter needs to know, typed; built by the pipeline from the recipe and the target.

    activation_type: 'int8' or 'uint8', the target's choice for onnxruntime int8 activations.
    workdir: a scratch directory that disappears after the build.
    batch: the compiled batch size where the source leaves it open.
    """

    quantize: Quantize
    int8_io: bool
    calibration_method: CalibrationMethod
    activation_type: str
    workdir: Path
    batch: int = 1


@dataclass(frozen=True)
class Emitted:
    """An artifact and its float32 baseline.

    layouts: tensor name -> {"source", "compiled", "perm", "source_shape"} for inputs/outputs whose
    layout the converter changed (compiled = source.transpose(perm)); the runtime undoes it.
    details: facts for the manifest's `quantization` section (converter, activation type, ...).
    """

    model: bytes
    baseline: bytes
    layouts: dict[str, dict[str, Any]] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
