"""The one gate of the candidates built only where plain int8 misses the criterion on the tuning samples:
16x8 (every path: Keras and ONNX to TFLite, ONNX), int8+qat and int8+adaround. Each reads the same verdict,
judged once per build context (evaluate/judge.Judge.once), so plain int8 is judged once per format and per
cross-fitting fold however many of them ask."""

from __future__ import annotations

from dataclasses import dataclass

from edgekiln.compiler.evaluate.criterion import Criterion
from edgekiln.compiler.evaluate.judge import Judge
from edgekiln.compiler.evaluate.quality import Quality, describe
from edgekiln.compiler.search.candidate import Candidate
from edgekiln.compiler.search.context import BuildContext


@dataclass(frozen=True)
class PlainVerdict:
    """Plain int8 against the criterion on the tuning samples: `meets` None when no plain int8 was built (the
    refinement is then built: e.g. the unpruned reference of a build that shipped it), `figures` in words
    for the note of a candidate left out, `quality` the record (None when not built)."""

    meets: bool | None
    figures: str = ""
    quality: Quality | None = None

    @property
    def misses(self) -> bool:
        return not self.meets


def plain_int8_misses(ctx: BuildContext, plain: Candidate | None, model_format: str) -> PlainVerdict:
    """Plain int8's verdict in a builder (`plain` the int8 candidate it built, None or modelless when not)."""
    if plain is None:
        return PlainVerdict(None)
    return verdict(ctx.judge, ctx.criterion, model_format, plain.model, plain.layouts)


def verdict(judge: Judge, criterion: Criterion, model_format: str, model: bytes | None,
            layouts: dict | None = None) -> PlainVerdict:
    """Plain int8's verdict from its bytes, judged once per judge."""
    if model is None:
        return PlainVerdict(None)
    quality = judge.once(model_format, model, layouts)
    return PlainVerdict(criterion.meets(quality), describe(quality, criterion.by_cosine), quality)
