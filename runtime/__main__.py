"""`python -m runtime info | validate | bench | profile | embed "text" ... | race` from a bundle (or --bundle DIR).

Exit codes: 0 success, 1 failure (checksum, mismatch, unreadable bundle), 2 usage.
"""

from __future__ import annotations

import argparse
import platform
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from . import BundleError, BundleModel, jsonsafe, load


def _default_bundle() -> Path:
    """The bundle this runtime ships in, else the working directory."""
    here = Path(__file__).resolve().parent.parent
    return here if (here / "manifest.json").is_file() else Path.cwd()


def _count(low: int) -> Callable[[str], int]:
    """An argparse type: a whole number >= low (a usage error, exit 2, otherwise)."""
    def whole_number(text: str) -> int:
        value = int(text)
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
        return value

    return whole_number


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m runtime", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["info", "validate", "bench", "profile", "embed"])
    parser.add_argument("sentences", nargs="*", help="embed: the sentences (a bundle built from text)")
    parser.add_argument("--bundle", type=Path, default=None, help="bundle directory (default: this bundle)")
    parser.add_argument("--threads", type=_count(1), default=None, help="interpreter threads (default: target's)")
    parser.add_argument("--runs", type=_count(1), default=100, help="timed runs for bench")
    parser.add_argument("--warmup", type=_count(0), default=10, help="untimed runs before timing")
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")
    return parser


def _info(model: BundleModel, as_json: bool) -> int:
    m = model.manifest
    facts = {"model": m["model"]["file"], "format": m["model"]["format"], "sha256": m["model"]["sha256"],
             "bytes": m["model"]["bytes"], "target": m["target"]["name"],
             "quantization": (m.get("quantization") or {}).get("mode", "none"),
             "interpreter": f"{model.backend.name} {model.backend.version}",
             "inputs": [i.to_dict() for i in model.inputs], "outputs": [o.to_dict() for o in model.outputs]}
    if model.layouts:  # predict() takes the source layout; the interpreter sees the compiled one
        facts["layouts"] = {name: f"{v['source']} -> {v['compiled']}" for name, v in model.layouts.items()}
    print(jsonsafe.dumps(facts, indent=2) if as_json else "\n".join(f"{k:13s} {v}" for k, v in facts.items()))
    return 0


def _validate(model: BundleModel, as_json: bool) -> int:
    report = model.validate()
    if as_json:
        where = {"interpreter": f"{model.backend.name} {model.backend.version}", "machine": platform.machine(),
                 "python": platform.python_version(), "numpy": np.__version__}
        print(jsonsafe.dumps({**report.to_dict(), **where}, indent=2))
    else:
        for s in report.samples:
            print(f"sample {s.index}: {'PASS' if s.passed else 'FAIL'}  max |diff| {s.max_abs_diff:.3g}")
        verdict = "PASS" if report.passed else "FAIL"
        print(f"{verdict}: {sum(s.passed for s in report.samples)}/{len(report.samples)} golden samples match "
              f"(atol {report.atol:g}, rtol {report.rtol:g}; checksum ok; {model.backend.name} "
              f"{model.backend.version}, {platform.machine()})")
    return 0 if report.passed else 1


def _bench(model: BundleModel, runs: int, warmup: int, as_json: bool) -> int:
    result = model.benchmark(runs=runs, warmup=warmup)
    result.update(machine=platform.machine(), python=platform.python_version())
    if as_json:
        print(jsonsafe.dumps(result, indent=2))
        return 0
    print(f"{result['runtime']} {result['runtime_version']} on {result['machine']}, {result['threads']} threads")
    print(f"init {result['init_ms']:.1f} ms   first inference {result['first_ms']:.2f} ms")
    print(f"p50 {result['p50_ms']:.3f} ms   p90 {result['p90_ms']:.3f} ms   p99 {result['p99_ms']:.3f} ms"
          f"   ({result['runs']} runs)")
    print(f"peak memory {result['peak_rss_mb']:.1f} MB")
    return 0


def _profile(model: BundleModel, as_json: bool) -> int:
    result = dict(model.profile(), machine=platform.machine(), python=platform.python_version())
    print(jsonsafe.dumps(result, indent=2) if as_json else f"{result['method']}: sum of ops {result['sum_ms']:.3f} "
          f"ms, whole {result['total_ms']:.3f} ms ({result['threads']} threads, {result['machine']})")
    for op in [] if as_json else sorted(result["ops"], key=lambda o: -o["ms"]):
        print(f"{op['ms']:9.4f} ms {op['share']:6.1%}  {op['op']:18s} {op['name'][:60]}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["race"]:  # model files, no bundle: the candidates of a build, timed on the device
        from . import race
        return race.main(argv[1:])
    args = _parser().parse_args(argv)
    try:
        model = load(args.bundle or _default_bundle(), threads=args.threads)
        if args.command == "info":
            return _info(model, args.json)
        if args.command == "validate":
            return _validate(model, args.json)
        if args.command == "embed":
            vectors = model.embed(args.sentences) if args.sentences else np.zeros((0, 0), np.float32)
            print(jsonsafe.dumps([[round(float(v), 6) for v in row] for row in vectors]))
            return 0
        return _profile(model, args.json) if args.command == "profile" else \
            _bench(model, args.runs, args.warmup, args.json)
    except (BundleError, OSError, ValueError, KeyError, TypeError, ImportError) as exc:  # one line, no traceback
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
