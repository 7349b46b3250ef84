"""Structured pruning trade-off, side by side in one run: prune ratio 0, 0.25, 0.5 and auto, all int8,
recovered on the calibration samples alone and (--train) on the samples' 3,700-image training split.

    .venv/bin/python bench/bench_prune.py [--model sample_models/mnist_resnet.keras] [--runs 500] [--skip-onnx]
        [--train] [--wide 3]

--wide K trains a residual net K times as wide as the sample ResNet (as users' models are) on the training
split first (make_samples.py's recipe, fewer epochs) and prunes that. --train adds the rows recovered by
fine-tuning on the training split (`build --train`).

Each row is a full `edgekiln build` (int8, rpi4 recipe, default recovery) of the same source model;
accuracy is the compiled int8 bundle's on the labelled evaluation set, and its drop is against the
FLOAT SOURCE model, so it includes pruning and quantization. Latencies of the four bundles are
measured afterwards in one process, the models alternating round by round so that drift of a
shared host hits all alike. The second part prunes an ONNX export of the same model (tf2onnx) at
0.3 and recovers it by least-squares reconstruction only, through onnxruntime, with no training.
Host figures only: no target claims.
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

from bench.bench_int8 import interleaved  # noqa: E402
from edgekiln.compiler.pipeline import build  # noqa: E402
from edgekiln.compiler.recipe import Recipe  # noqa: E402
from edgekiln.runtime import Model  # noqa: E402
from edgekiln.runtime.model import quantize  # noqa: E402

SAMPLES = ROOT / "sample_models"


def _build_all(model: str, work: Path, train: str | None, settings: tuple) -> dict:
    """One int8 bundle per pruning setting (and with --train): (manifest, model bytes, build seconds)."""
    results = {}
    runs = [(s, None) for s in settings] + ([(s, train) for s in settings if s != 0.0] if train else [])
    for setting, data in runs:
        name = f"{setting}+train" if data else setting
        recipe = Recipe(source=model, target="rpi4", quantize="int8", calib=str(SAMPLES / "mnist_calib.npz"),
                        eval=str(SAMPLES / "mnist_eval.npz"), output=str(work / f"b_{name}"), prune=setting,
                        max_drop=1.0, bench_runs=50, train=data)
        start = time.perf_counter()
        manifest = build(recipe).manifest
        results[name] = (manifest, (work / f"b_{name}" / "model.tflite").read_bytes(), time.perf_counter() - start)
        print(f"  built prune={name} in {results[name][2]:.0f} s", flush=True)
    return results


def _training_split(work: Path) -> str:
    """The sample models' training split (make_samples.py, same seed) as train.npz."""
    sys.path.insert(0, str(SAMPLES))
    import make_samples

    x, y = make_samples.load_splits(np.random.default_rng(make_samples.SEED))["train"]
    np.savez(work / "train.npz", x=x, y=y)
    return str(work / "train.npz")


def _wide_resnet(work: Path, width: int, epochs: int = 6) -> str:
    """A residual net `width` times the sample ResNet's channels, trained on the training split."""
    sys.path.insert(0, str(SAMPLES))
    import make_samples

    from edgekiln.compiler.tf_env import import_keras

    keras = import_keras()
    from keras import layers

    keras.utils.set_random_seed(make_samples.SEED)
    inp = keras.Input(shape=(28, 28, 1), name="image")
    x = layers.MaxPooling2D(2)(make_samples.conv_bn_relu(inp, 32 * width))
    for filters, strides in ((32, 1), (64, 2), (96, 1)):
        x = make_samples.residual_block(x, filters * width, strides=strides)
    out = layers.Dense(10, activation="softmax", name="probs")(layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inp, out, name=f"mnist_resnet_x{width}")
    rng = np.random.default_rng(make_samples.SEED)
    splits = make_samples.load_splits(rng)
    make_samples.EPOCHS = epochs
    start = time.perf_counter()
    make_samples.train(model, *splits["train"], rng)
    final = make_samples.inference_copy(model)
    path = work / f"mnist_resnet_x{width}.keras"
    final.save(path)
    print(f"trained {path.name}: {final.count_params():,} params, eval accuracy "
          f"{make_samples.accuracy(final, *splits['eval']):.4f} ({time.perf_counter() - start:.0f} s)", flush=True)
    return str(path)


def _print_table(results: dict, p50: dict[int, dict]) -> None:
    base_manifest, base_bytes, _ = results[0.0]
    lat0 = {t: lat[0.0] for t, lat in p50.items()}
    base_macs = base_manifest["model"]["macs"]
    print(f"\n{'prune':>12} {'MACs':>11} {'MACs x':>7} {'bundle B':>9} {'size x':>7} "
          + "".join(f"{f'p50 {t}t ms':>11} {'x':>6} " for t in p50)
          + f"{'acc %':>7} {'drop pt':>8} {'95% interval':>15} {'before rec.':>11} {'recovery':>17} {'pruning s':>9}")
    for setting, (m, model_bytes, _) in results.items():
        p = m["pruning"]
        rec = p["recovery"]
        recovery = f"{rec['method']} {rec.get('seconds', 0):.0f} s" if rec["method"] != "none" else "-"
        recovery += "" if rec.get("used", True) else " (refused)"
        paired = p["accuracy"].get("paired") or {}
        interval = "[{:+.2f}, {:+.2f}]".format(*paired["interval"]) if paired else "-"
        row = (f"{setting!s:>12} {m['model']['macs']:>11,} {m['model']['macs'] / base_macs:>7.3f} "
               f"{len(model_bytes):>9,} {len(model_bytes) / len(base_bytes):>7.3f} ")
        row += "".join(f"{lat[setting]:>11.4f} {lat[setting] / lat0[t]:>6.3f} " for t, lat in p50.items())
        row += (f"{m['accuracy']['compiled']:>7.2f} {m['accuracy']['drop']:>8.2f} {interval:>15} "
                f"{p['accuracy']['before_recovery']:>11.2f} {recovery:>17} {p['seconds']:>9.0f}")
        print(row)
    print(f"float source accuracy {base_manifest['accuracy']['reference']:.2f}% on "
          f"{base_manifest['accuracy']['samples']} labelled samples; x = ratio to the unpruned (prune 0) int8 bundle; "
          "'before rec.' = pruned float model before recovery; recovery = the chosen model's, pruning s = the whole "
          "stage (auto: scan + probes)")


def _print_search(name: str, block: dict) -> None:
    """The auto search's probes (MACs, paired drop, its upper bound, the recovery's before / after) and split."""
    search = block["search"]
    print(f"\n{name}: {len(search['trials'])} recovered probes under a pruning budget of {search['budget']} pt "
          f"({search['stopped']})")
    for t in search["trials"]:
        rec = t.get("recovery", {})
        print(f"  {t['macs_after']:>12,} MACs  drop {t['drop']:+.2f}  upper {t.get('upper_bound', float('nan')):+.2f}"
              f"  {'within' if t['within_budget'] else 'over'}  recovery {rec.get('score_before', '?')} -> "
              f"{rec.get('score_after', '?')}{'' if rec.get('used', True) else ' (refused)'}")
    print("  chosen channels: " + ", ".join(f"{'+'.join(g['layers'])} {g['channels_before']}->{g['channels_after']}"
                                            for g in block["groups"]))
    split = block.get("budget_split")
    if split:
        print(f"  budget split: pruning {split['pruning_drop']:+.2f}, quantization {split['quantization_drop']:+.2f}, "
              f"unused {split['unused']:g} of {split['max_drop']:g} pt")


def _latencies(results: dict, runs: int) -> dict[int, dict]:
    x = np.load(SAMPLES / "mnist_eval.npz")["x"][:1]
    table = {}
    for threads in (1, 2):
        models = {s: Model("tflite", r[1], threads) for s, r in results.items()}
        feeds = {s: [quantize(x, m.inputs[0])] for s, m in models.items()}
        table[threads] = interleaved(models, feeds, runs)
    return table


def _onnx_part(model_path: str, work: Path) -> None:
    """ONNX export of the model, pruned 0.3, reconstructed (no training), accuracy before/after."""
    import onnx

    from edgekiln.compiler.data import Datasets
    from edgekiln.compiler.graph import onnx_recover
    from edgekiln.compiler.model_inputs import Dataset
    from edgekiln.compiler.pruning_stage import prune_onnx
    from edgekiln.compiler.tf_env import import_keras, import_tf, quiet_fds

    keras, tf = import_keras(), import_tf()
    import tf2onnx

    source = keras.models.load_model(model_path, compile=False)
    spec = (tf.TensorSpec((None, *source.inputs[0].shape[1:]), tf.float32, name="image"),)
    with quiet_fds():
        proto, _ = tf2onnx.convert.from_keras(source, input_signature=spec, opset=17)
    onnx.save(proto, work / "model.onnx")
    calib = np.load(SAMPLES / "mnist_calib.npz")["x"].astype(np.float32)
    with np.load(SAMPLES / "mnist_eval.npz") as ev:
        x, y = ev["x"].astype(np.float32), ev["y"]
    data = Datasets(Dataset({"image": calib}, None, "calib"), Dataset({"image": x}, y, "eval"))
    unpruned = float(np.mean(onnx_recover.run(proto, x)[0].argmax(1) == y) * 100)
    pruned, block = prune_onnx(proto, Recipe(source="model.onnx", quantize="none", prune=0.3), data, lambda s: None)
    after = float(np.mean(onnx_recover.run(pruned, x)[0].argmax(1) == y) * 100)
    acc, rec = block["accuracy"], block["recovery"]
    print(f"\nONNX (tf2onnx export of {Path(model_path).name}), prune 0.3, recovery {rec['method']} "
          f"({rec['steps'][0]['layers']} layers re-fitted in {rec['seconds']:.1f} s, no training):")
    print(f"  float accuracy on {acc['samples']} samples: unpruned {unpruned:.2f}%  pruned before reconstruction "
          f"{acc['before_recovery']:.2f}%  after {after:.2f}%  (drop {unpruned - after:+.2f} pt)")
    print(f"  params {block['params_before']:,} -> {block['params_after']:,}   MACs {block['macs_before']:,} -> "
          f"{block['macs_after']:,} ({block['macs_ratio']:.3f}x)   model bytes {len(proto.SerializeToString()):,} -> "
          f"{len(pruned.SerializeToString()):,}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(SAMPLES / "mnist_resnet.keras"))
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--skip-onnx", action="store_true")
    parser.add_argument("--train", action="store_true", help="also recover on the training split (--train)")
    parser.add_argument("--wide", type=int, default=0, help="prune a K-times wider ResNet trained first")
    parser.add_argument("--settings", default="0,0.25,0.5,auto", help="prune settings (0 is always built)")
    args = parser.parse_args()
    settings = tuple(dict.fromkeys((0.0, *(s if s == "auto" else float(s) for s in args.settings.split(",")))))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model = _wide_resnet(work, args.wide) if args.wide else args.model
        train = _training_split(work) if args.train else None
        print(f"building {Path(model).name} at prune {', '.join(map(str, settings))} (int8, rpi4)"
              f"{', and with --train' if train else ''}", flush=True)
        results = _build_all(model, work, train, settings)
        _print_table(results, _latencies(results, args.runs))
        for name in ("auto", "auto+train"):
            if name in results:
                _print_search(name, results[name][0]["pruning"])
        if not args.skip_onnx:
            _onnx_part(model, work)


if __name__ == "__main__":
    main()
