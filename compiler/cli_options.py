"""The recipe's command-line options, declared once: `build` and `sweep` both take every one of them.

Each option is an `Annotated` alias that a command lists in its signature; `recipe_from` turns what a command
received into the Recipe (a --recipe file with the flags given on top, as `build --recipe` reads it), so no
command hands the options on one by one. A flag is its recipe key with `-` for `_`, but for RECIPE_KEYS.
tests/unit/test_cli_options.py checks that sweep takes all of build's and that every Recipe field has a flag.
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

ModelArg = Annotated[Path, typer.Argument(help="Trained model: .keras, .h5, .onnx or SavedModel directory.")]
RecipeModelArg = Annotated[Path | None, typer.Argument(help="Trained model: .keras, .h5, .onnx or SavedModel "
                                                            "directory (or the recipe's source).")]
TargetOpt = Annotated[str | None, typer.Option("--target", "-t", help="Target device name or TOML file.")]
CalibOpt = Annotated[Path | None, typer.Option("--calib", help="Calibration data: .npz, .npy, image folder, or .txt "
                                                                 "sentences (with --tokenizer).")]
EvalOpt = Annotated[Path | None, typer.Option("--eval", help="Evaluation data; with labels (npz: y; text: "
                                                               "LABEL<TAB>sentence) gives accuracy.")]
CalibrationOpt = Annotated[Calibration | None, typer.Option(help="int8 activation ranges (auto: the best).")]
Int8IoOpt = Annotated[bool | None, typer.Option("--int8-io/--float-io", help="int8 model inputs/outputs.")]
CalibSamplesOpt = Annotated[int | None, typer.Option(help="At most this many calibration samples.")]
BatchOpt = Annotated[int | None, typer.Option(help="Compiled batch where the model leaves it open.")]
InputShapeOpt = Annotated[list[str] | None, typer.Option(
    "--input-shape", help="Static shape of an ONNX input with dynamic axes, NAME=1,3,320,320 (repeats; "
                          "default: the data's sample shape).")]
MainOutputOpt = Annotated[str | None, typer.Option(
    help="Output scored against the labels (default: the first \\[batch, classes] one).")]
GoldenSamplesOpt = Annotated[int | None, typer.Option(help="Samples stored in golden.npz.")]
MeanOpt = Annotated[str | None, typer.Option(help="Image-folder mean, e.g. 0.485,0.456,0.406.")]
StdOpt = Annotated[str | None, typer.Option(help="Image-folder std, e.g. 0.229,0.224,0.225.")]
MaxDropOpt = Annotated[float | None, typer.Option(help="Accuracy budget in percentage points.")]
# The cosine floor of embedding models (search/choose.Criterion).
MinCosineOpt = Annotated[float | None, typer.Option(
    help="Cosine floor: the mean cosine of every output vector to the source's, e.g. 0.98 (replaces the SQNR "
         "floor; with labelled --eval, applies beside --max-drop).")]
MinCosineP5Opt = Annotated[float | None, typer.Option(
    help="Cosine floor on the 5th percentile of the per-vector cosine, e.g. 0.95.")]
EmbeddingOpt = Annotated[bool, typer.Option(
    "--embedding", help="The outputs are embeddings: judged by their cosine to the source's only, no top-1 agreement "
                        "(default floor: mean 0.99, p5 0.95).")]
OutputKindOpt = Annotated[list[str] | None, typer.Option(
    "--output-kind", help="What an output is, judged accordingly: NAME=class (top-1 agreement), NAME=embedding "
                          "(cosine) or NAME=values (SQNR); repeats (default: inferred, printed in the table).")]
ThreadsOpt = Annotated[int | None, typer.Option(help="Threads for host measurement (default: target's).")]
RunsOpt = Annotated[int | None, typer.Option("--runs", help="Timed runs per latency measurement.")]
RecoverOpt = Annotated[Recover | None, typer.Option(help="Recovery after pruning (auto: distill; fine-tune with a "
                                                         "labelled --train).")]
TrainOpt = Annotated[Path | None, typer.Option("--train", help="Training data for recovery after pruning "
                                                                "(labels y: fine-tune).")]
QatOpt = Annotated[bool, typer.Option("--qat", help="Also try quantization-aware fine-tuning on --train (int8+qat), "
                                                  "when plain int8 misses the budget.")]
DistillOpt = Annotated[str | None, typer.Option(help="Replace the model by a student at this width (0-1], or 'auto', "
                                                    "trained on --train before pruning and quantization.")]
PruneTimeOpt = Annotated[float | None, typer.Option(help="Seconds after which --prune auto starts no new probe.")]
PruneCriterionOpt = Annotated[PruneCriterion | None, typer.Option(help="Channel importance.")]
PruneHeadsOpt = Annotated[str | None, typer.Option(help="Remove this share of every self-attention layer's heads "
                                                        "(Keras MultiHeadAttention), or 'auto'.")]
DropLayersOpt = Annotated[str | None, typer.Option(help="Remove the last N encoder blocks (Keras transformer "
                                                        "encoders; the head is re-fitted), or 'auto'.")]
TextOpt = Annotated[Path | None, typer.Option("--text", help="Calibration sentences, one a line (with --tokenizer); "
                                                             "same as --calib FILE.txt.")]
TokenizerOpt = Annotated[Path | None, typer.Option(help="tokenizer.json that turns --text / .txt data into "
                                                        "token ids.")]
VocabFromOpt = Annotated[str | None, typer.Option(help="Keep only the vocabulary this corpus (one sentence a "
                                                     "line) uses, and ship the tokenizer for it; 'auto': the --text "
                                                     "sentences.")]
VocabSizeOpt = Annotated[int | None, typer.Option(help="With --vocab-from: keep this many tokens.")]
SeqLenOpt = Annotated[int | None, typer.Option(help="Token sequence length where the model leaves it open.")]
RecipeFileOpt = Annotated[Path | None, typer.Option("--recipe", help="TOML recipe; flags override it.")]
UnsafeOpt = Annotated[bool, typer.Option(help="Allow Lambda layers (runs code from the file).")]

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
                                             "qat": _switch, "distill": _width}
