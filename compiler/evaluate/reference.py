"""The source model's outputs, computed once per dataset and reused by every judgement of a build: the
candidate search's judge, the tuning judge and the final measurement read the same arrays."""

from __future__ import annotations

import numpy as np

from edgekiln.compiler.data import SourceGraph
from edgekiln.compiler.errors import DataError
from edgekiln.compiler.model_inputs import Dataset
from edgekiln.runtime import Model


class Reference:
    """A working graph's (the source's, or the pruned model's) outputs by output name, per dataset, each
    computed on first use. The graph is only run, never changed."""

    def __init__(self, graph: SourceGraph) -> None:
        self.graph = graph
        self._outputs: dict[int, tuple[Dataset, dict[str, np.ndarray]]] = {}

    def outputs(self, dataset: Dataset) -> dict[str, np.ndarray]:
        """The graph's outputs on every sample of `dataset`, by output name."""
        key = id(dataset)
        if key not in self._outputs:  # the dataset is kept beside its outputs so that its id stays its own
            run = self.graph.run(dataset.inputs)
            self._outputs[key] = (dataset, dict(zip(self.graph.output_names, run, strict=True)))
        return self._outputs[key][1]

    def ordered(self, dataset: Dataset, model: Model) -> list[np.ndarray]:
        """The outputs in a compiled model's output order (matched by signature name, else by position)."""
        outputs = self.outputs(dataset)
        if all(info.name in outputs for info in model.outputs):
            return [outputs[info.name] for info in model.outputs]
        if len(outputs) != len(model.outputs):
            raise DataError("the compiled model's outputs do not correspond to the source model's")
        return list(outputs.values())
