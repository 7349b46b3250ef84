"""A compiled model opened in the runtime that ships in the bundle, and its outputs on a dataset: every figure
of a candidate is measured through this, so it describes the code that runs on the device."""

from __future__ import annotations

import numpy as np

from edgekiln.compiler.batches import in_batches
from edgekiln.compiler.manifest_schema import Layout
from edgekiln.compiler.model_inputs import Dataset
from edgekiln.compiler.tf_env import quiet_fds
from edgekiln.runtime import Model


def open_model(model_format: str, model_bytes: bytes, threads: int | None,
               layouts: dict[str, Layout] | None = None) -> Model:
    """The compiled model in the same runtime class the bundle uses on the device."""
    with quiet_fds():  # LiteRT announces its XNNPACK delegate on fd 2 at creation
        return Model(model_format, model_bytes, threads, layouts)


def predict(model: Model, dataset: Dataset) -> list[np.ndarray]:
    """Float outputs for every sample, in the model's output order; data larger than a batch in batches."""
    names = [info.name for info in model.inputs]
    return in_batches(lambda feed: model.predict_list([feed[name] for name in names]),
                      {name: dataset.inputs[name] for name in names}, "judging")
