"""--quantize auto against float32 and plain int8, side by side in one run, on the sample models and the
synthetic failure cases: the candidate table of each build, then the choice re-timed with its yardsticks.

    .venv/bin/python bench/bench_auto.py [--target rpi4] [--runs 210] [--cases mnist_cnn,spread,...]

Each case goes through the same candidate search `edgekiln build` runs by default for the target: every
format the target runs (TFLite and ONNX for rpi4) in one table. It prints that table (size, host p50, the
target's estimate side by side, fidelity, XNNPACK pieces, verdict), the variant the rule ships for the
target (on its evidence: the estimate when this host's arch differs) and for x86-64 (host timing, over the
same table), then re-times the fastest float32, each format's plain int8 and the auto choice in
interleaved rounds at 1 and 2 threads, with the ratios auto/float32 and auto/int8 (plain int8 of the
chosen format). Host timings are measured; the target column is the cost model's estimate.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edgekiln.compiler.data import load_datasets  # noqa: E402
from edgekiln.compiler.evaluate.criterion import Criterion  # noqa: E402
from edgekiln.compiler.evaluate.quality import Quality  # noqa: E402
from edgekiln.compiler.evaluate.reference import Reference  # noqa: E402
from edgekiln.compiler.evaluate.runner import open_model  # noqa: E402
from edgekiln.compiler.evaluate.timing import interleaved_latency  # noqa: E402
from edgekiln.compiler.graph import detect_format, framework, load  # noqa: E402
from edgekiln.compiler.pipeline import Search, resolve_target  # noqa: E402
from edgekiln.compiler.recipe import Quantize, Recipe  # noqa: E402
from edgekiln.compiler.search import formats  # noqa: E402
from edgekiln.compiler.search.choose import Evidence, decide  # noqa: E402
from edgekiln.compiler.search.select import Selection  # noqa: E402
from edgekiln.compiler.tf_env import import_keras  # noqa: E402
from tests import synthetic  # noqa: E402

SAMPLES = ROOT / "sample_models"
CASES = ("mnist_cnn", "mnist_resnet", "mnist_resnet_nchw", "mnist_dwsep_nchw", "spread", "prelu", "hard_swish")


def _sources(work: Path, names: list[str]) -> dict[str, dict]:
    sources = {}
    for name in names:
        if name.endswith("_nchw"):
            sources[name] = {"model": SAMPLES / f"{name}.onnx", "calib": SAMPLES / "mnist_calib_nchw.npz",
                             "eval": SAMPLES / "mnist_eval_nchw.npz"}
        elif name.startswith("mnist"):
            sources[name] = {"model": SAMPLES / f"{name}.keras", "calib": SAMPLES / "mnist_calib.npz",
                             "eval": SAMPLES / "mnist_eval.npz"}
        else:
            keras = import_keras()
            model, x = synthetic.spread_bn(keras) if name == "spread" else synthetic.activation(keras, name)
            sources[name] = synthetic.write(model, x, work / name, name)
            sources[name].pop("eval")  # unlabelled: the fidelity floor decides
    return sources


def _table(selection: Selection, target: str) -> None:
    print(f"  {'variant':26}{'bytes':>9}{'host p50':>9}{target + ' est':>10}{'SQNR dB':>9}{'top-1':>7}{'acc %':>7}"
          f"{'pieces':>7}  verdict")
    for row in selection.table:
        q, t = row.judged, row.timings
        sqnr = "inf" if q.sqnr_db is None else f"{q.sqnr_db:.1f}"
        accuracy = "-" if q.accuracy is None else f"{q.accuracy:.1f}"
        agreement = "-" if q.agreement is None else f"{q.agreement:.3f}"
        verdict = row.verdict.text if row.verdict else "chosen"
        p50 = "-" if t.host_p50_ms is None else f"{t.host_p50_ms:.3f}"
        estimate = "-" if t.estimate_ms is None else f"{t.estimate_ms:.3f}"
        print(f"  {row.name:26}{row.bytes:>9,}{p50:>9}{estimate:>10}{sqnr:>9}{agreement:>7}{accuracy:>7}"
              f"{row.pieces if row.pieces is not None else '-':>7}  {verdict}")
        if q.kinds:
            print(f"  {'':26}judged as {'/'.join(q.kinds)} on {q.samples} samples{_evidence(q)}")


def _evidence(q: Quality) -> str:
    """The judged figures with their 95 % intervals, as the rule reads them."""
    parts = [] if q.flips is None else [f"flips {q.flips}"]
    for figure, value in (("agreement", q.agreement), ("cosine_mean", q.cosine_mean), ("cosine_p5", q.cosine_p5),
                          ("values_sqnr_db", q.values_sqnr_db)):
        interval = q.interval(figure)
        if value is not None and interval is not None:
            parts.append(f"{figure} {value:.4g} [{interval[0]:.4g}, {interval[1]:.4g}]")
    weak = Criterion(by_kind=True).weak(q)
    return (": " + ", ".join(parts) if parts else "") + (f"; {weak}" if weak else "")


def _choices(selection: Selection, target: str) -> None:
    """The variant shipped for the target (its evidence) and for x86-64 (host timing, same table)."""
    q = selection.block
    evidence = q["evidence"]
    host = evidence.get("host_would_choose")
    print(f"  chosen for --target {target}: {q['variant']} (by the {evidence['label']}"
          + (f"; host timing would have chosen {host})" if host and host != q["variant"] else ")"))
    verdicts = {row["name"]: row["verdict"] for row in q["candidates"]}
    competing = [r for r in selection.table if not verdicts[r.name].startswith(("baseline (not", "not eligible"))]
    budget = re.match(r"accuracy drop <= ([0-9.]+) points", q["criterion"])
    criterion = Criterion(max_drop=float(budget.group(1)) if budget else None, by_kind=True)
    yardstick = next(r for r in selection.table if r.name == q["yardstick"])
    on_host = decide(competing, criterion, yardstick if yardstick.timings.host_p50_ms is not None else None,
                     Evidence("host", "x86-64"))
    print(f"  chosen for --target x86-64 (same table, host timing): {on_host.chosen.name}")


def _names(selection: Selection) -> dict[str, str]:
    """label -> row name of what is re-timed: the fastest float32, each format's plain int8, the choice."""
    rows = {r.name: r for r in selection.table}
    floats = [r for r in selection.table if r.variant.quantize is Quantize.none]
    picked = {"float32": min(floats, key=lambda r: r.timings.host_p50_ms or 0.0).name}
    picked.update({f"int8[{r.format}]": r.name for r in selection.table if r.name.split(":")[-1] == "int8"})
    picked["auto"] = selection.block["variant"]
    assert all(name in rows for name in picked.values())
    return picked


def _retime(selection: Selection, data, runs: int) -> None:
    picked = _names(selection)
    table = {c.name: c for c in selection.table}
    own_int8 = f"int8[{table[picked['auto']].format}]"
    for threads in (1, 2):
        models = {label: open_model(table[name].format, table[name].timed_as or table[name].model or b"", threads,
                                    table[name].layouts) for label, name in picked.items()}
        p50 = {k: v["p50_ms"] for k, v in interleaved_latency(models, data.golden_set, runs // 7, 7).items()}
        shown = "  ".join(f"{label} {p50[label]:.4f}" for label in picked)
        ratio = f"  auto/{own_int8} {p50['auto'] / p50[own_int8]:.2f}" if own_int8 in p50 else ""
        print(f"  re-timed, {threads} thread(s), ms: {shown} | auto/float32 {p50['auto'] / p50['float32']:.2f}{ratio}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=210, help="timed runs per model when re-timing (7 rounds)")
    parser.add_argument("--target", default="rpi4")
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--unlabelled", action="store_true",
                        help="no --eval for the sample models either: every case judged by the fidelity floors")
    parser.add_argument("--calib-samples", type=int, default=None,
                        help="at most this many calibration samples (the held-back ones come from them)")
    args = parser.parse_args()
    target = resolve_target(args.target)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name, paths in _sources(work, args.cases.split(",")).items():
            labels = None if args.unlabelled else str(paths.get("eval") or "") or None
            recipe = Recipe(source=str(paths["model"]), target=args.target, calib=str(paths["calib"]), eval=labels,
                            output=str(work / "unused"), bench_runs=50,
                            **({"calib_samples": args.calib_samples} if args.calib_samples else {}))
            source_format = detect_format(recipe.source)
            (work / f"{name}_src").mkdir()
            graph = load(recipe.source, source_format, work / f"{name}_src", batch=1)
            data = load_datasets(recipe, graph.inputs)
            search = Search(framework(source_format), recipe.replace(threads=2), target, data, work, Reference(graph))
            (work / f"{name}_work").mkdir()
            selection = search(graph, formats.resolve(recipe, target).build, work / f"{name}_work")
            rows = {r.name: r for r in selection.table}
            print(f"\n== {name}: {graph.params:,} params; {args.target}; candidates timed in one build at 2 "
                  f"threads; accurate enough = {selection.block['criterion']}")
            _table(selection, args.target)
            _choices(selection, args.target)
            chosen = next(r for r in selection.table if r.name == selection.block["variant"])
            plain = rows.get(f"{chosen.format}:int8") or rows.get("int8")
            if plain is not None:
                print(f"  auto chose {chosen.name}: SQNR {chosen.judged.sqnr_db} dB vs its format's plain int8 "
                      f"{plain.judged.sqnr_db} dB; top-1 agreement {chosen.judged.agreement} vs "
                      f"{plain.judged.agreement}")
            _retime(selection, data, args.runs)


if __name__ == "__main__":
    main()
