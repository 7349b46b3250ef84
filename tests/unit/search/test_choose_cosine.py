"""The cosine floor of the choice rule (issue 21) on hand-made tables: it replaces the SQNR floor, top-1
agreement still holds, and beside labels the accuracy budget and the floor both apply."""

from __future__ import annotations

import pytest

from edgekiln.compiler.data import CROSS_FITTED
from edgekiln.compiler.evaluate.criterion import Criterion, fidelity_key, rank
from edgekiln.compiler.evaluate.quality import Quality
from edgekiln.compiler.search.candidate import Candidate
from edgekiln.compiler.search.choose import pick
from edgekiln.compiler.search.faithful import never_less_faithful
from tests.choice_rule import candidate_row

EMBEDDINGS = Criterion(min_cosine=0.98, min_cosine_p5=0.95)


def row(name: str, p50: float, size: int, sqnr: float | None, cosine: tuple[float, float] | None,
        agreement: float | None = 1.0, **extra) -> Candidate:
    mean, p5 = cosine if cosine is not None else (None, None)
    return candidate_row(name, "onnx", "int8", size, p50, 10, sqnr, agreement, cosine_mean=mean, cosine_p5=p5, **extra)


def test_a_row_below_the_p5_floor_is_not_chosen_though_its_mean_meets_the_mean_floor():
    base = row("float32", 1.0, 1000, 80.0, (1.0, 1.0))
    rows = [base, row("int8", 0.3, 250, 31.0, (0.99, 0.93)), row("dynamic", 0.5, 260, 28.0, (0.995, 0.97))]
    choice = pick(rows, EMBEDDINGS, base)
    assert choice.chosen.name == "dynamic"
    assert choice.verdict_of("int8").text == "top-1 agreement 1.000, cosine p5 0.93 < 0.95: below the fidelity floor"
    assert choice.verdict_of("int8").short == "below floor"
    assert "meets top-1 agreement >= 0.99 and cosine mean >= 0.98 and cosine p5 >= 0.95" in choice.reason


def test_with_a_cosine_floor_25_db_is_accurate_enough_and_without_one_it_is_not():
    base = row("float32", 1.0, 1000, 80.0, (1.0, 1.0))
    int8 = row("int8", 0.3, 250, 25.0, (0.99, 0.97))
    assert EMBEDDINGS.meets(int8.judged) and pick([base, int8], EMBEDDINGS, base).chosen.name == "int8"
    assert not Criterion().meets(int8.judged) and pick([base, int8], Criterion(), base).chosen.name == "float32"


def test_only_the_floors_given_apply():
    mean_only, p5_only = Criterion(min_cosine=0.98), Criterion(min_cosine_p5=0.95)
    tail = row("int8", 0.3, 250, 20.0, (0.99, 0.90))  # a good mean, a poor tail
    assert mean_only.meets(tail.judged) and not p5_only.meets(tail.judged)
    assert mean_only.describe() == "top-1 agreement >= 0.99 and cosine mean >= 0.98 on the judging samples"
    named = Criterion(min_cosine=0.98, samples=CROSS_FITTED)  # a build names the samples it judged on
    assert named.describe() == "top-1 agreement >= 0.99 and cosine mean >= 0.98 on held-back (cross-fitting) samples"
    assert p5_only.shortfall(tail.judged) == "top-1 agreement 1.000, cosine p5 0.9 < 0.95: below the fidelity floor"


def test_top1_agreement_still_applies_to_class_vectors():
    flipped = row("int8", 0.3, 250, 40.0, (0.999, 0.995), agreement=0.95)
    assert not EMBEDDINGS.meets(flipped.judged)
    assert EMBEDDINGS.shortfall(flipped.judged) == "top-1 agreement 0.950 < 0.99: below the fidelity floor"
    assert EMBEDDINGS.meets(row("int8", 0.3, 250, 40.0, (0.999, 0.995), agreement=None).judged)  # no class vector


def test_a_row_without_cosine_figures_does_not_meet_a_cosine_floor():
    scalar = row("int8", 0.3, 250, 60.0, None)
    assert not EMBEDDINGS.meets(scalar.judged) and Criterion().meets(scalar.judged)
    assert "cosine mean unmeasured < 0.98" in EMBEDDINGS.shortfall(scalar.judged)


def test_with_labels_the_budget_and_the_cosine_floor_both_apply():
    both = Criterion(max_drop=1.0, min_cosine_p5=0.95)
    base = row("float32", 1.0, 1000, 80.0, (1.0, 1.0), accuracy_drop=0.0)
    rows = [base, row("int8", 0.3, 250, 20.0, (0.99, 0.90), accuracy_drop=0.2),   # within budget, poor tail
            row("dynamic", 0.4, 260, 22.0, (0.99, 0.96), accuracy_drop=1.5),      # over budget, good tail
            row("int8+calibration", 0.5, 250, 21.0, (0.99, 0.96), accuracy_drop=0.5)]
    choice = pick(rows, both, base)
    assert choice.chosen.name == "int8+calibration"
    assert choice.verdict_of("int8").text == "accuracy drops 0.20 points (budget 1); cosine p5 0.9 < 0.95: below the " \
                                      "cosine floor"
    assert choice.verdict_of("int8").short == "below floor" and choice.verdict_of("dynamic").short == "over budget"
    assert both.describe() == ("accuracy drop <= 1 points on the labelled evaluation data and cosine p5 >= 0.95 "
                               "on the judging samples")


def test_as_fast_and_as_small_the_higher_cosine_tail_wins_when_judging_by_cosine():
    rows = [row("int8", 0.30, 250, 35.0, (0.99, 0.96)), row("int8+calibration", 0.30, 251, 31.0, (0.99, 0.98))]
    by_cosine = pick(rows, EMBEDDINGS)
    assert by_cosine.chosen.name == "int8+calibration"
    assert by_cosine.verdict_of("int8").text == "as fast and as small, less faithful"
    assert pick(rows, Criterion()).chosen.name == "int8"  # the SQNR floor: the higher SQNR, as before


def test_when_nothing_meets_the_cosine_floor_the_best_cosine_ships():
    rows = [row("int8", 0.3, 250, 40.0, (0.97, 0.90)), row("dynamic", 0.5, 260, 30.0, (0.975, 0.93))]
    choice = pick(rows, EMBEDDINGS)
    assert choice.chosen.name == "dynamic" and choice.reason.startswith("no candidate meets top-1 agreement")


def test_calibration_trials_rank_by_the_cosine_floor_when_one_is_given():
    tail = Quality(28.0, 1.0, cosine_mean=0.99, cosine_p5=0.96)    # lower SQNR, better tail
    sqnr = Quality(32.0, 1.0, cosine_mean=0.985, cosine_p5=0.93)
    assert rank(sqnr, Criterion()) > rank(tail, Criterion())       # default: unchanged, SQNR 30 dB decides
    assert rank(tail, EMBEDDINGS) > rank(sqnr, EMBEDDINGS)         # only `tail` meets the p5 floor
    loose = Criterion(min_cosine_p5=0.9)                           # both meet: the tail breaks the tie
    assert rank(tail, loose) > rank(sqnr, loose)
    assert fidelity_key(tail) < fidelity_key(sqnr)


@pytest.mark.parametrize(("criterion", "dropped"), [(None, True), (EMBEDDINGS, False)])
def test_the_refinement_guard_reads_the_cosine_when_judging_by_it(criterion, dropped):
    refined = Quality(30.0, 0.99, cosine_mean=0.995, cosine_p5=0.98)  # agreement lower, cosine higher
    base = Quality(25.0, 1.0, cosine_mean=0.99, cosine_p5=0.95)
    why = never_less_faithful(refined, base, "int8", 16, criterion)
    assert bool(why) is dropped
    assert "cosine" not in never_less_faithful(refined, base, "int8", 16)  # the default wording is unchanged
    assert never_less_faithful(base, refined, "int8", 16, EMBEDDINGS).endswith(
        "(top-1 agreement 1.000, SQNR 25.0 dB, cosine 0.99 (p5 0.95) vs top-1 agreement 0.990, SQNR 30.0 dB, "
        "cosine 0.995 (p5 0.98))")


def test_embedding_outputs_are_judged_by_the_cosine_floor_alone():
    """A sentence embedding's top-1 agreement (the argmax of its dimensions) means nothing: MiniLM-L3 dynamic int8
    held cosine 0.995 (p5 0.993) with 'top-1 agreement' 0.81."""
    base = row("float32", 1.0, 1000, 80.0, (1.0, 1.0))
    dynamic = row("dynamic", 0.5, 260, 20.0, (0.995, 0.993), agreement=0.81)
    embeddings = Criterion(min_cosine=0.99, min_cosine_p5=0.95, top1=False)
    assert not EMBEDDINGS.meets(dynamic.judged) and embeddings.meets(dynamic.judged)
    choice = pick([base, dynamic], embeddings, base)
    assert choice.chosen.name == "dynamic"
    assert embeddings.describe() == ("cosine mean >= 0.99 and cosine p5 >= 0.95 on the judging samples (embedding "
                                     "outputs: no top-1 agreement)")
    poor = row("int8", 0.3, 250, 5.0, (0.86, 0.80), agreement=0.3)
    assert embeddings.shortfall(poor.judged) == \
        "cosine mean 0.86 < 0.99, cosine p5 0.8 < 0.95: below the fidelity floor"
