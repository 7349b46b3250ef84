"""--quantize auto against float32 and plain int8, side by side in one run, on the sample models and the
synthetic failure cases: the candidate table of each build, then the three re-timed together.

    .venv/bin/python bench/bench_auto.py [--runs 200] [--cases mnist_cnn,mnist_resnet,spread,prelu,hard_swish]

For every case it prints the build's candidate table (size, host p50, fidelity, XNNPACK pieces, verdict)
and then re-times float32, plain int8 and the auto choice in interleaved rounds, at 1 and 2 threads,
with the ratios auto/float32 and auto/int8. Host figures only: no target claims.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from compiler import variants  # noqa: E402
from compiler.candidates import interleaved_latency  # noqa: E402
from compiler.graph import detect_format  # noqa: E402
from compiler.graph import keras as keras_graph  # noqa: E402
from compiler.measure import open_model  # noqa: E402
from compiler.recipe import Recipe  # noqa: E402
from compiler.stages import load_datasets  # noqa: E402
from compiler.tf_env import import_keras  # noqa: E402
from tests import synthetic  # noqa: E402

SAMPLES = ROOT / "sample_models"
CASES = ("mnist_cnn", "mnist_resnet", "spread", "prelu", "hard_swish")


def _sources(work: Path, names: list[str]) -> dict[str, dict]:
    keras = import_keras()
    sources = {}
    for name in names:
        if name.startswith("mnist"):
            sources[name] = {"model": SAMPLES / f"{name}.keras", "calib": SAMPLES / "mnist_calib.npz",
                             "eval": SAMPLES / "mnist_eval.npz"}
        else:
            model, x = synthetic.spread_bn(keras) if name == "spread" else synthetic.activation(keras, name)
            sources[name] = synthetic.write(model, x, work / name, name)
            sources[name].pop("eval")  # unlabelled: the fidelity floor decides
    return sources


def _table(selection: variants.Selection) -> None:
    print(f"  {'variant':22}{'bytes':>9}{'p50 ms':>9}{'SQNR dB':>9}{'top-1':>7}{'acc %':>7}{'pieces':>7}  verdict")
    for row in selection.rows:
        sqnr = "inf" if row.sqnr_db is None else f"{row.sqnr_db:.1f}"
        accuracy = "-" if row.accuracy is None else f"{row.accuracy:.1f}"
        agreement = "-" if row.agreement is None else f"{row.agreement:.3f}"
        verdict = selection.choice.verdicts.get(row.name, "baseline")
        print(f"  {row.name:22}{row.bytes:>9,}{row.p50_ms:>9.3f}{sqnr:>9}{agreement:>7}{accuracy:>7}"
              f"{row.pieces if row.pieces is not None else '-':>7}  {verdict}")


def _retime(selection: variants.Selection, data, runs: int) -> None:
    chosen = selection.choice.chosen.name
    picked = {"float32": "float32", "int8": "int8", f"auto={chosen}": chosen}
    for threads in (1, 2):
        models = {label: open_model("tflite", selection.models[name], threads) for label, name in picked.items()}
        p50 = {k: v["p50_ms"] for k, v in interleaved_latency(models, data.golden_set, runs // 7, 7).items()}
        auto = p50[f"auto={chosen}"]
        print(f"  re-timed, {threads} thread(s): float32 {p50['float32']:.4f} ms  int8 {p50['int8']:.4f} ms  "
              f"auto {auto:.4f} ms | int8/float32 {p50['int8'] / p50['float32']:.2f}  "
              f"auto/float32 {auto / p50['float32']:.2f}  auto/int8 {auto / p50['int8']:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=210, help="timed runs per model when re-timing (7 rounds)")
    parser.add_argument("--cases", default=",".join(CASES))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name, paths in _sources(work, args.cases.split(",")).items():
            recipe = Recipe(source=str(paths["model"]), calib=str(paths["calib"]), eval=str(paths.get("eval") or "")
                            or None, output=str(work / "unused"), bench_runs=50)
            graph = keras_graph.load(recipe.source, detect_format(recipe.source), work / f"{name}_src")
            data = load_datasets(recipe, graph.inputs)
            threads = 2
            selection = variants.select(graph, [variants.FormatPlan("tflite")], recipe, data, threads,
                                        work / f"{name}_work")
            rows = {r.name: r for r in selection.rows}
            print(f"\n== {name}: {graph.params:,} params; candidates timed in one build at {threads} threads; "
                  f"accurate enough = {selection.artifacts.choice['criterion']}")
            _table(selection)
            chosen = selection.choice.chosen
            print(f"  auto chose {chosen.name}: SQNR {chosen.sqnr_db} dB vs plain int8 {rows['int8'].sqnr_db} dB; "
                  f"top-1 agreement {chosen.agreement} vs {rows['int8'].agreement}")
            _retime(selection, data, args.runs)


if __name__ == "__main__":
    main()
