"""Students at a width, or the narrowest within the accuracy budget (`auto`), each distilled and judged.

One `Teacher` holds what every student shares: the teacher model, its channel analysis and importance
scores, the training data with its held-back part (the same split for every probe of `auto`, so probes are
compared on the same footing) and the judging samples with the teacher's verdicts on them.

Judging: with labelled judging data, each sample's verdict is right / wrong; without labels, agreement with the
teacher's top-1 (the teacher is then right by definition). The student's drop is paired with the teacher's on
the same samples (prune/paired.py): its Agresti-Min 95 % interval is reported, and the budget reads the
one-sided upper bound, as the pruning search does. Judging data: --eval when given, else the part of --train
held back for early stopping (said in the report: it also chose the epoch, so it flatters the student a little).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from edgekiln.compiler import Progress
from edgekiln.compiler.errors import DataError, InputModelError
from edgekiln.compiler.graph import keras_distill, keras_prune, keras_recover
from edgekiln.compiler.keras_types import KerasModel
from edgekiln.compiler.prune import cost, groups, importance
from edgekiln.compiler.prune import width as widths
from edgekiln.compiler.prune.paired import PairedDrop, paired_drop
from edgekiln.compiler.prune.recovery_facts import Training

Init = Literal["teacher", "fresh"]


@dataclass(frozen=True)
class Settings:
    """How students are trained: epochs at most, the temperature, the initialisation, the seed."""

    epochs: int = keras_distill.EPOCHS
    temperature: float = keras_distill.TEMPERATURE
    init: Init = "teacher"
    seed: int = 0


@dataclass(frozen=True)
class Student:
    """A distilled student: its width (None: the user's own model), the model, its counts, its paired drop against
    the teacher on the judging samples, its accuracy there, and how it was trained."""

    width: float | None
    model: KerasModel
    params: int
    macs: int
    drop: PairedDrop
    accuracy: float
    training: Training


@dataclass(frozen=True)
class Outcome:
    """What `distill` returns: the chosen student, the teacher's figures, and for auto the probes and the budget."""

    student: Student
    teacher_params: int
    teacher_macs: int
    teacher_accuracy: float
    metric: str          # "accuracy" (labels) or "agreement" (with the teacher's top-1)
    judged_on: str
    probes: tuple[widths.Probe, ...] = ()
    budget: float | None = None
    scaled_groups: int = 0
    fixed_groups: tuple[str, ...] = ()


class Teacher:
    """The teacher and the data every student is trained and judged on."""

    def __init__(self, model: KerasModel, x: np.ndarray, y: np.ndarray | None,
                 judge: tuple[np.ndarray, np.ndarray | None] | None, settings: Settings) -> None:
        self.model, self.settings = model, settings
        self.analysis = groups.analyze(keras_prune.channel_graph(model))
        self.scores = importance.group_scores(self.analysis)
        rng = np.random.default_rng(settings.seed)
        self.x, self.held = keras_recover.hold_back(x, y, rng)
        self.y = y if self.held is None else self.held.train_y
        if judge is not None:
            self.judge_x, self.judge_y, self.judged_on = judge[0], judge[1], f"{len(judge[0])} samples (--eval)"
        elif self.held is not None:
            self.judge_x, self.judge_y = self.held.x, self.held.y
            self.judged_on = (f"{len(self.held.x)} samples held back from --train (they also chose the epoch: "
                              "pass --eval for an unbiased figure)")
        else:
            raise DataError(f"--train holds {len(x)} samples, too few to hold any back for judging the student",
                            "pass --eval DATA, or more training samples")
        out = self._predict(model, self.judge_x)
        if out.ndim != 2 or out.shape[1] < 2:
            raise InputModelError(f"distill judges class outputs; this model's first output has shape "
                                  f"{tuple(out.shape)}", "distill a classifier (its first output: class scores)")
        self.metric = "accuracy" if self.judge_y is not None else "agreement"
        self.reference = self.judge_y if self.judge_y is not None else out.argmax(1)
        self.right = out.argmax(1) == self.reference
        self.macs = cost.cost(self.analysis).macs

    @staticmethod
    def _predict(model: KerasModel, x: np.ndarray) -> np.ndarray:
        out = model.predict(x, batch_size=256, verbose=0)
        return np.asarray(out[0] if isinstance(out, list | tuple) else out)

    def train(self, model: KerasModel, width: float | None, progress: Progress) -> Student:
        """Distil the teacher into `model` (in place) and judge it."""
        s = self.settings
        facts = keras_distill.distill(model, self.model, self.x, self.y, self.held, s.epochs, s.temperature,
                                      s.seed, progress)
        right = self._predict(model, self.judge_x).argmax(1) == self.reference
        macs = cost.cost(groups.analyze(keras_prune.channel_graph(model))).macs
        return Student(width, model, int(model.count_params()), macs, paired_drop(self.right, right),
                       float(np.mean(right) * 100), facts)

    def at(self, width: float, progress: Progress) -> Student:
        """A student at `width`, distilled and judged."""
        fresh = self.settings.init == "fresh"
        progress(f"Distilling a student at width {width:g} ({'fresh' if fresh else 'from the teacher'})")
        model = keras_distill.student(self.model, self.analysis, self.scores, width, fresh)
        return self.train(model, width, progress)

    def outcome(self, student: Student, probes: tuple[widths.Probe, ...] = (), budget: float | None = None
                ) -> Outcome:
        return Outcome(student, int(self.model.count_params()), self.macs, float(np.mean(self.right) * 100),
                       self.metric, self.judged_on, probes, budget, len(self.analysis.prunable),
                       tuple(g.label for g in self.analysis.blocked))


def distill(teacher: Teacher, student: float | str | KerasModel, max_drop: float, progress: Progress
            ) -> Outcome:
    """A student at a width, the user's own model (trained as it is), or `auto`: the narrowest width of
    AUTO_WIDTHS whose paired drop is within max_drop (one-sided 95 % bound)."""
    if isinstance(student, float | int):
        return teacher.outcome(teacher.at(float(student), progress))
    if not isinstance(student, str):
        return teacher.outcome(teacher.train(student, None, progress))
    trained: dict[float, Student] = {}

    def within(width: float) -> tuple[bool, float]:
        trained[width] = teacher.at(width, progress)
        drop = trained[width].drop
        progress(f"width {width:g}: drop {drop.drop:+.2f} points (upper bound {drop.upper:.2f}, budget "
                 f"{max_drop:g})")
        return drop.within(max_drop), round(drop.drop, 3)

    chosen, probes = widths.bisect(widths.AUTO_WIDTHS, within)
    if chosen is None:
        raise _none_within(max_drop, probes)
    return teacher.outcome(trained[chosen], tuple(probes), max_drop)


def _none_within(max_drop: float, probes: list[widths.Probe]) -> InputModelError:
    tried = ", ".join(f"{p.width:g} ({p.drop:+.2f})" for p in probes)
    return InputModelError(f"no student width was within the budget of {max_drop:g} points (tried {tried})",
                           "raise --max-drop, train longer (--epochs), give more --train data, or pick a width")

