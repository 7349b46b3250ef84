"""The manifest's quantization block, written from the search's records: the table, the choice and why, what
was not built, how the rows were measured, which samples shaped and judged them (select.py decides; this
module only writes down what it decided)."""

from __future__ import annotations

from edgekiln.compiler.data import Datasets
from edgekiln.compiler.evaluate.criterion import Criterion
from edgekiln.compiler.evaluate.judge import Judge
from edgekiln.compiler.evaluate.timing import ROUND_MS, ROUNDS, ROUNDS_STATISTIC
from edgekiln.compiler.manifest_schema import CandidateDetails, DataNote, Diagnosis, Quantization, provenance
from edgekiln.compiler.recipe import Recipe
from edgekiln.compiler.search import failures
from edgekiln.compiler.search.candidate import Candidate
from edgekiln.compiler.search.choose import Choice


def quantization_block(recipe: Recipe, criterion: Criterion, choice: Choice, table: tuple[Candidate, ...],
                       built: dict[str, Candidate], diagnoses: dict[str, Diagnosis], chosen: Candidate, runs: int,
                       threads: int) -> Quantization:
    """The manifest's quantization block, written from the candidate records: the table, the choice and why,
    what was not built, how it was measured, and (loudly) a format none of whose int8 candidates could be built."""
    block: Quantization = {
        "requested": str(recipe.quantize),
        "variant": choice.chosen.name,
        "reason": choice.reason,
        "criterion": criterion.describe(),
        "candidates": [c.to_row() for c in table],
        "not_built": {key: "; ".join(b.notes) for key, b in built.items() if b.model is None},
        "failed": {key: b.notes[0].removeprefix("failed: ") for key, b in built.items()
                   if b.model is None and b.notes and b.notes[0].startswith("failed: ")},
        "timing": {"measured_on": "host", "threads": threads, "rounds": ROUNDS,
                   "runs_per_candidate": {c.name: c.timings.host_runs for c in table},
                   "method": f"candidates timed in turn, round by round, each for about {ROUND_MS:g} ms "
                             f"(at least {runs} runs) per round; p50 = median of the round p50s",
                   "how": provenance("host", f"each row's p50: {ROUNDS_STATISTIC}", rounds=ROUNDS, threads=threads,
                                     samples=1, data="the first golden sample")},
        "details": _without_coverage(chosen.details),
        "coverage": chosen.details.get("coverage"),
        "diagnosis": _diagnosis(diagnoses, chosen.format),
    }
    if no_int8 := failures.no_int8(built, chosen, compared=len({b.format for b in built.values()}) > 1):
        block["no_int8"] = no_int8
    if opset := failures.opset_facts(built):
        block["opset"] = opset
    return block


def _without_coverage(details: CandidateDetails) -> CandidateDetails:
    """A candidate's details as the block lists them: its coverage has a key of its own there."""
    listed: CandidateDetails = {**details}
    listed.pop("coverage", None)
    return listed


def _diagnosis(diagnoses: dict[str, Diagnosis], preferred: str) -> Diagnosis:
    """The plain-int8 diagnosis of the shipped format, else of the other one (the block says which)."""
    if not diagnoses:
        return {"of": None, "note": "no int8 candidate was built (mode, missing calibration data, or format)"}
    model_format = preferred if preferred in diagnoses else next(iter(diagnoses))
    return {**diagnoses[model_format], "format": model_format}


def data_note(data: Datasets, judge: Judge, candidates: int, tuning: Criterion, crossfitted: int) -> DataNote:
    """Which samples shaped the candidates and which judged them (`judged_by`: data.CROSS_FITTED, EVALUATION or
    NOT_HELD_BACK, and how many), and the selection effect that remains."""
    tuned, checked, folds = data.tuning_set, judge.check, data.folds
    judged = f"fidelity on {checked.size} {data.judged_by} samples" + (
        f", accuracy on {judge.evaluation.size} labelled evaluation samples" if judge.evaluation is not None else "")
    if folds is not None:
        how = (f"every calibration sample judged once: each int8 candidate also built {folds.k} times, calibrated "
               f"and tuned on {folds.k - 1} of {folds.k} folds and run on the fold it never saw "
               f"({crossfitted} candidate(s) cross-fitted); the other candidates do not depend on the calibration "
               "samples and were judged on all of them")
    elif checked is data.evaluation:
        how = "no calibration sample was held back (too few, or holdout_samples 0): judged on the evaluation data"
    else:
        how = ("NOT HELD BACK: too few calibration samples to cross-fit (or holdout_samples 0) and no evaluation "
               "data, so the int8 candidates were judged on the samples they were calibrated on, which flatters "
               "them; pass --eval DATA or more calibration samples")
    return {
        "calibration_samples": data.calib.size if data.calib is not None else 0,
        "tuning_samples": tuned.size,
        "judging_samples": checked.size,
        "judged_by": data.judged_by,
        "folds": folds.k if folds is not None else 0,
        "tuned_on": f"the first {tuned.size} calibration samples (each fold: the first of its own), by fidelity "
                    f"({tuning.describe()})",
        "judged_on": judged,
        "note": how + f"; the chosen variant's figures are the best of {candidates} measured on the judging data, "
                      "so they carry a small selection effect",
    }
