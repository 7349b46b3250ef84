"""The rule on rows judged by output kind with intervals (issue: 'accurate enough' without labels), on tables."""

from __future__ import annotations

from edgekiln.compiler.evaluate import evidence
from edgekiln.compiler.evaluate.criterion import Criterion
from edgekiln.compiler.search.choose import pick
from tests.choice_rule import candidate_row

RULE = Criterion(by_kind=True)


def classifier(name: str, p50: float, size: int, flips: int, samples: int):
    """A row of a one-output classifier: its flips of `samples`, the agreement's exact interval."""
    low, high = evidence.flip_interval(flips, samples)
    return candidate_row(name, "tflite", "int8" if name != "float32" else "none", size, p50, 7,
                         sqnr_db=20.0, agreement=round(1 - flips / samples, 4), samples=samples, flips=flips,
                         kinds=["class"], intervals={"agreement": [1 - high, 1 - low]})


def embedder(name: str, p50: float, size: int, mean: float, interval: tuple[float, float], samples: int = 100):
    return candidate_row(name, "onnx", "int8" if name != "float32" else "none", size, p50, 7, sqnr_db=18.0,
                         agreement=0.7, cosine_mean=mean, cosine_p5=mean - 0.01, samples=samples,
                         kinds=["embedding"], intervals={"cosine_mean": list(interval)})


def test_no_flip_in_2000_passes_a_1_percent_floor_and_40_flips_fail_it():
    assert RULE.meets(classifier("int8", 1.0, 100, 0, 2000).judged)
    failed = classifier("int8", 1.0, 100, 40, 2000).judged
    assert not RULE.meets(failed)
    assert RULE.shortfall(failed) == ("top-1 agreement 0.980 (40 of 2000 samples changed class): "
                                      "below the fidelity floor")


def test_a_sqnr_below_30_db_does_not_fail_a_classifier_that_never_flips():
    """SQNR is reported for class outputs, never their floor (the emotion CNN: SQNR 24 dB, no flip)."""
    row = classifier("int8", 1.0, 100, 0, 200).judged
    assert row.sqnr_db == 20.0 and RULE.meets(row)


def test_one_flip_in_13_does_not_decide_between_two_candidates():
    """int8+rewrites flips 1 of 13 samples, int8 none: their intervals overlap, so fidelity ties, and the
    faster one ships, whichever flipped."""
    base = classifier("float32", 3.0, 400, 0, 13)
    plain, rewritten = classifier("int8", 1.20, 100, 0, 13), classifier("int8+rewrites", 1.0, 100, 1, 13)
    assert RULE.meets(rewritten.judged)  # 1 of 13 does not show a flip rate above 1 % (lower bound 0.39 %)
    assert RULE.same_fidelity(plain.judged, rewritten.judged)
    assert pick([base, plain, rewritten], RULE, base).chosen.name == "int8+rewrites"  # the faster
    tied = pick([base, classifier("int8", 1.0, 100, 0, 13), rewritten], RULE, base)
    assert tied.chosen.name == "int8"  # as fast and as small: as faithful by the evidence, the earlier one
    assert tied.verdict_of("int8+rewrites").short == "tie"


def test_13_samples_give_weak_evidence_and_say_how_many_would_tell():
    row = classifier("int8", 1.0, 100, 0, 13).judged
    assert RULE.weak(row) == ("weak evidence: 13 samples judged; 299 samples without a class change would show "
                              "it changes on at most 1% of inputs")
    assert RULE.weak(classifier("int8", 1.0, 100, 0, 2000).judged) is None


def test_an_embedding_is_judged_by_cosine_not_by_its_argmax():
    """The audio embedding: top-1 'agreement' 0.7 means nothing; cosine 0.994 meets the default floor."""
    base = embedder("float32", 9.0, 400, 1.0, (1.0, 1.0))
    int8 = embedder("int8", 4.75, 100, 0.994, (0.993, 0.995))
    choice = pick([base, int8], RULE, base)
    assert choice.chosen.name == "int8"
    collapsed = embedder("int8", 4.75, 100, 0.19, (0.15, 0.23))
    assert not RULE.meets(collapsed.judged)
    assert RULE.shortfall(collapsed.judged) == "cosine mean 0.19 < 0.99: below the fidelity floor"


def test_a_cosine_short_of_the_floor_within_its_interval_passes_as_weak_evidence():
    row = embedder("int8", 1.0, 100, 0.989, (0.985, 0.993), samples=20).judged
    assert RULE.meets(row)  # not shown below 0.99: its upper bound is above
    assert RULE.weak(row) == "weak evidence: 20 samples judged; the cosine mean's 95 % interval reaches below 0.99"
