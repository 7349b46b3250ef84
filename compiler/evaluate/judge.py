"""The judge: any compiled model's Quality, measured through the runtime against the source model's outputs
(computed once, evaluate/reference.py) on the judging samples, and its labelled accuracy."""

from __future__ import annotations

import hashlib

import numpy as np

from edgekiln.compiler.data import Datasets
from edgekiln.compiler.evaluate import metrics
from edgekiln.compiler.evaluate.output_kinds import KindRule
from edgekiln.compiler.evaluate.quality import Quality
from edgekiln.compiler.evaluate.reference import Reference
from edgekiln.compiler.evaluate.runner import open_model, predict
from edgekiln.compiler.manifest_schema import Fidelity
from edgekiln.compiler.model_inputs import Dataset


class Judge:
    """Fidelity on `check` (Datasets.fidelity_set: see its judged_by) and accuracy on labelled evaluation data,
    of any model's bytes; every model is compared with the same reference arrays."""

    def __init__(self, reference: Reference, check: Dataset, evaluation: Dataset | None, threads: int,
                 main_output: str | None = None, kinds: KindRule | None = None) -> None:
        self.reference, self.check, self.threads, self.main = reference, check, threads, main_output
        self.kinds = kinds or KindRule()
        self._once: dict[tuple[str, str], Quality] = {}
        self.evaluation = evaluation if evaluation is not None and evaluation.labels is not None else None
        self.reference_accuracy: float | None = None
        if self.evaluation is not None and self.evaluation.labels is not None:
            source = reference.outputs(self.evaluation)
            self.reference_accuracy = metrics.accuracy(list(source.values()), self.evaluation.labels,
                                                       list(source), main_output)

    @classmethod
    def for_build(cls, reference: Reference, data: Datasets, threads: int, main_output: str | None,
                  kinds: KindRule | None = None) -> Judge:
        """The judge of a build's candidate table: fidelity on Datasets.fidelity_set, accuracy with labels."""
        return cls(reference, data.fidelity_set, data.evaluation, threads, main_output, kinds)

    @classmethod
    def for_tuning(cls, reference: Reference, data: Datasets, threads: int, kinds: KindRule | None = None) -> Judge:
        """The judge of the search's own decisions: fidelity on the tuning samples, never the labels."""
        return cls(reference, data.tuning_set, None, threads, kinds=kinds)

    def on(self, check: Dataset) -> Judge:
        """The same judge (reference, kinds, threads) on other samples, without labels: a fold's tuning judge."""
        return Judge(self.reference, check, None, self.threads, self.main, self.kinds)

    def once(self, model_format: str, model_bytes: bytes, layouts: dict | None = None) -> Quality:
        """The model's Quality, judged on the first call and remembered by its bytes (its layouts are those
        its converter wrote with them): plain int8's verdict is read by every refinement built only where it
        misses (search/plain_gate.py). A judge is made per build and per cross-fitting fold (`on`), so a fold's
        plain int8 is judged by its own judge, once."""
        key = (model_format, hashlib.sha256(model_bytes).hexdigest())
        if key not in self._once:
            self._once[key] = self(model_format, model_bytes, layouts)
        return self._once[key]

    def same_outputs(self, model_format: str, first: bytes, second: bytes, layouts: dict | None = None) -> bool:
        """Whether two models of one format give bit-identical outputs on every `check` sample: a refinement
        that changed its file but no judged output (e.g. AdaRound's moved weights below one output step)."""
        ours, theirs = (predict(open_model(model_format, m, self.threads, layouts), self.check)
                        for m in (first, second))
        return all(np.array_equal(a, b) for a, b in zip(ours, theirs, strict=True))

    def __call__(self, model_format: str, model_bytes: bytes, layouts: dict | None = None,
                 outputs: list[np.ndarray] | None = None) -> Quality:
        """The model's Quality. outputs: its outputs on `check` made another way (cross-fitting: each sample by
        the model of the fold that held it out, search/crossfit.py), judged in place of this model's own."""
        model = open_model(model_format, model_bytes, self.threads, layouts)
        outputs = predict(model, self.check) if outputs is None else outputs
        names = [info.name for info in model.outputs]
        references = self.reference.ordered(self.check, model)
        fidelity = metrics.fidelity(references, outputs, names, self.kinds.of(names, references))
        accuracy = drop = None
        if self.evaluation is not None and self.evaluation.labels is not None and \
                self.reference_accuracy is not None:
            ours = predict(model, self.evaluation)
            accuracy = round(metrics.accuracy(ours, self.evaluation.labels, names, self.main), 3)
            drop = round(self.reference_accuracy - accuracy, 3)
        return quality_of(fidelity, accuracy, drop)


def quality_of(fidelity: Fidelity, accuracy: float | None = None, drop: float | None = None) -> Quality:
    """A Quality from metrics.fidelity's figures (and labelled accuracy), with the kinds and intervals."""
    kinds = tuple(dict.fromkeys(f["kind"] for f in fidelity["per_output"] if "kind" in f))
    intervals = fidelity.get("intervals", {})
    named = {"agreement": intervals.get("top1_agreement"), "cosine_mean": intervals.get("cosine_mean"),
             "cosine_p5": intervals.get("cosine_p5"), "values_sqnr_db": intervals.get("values_sqnr_db")}
    return Quality(fidelity["sqnr_db"], fidelity.get("top1_agreement"), accuracy, drop,
                   fidelity.get("cosine_mean"), fidelity.get("cosine_p5"), samples=fidelity["samples"],
                   flips=fidelity.get("flips"), values_sqnr_db=fidelity.get("values_sqnr_db"), kinds=kinds,
                   intervals=tuple((k, v[0], v[1]) for k, v in named.items() if v and len(v) == 2))
