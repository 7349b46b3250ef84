"""The `edgekiln` command line: thin commands that build a Recipe and call the engine.

The recipe's options are declared once (cli_options.py): `build` and `sweep` take the same ones, and
`recipe_from` turns a command's parameters into its Recipe.

One error boundary (`_run`): an EdgekilnError becomes one line on stderr and exit 1; typer's
usage errors exit 2. Heavy modules are imported inside the commands so `--help` is instant.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from edgekiln.compiler.cli_options import (
    OUTPUT,
    PRUNING,
    QUANTIZATION,
    SWEEP,
    TARGET,
    BatchOpt,
    CalibOpt,
    CalibrationOpt,
    CalibSamplesOpt,
    DistillOpt,
    DropLayersOpt,
    EmbeddingOpt,
    EmulateWitnessOpt,
    EvalOpt,
    GoldenSamplesOpt,
    InputShapeOpt,
    Int8IoOpt,
    MainOutputOpt,
    MaxDropOpt,
    MeanOpt,
    MinCosineOpt,
    MinCosineP5Opt,
    ModelArg,
    OutputKindOpt,
    PruneCriterionOpt,
    PruneHeadsOpt,
    PruneTimeOpt,
    QatOpt,
    RecipeFileOpt,
    RecipeModelArg,
    RecoverOpt,
    RunsOpt,
    SeqLenOpt,
    StdOpt,
    TargetOpt,
    TextOpt,
    ThreadsOpt,
    TokenizerOpt,
    TrainOpt,
    UnsafeOpt,
    VocabFromOpt,
    VocabSizeOpt,
    floats,
    recipe_from,
    recipe_values,
)
from edgekiln.compiler.errors import EdgekilnError, RecipeError, Terminated
from edgekiln.compiler.recipe import Format, PruneCriterion, Quantize

if TYPE_CHECKING:
    from edgekiln.compiler.deploy import DeployOptions

app = typer.Typer(name="edgekiln", no_args_is_help=True, add_completion=False,
                  context_settings={"help_option_names": ["-h", "--help"]},
                  help="Compile a trained model into a measured, validated bundle for an edge device.")

# Device options, shared by `deploy` and `build --device` (in build's "Target and device" panel).
WheelsOpt = Annotated[Path | None, typer.Option("--wheels", help="Ship these wheels (offline devices).",
                                                rich_help_panel=TARGET)]
IdentityOpt = Annotated[Path | None, typer.Option("--identity", "-i", help="SSH private key file.",
                                                  rich_help_panel=TARGET)]
SshConfigOpt = Annotated[Path | None, typer.Option("--ssh-config", "-F", help="ssh config file (default: "
                                                                               "~/.ssh/config).",
                                                   rich_help_panel=TARGET)]
AcceptNewOpt = Annotated[bool, typer.Option("--accept-new-host-keys", help="Trust unknown host keys (changed keys "
                                                                           "stay refused).", rich_help_panel=TARGET)]
RemoteDirOpt = Annotated[str, typer.Option("--remote-dir", envvar="EDGEKILN_REMOTE_DIR",
                                           help="Directory on the device (relative: under the home).",
                                           rich_help_panel=TARGET)]
KeepOpt = Annotated[int, typer.Option(help="Versions of this bundle kept on each device after a deploy (0: all).",
                                      rich_help_panel=TARGET)]


def _run(action: Callable[[], Any]) -> Any:
    """The single error boundary of the CLI. SIGTERM is turned into an exception, as Ctrl-C is, so that what
    the command was writing is cleaned up on the way out (temp folders, a half-written bundle)."""
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        return action()
    except EdgekilnError as exc:
        typer.echo(f"error: {exc.one_line()}", err=True)
        raise typer.Exit(1) from None
    except Terminated:
        typer.echo("error: terminated (SIGTERM); nothing half-written is left", err=True)
        raise typer.Exit(128 + signal.SIGTERM) from None
    except KeyboardInterrupt:
        typer.echo("error: interrupted; nothing half-written is left", err=True)
        raise typer.Exit(128 + signal.SIGINT) from None
    finally:
        signal.signal(signal.SIGTERM, previous)


def _terminate(signum: int, frame: object) -> None:
    raise Terminated


@app.command()
def build(
    model: RecipeModelArg = None,
    calib: CalibOpt = None,
    eval: EvalOpt = None,  # noqa: A002  (the user-facing flag is --eval)
    recipe_file: RecipeFileOpt = None,
    input_shape: InputShapeOpt = None,
    batch: BatchOpt = None,
    calib_samples: CalibSamplesOpt = None,
    mean: MeanOpt = None,
    std: StdOpt = None,
    unsafe: UnsafeOpt = False,
    target: TargetOpt = None,
    threads: ThreadsOpt = None,
    runs: RunsOpt = None,
    emulate_witness: EmulateWitnessOpt = False,
    device: Annotated[list[str] | None, typer.Option(help="Time the candidates on user@host[:port] over SSH, "
                                                           "choose by it and deploy there (repeats).",
                                                      rich_help_panel=TARGET)] = None,
    wheels: WheelsOpt = None,
    identity: IdentityOpt = None,
    ssh_config: SshConfigOpt = None,
    accept_new_host_keys: AcceptNewOpt = False,
    remote_dir: RemoteDirOpt = "edgekiln",
    keep: KeepOpt = 3,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Bundle directory to create.",
                                                rich_help_panel=OUTPUT)] = None,
    force: Annotated[bool, typer.Option(help="Replace an existing bundle, and build even when a target check "
                                             "fails (with a warning).", rich_help_panel=OUTPUT)] = False,
    golden_samples: GoldenSamplesOpt = None,
    quantize: Annotated[Quantize | None, typer.Option(
        "--quantize", "-q", help="Variant to build (auto: every variant, shipping the fastest accurate enough one).",
        rich_help_panel=QUANTIZATION)] = None,
    format: Annotated[Format | None, typer.Option(  # noqa: A002
        help="Artifact format (auto: every format the target runs; default with --quantize auto).",
        rich_help_panel=QUANTIZATION)] = None,
    calibration: CalibrationOpt = None,
    int8_io: Int8IoOpt = None,
    max_drop: MaxDropOpt = None,
    main_output: MainOutputOpt = None,
    embedding: EmbeddingOpt = False,
    min_cosine: MinCosineOpt = None,
    min_cosine_p5: MinCosineP5Opt = None,
    output_kind: OutputKindOpt = None,
    prune: Annotated[str | None, typer.Option(help="Fraction of channels to remove per group, or 'auto'.",
                                              rich_help_panel=PRUNING)] = None,
    recover: RecoverOpt = None,
    train: TrainOpt = None,
    qat: QatOpt = False,
    distill: DistillOpt = None,
    prune_criterion: PruneCriterionOpt = None,
    prune_time: PruneTimeOpt = None,
    text: TextOpt = None,
    tokenizer: TokenizerOpt = None,
    seq_len: SeqLenOpt = None,
    prune_heads: PruneHeadsOpt = None,
    drop_layers: DropLayersOpt = None,
    vocab_from: VocabFromOpt = None,
    vocab_size: VocabSizeOpt = None,
) -> None:
    """Compile MODEL into a bundle for --target, quantized with --calib data, measured and validated."""
    params = dict(locals())  # every option by name; recipe_from takes the recipe's (compiler/cli_options.py)
    if model is None and recipe_file is None:
        typer.echo("error: name the model to build, or a --recipe that names it "
                   "(e.g. edgekiln build model.keras -t rpi4 --calib data.npz)", err=True)
        raise typer.Exit(1)
    devices = (device or [], lambda: _deploy_options(wheels, identity, ssh_config, accept_new_host_keys,
                                                     remote_dir=remote_dir, keep=keep))
    _run(lambda: _build(params, devices))


def _build(params: dict[str, Any], devices: tuple[list[str], Callable]) -> None:
    recipe = recipe_from(params)  # before the heavy imports: a bad option is refused at once
    from edgekiln.compiler.pipeline import build as run_build
    from edgekiln.compiler.summary import print_build_summary, progress_display

    hosts, device_options = devices[0], (devices[1]() if devices[0] else None)
    racer = None
    if hosts and device_options is not None:  # refuse a bad device list before minutes of work
        from edgekiln.compiler.deploy import destinations, measure_after_build
        from edgekiln.compiler.deploy.race import Racer

        destinations(hosts, None)
        racer = Racer(hosts[0], device_options)  # the first device times the candidates: its table decides
    with progress_display() as progress:
        result = run_build(recipe, progress, racer)
    print_build_summary(result)
    if hosts and device_options is not None:  # the bundle is complete: deploy it; device figures -> latency.device
        measure_after_build(result.output, hosts, device_options)


def _deploy_options(wheels: Path | None, identity: Path | None, ssh_config: Path | None, accept_new: bool,
                    connect_timeout: int = 10, *, remote_dir: str, keep: int, python: str = "python3", runs: int = 50,
                    threads: int | None = None, timeout: float = 1800, profile: bool = False) -> DeployOptions:
    from edgekiln.compiler.deploy import DeployOptions, SshOptions

    ssh = SshOptions(identity, ssh_config, accept_new, connect_timeout)
    return DeployOptions(ssh=ssh, remote_dir=remote_dir, python=python, wheels=wheels, runs=runs, threads=threads,
                         timeout=timeout, keep=keep, profile=profile)


@app.command()
def deploy(
    bundle: Annotated[Path, typer.Argument(help="The bundle directory to deploy.")],
    host: Annotated[list[str] | None, typer.Option("--host", "-H", help="user@host[:port], repeats.")] = None,
    inventory: Annotated[Path | None, typer.Option(help="File with one user@host[:port] per line.")] = None,
    parallel: Annotated[int, typer.Option(help="Devices deployed at the same time.")] = 4,
    wheels: WheelsOpt = None,
    identity: IdentityOpt = None,
    ssh_config: SshConfigOpt = None,
    accept_new_host_keys: AcceptNewOpt = False,
    remote_dir: RemoteDirOpt = "edgekiln",
    python: Annotated[str, typer.Option("--python", help="Python 3 on the device.")] = "python3",
    runs: Annotated[int, typer.Option("--runs", help="Timed benchmark runs on the device.")] = 50,
    threads: Annotated[int | None, typer.Option(help="Interpreter threads (default: the target's).")] = None,
    timeout: Annotated[float, typer.Option(help="Seconds allowed per device.")] = 1800,
    connect_timeout: Annotated[int, typer.Option(help="Seconds to wait for an SSH connection.")] = 10,
    keep: KeepOpt = 3,
    profile: Annotated[bool, typer.Option("--profile", help="Also profile per op on the device "
                                                            "(into measurements/<device-id>.json).")] = False,
    again: Annotated[bool, typer.Option("--again", help="Deploy to every device, also those with a passing "
                                                        "measurement of this bundle (a rerun skips them).")] = False,
) -> None:
    """Copy BUNDLE to devices over SSH, install it in a venv, validate and benchmark it there."""
    from edgekiln.compiler.deploy import deploy_command

    def action() -> None:
        options = _deploy_options(wheels, identity, ssh_config, accept_new_host_keys, connect_timeout,
                                  remote_dir=remote_dir, python=python, runs=runs, threads=threads,
                                  timeout=timeout, keep=keep, profile=profile)
        deploy_command(bundle, host or [], inventory, options, parallel, again)

    _run(action)


@app.command()
def validate(
    bundle: Annotated[Path, typer.Argument(help="A bundle directory written by `edgekiln build`.")],
    emulate: Annotated[str | None, typer.Option(help="Run it on an emulated target, e.g. rpi4.")] = None,
) -> None:
    """Run the bundle's own `python -m runtime validate` here, or on an emulated device (--emulate)."""
    from edgekiln.compiler.commands.validate import report, run_validation
    from edgekiln.compiler.summary import progress_display

    def action() -> None:
        with progress_display() as progress:
            outcome = run_validation(bundle, emulate, progress)
        report(outcome)

    _run(action)


# Sweep's own parameters: its axes (comma-separated lists where build takes one value) and how it runs.
# Every other parameter of `sweep` is a recipe option, the same as build's, and reaches each point's recipe.
SWEEP_OWN = ("prune", "quantize", "format", "distill", "jobs", "executor", "ray_address", "force")


@app.command()
def sweep(
    output: Annotated[Path, typer.Option("--output", "-o", help="Sweep folder (resumed when it is one).",
                                         rich_help_panel=OUTPUT)],
    model: RecipeModelArg = None,
    calib: CalibOpt = None,
    eval: EvalOpt = None,  # noqa: A002  (the user-facing flag is --eval)
    recipe_file: RecipeFileOpt = None,
    input_shape: InputShapeOpt = None,
    batch: BatchOpt = None,
    calib_samples: CalibSamplesOpt = None,
    mean: MeanOpt = None,
    std: StdOpt = None,
    unsafe: UnsafeOpt = False,
    target: TargetOpt = None,
    threads: ThreadsOpt = None,
    runs: RunsOpt = None,
    emulate_witness: EmulateWitnessOpt = False,
    quantize: Annotated[str | None, typer.Option(
        "--quantize", "-q", help="Variants, e.g. float32,int8,int8+rewrites (auto, the default: one per storage "
                                 "mode).", rich_help_panel=SWEEP)] = None,
    format: Annotated[str | None, typer.Option(  # noqa: A002
        help="tflite, onnx, or auto: every format the target runs (the default).", rich_help_panel=SWEEP)] = None,
    prune: Annotated[str | None, typer.Option(
        help="Prune ratios and 'auto' (default: 0,0.25,0.5; 0 with --prune-heads or --drop-layers).",
        rich_help_panel=SWEEP)] = None,
    jobs: Annotated[int, typer.Option(help="Points built at once (a local process pool, or Ray tasks).",
                                      rich_help_panel=SWEEP)] = 1,
    executor: Annotated[str, typer.Option(help="local or ray.", rich_help_panel=SWEEP)] = "local",
    ray_address: Annotated[str | None, typer.Option(help="A Ray cluster (default: a local Ray).",
                                                    rich_help_panel=SWEEP)] = None,
    force: Annotated[bool, typer.Option(help="Replace the folder instead of resuming it.",
                                        rich_help_panel=OUTPUT)] = False,
    golden_samples: GoldenSamplesOpt = None,
    calibration: CalibrationOpt = None,
    int8_io: Int8IoOpt = None,
    max_drop: MaxDropOpt = None,
    main_output: MainOutputOpt = None,
    embedding: EmbeddingOpt = False,
    min_cosine: MinCosineOpt = None,
    min_cosine_p5: MinCosineP5Opt = None,
    output_kind: OutputKindOpt = None,
    recover: RecoverOpt = None,
    train: TrainOpt = None,
    qat: QatOpt = False,
    distill: Annotated[str | None, typer.Option(
        help="Student widths (0-1] and 'auto', each a point of `build --distill` (needs --train); 1: the model "
             "itself (the default).", rich_help_panel=SWEEP)] = None,
    prune_criterion: PruneCriterionOpt = None,
    prune_time: PruneTimeOpt = None,
    text: TextOpt = None,
    tokenizer: TokenizerOpt = None,
    seq_len: SeqLenOpt = None,
    prune_heads: PruneHeadsOpt = None,
    drop_layers: DropLayersOpt = None,
    vocab_from: VocabFromOpt = None,
    vocab_size: VocabSizeOpt = None,
) -> None:
    """Student x prune x quantize points, built like `build` (with all of its recipe options), timed side by side
    here: the latency x accuracy x size front."""
    params = dict(locals())  # every option by name; the recipe's reach every point (compiler/cli_options.py)
    _run(lambda: _sweep(params))


def _sweep(params: dict[str, Any]) -> None:
    from edgekiln.compiler.commands.sweep import Grid, run

    if params["model"] is None and params["recipe_file"] is None:
        raise RecipeError("name the model to sweep, or a --recipe that names it",
                          "e.g. edgekiln sweep model.keras -t rpi4 --calib data.npz -o sweep/")
    base = recipe_from({k: v for k, v in params.items() if k not in SWEEP_OWN})
    grid = Grid(params["prune"], params["quantize"], params["format"], params["distill"])
    run(base, grid, params["jobs"], params["executor"], params["ray_address"], params["force"])


@app.command("prune-scan")
def prune_scan(
    model: ModelArg,
    eval: EvalOpt = None,  # noqa: A002
    calib: CalibOpt = None,
    criterion: Annotated[PruneCriterion, typer.Option(help="Channel importance.")] = PruneCriterion.l1,
    ratios: Annotated[str | None, typer.Option(help="Ratios to scan (default 0.1,0.2,...,0.9).")] = None,
    samples: Annotated[int, typer.Option(help="Evaluation samples per probe.")] = 500,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the table as JSON.")] = None,
    csv_out: Annotated[Path | None, typer.Option("--csv", help="Also write the table as CSV.")] = None,
    text: Annotated[Path | None, typer.Option("--text", help="Sentences, one a line (with --tokenizer); same as "
                                                             "--calib FILE.txt.")] = None,
    tokenizer: Annotated[Path | None, typer.Option(help="tokenizer.json for .txt data.")] = None,
    seq_len: Annotated[int | None, typer.Option(help="Token sequence length where the model leaves it open.")
                       ] = None,
    unsafe: UnsafeOpt = False,
) -> None:
    """Pruning sensitivity: each channel group pruned alone at each ratio; for a transformer encoder, each
    attention head masked alone and each encoder block skipped alone (Keras, or ONNX as torch exports it). No
    recovery."""
    from edgekiln.compiler.commands.prune_scan import run_scan

    _run(lambda: run_scan(model, eval, calib or text, criterion, floats(ratios), samples, json_out, csv_out,
                          unsafe, tokenizer, seq_len))


@app.command()
def distill(
    teacher: ModelArg,
    train: Annotated[Path, typer.Option("--train", help="Training data (npz x; labels y are used when given).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="The student's .keras file (report: .json).")],
    student: Annotated[str, typer.Option(help="auto (narrowest width within --max-drop), a width in (0, 1], or "
                                              "your own .keras student.")] = "auto",
    eval: EvalOpt = None,  # noqa: A002
    max_drop: Annotated[float, typer.Option(help="Accuracy budget of auto, in points.")] = 1.0,
    epochs: Annotated[int, typer.Option(help="Epochs at most (early stopping).")] = 8,
    temperature: Annotated[float, typer.Option(help="Softmax temperature of the soft targets.")] = 4.0,
    init: Annotated[str, typer.Option(help="teacher (its most important channels) or fresh.")] = "teacher",
    target: Annotated[str, typer.Option("--target", "-t", help="Device of the latency estimate.")] = "rpi4",
    unsafe: UnsafeOpt = False,
) -> None:
    """A narrower student of TEACHER, trained on its soft targets (and labels), judged against it."""
    from edgekiln.compiler.commands.distill import Request, run
    from edgekiln.compiler.distill.engine import Settings
    from edgekiln.compiler.distill.figures import print_report
    from edgekiln.compiler.summary import progress_display

    def action() -> None:
        if init not in ("teacher", "fresh"):
            raise RecipeError(f"--init takes teacher or fresh, got {init!r}")
        settings = Settings(epochs, temperature, "fresh" if init == "fresh" else "teacher")
        with progress_display() as progress:
            result = run(Request(teacher, train, output, student, eval, max_drop, target, settings, unsafe),
                         progress)
        print_report(result)

    _run(action)


@app.command()
def explain(
    model: ModelArg,
    target: TargetOpt = None,
    calib: CalibOpt = None,
    eval: EvalOpt = None,  # noqa: A002  (the user-facing flag is --eval)
    threads: ThreadsOpt = None,
    runs: Annotated[int | None, typer.Option("--runs", help="Timed runs per model.", rich_help_panel=TARGET)] = None,
    unsafe: UnsafeOpt = False,
    ladder: Annotated[bool, typer.Option("--ladder", help="Also build each rung between int8 and float alone "
                                         "(16x8, int8+mixed, int8+adaround, int8+fastpath) and print what it "
                                         "gains over plain int8, measured (minutes on a large model).")] = False,
) -> None:
    """Why plain int8 hurts MODEL on --target: per-layer error, fast-path coverage, likely causes."""
    params = dict(locals())
    params.pop("ladder")
    _run(lambda: _explain(recipe_values(params), ladder))


def _explain(options: dict[str, Any], ladder: bool = False) -> None:
    from edgekiln.compiler.commands.explain import explain as run_explain
    from edgekiln.compiler.commands.explain import print_explanation
    from edgekiln.compiler.recipe import Recipe
    from edgekiln.compiler.summary import progress_display

    recipe = Recipe(**options, quantize=Quantize.int8)  # explain diagnoses plain int8: it needs --calib
    with progress_display() as progress:
        result = run_explain(recipe, progress, ladder)
    print_explanation(result)


@app.command()
def profile(
    path: Annotated[Path, typer.Argument(help="A bundle directory, a .tflite file, or a source model (with --calib).")],
    target: TargetOpt = None,
    calib: CalibOpt = None,
    threads: Annotated[int | None, typer.Option(help="Interpreter threads (default: the bundle's, else 1).")] = None,
    top: Annotated[int, typer.Option(help="Rows shown (the JSON has every op).")] = 15,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the whole profile as JSON.")] = None,
    runs: Annotated[int, typer.Option("--runs", help="Timed rounds.")] = 30,
    emulate: Annotated[str | None, typer.Option(help="Count executed instructions instead, on an emulated "
                                                     "target, e.g. rpi4 (not a timing).")] = None,
) -> None:
    """Where the time goes: per-op host time (adding up to the whole), MACs, fast path, target estimate."""
    from edgekiln.compiler.commands.profile import run_profile
    from edgekiln.compiler.commands.profile_emulated import run_emulated_profile
    from edgekiln.compiler.summary import progress_display

    def action() -> None:
        with progress_display() as progress:
            if emulate:
                run_emulated_profile(path, emulate, top, json_out, progress)
            else:
                run_profile(path, target, calib, threads, top, json_out, runs, progress)

    _run(action)


@app.command()
def report(
    bundle: Annotated[Path, typer.Argument(help="A bundle directory (or an `edgekiln sweep` folder).")],
    output: Annotated[Path | None, typer.Option("--output", "-o",
                                                help="HTML file to write (default: BUNDLE/report.html).")] = None,
) -> None:
    """Write a self-contained HTML report of BUNDLE from its manifest and device measurements."""
    from edgekiln.compiler.commands.report import report_command

    _run(lambda: report_command(bundle, output))


@app.command("targets")
def list_targets() -> None:
    """List the known target devices."""
    from edgekiln.compiler.commands.targets import print_targets

    _run(print_targets)


@app.command()
def inspect(
    path: Annotated[Path, typer.Argument(help="A bundle directory, a .tflite file, or a source model.")],
    unsafe: UnsafeOpt = False,
    input_shape: Annotated[list[str] | None, typer.Option(
        "--input-shape", help="Static shape of an ONNX input with dynamic axes, NAME=1,3,320,320.")] = None,
) -> None:
    """Show inputs/outputs, params, MACs and ops of a model, or the summary of a bundle."""
    from edgekiln.compiler.commands.inspect import inspect_path
    from edgekiln.compiler.input_shapes import parse_flag

    _run(lambda: inspect_path(path, unsafe, parse_flag(input_shape or [])))


if __name__ == "__main__":
    app()
