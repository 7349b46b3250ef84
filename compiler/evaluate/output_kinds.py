"""What each output of a model is, so that it is judged by the measure that fits it.

- `class`: a classifier's decision, as probabilities (rows of non-negative values summing to 1: a final
  Softmax) or as logits (one entry of each row stands out of the rest). Judged by whether the class changes:
  top-1 agreement, flips counted.
- `embedding`: vectors whose direction is what a reader uses (a sentence or speaker embedding, token states,
  L2-normalised rows). Judged by the cosine to the source's vectors; an argmax of an embedding means nothing.
- `values`: numbers read as numbers (a regression, boxes, a few landmarks, anything without a vector axis,
  and short vectors that are no class decision). Judged by SQNR, the relative error of the values.

The kind comes, first to last, from `--output-kind NAME=KIND` (per output); `--embedding` (every vector output
is an embedding); the source graph (evaluate/final_activation.py: a final Softmax makes class probabilities, a final
Sigmoid on one score per sample a binary class decision); else the source model's own outputs on the judging
samples (`infer`). Each kind is reported with where it came from (`Decided.source`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from edgekiln.compiler.errors import RecipeError
from edgekiln.compiler.evaluate.final_activation import final_activations
from edgekiln.compiler.manifest_schema import OutputKindNote
from edgekiln.compiler.recipe import OUTPUT_KINDS, Recipe

if TYPE_CHECKING:
    from edgekiln.compiler.evaluate.final_activation import FinalActivation

KINDS = OUTPUT_KINDS
PEAKED = 2.0     # logits: the top entry stands this many standard deviations of its row above the second
SMALLEST_EMBEDDING = 16  # a vector shorter than this that is no class decision is values (boxes, landmarks)
SUM_TOLERANCE = 1e-3  # probabilities: every row sums to 1 within this
NORM_TOLERANCE = 1e-3  # L2-normalised embeddings: every row's norm is 1 within this


def infer(reference: np.ndarray) -> str:
    """The kind of one output, from the source's values on the judging samples ([samples, ...])."""
    return infer_why(reference)[0]


def infer_why(reference: np.ndarray) -> tuple[str, str]:
    """The kind of one output from the source's values, and what in them shows it, in words."""
    if reference.ndim < 2 or reference.shape[-1] < 2:
        return "values", "one value per sample and position"
    rows = reference.reshape(-1, reference.shape[-1]).astype(np.float64)
    if _normalised(rows):
        return "embedding", "rows of norm 1"
    long = reference.shape[-1] >= SMALLEST_EMBEDDING
    if reference.ndim > 2:  # a sequence of vectors (token states) or a feature map
        return ("embedding", "a sequence of long vectors") if long else ("values", "a map of short vectors")
    if reference.shape[-1] == 2:
        return "class", "two scores (a binary decision)"
    if _probabilities(rows):
        return "class", "rows sum to 1 (probabilities)"
    if _peaked(rows):
        return "class", "one entry of each row stands out (logits)"
    # Not a decision: a long vector is read by its direction, a short one (a box, a few landmarks) by its values.
    return ("embedding", "a long vector with no entry standing out") if long else \
        ("values", "a short vector with no entry standing out")


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


@dataclass(frozen=True)
class Decided:
    """One output's kind and where it came from ("--output-kind", "--embedding", "graph: <where>", "data: <why>")."""

    name: str
    kind: str
    source: str


def decide(name: str, values: np.ndarray, overrides: dict[str, str], embedding: bool,
           final: FinalActivation | None = None) -> Decided:
    """One output's kind: the override, else `embedding` for a vector output under --embedding, else the
    graph's final activation (a Softmax: class; a Sigmoid on one score per sample: class), else the data's."""
    if name in overrides:
        return Decided(name, overrides[name], "--output-kind")
    inferred, why = infer_why(values)
    if embedding and inferred != "values":
        return Decided(name, "embedding", "--embedding")
    one_score = values.ndim < 2 or int(np.prod(values.shape[1:])) == 1
    if final is not None and (final.activation == "softmax" or one_score):
        return Decided(name, "class", f"graph: {final.where}")
    return Decided(name, inferred, f"data: {why}")


def resolve(names: list[str], references: list[np.ndarray], overrides: dict[str, str] | None,
            embedding: bool, finals: dict[str, FinalActivation] | None = None) -> list[str]:
    """The kinds of a compiled model's outputs (`names`, in its order; `references` the source's values for
    them), by `decide`."""
    return [decide(name, values, overrides or {}, embedding, (finals or {}).get(name)).kind
            for name, values in zip(names, references, strict=True)]


def kinds_of(references: dict[str, np.ndarray], overrides: dict[str, str], embedding: bool) -> dict[str, str]:
    """Every output's kind: the override, else `embedding` for every vector output under --embedding, else
    inferred."""
    unknown = sorted(set(overrides) - set(references))
    if unknown:
        raise ValueError(f"--output-kind names {', '.join(unknown)}, which the model does not output "
                         f"(its outputs: {', '.join(references)})")
    return {name: decide(name, values, overrides, embedding).kind for name, values in references.items()}


@dataclass(frozen=True)
class KindRule:
    """How a build names its outputs' kinds: --output-kind overrides by name, --embedding for vector outputs, the
    source graph's final activations (`finals`, by output name: evaluate/final_activation.py), else the data."""

    overrides: dict[str, str] = field(default_factory=dict)
    embedding: bool = False
    finals: dict[str, FinalActivation] = field(default_factory=dict)

    @classmethod
    def of_recipe(cls, recipe: Recipe, finals: dict[str, FinalActivation] | None = None) -> KindRule:
        return cls(dict(recipe.output_kind or {}), recipe.embedding, dict(finals or {}))

    @classmethod
    def of_build(cls, recipe: Recipe, graph: object) -> KindRule:
        """A build's rule: the recipe's flags and the source graph's final activations."""
        return cls.of_recipe(recipe, final_activations(graph))

    def check(self, outputs: list[str]) -> None:
        """Refuse an override naming no output of the model (the user's typo would silently judge nothing)."""
        unknown = sorted(set(self.overrides) - set(outputs))
        if unknown:
            raise RecipeError(f"--output-kind names {', '.join(unknown)}, which the model does not output",
                              f"its outputs: {', '.join(outputs)}")

    def of(self, names: list[str], references: list[np.ndarray]) -> list[str]:
        return resolve(names, references, self.overrides, self.embedding, self.finals)

    def explain(self, references: dict[str, np.ndarray]) -> list[OutputKindNote]:
        """Each output's kind and where it came from, in the source's output order (the manifest's
        quantization.output_kinds; the summary prints them)."""
        decided = [decide(name, values, self.overrides, self.embedding, self.finals.get(name))
                   for name, values in references.items()]
        return [{"name": d.name, "kind": d.kind, "decided_by": d.source} for d in decided]
