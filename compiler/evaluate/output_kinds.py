"""What each output of a model is, so that it is judged by the measure that fits it.

- `class`: a classifier's decision, as probabilities (rows of non-negative values summing to 1: a final
  Softmax) or as logits (one entry of each row stands out of the rest). Judged by whether the class changes:
  top-1 agreement, flips counted.
- `embedding`: vectors whose direction is what a reader uses (a sentence or speaker embedding, token states,
  L2-normalised rows). Judged by the cosine to the source's vectors; an argmax of an embedding means nothing.
- `values`: numbers read as numbers (a regression, boxes, a few landmarks, anything without a vector axis,
  and short vectors that are no class decision). Judged by SQNR, the relative error of the values.

The kind is inferred from the source model's own outputs on the judging samples; `--output-kind NAME=KIND`
overrides it per output, and `--embedding` says every vector output is an embedding.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from edgekiln.compiler.errors import RecipeError
from edgekiln.compiler.recipe import OUTPUT_KINDS, Recipe

KINDS = OUTPUT_KINDS
PEAKED = 2.0     # logits: the top entry stands this many standard deviations of its row above the second
SMALLEST_EMBEDDING = 16  # a vector shorter than this that is no class decision is values (boxes, landmarks)
SUM_TOLERANCE = 1e-3  # probabilities: every row sums to 1 within this
NORM_TOLERANCE = 1e-3  # L2-normalised embeddings: every row's norm is 1 within this


def infer(reference: np.ndarray) -> str:
    """The kind of one output, from the source's values on the judging samples ([samples, ...])."""
    if reference.ndim < 2 or reference.shape[-1] < 2:
        return "values"
    rows = reference.reshape(-1, reference.shape[-1]).astype(np.float64)
    if _normalised(rows):
        return "embedding"
    if reference.ndim > 2:  # a sequence of vectors (token states) or a feature map
        return "embedding" if reference.shape[-1] >= SMALLEST_EMBEDDING else "values"
    if reference.shape[-1] == 2 or _probabilities(rows) or _peaked(rows):  # two logits: a binary decision
        return "class"
    # Not a decision: a long vector is read by its direction, a short one (a box, a few landmarks) by its values.
    return "embedding" if reference.shape[-1] >= SMALLEST_EMBEDDING else "values"


def _probabilities(rows: np.ndarray) -> bool:
    return bool(np.all(rows >= -1e-6) and np.all(np.abs(rows.sum(axis=1) - 1.0) <= SUM_TOLERANCE))


def _normalised(rows: np.ndarray) -> bool:
    norms = np.linalg.norm(rows, axis=1)
    return bool(np.all(np.abs(norms - 1.0) <= NORM_TOLERANCE))


def _peaked(rows: np.ndarray) -> bool:
    """Logits of a classifier: in the typical row, the top entry is far above the second, measured in the
    row's own spread (an embedding's largest entries are close together)."""
    top2 = np.sort(rows, axis=1)[:, -2:]
    spread = rows.std(axis=1) + 1e-12
    return bool(np.median((top2[:, 1] - top2[:, 0]) / spread) >= PEAKED)


def parse(flags: list[str] | tuple[str, ...]) -> dict[str, str]:
    """--output-kind NAME=KIND (repeatable) as output name -> kind; ValueError names what is wrong."""
    kinds: dict[str, str] = {}
    for flag in flags:
        name, sep, kind = flag.partition("=")
        if not sep or not name or kind not in KINDS:
            raise ValueError(f"--output-kind {flag!r} is not NAME=KIND with KIND one of {', '.join(KINDS)}")
        kinds[name] = kind
    return kinds


def resolve(names: list[str], references: list[np.ndarray], overrides: dict[str, str] | None,
            embedding: bool) -> list[str]:
    """The kinds of a compiled model's outputs (`names`, in its order; `references` the source's values for
    them): the override by name, else `embedding` for every vector output under --embedding, else inferred."""
    kinds = []
    for name, values in zip(names, references, strict=True):
        inferred = infer(values)
        kinds.append((overrides or {}).get(name, "embedding" if embedding and inferred != "values" else inferred))
    return kinds


def kinds_of(references: dict[str, np.ndarray], overrides: dict[str, str], embedding: bool) -> dict[str, str]:
    """Every output's kind: the override, else `embedding` for every vector output under --embedding, else
    inferred."""
    unknown = sorted(set(overrides) - set(references))
    if unknown:
        raise ValueError(f"--output-kind names {', '.join(unknown)}, which the model does not output "
                         f"(its outputs: {', '.join(references)})")
    kinds = {}
    for name, values in references.items():
        inferred = infer(values)
        if embedding and inferred != "values":
            inferred = "embedding"
        kinds[name] = overrides.get(name, inferred)
    return kinds


@dataclass(frozen=True)
class KindRule:
    """How a build names its outputs' kinds: --output-kind overrides by name, --embedding for vector outputs."""

    overrides: dict[str, str] = field(default_factory=dict)
    embedding: bool = False

    @classmethod
    def of_recipe(cls, recipe: Recipe) -> KindRule:
        return cls(dict(recipe.output_kind or {}), recipe.embedding)

    def check(self, outputs: list[str]) -> None:
        """Refuse an override naming no output of the model (the user's typo would silently judge nothing)."""
        unknown = sorted(set(self.overrides) - set(outputs))
        if unknown:
            raise RecipeError(f"--output-kind names {', '.join(unknown)}, which the model does not output",
                              f"its outputs: {', '.join(outputs)}")

    def of(self, names: list[str], references: list[np.ndarray]) -> list[str]:
        return resolve(names, references, self.overrides, self.embedding)
