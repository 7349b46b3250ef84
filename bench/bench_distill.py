"""Distillation and QAT side by side (issue 35 deliverable 5): teacher vs students at widths 0.75 / 0.5 / auto,
then PTQ int8 vs QAT int8 where PTQ drops.

    .venv/bin/python bench/bench_distill.py [--models mnist_cnn,mnist_resnet] [--wide K] [--widths 0.75,0.5,auto]
        [--epochs 8] [--train-samples 3700] [--max-drop 1.0] [--qat mnist_resnet_outliers] [--skip-qat]

Students: each is `edgekiln distill`'s engine (compiler/distill/engine.py) on the sample models' 3,700-image
training split (make_samples.py's seed; --train-samples takes its first N), judged on the 1,000 labelled
evaluation digits: accuracy, the paired drop against the teacher with its 95 % interval, params, MACs and the
rpi4 estimate of each model compiled to float32 TFLite (distill/figures.py). `auto` searches the ladder against
--max-drop. --wide K adds a residual net K times as wide as the sample ResNet, trained first (bench_prune.py).

QAT: one `edgekiln build --quantize int8 --format tflite --qat --train` per model named in --qat; the rows are the
manifest's candidate table (accuracy on the evaluation digits, the drop against the float source and the verdict
against the 1-point budget). int8+qat is built only where plain int8 misses, so a model whose PTQ holds shows
why it was not built. Host-independent figures only (accuracy, counts, the rpi4 cost model); no host timings.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_prune import _training_split, _wide_resnet  # noqa: E402
from edgekiln.compiler.distill import engine, figures  # noqa: E402
from edgekiln.compiler.pipeline import build  # noqa: E402
from edgekiln.compiler.recipe import Recipe  # noqa: E402

SAMPLES = ROOT / "sample_models"
QAT_ROWS = ("int8", "int8+rewrites", "int8+adaround", "16x8", "int8+qat")


def _quiet(_: str) -> None:
    """Progress lines are dropped: the table is what this script prints."""


def students(model_path: Path, train: Path, widths: list[str], settings: engine.Settings, max_drop: float
             ) -> list[tuple[str, ...]]:
    """The teacher's row, then one row per width (auto: the width it chose and its probes)."""
    from edgekiln.compiler.tf_env import import_keras

    teacher_model = import_keras().models.load_model(model_path, compile=False)
    data, evaluation = np.load(train), np.load(SAMPLES / "mnist_eval.npz")
    teacher = engine.Teacher(teacher_model, data["x"], data["y"], (evaluation["x"], evaluation["y"]), settings)
    rows = [("teacher", f"{teacher_model.count_params():,}", f"{teacher.macs:,}", "100%",
             f"{np.mean(teacher.right) * 100:.2f}", "", f"{figures.estimate_ms(teacher_model, 'rpi4'):.3f}", "")]
    for width in widths:
        start = time.perf_counter()
        outcome = engine.distill(teacher, width if width == "auto" else float(width), max_drop, _quiet)
        s, d = outcome.student, outcome.student.drop
        probes = " ".join(f"{p.width:g}:{p.drop:+.1f}" for p in outcome.probes)
        rows.append((f"{width} -> {s.width:g}" if width == "auto" else width, f"{s.params:,}", f"{s.macs:,}",
                     f"{s.macs / teacher.macs:.0%}", f"{s.accuracy:.2f}",
                     f"{d.drop:+.2f} [{d.low:+.2f}, {d.high:+.2f}]",
                     f"{figures.estimate_ms(s.model, 'rpi4'):.3f}",
                     f"{time.perf_counter() - start:.0f} s" + (f" (probes {probes})" if probes else "")))
    return rows


def qat_rows(model_path: Path, train: Path, work: Path) -> list[tuple[str, ...]]:
    """Plain int8's PTQ rows and int8+qat from one build (or why int8+qat was not built)."""
    start = time.perf_counter()
    recipe = Recipe(source=str(model_path), target="rpi4", quantize="int8", format="tflite", qat=True,
                    train=str(train), calib=str(SAMPLES / "mnist_calib.npz"), eval=str(SAMPLES / "mnist_eval.npz"),
                    output=str(work / f"b_{model_path.stem}"), bench_runs=5, max_drop=1.0)
    q = build(recipe).manifest["quantization"]
    seconds = time.perf_counter() - start
    rows = [(model_path.stem, r["name"], f"{r['accuracy']:.2f}", f"{r['accuracy_drop']:+.2f}",
             f"{r['estimate_ms']:.3f}", r["short"] + (" (shipped)" if r["name"] == q["variant"] else ""))
            for r in q["candidates"] if r["name"] in QAT_ROWS]
    rows += [(model_path.stem, name, "", "", "", why[:70]) for name, why in q.get("not_built", {}).items()
             if name == "int8+qat"]
    print(f"  built {model_path.stem} with --qat in {seconds:.0f} s", flush=True)
    return rows


def _print(title: str, header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    print(f"\n{title}\n| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="mnist_cnn,mnist_resnet", help="Keras samples to distil")
    parser.add_argument("--wide", type=int, default=0, help="also distil a K-times wider ResNet, trained first")
    parser.add_argument("--widths", default="0.75,0.5,auto")
    parser.add_argument("--epochs", type=int, default=engine.Settings().epochs)
    parser.add_argument("--train-samples", type=int, default=3700)
    parser.add_argument("--max-drop", type=float, default=1.0)
    parser.add_argument("--qat", default="mnist_resnet_outliers", help="samples built with --qat (comma-separated)")
    parser.add_argument("--skip-qat", action="store_true")
    args = parser.parse_args()
    settings = engine.Settings(epochs=args.epochs)
    with tempfile.TemporaryDirectory(prefix="bench-distill-") as tmp:
        work = Path(tmp)
        full = np.load(_training_split(work))
        train = work / "train_n.npz"
        np.savez(train, x=full["x"][:args.train_samples], y=full["y"][:args.train_samples])
        models = [SAMPLES / f"{m}.keras" for m in args.models.split(",") if m]
        if args.wide:
            models.append(Path(_wide_resnet(work, args.wide)))
        header = ("width", "params", "MACs", "MACs %", "accuracy %", "drop [95 %]", "rpi4 est. ms (f32)", "time")
        for model in models:
            rows = students(model, train, args.widths.split(","), settings, args.max_drop)
            _print(f"{model.stem}: {len(full['x'][:args.train_samples])} training digits, {args.epochs} epochs at "
                   f"most, judged on 1,000 evaluation digits, budget {args.max_drop:g}", header, rows)
        if not args.skip_qat:
            rows = [r for m in args.qat.split(",") if m for r in qat_rows(SAMPLES / f"{m}.keras", train, work)]
            _print("PTQ int8 vs QAT int8 (--quantize int8 --format tflite --qat; budget 1 point)",
                   ("model", "candidate", "accuracy %", "drop", "rpi4 est. ms", "verdict"), rows)


if __name__ == "__main__":
    main()
