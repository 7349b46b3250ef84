"""ONNX int8+adaround: plain QDQ int8 with its integer weights learned up or down (emit/onnx_adaround.py), the same
scales, zero points and graph; tried where plain int8 misses the criterion on the tuning samples
(variants.adaround_not_needed), dropped when it ends less faithful than plain int8 there (search/faithful.py)."""

from __future__ import annotations

from pathlib import Path

from edgekiln.compiler.data import model_feed
from edgekiln.compiler.emit import adaround, onnx_adaround
from edgekiln.compiler.evaluate.criterion import Criterion
from edgekiln.compiler.evaluate.judge import Judge
from edgekiln.compiler.evaluate.quality import Quality, describe
from edgekiln.compiler.model_inputs import Dataset
from edgekiln.compiler.search.candidate import Candidate
from edgekiln.compiler.search.faithful import never_less_faithful
from edgekiln.compiler.search.variants import Variant, adaround_not_needed

ADAROUND = adaround.Settings()  # as TFLite's: 300 Adam steps a layer, 32 samples optimised, 32 held back, 120 s


def candidate(c: Variant, plain: Candidate, plain_quality: Quality, calib: Dataset, batch: int,
              shared: Path, judge: Judge, criterion: Criterion, refined_alone: bool) -> Candidate:
    """int8+adaround from plain int8 (`plain`, judged `plain_quality` on the tuning samples) and the pre-processed
    float model it was quantized from (shared/onnx_prepared.onnx), learned on the first 2 x ADAROUND.samples
    calibration samples (half optimise, half held back), or not built with the reason."""
    import onnx

    count = max(1, min(calib.size, 2 * ADAROUND.samples) // batch)
    feeds = [{name: model_feed(x[i * batch : (i + 1) * batch]) for name, x in calib.inputs.items()}
             for i in range(count)]
    why = adaround_not_needed(criterion.meets(plain_quality), refined_alone,
                              describe(plain_quality, criterion.by_cosine))
    if why or plain.model is None:
        return Candidate(c, None, (why or "plain int8 was not built",))
    float_model = onnx.load(str(shared / "onnx_prepared.onnx"))
    _, rounded = onnx_adaround.refine(float_model, onnx.load_from_string(plain.model), feeds, ADAROUND)
    if not rounded.moved:
        return Candidate(c, None, ("no weight moved: identical to int8",))
    dropped = never_less_faithful(judge("onnx", rounded.model), plain_quality, "int8", judge.check.size,
                                  criterion)
    if dropped:
        return Candidate(c, None, (dropped,))
    same = judge.same_outputs("onnx", rounded.model, plain.model, plain.layouts)
    return Candidate(c, rounded.model, (*plain.notes, adaround.note(rounded, judge.check.size if same else 0)),
                     {**plain.details, "adaround": adaround.facts(rounded, ADAROUND, len(feeds))})
