"""Sweep points: names, the grid, the recipe file (read back by `build --recipe`) and the resume key."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgekiln.compiler.errors import RecipeError
from edgekiln.compiler.recipe import Recipe, from_toml
from edgekiln.compiler.sweep import points
from edgekiln.compiler.sweep.points import SweepPoint


def _base(tmp_path: Path) -> Recipe:
    (tmp_path / "m.keras").write_bytes(b"model bytes")
    np.savez(tmp_path / "c.npz", x=np.zeros((4, 2), np.float32))
    return Recipe(source=str(tmp_path / "m.keras"), calib=str(tmp_path / "c.npz"), output=str(tmp_path / "out"),
                  input_shape={"x": [1, 2]})


def test_grid_names_and_auto_variants() -> None:
    grid = points.plan([0.0, 0.25, "auto"], ["auto", "int8+rewrites"], ["tflite"])
    assert [p.name for p in grid][:5] == ["p00-tflite-float32", "p00-tflite-float16", "p00-tflite-dynamic",
                                          "p00-tflite-int8", "p00-tflite-int8+rewrites"]
    assert len(grid) == 3 * 5 and grid[-1].name == "pauto-tflite-int8+rewrites"
    onnx = points.plan([0.5], ["auto"], ["onnx"])
    assert [p.variant for p in onnx] == ["float32", "dynamic", "int8"]  # no float16 ONNX artifact
    with pytest.raises(RecipeError, match="tflite has no variant int9"):
        points.plan([0.0], ["int9"], ["tflite"])


@pytest.mark.parametrize(("text", "message"), [("0,1.5", r"in \[0, 1\)"), ("half", "ratios and 'auto'"),
                                                (",", "names no setting"), ("nan", r"in \[0, 1\)")])
def test_bad_prune_lists_are_refused(text: str, message: str) -> None:
    with pytest.raises(RecipeError, match=message):
        points.parse_prunes(text)
    assert points.parse_prunes("0, 0.25,auto,0.25") == [0.0, 0.25, "auto"]


def test_the_recipe_file_reads_back_as_the_same_recipe(tmp_path: Path) -> None:
    base = _base(tmp_path)
    recipe = SweepPoint(0.25, "tflite", "int8+rewrites").recipe(base)
    (tmp_path / "p.toml").write_text(points.to_toml(recipe))
    again = from_toml(tmp_path / "p.toml", output=recipe.output)
    assert again == recipe
    assert (again.prune, again.variant, str(again.format)) == (0.25, "int8+rewrites", "tflite")
    assert SweepPoint(0.0, "onnx", "float32").recipe(base).prune is None  # ratio 0: not pruned at all


def test_the_key_changes_with_the_recipe_and_the_data_but_not_the_output(tmp_path: Path) -> None:
    base = _base(tmp_path)
    recipe = SweepPoint(0.5, "tflite", "int8").recipe(base)
    key = points.key(recipe)
    assert points.key(recipe.replace(output=str(tmp_path / "elsewhere"), force=True)) == key
    assert points.key(recipe.replace(max_drop=2.0)) != key
    np.savez(tmp_path / "c.npz", x=np.ones((4, 2), np.float32))  # same path, other calibration data
    assert points.key(recipe) != key


def test_a_variant_needs_one_format(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match="variant 'int8' needs one format"):
        _base(tmp_path).replace(variant="int8")


def test_the_progress_bar_counts_done_running_and_failed_points():
    from edgekiln.compiler.sweep.run import BAR, Progress

    lines: list[str] = []
    progress = Progress(4, lines.append)
    for name in ("a", "b", "c"):
        progress.started(name)
    progress.finished("a", True)
    progress.finished("b", False)
    assert lines[0].startswith("|" + "#" * (BAR // 4) + "." * (BAR - BAR // 4) + "| 1/4 done, 2 running, 0 failed")
    assert "2/4 done, 1 running, 1 failed" in lines[1] and lines[1].endswith("b failed")
    assert "s left: " in lines[1]


def test_every_file_a_point_reads_is_absolute_and_in_its_key(tmp_path: Path, monkeypatch) -> None:
    base = _base(tmp_path)
    read = {"train": "t.npz", "tokenizer": "tok.json", "target": "board.toml"}  # a target file, not a name
    for name in read.values():
        (tmp_path / name).write_text("1")
    monkeypatch.chdir(tmp_path)
    recipe = SweepPoint(0.5, "tflite", "int8").recipe(base.replace(**read))
    assert {k: getattr(recipe, k) for k in read} == {k: str(tmp_path / name) for k, name in read.items()}
    key = points.key(recipe)
    for name in read.values():  # the same paths, other bytes: another point
        (tmp_path / name).write_text("2")
        assert points.key(recipe) != key
        key = points.key(recipe)
    assert SweepPoint(0.5, "tflite", "int8").recipe(base).target == "rpi4"  # a shipped target's name stays a name


def test_a_student_is_one_more_point_and_the_models_own_points_keep_their_names(tmp_path: Path) -> None:
    grid = points.plan([0.0, 0.25], ["int8"], ["tflite"], [points.TEACHER, 0.5, "auto"])
    assert [p.name for p in grid] == ["p00-tflite-int8", "p25-tflite-int8", "p00-tflite-int8-s50",
                                      "p25-tflite-int8-s50", "p00-tflite-int8-sauto", "p25-tflite-int8-sauto"]
    assert points.plan([0.0], ["int8"], ["tflite"]) == [SweepPoint(0.0, "tflite", "int8")]  # no axis: the model
    base = _base(tmp_path).replace(train=str(tmp_path / "c.npz"))
    assert SweepPoint(0.25, "tflite", "int8", 0.5).recipe(base).distill == 0.5
    assert SweepPoint(0.0, "tflite", "int8", "auto").recipe(base).distill == "auto"
    assert SweepPoint(0.0, "tflite", "int8").recipe(base.replace(distill=0.5)).distill is None  # 1: the model itself
    student = SweepPoint(0.0, "tflite", "int8", 0.5).recipe(base)
    assert points.key(student) != points.key(SweepPoint(0.0, "tflite", "int8").recipe(base))


@pytest.mark.parametrize(("text", "message"), [("0,0.5", r"in \(0, 1\]"), ("1.5", r"in \(0, 1\]"),
                                                ("wide", "widths and 'auto'"), (",", "names no width")])
def test_bad_student_lists_are_refused(text: str, message: str) -> None:
    with pytest.raises(RecipeError, match=message):
        points.parse_students(text)
    assert points.parse_students("1, 0.5,auto,0.5") == [1.0, 0.5, "auto"]
