"""Why int8 hurts a model: per-layer (TFLite) or per-node (ONNX) quantization error, and the causes in words."""
