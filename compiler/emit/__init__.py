"""Emitters: one module per artifact format; conversion and quantization belong to the target runtime."""
