"""Every option is range-checked where the Recipe is built: the same table through the Python API, a TOML
recipe and the command line, each refused in one line before any work (issue 13)."""

from __future__ import annotations

import numpy as np
import pytest

from edgekiln.compiler.errors import DataError, RecipeError
from edgekiln.compiler.recipe import LIMITS, Recipe, from_toml
from tests.unit import onnx_models

# (recipe field, bad value, what the one-line error says)
BAD_VALUES = [
    ("vocab_size", 5, "--vocab-size sets how many tokens --vocab-from keeps"),
    ("vocab_from", "corpus.txt", "--vocab-from prunes the tokenizer's vocabulary: it needs --tokenizer"),
    ("max_drop", -1.0, "max_drop must be a number from 0 to 100, got -1"),
    ("max_drop", 250.0, "max_drop must be a number from 0 to 100, got 250"),
    ("max_drop", float("nan"), "max_drop must be a number from 0 to 100, got nan"),
    ("calib_samples", 0, "calib_samples must be an integer from 1 to"),
    ("calib_samples", 2.5, "calib_samples must be an integer, got 2.5"),
    ("holdout_samples", -3, "holdout_samples must be an integer from 0 to"),
    ("golden_samples", 0, "golden_samples must be an integer from 1 to 1000, got 0"),
    ("golden_samples", 5000, "golden_samples must be an integer from 1 to 1000, got 5000"),
    ("batch", 0, "batch must be an integer from 1 to"),
    ("threads", 0, "threads must be an integer from 1 to 1024, got 0"),
    ("threads", -2, "threads must be an integer from 1 to 1024, got -2"),
    ("bench_runs", 0, "bench_runs must be an integer from 1 to"),
    ("bench_runs", True, "bench_runs must be an integer, got True"),
    ("min_cosine", 1.5, "min_cosine must be a number above 0 and at most 1, got 1.5"),
    ("min_cosine", 0, "min_cosine must be a number above 0 and at most 1, got 0"),  # no floor at all
    ("min_cosine", -0.1, "min_cosine must be a number above 0 and at most 1, got -0.1"),
    ("min_cosine", float("nan"), "min_cosine must be a number above 0 and at most 1, got nan"),
    ("min_cosine", "high", "min_cosine must be a number, got 'high'"),
    ("min_cosine_p5", 1.5, "min_cosine_p5 must be a number above 0 and at most 1, got 1.5"),
    ("min_cosine_p5", 0.0, "min_cosine_p5 must be a number above 0 and at most 1, got 0"),
    ("min_cosine_p5", -0.1, "min_cosine_p5 must be a number above 0 and at most 1, got -0.1"),
    ("prune", 1.0, "prune must be a ratio in [0, 1) or 'auto', got 1.0"),
    ("prune", -0.1, "prune must be a ratio in [0, 1) or 'auto', got -0.1"),
    ("prune_heads", "most", "prune_heads must be a ratio in [0, 1) or 'auto', got 'most'"),
    ("drop_layers", "all", "drop_layers must be an integer or 'auto', got 'all'"),
    ("std", (0.0,), "std must be positive, got [0.0]"),
    ("std", (-1.0, 1.0, 1.0), "std must be positive"),
    ("mean", (0.1, 0.2), "mean must be 1 or 3 finite numbers"),
    ("mean", (float("inf"),), "mean must be 1 or 3 finite numbers"),
    ("quantize", "int4", "quantize must be one of auto, int8, float16, dynamic, none, got 'int4'"),
    ("format", "tflite2", "format must be one of auto, tflite, onnx, got 'tflite2'"),
    ("calibration", "kl", "calibration must be one of"),
    ("recover", "retrain", "recover must be one of"),
    ("prune_criterion", "l3", "prune_criterion must be one of"),
    ("int8_io", "yes", "int8_io must be true or false, got 'yes'"),
    ("force", 1, "force must be true or false, got 1"),
    ("calib", 5, "calib must be a path (text), got 5"),
    ("target", "", "a recipe needs a source model and a target"),
]


@pytest.mark.parametrize(("field", "value", "message"), BAD_VALUES, ids=[f"{f}={v!r}" for f, v, _ in BAD_VALUES])
def test_python_api_refuses(field, value, message):
    with pytest.raises(RecipeError) as caught:
        Recipe(**{"source": "m.keras", "quantize": "none", field: value})
    assert message in caught.value.one_line() and "\n" not in caught.value.one_line()


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return {"nan": "nan", "inf": "inf"}.get(str(value), repr(value))
    if isinstance(value, tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return f'"{value}"' if isinstance(value, str) else repr(value)


@pytest.mark.parametrize(("field", "value", "message"), BAD_VALUES, ids=[f"{f}={v!r}" for f, v, _ in BAD_VALUES])
def test_toml_recipe_refuses(tmp_path, field, value, message):
    path = tmp_path / "r.toml"
    lines = {"source": '"m.keras"', "quantize": '"none"', field: _toml(value)}
    path.write_text("".join(f"{key} = {text}\n" for key, text in lines.items()))
    with pytest.raises(RecipeError) as caught:
        from_toml(path)
    assert message in caught.value.one_line()


def test_every_numeric_option_has_limits():
    numeric = {"calib_samples", "holdout_samples", "golden_samples", "batch", "threads", "bench_runs", "max_drop",
               "prune_time", "seq_len", "drop_layers", "min_cosine", "min_cosine_p5", "vocab_size", "distill"}
    assert set(LIMITS) == numeric
    for low, high in LIMITS.values():
        assert low < high
    zero_drop = Recipe(source="m.keras", quantize="none", max_drop=0, threads=None)
    assert zero_drop.max_drop == 0.0 and isinstance(zero_drop.max_drop, float)  # 0: no drop allowed, meetable
    exact = Recipe(source="m.keras", quantize="none", min_cosine=1, min_cosine_p5=0.95)  # 1: the bound is allowed
    assert (exact.min_cosine, exact.min_cosine_p5) == (1.0, 0.95) and isinstance(exact.min_cosine, float)
    assert Recipe(source="m.keras", quantize="none").min_cosine is None  # not given: no cosine floor


def test_the_cosine_floor_is_a_recipe_key(tmp_path):
    path = tmp_path / "r.toml"
    path.write_text('source = "m.keras"\nquantize = "none"\nmin_cosine = 0.98\nmin_cosine_p5 = 0.95\n')
    recipe = from_toml(path)
    assert (recipe.min_cosine, recipe.min_cosine_p5) == (0.98, 0.95)
    assert recipe.to_dict()["min_cosine_p5"] == 0.95  # the manifest's resolved recipe carries it
    assert from_toml(path, min_cosine=0.99).min_cosine == 0.99  # a flag overrides the file


def test_recipe_file_that_is_not_text_or_toml(tmp_path):
    binary = tmp_path / "r.toml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(RecipeError, match="is not a valid TOML file"):
        from_toml(binary)
    with pytest.raises(RecipeError, match="cannot read recipe"):
        from_toml(tmp_path)  # a directory
    (tmp_path / "bad.toml").write_text("source = [unterminated\n")
    with pytest.raises(RecipeError, match="is not a valid TOML file"):
        from_toml(tmp_path / "bad.toml")


def _assert_one_line(result, *fragments):
    output = result.stdout + result.stderr
    assert result.exit_code != 0, output
    assert "Traceback" not in output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


CLI_BAD = [
    (["--max-drop", "-1"], "max_drop must be a number from 0 to 100, got -1"),
    (["--max-drop", "nan"], "max_drop must be a number from 0 to 100, got nan"),
    (["--golden-samples", "0"], "golden_samples must be an integer from 1 to 1000"),
    (["--threads", "0"], "threads must be an integer from 1 to 1024"),
    (["--runs", "-5"], "bench_runs must be an integer from 1 to"),
    (["--batch", "0"], "batch must be an integer from 1 to"),
    (["--calib-samples", "0"], "calib_samples must be an integer from 1 to"),
    (["--std", "0"], "std must be positive"),
    (["--mean", "1,2"], "mean must be 1 or 3 finite numbers"),
    (["--prune", "2"], "prune must be a ratio in [0, 1)"),
    (["--prune-heads", "2"], "prune_heads must be a ratio in [0, 1) or 'auto', got 2.0"),
    (["--drop-layers", "half"], "drop_layers must be an integer or 'auto', got 'half'"),
    (["--min-cosine", "2"], "min_cosine must be a number above 0 and at most 1, got 2"),
    (["--min-cosine-p5", "0"], "min_cosine_p5 must be a number above 0 and at most 1, got 0"),
    (["--format", "onnx", "--quantize", "float16"], "--quantize float16 is not available for ONNX artifacts"),
    (["--keep", "-1", "--device", "pi@10.0.0.1"], "--keep must be >= 0, got -1"),
]


@pytest.mark.parametrize(("args", "message"), CLI_BAD, ids=[" ".join(a) for a, _ in CLI_BAD])
def test_cli_build_refuses_before_any_work(cli, tmp_path, args, message):
    result = cli("build", tmp_path / "m.keras", "--calib", tmp_path / "c.npz", "-o", tmp_path / "out", *args)
    _assert_one_line(result, message)
    assert not (tmp_path / "out").exists()


def test_cli_sweep_refuses_a_bad_cosine_floor_in_one_line(cli, tmp_path):
    result = cli("sweep", tmp_path / "m.keras", "-o", tmp_path / "sweep", "--min-cosine", "2")
    _assert_one_line(result, "min_cosine must be a number above 0 and at most 1, got 2")
    assert not (tmp_path / "sweep").exists()


def test_cli_recipe_file_refused_in_one_line(cli, tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text('source = "m.keras"\nmax_drop = -1\n')
    _assert_one_line(cli("build", tmp_path / "m.keras", "--recipe", recipe), "max_drop must be a number")


@pytest.fixture
def onnx_build(tmp_path):
    """A tiny 2-class ONNX model with calibration data: builds refused at its data stay TensorFlow-free."""
    model = onnx_models.save(onnx_models.conv_net(), tmp_path / "net.onnx")
    x = np.random.default_rng(0).random((24, 3, 8, 8), dtype=np.float32)
    np.savez(tmp_path / "calib.npz", x=x)
    return model, tmp_path / "calib.npz", x


def test_output_below_an_existing_file_is_one_line(cli, onnx_build, tmp_path):
    model, calib, _ = onnx_build
    (tmp_path / "some_file").write_text("not a folder")
    result = cli("build", model, "--calib", calib, "-o", tmp_path / "some_file" / "sub", "--runs", "3")
    _assert_one_line(result, f"cannot create output {tmp_path / 'some_file' / 'sub'}: "
                             f"{tmp_path / 'some_file'} is a file, not a directory")
    assert (tmp_path / "some_file").read_text() == "not a folder"


def test_eval_labels_outside_the_models_classes_are_refused(cli, onnx_build, tmp_path):
    model, calib, x = onnx_build
    np.savez(tmp_path / "eval.npz", x=x[:10], y=np.full(10, 42, np.int64))  # the model scores 2 classes
    result = cli("build", model, "--calib", calib, "--eval", tmp_path / "eval.npz", "-o", tmp_path / "out")
    _assert_one_line(result, f"evaluation data {tmp_path / 'eval.npz'}: labels 'y' range from 42 to 42, but the "
                             "model's first output scores 2 classes (labels 0 to 1)")
    assert not (tmp_path / "out").exists()
    np.savez(tmp_path / "negative.npz", x=x[:10], y=np.array([0, 1] * 4 + [-1, 0], np.int64))
    result = cli("build", model, "--calib", calib, "--eval", tmp_path / "negative.npz", "-o", tmp_path / "out")
    _assert_one_line(result, "labels 'y' range from -1 to 1")


def test_a_cosine_floor_for_a_model_without_vector_outputs_is_one_line(cli, tmp_path):
    """x [1, 4] -> MatMul [4, 1] -> y [1, 1]: no output has vectors to take a cosine of."""
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.ones((4, 1), np.float32), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "score",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1])], [weight])
    model = onnx_models.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]),
                             tmp_path / "score.onnx")
    np.savez(tmp_path / "calib.npz", x=np.random.default_rng(0).random((24, 4), dtype=np.float32))
    result = cli("build", model, "--calib", tmp_path / "calib.npz", "-o", tmp_path / "out", "--min-cosine-p5", "0.9")
    _assert_one_line(result, "--min-cosine / --min-cosine-p5 need an output of vectors ([batch, N] or [batch, tokens, "
                             "N]); the model's outputs per sample: y [1]")
    assert not (tmp_path / "out").exists()


def test_missing_data_is_refused_before_the_model_loads(cli, onnx_build, tmp_path):
    model, _, _ = onnx_build
    result = cli("build", model, "--calib", tmp_path / "nope.npz", "-o", tmp_path / "out")
    _assert_one_line(result, f"calibration data {tmp_path / 'nope.npz'} does not exist")


def test_label_range_check_itself():
    from edgekiln.compiler.data import check_label_range
    from edgekiln.compiler.model_inputs import Dataset

    ok = Dataset({"x": np.zeros((3, 2))}, np.array([0, 1, 9]), "e.npz")
    check_label_range(ok, 10, "evaluation")
    with pytest.raises(DataError, match="scores 1 class \\(labels 0 to 0\\)"):
        check_label_range(ok, 1, "evaluation")  # one score per sample: top-1 accuracy means nothing


PRUNE_SCAN_BAD = [
    (["--samples", "0"], "--samples must be at least 1, got 0"),
    (["--ratios", "0.5,1.5"], "ratios must lie in (0, 1), got [0.5, 1.5]"),
    (["--ratios", "nan"], "ratios must lie in (0, 1)"),
    (["--json", "{tmp}"], "--json file {tmp} is a directory"),
    (["--csv", "{tmp}/no/such/dir/t.csv"], None),  # creatable: refused only if an ancestor is a file
    (["--csv", "{file}/t.csv"], "is a file, not a directory"),
]


@pytest.mark.parametrize(("args", "message"), [c for c in PRUNE_SCAN_BAD if c[1]],
                         ids=[" ".join(a) for a, m in PRUNE_SCAN_BAD if m])
def test_prune_scan_refuses_before_loading(cli, tmp_path, args, message):
    (tmp_path / "file").write_text("x")
    fill = {"tmp": str(tmp_path), "file": str(tmp_path / "file")}
    model = tmp_path / "m.keras"
    model.write_bytes(b"PK")  # never loaded: every refusal here comes first
    np.savez(tmp_path / "e.npz", x=np.zeros((2, 4)))
    result = cli("prune-scan", model, "--eval", tmp_path / "e.npz", *[a.format(**fill) for a in args])
    _assert_one_line(result, message.format(**fill))


def test_prune_scan_refuses_onnx_without_attention_and_missing_data(cli, onnx_build, tmp_path):
    model, calib, _ = onnx_build
    _assert_one_line(cli("prune-scan", model, "--eval", calib),
                     "prune-scan takes a Keras model (.keras or .h5) or an ONNX transformer encoder; net.onnx has no "
                     "attention layer it can mask (no self-attention layer)")
    keras_file = tmp_path / "m.keras"
    keras_file.write_bytes(b"PK")
    _assert_one_line(cli("prune-scan", keras_file, "--eval", tmp_path / "none.npz"),
                     f"evaluation data {tmp_path / 'none.npz'} does not exist")


DEPLOY_BAD = [
    (["--timeout", "0"], "--timeout must be a positive number of seconds, got 0.0"),
    (["--timeout", "nan"], "--timeout must be a positive number of seconds"),
    (["--connect-timeout", "0"], "--connect-timeout must be at least 1 second, got 0"),
    (["--parallel", "0"], "--parallel must be at least 1, got 0"),
    (["--runs", "0"], "--runs must be >= 1"),
    (["--threads", "0"], "--threads >= 1"),
    (["--keep", "-2"], "--keep must be >= 0, got -2"),
    (["--python", " "], "--python and --remote-dir must not be empty"),
    (["--identity", "{tmp}/no_key"], "--identity {tmp}/no_key is not a file"),
    (["--ssh-config", "{tmp}"], "--ssh-config {tmp} is not a file"),
    (["--wheels", "{tmp}/none"], "--wheels {tmp}/none is not a folder of .whl files"),
    (["--inventory", "{tmp}/binary"], "inventory {tmp}/binary is not a text file"),
]


@pytest.mark.parametrize(("args", "message"), DEPLOY_BAD, ids=[" ".join(a) for a, _ in DEPLOY_BAD])
def test_deploy_refuses_before_contacting_a_device(cli, tmp_path, args, message):
    (tmp_path / "binary").write_bytes(b"\xff\xfe\x80 not text")
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "manifest.json").write_text('{"model": {"sha256": "0"}}')
    (bundle / "requirements.txt").write_text("numpy\n")
    fill = {"tmp": str(tmp_path)}
    hosts = [] if "--inventory" in args else ["--host", "pi@127.0.0.1:1"]
    result = cli("deploy", bundle, *hosts, *[a.format(**fill) for a in args])
    _assert_one_line(result, message.format(**fill))
