"""The records the stages of a build hand each other (compiler/pipeline.py), and the whole build's state that
the manifest is written from. They live here, below the pipeline and the manifest, so both can import them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from edgekiln.compiler.data import Datasets
from edgekiln.compiler.device.compat import PeakMemory
from edgekiln.compiler.evaluate.reference import Reference
from edgekiln.compiler.manifest_schema import Distillation, Profile, Pruning, TextSection, Vocabulary
from edgekiln.compiler.measure import Measured
from edgekiln.compiler.recipe import Recipe
from edgekiln.compiler.search.select import Selection
from edgekiln.targets import Target


@dataclass(frozen=True)
class Loaded:
    """The load and data stages: the working graph of the source, its format, the build's datasets, and the
    source's outputs on them (computed once, on first use)."""

    graph: Any  # KerasGraph or OnnxGraph
    source_format: str
    data: Datasets
    reference: Reference


@dataclass(frozen=True)
class Searched:
    """The search stage's outcome: the chosen candidate's selection, and for a pruned build the unpruned source
    compiled as the shipped variant (None otherwise)."""

    selection: Selection
    unpruned: Selection | None


@dataclass(frozen=True)
class BuildState:
    """Everything a build made, stage by stage, from which the manifest is written (manifest.build).

    notes: target checks that --force overrode (target-check stage) and what a vocabulary cut alone costs
    (vocab_stage.warning); memory: the estimated peak memory on the target (and what of it is unknown); pruning:
    the manifest's pruning block with its measured gain (pruning_gain.py), None without pruning; profile: the
    shipped model's per-op profile block (profile/stage.py). The last two stay the JSON blocks the manifest writes.
    """

    recipe: Recipe
    target: Target
    loaded: Loaded
    searched: Searched
    notes: tuple[str, ...]
    memory: PeakMemory
    measured: Measured
    pruning: Pruning | None
    profile: Profile
    vocabulary: Vocabulary | None = None  # --vocab-from (compiler/vocab_stage.py)
    text: TextSection | None = None  # a build from sentences: the bundle takes text (compiler/text_bundle.py)
    distillation: Distillation | None = None  # build --distill: the student that replaced the source

    @property
    def selection(self) -> Selection:
        return self.searched.selection
