"""The `edgekiln` command line: thin commands that build a Recipe and call the engine.

One error boundary (`_run`): an EdgekilnError becomes one line on stderr and exit 1; typer's
usage errors exit 2. Heavy modules are imported inside the commands so `--help` is instant.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from .errors import EdgekilnError
from .recipe import Calibration, Format, Quantize

app = typer.Typer(name="edgekiln", no_args_is_help=True, add_completion=False,
                  context_settings={"help_option_names": ["-h", "--help"]},
                  help="Compile a trained model into a measured, validated bundle for an edge device.")

ModelArg = Annotated[Path, typer.Argument(help="Trained model: .keras, .h5 or a SavedModel directory.")]
TargetOpt = Annotated[str | None, typer.Option("--target", "-t", help="Target device name or TOML file.")]
CalibOpt = Annotated[Path | None, typer.Option("--calib", help="Calibration data: .npz, .npy or image folder.")]
EvalOpt = Annotated[Path | None, typer.Option("--eval", help="Evaluation data; with labels 'y' gives accuracy.")]


def _run(action: Callable[[], Any]) -> Any:
    """The single error boundary of the CLI."""
    try:
        return action()
    except EdgekilnError as exc:
        typer.echo(f"error: {exc.one_line()}", err=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        typer.echo("error: interrupted; nothing was written", err=True)
        raise typer.Exit(130) from None


def _floats(text: str | None) -> tuple[float, ...] | None:
    if text is None:
        return None
    try:
        return tuple(float(part) for part in text.split(","))
    except ValueError:
        raise typer.BadParameter(f"expected comma-separated numbers, got '{text}'") from None


@app.command()
def build(
    model: ModelArg,
    target: TargetOpt = None,
    calib: CalibOpt = None,
    eval: EvalOpt = None,  # noqa: A002  (the user-facing flag is --eval)
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Bundle directory to create.")] = None,
    format: Annotated[Format | None, typer.Option(help="Artifact format (default: the target's).")] = None,  # noqa: A002
    quantize: Annotated[Quantize | None, typer.Option(
        "--quantize", "-q", help="auto (default): build the variants, ship the fastest accurate enough one.")] = None,
    calibration: Annotated[Calibration | None, typer.Option(help="int8 activation ranges (auto: the best).")] = None,
    int8_io: Annotated[bool | None, typer.Option("--int8-io/--float-io", help="int8 model inputs/outputs.")] = None,
    calib_samples: Annotated[int | None, typer.Option(help="At most this many calibration samples.")] = None,
    golden_samples: Annotated[int | None, typer.Option(help="Samples stored in golden.npz.")] = None,
    mean: Annotated[str | None, typer.Option(help="Image-folder mean, e.g. 0.485,0.456,0.406.")] = None,
    std: Annotated[str | None, typer.Option(help="Image-folder std, e.g. 0.229,0.224,0.225.")] = None,
    max_drop: Annotated[float | None, typer.Option(help="Accuracy budget in percentage points.")] = None,
    threads: Annotated[int | None, typer.Option(help="Threads for host measurement (default: target's).")] = None,
    runs: Annotated[int | None, typer.Option("--runs", help="Timed runs per latency measurement.")] = None,
    recipe_file: Annotated[Path | None, typer.Option("--recipe", help="TOML recipe; flags override it.")] = None,
    unsafe: Annotated[bool, typer.Option(help="Allow Lambda layers (runs code from the file).")] = False,
    force: Annotated[bool, typer.Option(help="Replace an existing output bundle.")] = False,
) -> None:
    """Compile MODEL into a bundle for --target, quantized with --calib data, measured and validated."""
    options = {"source": str(model), "target": target, "calib": _str(calib), "eval": _str(eval),
               "output": _str(output), "format": format, "quantize": quantize, "calibration": calibration,
               "int8_io": int8_io,
               "calib_samples": calib_samples, "golden_samples": golden_samples, "mean": _floats(mean),
               "std": _floats(std), "max_drop": max_drop, "threads": threads, "bench_runs": runs,
               "unsafe": unsafe or None, "force": force or None}
    _run(lambda: _build(options, recipe_file))


def _str(path: Path | None) -> str | None:
    return None if path is None else str(path)


def _build(options: dict[str, Any], recipe_file: Path | None) -> None:
    from . import recipe as recipe_module
    from .pipeline import build as run_build
    from .summary import print_build_summary, progress_display

    given = {k: v for k, v in options.items() if v is not None}
    recipe = recipe_module.from_toml(recipe_file, **given) if recipe_file else recipe_module.Recipe(**given)
    with progress_display() as progress:
        result = run_build(recipe, progress)
    print_build_summary(result)


@app.command()
def explain(
    model: ModelArg,
    target: TargetOpt = None,
    calib: CalibOpt = None,
    eval: EvalOpt = None,  # noqa: A002  (the user-facing flag is --eval)
    threads: Annotated[int | None, typer.Option(help="Threads for host measurement (default: target's).")] = None,
    runs: Annotated[int | None, typer.Option("--runs", help="Timed runs per model.")] = None,
    unsafe: Annotated[bool, typer.Option(help="Allow Lambda layers (runs code from the file).")] = False,
) -> None:
    """Why plain int8 hurts MODEL on --target: per-layer error, fast-path coverage, likely causes."""
    options = {"source": str(model), "target": target, "calib": _str(calib), "eval": _str(eval),
               "threads": threads, "bench_runs": runs, "unsafe": unsafe or None}
    _run(lambda: _explain({k: v for k, v in options.items() if v is not None}))


def _explain(options: dict[str, Any]) -> None:
    from .explain import explain as run_explain
    from .recipe import Recipe
    from .summary import print_explanation, progress_display

    recipe = Recipe(**options, quantize=Quantize.int8)  # explain diagnoses plain int8: it needs --calib
    with progress_display() as progress:
        result = run_explain(recipe, progress)
    print_explanation(result)


@app.command("targets")
def list_targets() -> None:
    """List the known target devices."""
    from .summary import print_targets

    _run(print_targets)


@app.command()
def inspect(
    path: Annotated[Path, typer.Argument(help="A bundle directory, a .tflite file, or a source model.")],
    unsafe: Annotated[bool, typer.Option(help="Allow Lambda layers (runs code from the file).")] = False,
) -> None:
    """Show inputs/outputs, params, MACs and ops of a model, or the summary of a bundle."""
    from .summary import inspect_path

    _run(lambda: inspect_path(path, unsafe))


if __name__ == "__main__":
    app()
