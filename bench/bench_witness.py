"""Cost model vs emulated estimate vs published figure, per candidate, on every sample model and the anchors.

    .venv/bin/python bench/bench_witness.py [--target rpi4] [--cases mnist_cnn,mnist_dwsep_nchw] [--format tflite]

Two tables. First the published anchors (bench/fit_estimate.py's XNNPACK README figures for the target): the
published ms, the cost model's leave-one-out prediction (from the target file) and the emulated estimate's
(bench/witness_estimate.py's cached counts through the target's [emulated] costs, its stall fitted without
that anchor): a held-out comparison, each figure made without the one it is checked against. Then every sample
model built as `edgekiln build --emulate-witness` builds it (the target's candidate search, each candidate's
instructions counted on the emulated core): per candidate the cost model's estimate, the emulated estimate and
the executed instructions, and the variant each kind of evidence would ship; no published figure exists for
the sample models, so the two estimates are only compared with each other (their ratio, and whether they rank
the candidates alike). The emulator is slow (two emulated runs per candidate, 20-40 s each): --cases and
--format cut the work. Counts are executed instructions on an emulated core, not timings.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.fit_estimate import PUBLISHED  # noqa: E402
from bench.witness_estimate import counted, fit_stall  # noqa: E402
from edgekiln import targets  # noqa: E402
from edgekiln.compiler.emulate.cycles import emulated_ms, standing  # noqa: E402
from edgekiln.compiler.recipe import Recipe  # noqa: E402

SAMPLES = ROOT / "sample_models"
CASES = {"mnist_cnn": ("mnist_cnn.keras", "mnist_calib.npz"), "mnist_resnet": ("mnist_resnet.keras", "mnist_calib.npz"),
         "mnist_resnet_nchw": ("mnist_resnet_nchw.onnx", "mnist_calib_nchw.npz"),
         "mnist_dwsep_nchw": ("mnist_dwsep_nchw.onnx", "mnist_calib_nchw.npz"),
         "intent_encoder": ("intent_encoder.keras", "intent_calib.txt")}
THREADS = 4


def anchors(board: str, anchor_cache: Path, witness_cache: Path) -> None:
    """The published anchors: published, cost model leave-one-out, emulated leave-one-out."""
    target = targets.load(board)
    assert target.estimate is not None and target.emulated is not None
    published = {k: float(v) for k, v in PUBLISHED[board][1].items()}
    ideal = {k: unit_ms(target, counted(k, board, anchor_cache, witness_cache)) for k in published}
    cost = {(a.model, a.dtype): a.loo_ms for a in target.estimate.anchors}
    print(f"\n{board} published anchors (held out: each estimate made without the anchor it is checked against)")
    print(f"  {'model':26s} {'published':>9s} {'cost model':>18s} {'emulated':>18s}")
    for k, pub in published.items():
        em = ideal[k] * fit_stall(ideal, published, [j for j in published if j != k])
        cm = cost[k] or math.nan
        print(f"  {k[0] + ' ' + k[1]:26s} {pub:7.1f}ms {cm:9.1f}ms ({cm / pub - 1:+6.1%}) {em:9.1f}ms "
              f"({em / pub - 1:+6.1%})")
    print(f"  {standing(target).why}")


def unit_ms(target: targets.Target, counts: dict[str, int]) -> float:
    """The counts through the target's [emulated] costs with stall 1 (the anchors' stall is fitted per fold)."""
    assert target.emulated is not None
    value = emulated_ms(dataclasses.replace(target, emulated=dataclasses.replace(target.emulated, stall=1.0)),
                        counts, THREADS)
    assert value is not None
    return value


def samples(board: str, cases: list[str], model_format: str | None, runs: int) -> None:
    """Every candidate of each sample model's build: cost model vs emulated estimate."""
    from edgekiln.compiler.pipeline import build

    for name in cases:
        model, calib = CASES[name]
        extra = {"tokenizer": str(SAMPLES / "intent_tokenizer.json")} if name.startswith("intent") else {}
        with tempfile.TemporaryDirectory(prefix="bench-witness-") as work:
            recipe = Recipe(source=str(SAMPLES / model), target=board, calib=str(SAMPLES / calib),
                            output=str(Path(work) / "b"), format=model_format, bench_runs=runs,
                            emulate_witness=True, **extra)  # type: ignore[arg-type]
            manifest = build(recipe, progress=lambda line: print(f"  .. {line}", flush=True)).manifest
        q = manifest["quantization"]
        rows = [r for r in q["candidates"] if "emulated" in r]
        print(f"\n{name} on {board} (shipped {q['variant']}, decided by {q['evidence']['label']}); no published figure")
        print(f"  {'candidate':24s} {'kB':>7s} {'cost model':>11s} {'emulated':>10s} {'ratio':>6s} {'Minstr':>8s} "
              f"{'int mac':>8s} {'float':>8s}")
        for r in rows:
            e = r["emulated"]
            cm, em = r.get("estimate_ms"), e["estimate_ms"]
            ratio = f"{em / cm:6.2f}" if cm and em else "     -"
            print(f"  {r['name']:24s} {r['bytes'] / 1000:7.1f} {_ms(cm):>11s} {_ms(em):>10s} {ratio} "
                  f"{e['instructions'] / 1e6:8.2f} {e['by_class']['int_simd_mac'] / 1e6:8.2f} "
                  f"{e['by_class']['float_simd'] / 1e6:8.2f}")
        ranked = [sorted(rows, key=lambda r, k=k: _key(r, k)) for k in ("cost", "emulated")]
        agree = [r["name"] for r in ranked[0]] == [r["name"] for r in ranked[1]]
        print(f"  fastest by the cost model: {ranked[0][0]['name']}; by the emulated estimate: {ranked[1][0]['name']}; "
              f"same order for all {len(rows)}: {agree}")


def _key(row: dict, kind: str) -> float:
    value = row.get("estimate_ms") if kind == "cost" else row["emulated"]["estimate_ms"]
    return math.inf if value is None else float(value)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="rpi4")
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, of {', '.join(CASES)}")
    parser.add_argument("--format", default=None, choices=("tflite", "onnx"), help="default: every format")
    parser.add_argument("--runs", type=int, default=30, help="host timed runs per candidate (not the point here)")
    parser.add_argument("--anchors", type=Path, default=Path.home() / ".cache" / "edgekiln" / "anchors")
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "edgekiln" / "witness")
    args = parser.parse_args()
    if args.target in PUBLISHED:
        anchors(args.target, args.anchors, args.cache)
    samples(args.target, [c for c in args.cases.split(",") if c], args.format, args.runs)


if __name__ == "__main__":
    main()
