"""What judges a pruning search (channel or encoder): the samples, and the note the manifest carries about them."""

from __future__ import annotations

from edgekiln.compiler.data import Datasets
from edgekiln.compiler.model_inputs import Dataset
from edgekiln.compiler.prune import driver


def judging_set(data: Datasets) -> Dataset:
    dataset = data.evaluation or data.holdout or data.calib
    assert dataset is not None, "the recipe guarantees --calib or --eval"
    return dataset


def scorer_for(subject: driver.Subject[driver.ModelT], data: Datasets) -> driver.PruningJudge[driver.ModelT]:
    """Accuracy on labelled evaluation data; else agreement with the source on evaluation or held-back data."""
    dataset = judging_set(data)
    return driver.PruningJudge(subject, next(iter(dataset.inputs.values())), dataset.labels)


def data_note(data: Datasets, unlabelled: str = "top-1 agreement with the source") -> str:
    """The pruning block's `judged_on`: which data judged the pruning search. When it is the evaluation data (a
    few held-back samples cannot resolve a 1-point budget), the accuracy the manifest reports is also what the
    search optimised: say so."""
    dataset = judging_set(data)
    source = "evaluation" if dataset is data.evaluation else \
        "held-back calibration" if dataset is data.holdout else "calibration (not held back: too few to fold)"
    metric = "accuracy" if dataset.labels is not None else unlabelled
    note = f"{dataset.size} {source} samples, by {metric}"
    if dataset is data.evaluation:
        note += ("; the reported accuracy is measured on the same samples, so it carries the search's "
                 "selection effect: for an unbiased figure, validate the bundle on data the build never saw")
    return note
