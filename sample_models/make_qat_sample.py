"""Derive `mnist_resnet_outliers.keras`: the sample ResNet with outlier channels in its residual streams, a model
whose float outputs are the ResNet's but whose plain int8 loses accuracy (the --qat sample, issue 35).

Transformers and many trained CNNs carry a few activation channels tens of times larger than the rest; one int8
scale per activation tensor then leaves the other channels a handful of levels. Here that is made exactly, with no
training: channel c of a residual stream (the sum of a block's two branches) is multiplied by S in both branches'
last BatchNormalization (gamma and beta: the branch's output channel times S; the ReLU after the Add passes a
positive scale through), and every reader of the stream divides its input channel c by S (conv kernels' input
slice, the Dense rows after global average pooling). The float model computes the same function (checked within
1e-4); cross-layer equalisation (compiler/rewrite/equalize.py) cannot undo it, since a stream read by a conv and
a shortcut is no conv pair.

Run from the repository root:  .venv/bin/python sample_models/make_qat_sample.py  (a few seconds, deterministic)
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SCALE = float(os.environ.get("OUTLIER_SCALE", "64"))
# stream -> (the two BatchNormalizations summed into it, the layers reading it after its ReLU)
STREAMS = {"add_1": (("batch_normalization_8", "batch_normalization_9"), ("conv2d_10", "conv2d_12")),
           "add_2": (("batch_normalization_11", "batch_normalization_12"), ("probs",))}
CHANNELS = 2  # per stream: the channels with the largest mean activation on the calibration samples


def main(out: Path = HERE / "mnist_resnet_outliers.keras") -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    import keras

    model = keras.models.load_model(HERE / "mnist_resnet.keras")
    x = np.load(HERE / "mnist_calib.npz")["x"]
    before = model.predict(x, verbose=0)
    probe = keras.Model(model.inputs, [model.get_layer(s).output for s in STREAMS])
    for (stream, (bns, readers)), acts in zip(STREAMS.items(), probe.predict(x, verbose=0), strict=True):
        channels = np.argsort(np.maximum(acts, 0).mean(axis=(0, 1, 2)))[-CHANNELS:]
        for name in bns:
            layer = model.get_layer(name)
            gamma, beta, mean, var = layer.get_weights()
            gamma[channels] *= SCALE
            beta[channels] *= SCALE
            layer.set_weights([gamma, beta, mean, var])
        for name in readers:
            layer = model.get_layer(name)
            kernel, *rest = layer.get_weights()
            kernel[..., channels, :] /= SCALE  # the input-channel axis: conv (h, w, in, out), dense (in, out)
            layer.set_weights([kernel, *rest])
        print(f"{stream}: channels {sorted(channels.tolist())} x{SCALE:g}")
    after = model.predict(x, verbose=0)
    assert np.max(np.abs(after - before)) < 1e-4, np.max(np.abs(after - before))
    model.save(out)
    print(f"wrote {out} (float outputs within {np.max(np.abs(after - before)):.1e} of mnist_resnet)")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "mnist_resnet_outliers.keras")
