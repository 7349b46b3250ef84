"""The small Keras transformer encoders the integration tests build (token ids in, class probabilities out)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

LENGTH, WIDTH, HEADS = 8, 16, 2  # tokens, hidden size, heads of every attention layer


def block_params() -> int:
    """One block's parameters: attention (Q, K, V, output, with biases), FFN, two LayerNorms."""
    attention = 3 * (WIDTH * WIDTH + WIDTH) + WIDTH * WIDTH + WIDTH
    ffn = WIDTH * 2 * WIDTH + 2 * WIDTH + 2 * WIDTH * WIDTH + WIDTH
    return attention + ffn + 2 * 2 * WIDTH


def make_encoder(root: Path, *, blocks: int, vocab: int, classes: int, seed: int, samples: int, calib: int,
                 name: str = "encoder") -> dict:
    """Post-LN blocks as BERT's (layers mha_k, ln_a_k, ff_a_k, ff_b_k, ln_b_k; a single block is named without
    the _k), saved as .keras with calibration ids (calib.npz) and labelled evaluation ids (eval.npz): the labels
    are the model's own answers, so the source scores 100 %."""
    from edgekiln.compiler.tf_env import import_keras

    keras = import_keras()
    layers = keras.layers
    keras.utils.set_random_seed(seed)
    ids = keras.Input((LENGTH,), dtype="int32", name="input_ids")
    x = layers.Embedding(vocab, WIDTH, name="embed")(ids)
    for k in range(blocks):
        tag = f"_{k}" if blocks > 1 else ""
        attended = layers.MultiHeadAttention(HEADS, WIDTH // HEADS, name=f"mha{tag}")(x, x)
        x = layers.LayerNormalization(name=f"ln_a{tag}")(x + attended)
        ff = layers.Dense(WIDTH, name=f"ff_b{tag}")(layers.Dense(2 * WIDTH, activation="gelu", name=f"ff_a{tag}")(x))
        x = layers.LayerNormalization(name=f"ln_b{tag}")(x + ff)
    out = layers.Dense(classes, activation="softmax", name="probs")(layers.GlobalAveragePooling1D(name="pool")(x))
    model = keras.Model(ids, out)
    tokens = np.random.default_rng(seed).integers(0, vocab, (samples, LENGTH)).astype(np.int32)
    labels = model.predict(tokens, verbose=0).argmax(1).astype(np.int64)
    np.savez(root / "calib.npz", x=tokens[:calib])
    np.savez(root / "eval.npz", x=tokens[calib:], y=labels[calib:])
    model.save(root / f"{name}.keras")
    return {"model": root / f"{name}.keras", "calib": root / "calib.npz", "eval": root / "eval.npz", "root": root}
