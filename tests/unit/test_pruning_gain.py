"""The accuracy budget's split between pruning and quantization, as measured on the evaluation samples."""

from edgekiln.compiler.pruning_gain import with_budget_split


def _block(budget=0.7):
    return {"search": {"budget": budget}, "warnings": []}


def _accuracy(reference, baseline, compiled, samples=1000):
    return {"reference": reference, "baseline": baseline, "compiled": compiled,
            "drop": round(reference - compiled, 3), "samples": samples}


def test_the_split_adds_up_to_the_measured_total():
    split = with_budget_split(_block(), _accuracy(98.9, 98.5, 98.2), 1.0)["budget_split"]
    assert (split["pruning_drop"], split["quantization_drop"], split["total_drop"]) == (0.4, 0.3, 0.7)
    assert split["reserved_for_quantization"] == 0.3 and split["pruning_budget"] == 0.7
    assert split["unused"] == 0.3 and "note" not in split  # quantization took all it was given


def test_quantization_taking_less_than_its_reserve_says_what_pruning_could_have_had():
    split = with_budget_split(_block(), _accuracy(98.9, 98.9, 98.8), 1.0)["budget_split"]
    assert split["quantization_drop"] == 0.1
    assert "could have had 0.9 " in split["note"], split


def test_a_quantization_that_gains_leaves_pruning_the_whole_budget():
    split = with_budget_split(_block(), _accuracy(98.0, 97.5, 97.7), 1.0)["budget_split"]
    assert split["quantization_drop"] == -0.2 and "could have had 1 " in split["note"]


def test_no_split_without_a_search_or_labelled_accuracy():
    fixed = {"search": None, "warnings": []}
    assert with_budget_split(fixed, _accuracy(98, 97, 96), 1.0) is fixed
    assert with_budget_split(_block(), None, 1.0) == _block()
    assert with_budget_split(None, _accuracy(98, 97, 96), 1.0) is None

