"""Converters: a working graph -> artifact bytes, per converter (TensorFlow's, onnx2tf, tf2onnx, onnxruntime's
quantizer). No choices are made here: which artifacts a build makes, and which ships, is search/'s.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgekiln.compiler.recipe import CalibrationMethod, Quantize


@dataclass(frozen=True)
class EmitOptions:
    """What a converter needs to know, typed; built by the candidate builders from the build context.

    activation_type: 'int8' or 'uint8', the target's choice for onnxruntime int8 activations; 'int16' for 16x8.
    workdir: a scratch directory that disappears after the build.
    batch: the compiled batch size where the source leaves it open.
    per_channel: static int8 weights per output channel (False: per tensor, for an ONNX model whose opset has no
        per-channel DequantizeLinear and could not be raised: emit/onnx_opset.py).
    """

    quantize: Quantize
    int8_io: bool
    calibration_method: CalibrationMethod
    activation_type: str
    workdir: Path
    batch: int = 1
    per_channel: bool = True
