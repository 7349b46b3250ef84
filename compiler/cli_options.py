"""The recipe's command-line options, declared once: `build` and `sweep` both take every one of them.

Each option is an `Annotated` alias that a command lists in its signature; `recipe_from` turns what a command
received into the Recipe (a --recipe file with the flags given on top, as `build --recipe` reads it), so no
command hands the options on one by one. A flag is its recipe key with `-` for `_`, but for RECIPE_KEYS.
tests/unit/test_cli_options.py checks that sweep takes all of build's and that every Recipe field has a flag.
Each option names its panel of `--help` (PANELS, by topic), so the two commands' help reads the same.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from edgekiln.compiler.errors import RecipeError
from edgekiln.compiler.input_shapes import parse_flag
from edgekiln.compiler.recipe import Calibration, PruneCriterion, Recipe, Recover, from_toml

T = TypeVar("T")

# The panels of `build --help`, in the order it shows them (a command's first option in a panel places it): what
# every build names first, then the knobs by topic. docs/cli.md has a section per panel (tests/unit/test_cli_help.py).
DATA = "Data"
TARGET = "Target and device"
OUTPUT = "Output"
QUANTIZATION = "Quantization"
ACCURACY = "Accuracy"
PRUNING = "Pruning"
TEXT = "Text models"
PANELS = (DATA, TARGET, OUTPUT, QUANTIZATION, ACCURACY, PRUNING, TEXT)
SWEEP = "Sweep: axes and execution"  # sweep's own options, after its Data and Target panels

ModelArg = Annotated[Path, typer.Argument(help="Trained model: .keras, .h5, .onnx or SavedModel directory.")]
RecipeModelArg = Annotated[Path | None, typer.Argument(help="Trained model: .keras, .h5, .onnx or SavedModel "
                                                            "directory (or the recipe's source).")]

# Data
CalibOpt = Annotated[Path | None, typer.Option("--calib", help="Calibration data: .npz, .npy, an image folder, or "
                                                                 ".txt sentences (with --tokenizer).",
                                               rich_help_panel=DATA)]
EvalOpt = Annotated[Path | None, typer.Option("--eval", help="Evaluation data, labelled (npz: y; text: "
                                                               "LABEL<TAB>sentence) for an accuracy figure.",
                                              rich_help_panel=DATA)]
RecipeFileOpt = Annotated[Path | None, typer.Option("--recipe", help="TOML recipe; flags given beside it override "
                                                                     "it.", rich_help_panel=DATA)]
InputShapeOpt = Annotated[list[str] | None, typer.Option(
    "--input-shape", help="Static shape of a dynamic ONNX input, NAME=1,3,320,320 (repeats; default: the data's "
                          "sample shape).", rich_help_panel=DATA)]
BatchOpt = Annotated[int | None, typer.Option(help="Compiled batch where the model leaves it open.",
                                              rich_help_panel=DATA)]
CalibSamplesOpt = Annotated[int | None, typer.Option(help="At most this many calibration samples.",
                                                     rich_help_panel=DATA)]
MeanOpt = Annotated[str | None, typer.Option(help="Image-folder mean, e.g. 0.485,0.456,0.406.", rich_help_panel=DATA)]
StdOpt = Annotated[str | None, typer.Option(help="Image-folder std, e.g. 0.229,0.224,0.225.", rich_help_panel=DATA)]
UnsafeOpt = Annotated[bool, typer.Option(help="Allow Lambda layers, which run code from the model file.",
                                         rich_help_panel=DATA)]

# Target and device
TargetOpt = Annotated[str | None, typer.Option("--target", "-t", help="Target device name or TOML file.",
                                               rich_help_panel=TARGET)]
ThreadsOpt = Annotated[int | None, typer.Option(help="Threads for host measurement (default: the target's).",
                                                rich_help_panel=TARGET)]
RunsOpt = Annotated[int | None, typer.Option("--runs", help="Timed runs per latency measurement.",
                                             rich_help_panel=TARGET)]
EmulateWitnessOpt = Annotated[bool, typer.Option("--emulate-witness", help="Also count each candidate's executed "
                                                "instructions on the target's emulated core (slow; a cross-check).",
                                                rich_help_panel=TARGET)]

# Quantization
CalibrationOpt = Annotated[Calibration | None, typer.Option(help="How int8 activation ranges are calibrated "
                                                                 "(auto: the most faithful).",
                                                            rich_help_panel=QUANTIZATION)]
Int8IoOpt = Annotated[bool | None, typer.Option("--int8-io/--float-io", help="int8 or float32 model inputs and "
                                                                             "outputs.", rich_help_panel=QUANTIZATION)]
QatOpt = Annotated[bool, typer.Option("--qat", help="Also try quantization-aware fine-tuning on --train (int8+qat) "
                                                  "when plain int8 misses the budget.",
                                      rich_help_panel=QUANTIZATION)]

# Accuracy: what "accurate enough" means (search/choose.Criterion)
MaxDropOpt = Annotated[float | None, typer.Option(help="Accuracy budget in percentage points, on labelled --eval.",
                                                  rich_help_panel=ACCURACY)]
MainOutputOpt = Annotated[str | None, typer.Option(
    help="Output scored against the labels (default: the first \\[batch, classes] one).", rich_help_panel=ACCURACY)]
EmbeddingOpt = Annotated[bool, typer.Option(
    "--embedding", help="The outputs are embeddings, judged by cosine only (default floors: mean 0.99, p5 0.95).",
    rich_help_panel=ACCURACY)]
MinCosineOpt = Annotated[float | None, typer.Option(
    help="Floor on the mean cosine of the output vectors to the source's, e.g. 0.98.", rich_help_panel=ACCURACY)]
MinCosineP5Opt = Annotated[float | None, typer.Option(
    help="Floor on the 5th percentile of the per-vector cosine, e.g. 0.95.", rich_help_panel=ACCURACY)]
OutputKindOpt = Annotated[list[str] | None, typer.Option(
    "--output-kind", help="How an output is judged: NAME=class, NAME=embedding or NAME=values (repeats; default: "
                          "inferred).", rich_help_panel=ACCURACY)]

# Pruning
RecoverOpt = Annotated[Recover | None, typer.Option(help="Recovery after pruning (auto: distill, or fine-tune with "
                                                         "a labelled --train).", rich_help_panel=PRUNING)]
TrainOpt = Annotated[Path | None, typer.Option("--train", help="Training data for recovery (labels y: "
                                                                "fine-tune).", rich_help_panel=PRUNING)]
PruneCriterionOpt = Annotated[PruneCriterion | None, typer.Option(help="Channel importance.",
                                                                  rich_help_panel=PRUNING)]
PruneTimeOpt = Annotated[float | None, typer.Option(help="Seconds after which --prune auto starts no new probe.",
                                                    rich_help_panel=PRUNING)]
DistillOpt = Annotated[str | None, typer.Option(help="Replace the model by a student at this width (0-1], or 'auto', "
                                                    "trained on --train before pruning and quantization.",
                                               rich_help_panel=PRUNING)]

# Text models
TextOpt = Annotated[Path | None, typer.Option("--text", help="Calibration sentences, one a line, same as --calib "
                                                             "FILE.txt.", rich_help_panel=TEXT)]
TokenizerOpt = Annotated[Path | None, typer.Option(help="tokenizer.json that turns the sentences into token ids.",
                                                   rich_help_panel=TEXT)]
SeqLenOpt = Annotated[int | None, typer.Option(help="Token sequence length where the model leaves it open.",
                                               rich_help_panel=TEXT)]
PruneHeadsOpt = Annotated[str | None, typer.Option(help="Share of every self-attention layer's heads to remove "
                                                        "(Keras MultiHeadAttention), or 'auto'.",
                                                   rich_help_panel=TEXT)]
DropLayersOpt = Annotated[str | None, typer.Option(help="Remove the last N encoder blocks and re-fit the head, or "
                                                        "'auto'.", rich_help_panel=TEXT)]
VocabFromOpt = Annotated[str | None, typer.Option(help="Keep only the vocabulary this corpus uses and ship its "
                                                       "tokenizer ('auto': the --text sentences).",
                                                  rich_help_panel=TEXT)]
VocabSizeOpt = Annotated[int | None, typer.Option(help="With --vocab-from, keep this many tokens.",
                                                  rich_help_panel=TEXT)]

# Output
GoldenSamplesOpt = Annotated[int | None, typer.Option(help="Samples stored in golden.npz.", rich_help_panel=OUTPUT)]

# A parameter whose recipe key is not its own name. Every other parameter named after a Recipe field is that
# field's option; a command's other parameters (--jobs, --device, ...) are its own.
RECIPE_KEYS = {"model": "source", "runs": "bench_runs", "text": "calib"}
FIELDS = frozenset(f.name for f in dataclasses.fields(Recipe))


def recipe_from(params: Mapping[str, Any]) -> Recipe:
    """The Recipe a command's parameters describe: its --recipe file (`recipe_file`) with the flags given on top,
    or the flags alone. A bad value is a one-line RecipeError, as from a recipe file."""
    given = recipe_values(params)
    recipe_file = params.get("recipe_file")
    return from_toml(recipe_file, **given) if recipe_file else Recipe(**given)


def recipe_values(params: Mapping[str, Any]) -> dict[str, Any]:
    """The recipe options among a command's parameters, as Recipe keyword arguments; only those given (None,
    an unset switch and no --input-shape are "not given", so a --recipe file's value stands)."""
    if params.get("text") is not None and params.get("calib") is not None:
        raise RecipeError("--text and --calib both name calibration data; give one")
    values = {}
    for name, value in params.items():
        key = RECIPE_KEYS.get(name, name)
        if key in FIELDS and (value := _CONVERT.get(name, _same)(value)) is not None:
            values[key] = value
    return values


def floats(text: str | None) -> tuple[float, ...] | None:
    """`--mean 0.485,0.456,0.406` as numbers; anything else is a usage error (exit 2)."""
    if text is None:
        return None
    try:
        return tuple(float(part) for part in text.split(","))
    except ValueError:
        raise typer.BadParameter(f"expected comma-separated numbers, got '{text}'") from None


def _same(value: T) -> T:
    return value


def _switch(value: bool) -> bool | None:
    """A switch whose default is off: off means not given (a recipe file may turn it on)."""
    return value or None


def _width(text: str | None) -> float | str | None:
    """--distill: 'auto' or a number (the recipe checks its range)."""
    if text is None or text == "auto":
        return text
    try:
        return float(text)
    except ValueError:
        raise typer.BadParameter(f"expected a width in (0, 1] or 'auto', got '{text}'") from None


def _input_shapes(texts: list[str] | None) -> dict[str, tuple[int, ...]] | None:
    return parse_flag(texts) if texts else None


_CONVERT: dict[str, Callable[[Any], Any]] = {"mean": floats, "std": floats, "input_shape": _input_shapes,
                                             "embedding": _switch, "unsafe": _switch, "force": _switch,
                                             "qat": _switch, "distill": _width,
                                             "emulate_witness": _switch}
