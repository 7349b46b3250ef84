"""--input-shape NAME=DIMS and the recipe's input_shape, parsed and written back (no model needed)."""

from __future__ import annotations

import pytest

from edgekiln.compiler import input_shapes
from edgekiln.compiler.errors import RecipeError


@pytest.mark.parametrize(("texts", "expected"), [
    (["images=1,3,0,320"], "positive integer"), (["images=1,3,-1,320"], "positive integer"),
    (["images=1,3,a,320"], "not an integer"), (["images=1,3,320,320", "images=1,3,64,64"], "twice"),
])
def test_bad_input_shape_flags(texts, expected):
    with pytest.raises(RecipeError, match=expected):
        input_shapes.parse_flag(texts)


def test_flag_forms():
    assert input_shapes.parse_flag(["images=1,3,320,320"]) == {"images": (1, 3, 320, 320)}
    assert input_shapes.parse_flag(["1x3x48x96"]) == {"": (1, 3, 48, 96)}


def test_the_recipe_value_reads_back():
    named = input_shapes.normalise({"images": [1, 3, 320, 320]})
    assert input_shapes.to_toml(named) == {"images": [1, 3, 320, 320]}
    assert input_shapes.normalise(input_shapes.to_toml({"": (1, 3, 48, 96)})) == {"": (1, 3, 48, 96)}
    assert input_shapes.normalise({}) is None and input_shapes.to_toml(None) is None
