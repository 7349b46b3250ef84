"""Synthetic models that each reproduce one way plain int8 fails; seeded, built in a second, no training.

spread_bn   conv -> ReLU -> BatchNormalization whose scales span 1000x -> conv that compensates them (so the
            small channels matter): plain int8 crushes the small channels of the BN's standalone MUL.
cifar_cnn   a Keras-2-era CIFAR CNN as a Sequential: Conv (valid) -> ReLU -> BatchNormalization blocks with MaxPool
            and Dropout between, raw 0..255 input, the first BN's scales spread 0.04 .. 31.5 (as measured on a
            pretrained one): the BN-after-ReLU rewrites must reach it through pools, dropout and Flatten.
activation  conv / depthwise conv blocks with PReLU or HardSwish, whose int8 kernels are not in XNNPACK.
outlier     conv -> ReLU -> 1x1 conv whose channel 0 is ~1000x the others (an activation outlier, as in detectors
            and transformers) -> pool -> dense head that ignores channel 0: one int8 scale for the tensor erases
            the channels the head reads; 16-bit activations keep them (16x8).

The inputs are noisy draws around a few smooth random prototypes (the classes), each conv is scaled to unit
output std per channel (as BatchNormalization keeps a trained model's) and the head is the nearest-class-mean
classifier of the features, so outputs and their top-1 vary from sample to sample as a real classifier's do.
The benchmark in bench/ builds the same models.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

SIZE = 16


def images(rng: np.random.Generator, count: int, size: int = SIZE, channels: int = 3,
           prototypes: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Images in [0, 1] drawn around a few smooth prototypes (random 4x4 grids, upsampled), like the classes
    of a real data set, and the prototype each one was drawn from."""
    grid = rng.random((prototypes, 4, 4, channels), dtype=np.float32)
    smooth = np.repeat(np.repeat(grid, size // 4, axis=1), size // 4, axis=2)
    labels = rng.integers(0, prototypes, count)
    gain = rng.uniform(0.7, 1.0, (count, 1, 1, 1)).astype(np.float32)
    noisy = smooth[labels] * gain + rng.normal(0, 0.05, (count, size, size, channels)).astype(np.float32)
    return np.clip(noisy, 0, 1), labels


def fit_head(keras: Any, model: Any, head: Any, x: np.ndarray, labels: np.ndarray, spread: float = 4.0) -> None:
    """Set the final Dense to the nearest-class-mean classifier of the features (what training would find
    for well-separated classes), scaled so that the logits have std `spread`: top-1 is the prototype."""
    features = keras.Model(model.inputs, head.input).predict(x, verbose=0).astype(np.float64)
    means = np.stack([features[labels == k].mean(axis=0) for k in range(head.units)])
    centre = means.mean(axis=0)
    kernel = (means - centre).T                               # logit_k = f . (mu_k - m) - (|mu_k|^2 - |m|^2) / 2
    bias = -0.5 * ((means**2).sum(axis=1) - (centre**2).sum())
    scale = spread / max(float((features @ kernel + bias).std()), 1e-12)
    head.set_weights([(kernel * scale).astype(np.float32), (bias * scale).astype(np.float32)])


def normalise(keras: Any, model: Any, x: np.ndarray) -> None:
    """Scale each conv's output channels to unit std on x, as BatchNormalization keeps a trained model's:
    with random weights the signal otherwise shrinks layer by layer and channels drift orders of magnitude
    apart, which would make every variant look bad for reasons no real model has."""
    for layer in model.layers:
        if type(layer).__name__ in ("Conv2D", "DepthwiseConv2D"):
            out = keras.Model(model.inputs, layer.output).predict(x, verbose=0)
            std = out.reshape(-1, out.shape[-1]).std(axis=0) + 1e-6
            kernel, bias = layer.get_weights()
            kernel = kernel / std.reshape(kernel.shape[-2:]) if kernel.shape[-1] == 1 else kernel / std
            layer.set_weights([kernel, bias / std])


def spread_bn(keras: Any, seed: int = 0, compensation: float = 0.5) -> tuple[Any, np.ndarray]:
    """conv -> ReLU -> BN (scales 10^-1.5 .. 10^1.5) -> conv -> ReLU -> GAP -> Dense.

    The second conv's input channels are divided by scale ** compensation, so the small channels still
    matter downstream (as when training has learnt to rely on them).
    """
    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    layers = keras.layers
    inp = keras.Input((SIZE, SIZE, 3), name="image")
    x = layers.ReLU(name="relu1")(layers.Conv2D(16, 3, padding="same", name="conv1")(inp))
    bn, conv2, head = layers.BatchNormalization(name="bn_spread"), layers.Conv2D(16, 3, padding="same", name="conv2"), \
        layers.Dense(10, activation="softmax", name="probs")
    x = layers.ReLU(name="relu2")(conv2(bn(x)))
    model = keras.Model(inp, head(layers.GlobalAveragePooling2D(name="gap")(x)))
    gamma = np.logspace(-1.5, 1.5, 16).astype(np.float32)[rng.permutation(16)]
    beta = rng.normal(0, 0.05, 16).astype(np.float32)
    bn.set_weights([gamma, beta, np.zeros(16, np.float32), np.ones(16, np.float32)])
    kernel, bias = conv2.get_weights()
    conv2.set_weights([kernel / gamma.reshape(1, 1, -1, 1) ** compensation, bias])
    x, labels = images(rng, 192)
    normalise(keras, model, x)
    fit_head(keras, model, head, x, labels)
    return model, x


def cifar_cnn(keras: Any, seed: int = 0, compensation: float = 0.75) -> tuple[Any, np.ndarray]:
    """[Conv 3x3 valid -> ReLU -> BN -> MaxPool -> Dropout] x 2 -> Flatten -> Dense -> ReLU -> BN -> Dropout
    -> Dense softmax, on raw 0..255 images.

    Each BN's moving statistics are its input's (as training leaves them); the first BN's scales span
    0.04 .. 31.5 and the next conv's input channels are divided by scale ** compensation (spread_bn).
    """
    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    layers = keras.layers
    model = keras.Sequential([
        keras.Input((SIZE, SIZE, 3), name="image"),
        layers.Conv2D(16, 3, name="conv1"), layers.Activation("relu", name="relu1"),
        layers.BatchNormalization(name="bn1"), layers.MaxPooling2D(name="pool1"), layers.Dropout(0.25, name="drop1"),
        layers.Conv2D(32, 3, name="conv2"), layers.Activation("relu", name="relu2"),
        layers.BatchNormalization(name="bn2"), layers.MaxPooling2D(name="pool2"), layers.Dropout(0.25, name="drop2"),
        layers.Flatten(name="flatten"), layers.Dense(32, name="fc"), layers.Activation("relu", name="relu3"),
        layers.BatchNormalization(name="bn3"), layers.Dropout(0.5, name="drop3"),
        layers.Dense(10, activation="softmax", name="probs")], name="cifar_cnn")
    x, labels = images(rng, 192)
    x = x * 255.0
    gammas = {"bn1": np.geomspace(0.04, 31.5, 16)[rng.permutation(16)], "bn2": rng.uniform(0.5, 2.0, 32),
              "bn3": rng.uniform(0.5, 2.0, 32)}
    normalise(keras, model, x)
    _trained_bn(keras, model, "bn1", gammas["bn1"], x, rng)
    conv2 = model.get_layer("conv2")
    kernel, bias = conv2.get_weights()
    conv2.set_weights([kernel / gammas["bn1"].reshape(1, 1, -1, 1).astype(np.float32) ** compensation, bias])
    normalise(keras, model, x)  # conv2 again: its input changed
    for name in ("bn2", "bn3"):
        _trained_bn(keras, model, name, gammas[name], x, rng)
    fit_head(keras, model, model.get_layer("probs"), x, labels)
    return model, x.astype(np.float32)


def _trained_bn(keras: Any, model: Any, name: str, gamma: np.ndarray, x: np.ndarray, rng: np.random.Generator) -> None:
    """The BN's moving mean and variance are its input's on x (as training leaves them), with scales gamma."""
    bn = model.get_layer(name)
    seen = keras.Model(model.inputs, bn.input).predict(x, verbose=0)
    seen = seen.reshape(-1, seen.shape[-1])
    bn.set_weights([gamma.astype(np.float32), rng.normal(0, 0.1, gamma.size).astype(np.float32),
                    seen.mean(axis=0), seen.var(axis=0) + 1e-3])


def activation(keras: Any, kind: str, seed: int = 0, size: int = 32,
               filters: tuple[int, ...] = (32, 64)) -> tuple[Any, np.ndarray]:
    """conv + depthwise-conv blocks, each conv followed by PReLU ('prelu') or HardSwish ('hard_swish')."""
    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    layers = keras.layers

    def act(name: str) -> Any:
        if kind == "prelu":
            return layers.PReLU(shared_axes=[1, 2], alpha_initializer=keras.initializers.Constant(0.2), name=name)
        return layers.Activation("hard_swish", name=name)

    inp = keras.Input((size, size, 3), name="image")
    x = inp
    for i, width in enumerate(filters):
        x = act(f"{kind}_{i}a")(layers.Conv2D(width, 3, padding="same", name=f"conv{i}")(x))
        x = act(f"{kind}_{i}b")(layers.DepthwiseConv2D(3, padding="same", name=f"dw{i}")(x))
    head = layers.Dense(10, activation="softmax", name="probs")
    model = keras.Model(inp, head(layers.GlobalAveragePooling2D(name="gap")(x)))
    x, labels = images(rng, 192, size)
    normalise(keras, model, x)
    fit_head(keras, model, head, x, labels)
    return model, x


def outlier(keras: Any, seed: int = 0, magnitude: float = 300.0) -> tuple[Any, np.ndarray]:
    """A tiny model whose middle tensor has one channel `magnitude` times its input sum (see the module doc)."""
    keras.utils.set_random_seed(seed)
    layers = keras.layers
    inp = keras.Input((8, 8, 4), name="x")
    h = layers.ReLU(name="relu")(layers.Conv2D(16, 3, padding="same", name="conv")(inp))
    h = layers.GlobalAveragePooling2D(name="gap")(layers.Conv2D(16, 1, name="mix")(h))
    model = keras.Model(inp, layers.Dense(6, name="head")(h))
    weights, bias = model.get_layer("mix").get_weights()
    weights[..., 0] = magnitude  # the outlier channel: its range sets the tensor's one scale
    model.get_layer("mix").set_weights([weights, bias])
    weights, bias = model.get_layer("head").get_weights()
    weights[0, :] = 0.0  # the head reads only the small channels
    model.get_layer("head").set_weights([weights, bias])
    return model, np.random.default_rng(seed).random((192, 8, 8, 4), dtype=np.float32)


def write(model: Any, x: np.ndarray, root: Path, name: str, calib: int = 128) -> dict[str, Path]:
    """model.keras + calib.npz (the first `calib` samples: the build holds back its tail) + eval.npz."""
    root.mkdir(parents=True, exist_ok=True)
    paths = {"model": root / f"{name}.keras", "calib": root / f"{name}_calib.npz", "eval": root / f"{name}_eval.npz"}
    model.save(paths["model"])
    np.savez(paths["calib"], x=x[:calib])
    np.savez(paths["eval"], x=x[calib:])
    return paths
