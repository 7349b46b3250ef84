"""Static facts about compiled models (ops, parameters, MACs, bytes, fast-path coverage), per format."""

from __future__ import annotations

from edgekiln.compiler.analyze.graph_stats import GraphStats


def stats(model_format: str, model_bytes: bytes) -> GraphStats:
    """Params, MACs and ops of a compiled artifact of either format."""
    if model_format == "onnx":
        from edgekiln.compiler.analyze.onnx_stats import onnx_stats

        return onnx_stats(model_bytes)
    from edgekiln.compiler.analyze.tflite_stats import tflite_stats

    return tflite_stats(model_bytes)
