"""The source model's outputs, computed once per dataset and reused by every judgement of a build: the
candidate search's judge, the tuning judge and the final measurement read the same arrays."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edgekiln.compiler.batches import in_batches
from edgekiln.compiler.data import SourceGraph
from edgekiln.compiler.errors import DataError
from edgekiln.compiler.model_inputs import Dataset
from edgekiln.runtime import Model


class Reference:
    """A working graph's (the source's, or the pruned model's) outputs by output name, per dataset, each
    computed on first use. The graph is only run, never changed.

    With a vocabulary-pruned working graph (compiler/vocab_stage.py) the build's datasets hold the pruned
    tokenizer's ids, which the source cannot read: `twins` gives, for each of them, the same sentences in the
    source tokenizer's ids, which the source runs on; `subject` is then the pruned graph, whose compiled forms
    this reference judges. A dataset with no twin is refused, never run on ids of the wrong vocabulary."""

    def __init__(self, graph: SourceGraph, twins: Sequence[tuple[Dataset, Dataset]] = (),
                 subject: SourceGraph | None = None) -> None:
        self.graph = graph
        self.subject = graph if subject is None else subject
        self._twins = {id(mine): (mine, source) for mine, source in twins}
        self._outputs: dict[int, tuple[Dataset, dict[str, np.ndarray]]] = {}

    def outputs(self, dataset: Dataset) -> dict[str, np.ndarray]:
        """The graph's outputs on every sample of `dataset`, by output name."""
        key = id(dataset)
        if key not in self._outputs:  # the dataset is kept beside its outputs so that its id stays its own
            run = in_batches(self.graph.run, self._source_inputs(dataset), "source model's outputs")
            self._outputs[key] = (dataset, dict(zip(self.graph.output_names, run, strict=True)))
        return self._outputs[key][1]

    def _source_inputs(self, dataset: Dataset) -> dict[str, np.ndarray]:
        if not self._twins:
            return dataset.inputs
        if id(dataset) not in self._twins:
            raise AssertionError(f"no source-vocabulary twin of {dataset.origin}: the source cannot read its ids")
        return self._twins[id(dataset)][1].inputs

    def ordered(self, dataset: Dataset, model: Model) -> list[np.ndarray]:
        """The outputs in a compiled model's output order (matched by signature name, else by position)."""
        outputs = self.outputs(dataset)
        if all(info.name in outputs for info in model.outputs):
            return [outputs[info.name] for info in model.outputs]
        if len(outputs) != len(model.outputs):
            raise DataError("the compiled model's outputs do not correspond to the source model's")
        return list(outputs.values())
