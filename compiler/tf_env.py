"""Importing TensorFlow quietly, once, only where it is needed (it takes seconds to import)."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from typing import Any


def import_tf() -> Any:
    """`tensorflow`, with its C++ logging and oneDNN notices silenced before the first import."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")
    import absl.logging

    absl.logging.set_verbosity(absl.logging.ERROR)
    return tf


def import_keras() -> Any:
    import_tf()
    import keras

    return keras


@contextlib.contextmanager
def quiet_fds() -> Iterator[None]:
    """Silence fds 1 and 2 for a block: the converter prints from C++, below Python's sys.stdout.

    What it printed is dropped; failures still surface as exceptions.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, devnull):
            os.close(fd)
