"""Recipe validation and TOML recipes."""

from __future__ import annotations

import pytest

from edgekiln.compiler.errors import RecipeError
from edgekiln.compiler.recipe import Calibration, Quantize, Recipe, from_toml


def test_int8_needs_calibration_data():
    with pytest.raises(RecipeError, match="int8 quantization needs calibration data"):
        Recipe(source="m.keras", quantize="int8")


def test_auto_is_the_default_and_needs_no_calibration_data():
    recipe = Recipe(source="m.keras")
    assert recipe.quantize is Quantize.auto and recipe.calibration is Calibration.auto


def test_unknown_quantize_mode_names_the_choices():
    with pytest.raises(RecipeError, match="quantize must be one of auto, int8, float16, dynamic, none, got 'int4'"):
        Recipe(source="m.keras", quantize="int4", calib="c.npz")


def test_unknown_calibration_names_the_choices():
    with pytest.raises(RecipeError, match="calibration must be one of auto, minmax, percentile, entropy, got 'kl'"):
        Recipe(source="m.keras", calibration="kl")


def test_default_output_is_named_after_the_source():
    recipe = Recipe(source="models/net.keras", quantize="none")
    assert recipe.output == "build/net"
    assert recipe.quantize is Quantize.none


def test_toml_recipe_with_cli_overrides(tmp_path):
    path = tmp_path / "r.toml"
    path.write_text('source = "a.keras"\ncalib = "c.npz"\ntarget = "rpi5"\ngolden_samples = 4\n')
    recipe = from_toml(path, target="rpi3", golden_samples=None)
    assert (recipe.target, recipe.golden_samples, recipe.calib) == ("rpi3", 4, "c.npz")
    assert recipe.to_dict()["quantize"] == "auto" and recipe.to_dict()["calibration"] == "auto"


def test_toml_recipe_rejects_unknown_keys(tmp_path):
    path = tmp_path / "r.toml"
    path.write_text('source = "a.keras"\nquantise = "int8"\n')
    with pytest.raises(RecipeError, match="unknown keys: quantise"):
        from_toml(path)


def test_zero_std_is_refused():
    with pytest.raises(RecipeError, match=r"std must be positive, got \[0.5, 0.0, 0.5\]"):
        Recipe(source="a.keras", quantize="none", std=(0.5, 0.0, 0.5))


def test_prune_settings_are_validated():
    assert Recipe(source="a.keras", quantize="none", prune="0.25").prune == 0.25
    assert Recipe(source="a.keras", quantize="none", prune="auto").to_dict()["recover"] == "auto"
    with pytest.raises(RecipeError, match=r"prune must be a ratio in \[0, 1\) or 'auto', got 'half'"):
        Recipe(source="a.keras", quantize="none", prune="half")
    with pytest.raises(RecipeError, match="recover must be one of auto, distill, finetune, reconstruct, none"):
        Recipe(source="a.keras", quantize="none", prune=0.5, recover="retrain")


def test_prune_heads_is_a_ratio_that_needs_calibration_and_no_channel_pruning():
    import pytest

    from edgekiln.compiler.errors import RecipeError
    from edgekiln.compiler.recipe import Recipe

    assert Recipe(source="m.keras", calib="c.npz", prune_heads="0.25").prune_heads == 0.25
    auto = Recipe(source="m.keras", calib="c.npz", prune_heads="auto", drop_layers="auto")
    assert (auto.prune_heads, auto.drop_layers) == ("auto", "auto")
    assert Recipe(source="m.keras", calib="c.npz", drop_layers="2").drop_layers == 2  # the CLI passes text
    with pytest.raises(RecipeError, match=r"drop_layers must be an integer or 'auto', got 'all'"):
        Recipe(source="m.keras", calib="c.npz", drop_layers="all")
    for bad, message in ((1.0, r"prune_heads must be a ratio in \[0, 1\) or 'auto', got 1.0"),
                         ("half", r"prune_heads must be a ratio in \[0, 1\) or 'auto', got 'half'")):
        with pytest.raises(RecipeError, match=message):
            Recipe(source="m.keras", calib="c.npz", prune_heads=bad)
    with pytest.raises(RecipeError, match="--prune and --prune-heads cannot be combined"):
        Recipe(source="m.keras", calib="c.npz", prune_heads=0.5, prune=0.5)
    with pytest.raises(RecipeError, match="--prune and --drop-layers cannot be combined"):
        Recipe(source="m.keras", calib="c.npz", drop_layers=1, prune=0.5)
    with pytest.raises(RecipeError, match="--drop-layers needs calibration data"):
        Recipe(source="m.keras", drop_layers=1, quantize="none")
    with pytest.raises(RecipeError, match="drop_layers must be an integer"):
        Recipe(source="m.keras", calib="c.npz", drop_layers=1.5)
    assert Recipe(source="m.keras", calib="c.txt", tokenizer="t.json", seq_len=32).seq_len == 32
    with pytest.raises(RecipeError, match="--prune-heads needs calibration data"):
        Recipe(source="m.keras", prune_heads=0.5, quantize="none")


def test_embedding_without_a_floor_takes_the_default_one_and_a_given_floor_stays():
    from edgekiln.compiler.recipe import EMBEDDING_FLOOR

    assert (Recipe("m.onnx", embedding=True).min_cosine, Recipe("m.onnx", embedding=True).min_cosine_p5) == \
        EMBEDDING_FLOOR
    given = Recipe("m.onnx", embedding=True, min_cosine_p5=0.9)
    assert (given.min_cosine, given.min_cosine_p5) == (None, 0.9)
    assert (Recipe("m.onnx").min_cosine, Recipe("m.onnx").min_cosine_p5) == (None, None)
    with pytest.raises(RecipeError, match="embedding"):
        Recipe("m.onnx", embedding="yes")
