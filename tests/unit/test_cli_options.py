"""`build` and `sweep` take the same recipe options (compiler/cli_options.py), and every one of them reaches the
Recipe: build's, and each sweep point's recipe file, which `build --recipe` reads back as the same point."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import typer.main

from edgekiln.compiler.cli import app
from edgekiln.compiler.cli_options import RECIPE_KEYS
from edgekiln.compiler.errors import EdgekilnError
from edgekiln.compiler.recipe import Recipe, from_toml

# build's options that sweep does not take, and why. Every other option of build, sweep must take.
NOT_IN_SWEEP = {
    # --device times build's candidates on a device over SSH, chooses by those timings and deploys there. A sweep
    # times every point side by side on this host (timings from different machines are never compared) and
    # ships a folder: deploy its choice with `edgekiln deploy SWEEP/bundle --host ...`, which takes the SSH
    # options below. They mean nothing without --device.
    "device", "wheels", "identity", "ssh_config", "accept_new_host_keys", "remote_dir", "keep",
}
# In both, with sweep's own meaning: its axes take comma-separated lists (--prune 0,0.25 --quantize float32,int8
# --format auto --distill 1,0.5,auto), its --output is the sweep folder, and its --force replaces that folder
# instead of resuming it.
SWEEP_OWN = {"prune", "quantize", "format", "distill", "output", "force"}
# Recipe fields that no flag sets: a --recipe file or the Python API gives them.
RECIPE_ONLY = {
    "holdout_samples",  # how many calibration samples are held back to tune and judge: the protocol, not a knob
    "variant",          # one candidate pinned: what a sweep point's recipe says (its --quantize axis in a sweep)
}


def _params(command: str) -> dict[str, Any]:
    return {p.name: p for p in typer.main.get_command(app).commands[command].params}  # type: ignore[attr-defined]


def _flags(param: Any) -> set[str]:
    return set(param.opts) | set(param.secondary_opts)


def test_sweep_takes_every_option_of_build_but_the_device_ones():
    build, sweep = _params("build"), _params("sweep")
    assert set(build) >= NOT_IN_SWEEP and not NOT_IN_SWEEP & set(sweep)
    assert sorted(set(build) - NOT_IN_SWEEP - set(sweep)) == []
    for name in set(build) - NOT_IN_SWEEP:
        assert _flags(build[name]) <= _flags(sweep[name]), name  # the same spellings, short ones too


def test_the_shared_options_are_one_declaration():
    build, sweep = _params("build"), _params("sweep")
    shared = set(build) - NOT_IN_SWEEP - SWEEP_OWN
    assert {"target", "calib", "eval", "max_drop"} <= shared  # the loop below compares real options
    for name in shared:
        assert _declared(build[name]) == _declared(sweep[name]), name


def _declared(param: Any) -> tuple:
    """What a declaration says: the flags, the type, the default, repeats or not, the help."""
    return (param.opts, param.secondary_opts, param.type_descriptor.annotation, param.default, param.multiple,
            getattr(param, "help", None))


def test_every_recipe_field_has_a_build_option():
    keys = {RECIPE_KEYS.get(name, name) for name in _params("build")}
    fields = {f.name for f in dataclasses.fields(Recipe)}
    assert sorted(fields - RECIPE_ONLY - keys) == []
    assert fields >= RECIPE_ONLY and not RECIPE_ONLY & keys  # the list names real, flagless fields only


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    """Files the options name: they must exist, nothing reads them (no build runs)."""
    paths = {"model": tmp_path / "m.onnx", "tok": tmp_path / "tok.json", "text": tmp_path / "s.txt"}
    for path in paths.values():
        path.write_bytes(b"-")
    for name in ("c", "e", "t"):
        np.savez(paths.setdefault(name, tmp_path / f"{name}.npz"), x=np.zeros((2, 3), np.float32))
    (tmp_path / "r.toml").write_text('golden_samples = 5\ninput_shape = {x = [1, 3]}\n')
    return paths


# Every recipe option of build and sweep (but sweep's own): the flags, the recipe key, the value it must carry.
# {name} is a file of the `files` fixture.
GIVEN = [
    (["--target", "rpi5"], "target", "rpi5"),
    (["--eval", "{e}"], "eval", "{e}"),
    (["--calibration", "entropy"], "calibration", "entropy"),
    (["--float-io"], "int8_io", False),
    (["--calib-samples", "100"], "calib_samples", 100),
    (["--batch", "2"], "batch", 2),
    (["--input-shape", "x=1,3", "--input-shape", "y=1,4"], "input_shape", {"x": (1, 3), "y": (1, 4)}),
    (["--main-output", "logits"], "main_output", "logits"),
    (["--golden-samples", "4"], "golden_samples", 4),
    (["--mean", "0.5,0.4,0.3"], "mean", (0.5, 0.4, 0.3)),
    (["--std", "0.25"], "std", (0.25,)),
    (["--max-drop", "2.5"], "max_drop", 2.5),
    (["--min-cosine", "0.98"], "min_cosine", 0.98),
    (["--min-cosine-p5", "0.9"], "min_cosine_p5", 0.9),
    (["--embedding"], "embedding", True),
    (["--output-kind", "y=values", "--output-kind", "z=class"], "output_kind", {"y": "values", "z": "class"}),
    (["--threads", "2"], "threads", 2),
    (["--runs", "7"], "bench_runs", 7),
    (["--emulate-witness"], "emulate_witness", True),
    (["--recover", "finetune"], "recover", "finetune"),
    (["--train", "{t}"], "train", "{t}"),
    (["--train", "{t}", "--qat"], "qat", True),
    (["--train", "{t}", "--distill", "0.5"], "distill", 0.5),
    (["--prune-time", "30"], "prune_time", 30.0),
    (["--prune-criterion", "bn"], "prune_criterion", "bn"),
    (["--prune-heads", "0.5"], "prune_heads", 0.5),
    (["--drop-layers", "1"], "drop_layers", 1),
    (["--text", "{text}"], "calib", "{text}"),
    (["--tokenizer", "{tok}"], "tokenizer", "{tok}"),
    (["--seq-len", "16"], "seq_len", 16),
    (["--vocab-from", "auto", "--tokenizer", "{tok}"], "vocab_from", "auto"),
    (["--vocab-size", "50", "--vocab-from", "auto", "--tokenizer", "{tok}"], "vocab_size", 50),
    (["--recipe", "{recipe}"], "golden_samples", 5),
    (["--unsafe"], "unsafe", True),
]
IDS = [args[0] for args, _, _ in GIVEN]


def test_the_table_gives_every_recipe_option():
    given = {arg for args, _, _ in GIVEN for arg in args}
    build = _params("build")
    recipe_options = set(build) - NOT_IN_SWEEP - SWEEP_OWN - {"model", "calib"}  # (those two: in every test)
    assert sorted(n for n in recipe_options if not _flags(build[n]) & given) == []


def _fill(value: object, files: dict[str, Path]) -> object:
    named = {**{k: str(v) for k, v in files.items()}, "recipe": str(files["model"].parent / "r.toml")}
    return value.format(**named) if isinstance(value, str) else value


def _stop(seen: dict, key: str):
    def engine(received, *_args):
        seen[key] = received
        raise EdgekilnError("stopped by the test")

    return engine


@pytest.mark.parametrize(("args", "key", "value"), GIVEN, ids=IDS)
def test_a_build_option_reaches_the_recipe(cli, files, monkeypatch, args, key, value):
    from edgekiln.compiler import pipeline

    seen: dict = {}
    monkeypatch.setattr(pipeline, "build", _stop(seen, "recipe"))
    calib = [] if "--text" in args else ["--calib", files["c"]]
    result = cli("build", files["model"], *calib, *[_fill(a, files) for a in args])
    assert result.stderr.strip() == "error: stopped by the test"
    assert getattr(seen["recipe"], key) == _fill(value, files)


def _sweep(cli, files: dict[str, Path], folder: Path, monkeypatch, *args: object) -> list[tuple[str, dict]]:
    """Run the sweep CLI up to where its points would be built: the (name, recipe) tasks it hands the executor."""
    from edgekiln.compiler.sweep import executors

    seen: dict = {}
    monkeypatch.setattr(executors, "run", lambda tasks, *_: _stop(seen, "tasks")(tasks))
    result = cli("sweep", files["model"], "-o", folder, *args)
    assert result.stderr.strip() == "error: stopped by the test", result.output
    return seen["tasks"]


@pytest.mark.parametrize(("args", "key", "value"), GIVEN, ids=IDS)
def test_a_sweep_option_reaches_every_points_recipe_file(cli, files, tmp_path, monkeypatch, args, key, value):
    calib = [] if "--text" in args else ["--calib", files["c"]]
    tasks = _sweep(cli, files, tmp_path / "s", monkeypatch, *calib, *[_fill(a, files) for a in args],
                   "--prune", "0", "--format", "tflite", "--quantize", "float32,int8")
    student = "-s50" if "--distill" in args else ""  # sweep's --distill is its student axis: a point per width
    assert [name for name, _ in tasks] == [f"p00-tflite-float32{student}", f"p00-tflite-int8{student}"]
    for name, task in tasks:
        point = from_toml(tmp_path / "s" / "points" / f"{name}.toml", output=task["output"])
        assert getattr(point, key) == _fill(value, files)
        assert point == Recipe(**task)  # `build --recipe points/<name>.toml` builds what the sweep built


def test_a_point_recipe_file_rebuilds_through_build(cli, files, tmp_path, monkeypatch):
    from edgekiln.compiler import pipeline

    tasks = _sweep(cli, files, tmp_path / "s", monkeypatch, "--calib", files["c"], "--input-shape", "x=1,3",
                   "--main-output", "logits", "--calibration", "percentile", "--prune", "0.25", "--format", "onnx",
                   "--quantize", "int8")
    (name, task), = tasks
    seen: dict = {}
    monkeypatch.setattr(pipeline, "build", _stop(seen, "recipe"))
    cli("build", "--recipe", tmp_path / "s" / "points" / f"{name}.toml", "-o", task["output"])
    assert name == "p25-onnx-int8" and seen["recipe"] == Recipe(**task)
    assert (seen["recipe"].input_shape, seen["recipe"].main_output, seen["recipe"].calibration) == (
        {"x": (1, 3)}, "logits", "percentile")


def test_a_sweep_over_a_point_recipe_is_that_point(cli, files, tmp_path, monkeypatch):
    """--recipe FILE: the file's prune / variant / format are the axes the flags leave out."""
    (name, first), = _sweep(cli, files, tmp_path / "s", monkeypatch, "--calib", files["c"], "--prune", "0.5",
                            "--format", "tflite", "--quantize", "int8+rewrites", "--seq-len", "16")
    again = _sweep(cli, files, tmp_path / "again", monkeypatch, "--recipe", tmp_path / "s" / "points" / f"{name}.toml")
    assert [n for n, _ in again] == [name] and Recipe(**again[0][1]) == Recipe(**{**first, "output": again[0][1][
        "output"]})
    wider = _sweep(cli, files, tmp_path / "wider", monkeypatch, "--recipe", tmp_path / "s" / "points" / f"{name}.toml",
                   "--prune", "0,0.5")
    assert [n for n, _ in wider] == ["p00-tflite-int8+rewrites", name]  # a flag overrides the file's axis


def test_heads_or_blocks_sweep_no_channel_ratios_unless_asked(cli, files, tmp_path, monkeypatch):
    tasks = _sweep(cli, files, tmp_path / "s", monkeypatch, "--calib", files["c"], "--drop-layers", "1",
                   "--format", "onnx", "--quantize", "float32")
    assert [n for n, _ in tasks] == ["p00-onnx-float32"]  # not the default 0,0.25,0.5: --prune cannot combine
    result = cli("sweep", files["model"], "-o", tmp_path / "t", "--calib", files["c"], "--drop-layers", "1",
                 "--prune", "0,0.25", "--format", "onnx", "--quantize", "float32")
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == ["error: --prune and --drop-layers cannot be combined (conv channels "
                                                  "(CNNs) or heads / layers (transformers), one per build)"]
    assert not (tmp_path / "t").exists()


def test_a_sweep_without_a_model_or_recipe_is_one_line(cli, tmp_path):
    result = cli("sweep", "-o", tmp_path / "s")
    assert result.exit_code == 1
    assert result.stderr.strip() == ("error: name the model to sweep, or a --recipe that names it "
                                     "(e.g. edgekiln sweep model.keras -t rpi4 --calib data.npz -o sweep/)")
