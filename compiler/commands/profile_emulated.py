"""`edgekiln profile BUNDLE|MODEL --emulate rpi4`: where one warm invoke's executed instructions go.

Counted on the emulated board's core (compiler/emulate/witness.py): by instruction class and by
`library:function` (XNNPACK's microkernels by name). Executed instructions, not a timing.
"""

from __future__ import annotations

import json
from pathlib import Path

from edgekiln import runtime
from edgekiln.compiler import Progress
from edgekiln.compiler.console import console
from edgekiln.compiler.emulate.wheels import requirement_lines
from edgekiln.compiler.emulate.witness import CLASSES, Witness, witness
from edgekiln.compiler.errors import EdgekilnError

MODEL_SUFFIXES = (".tflite", ".onnx")


def run_emulated_profile(path: Path, target: str | None, top: int, json_out: Path | None,
                         progress: Progress = lambda stage: None) -> Witness:
    """Count a bundle's shipped model (its runtime, its requirements.txt) or a model file (this edgekiln's
    runtime, the target's pins) on the emulated target; print the tables, write --json."""
    if (path / "manifest.json").is_file():
        manifest = json.loads((path / "manifest.json").read_text())
        result = witness(path / manifest["model"]["file"], target or manifest["target"]["name"], path / "runtime",
                         requirement_lines(path / "requirements.txt"), progress)
    elif path.is_file() and path.suffix in MODEL_SUFFIXES:
        result = witness(path, target or "rpi4", Path(runtime.__file__).parent, None, progress)
    else:
        raise EdgekilnError(f"{path} is neither a bundle nor a .tflite / .onnx file",
                            "profile --emulate counts a compiled model: pass a bundle or a .tflite / .onnx file")
    print_witness(result, top)
    if json_out is not None:
        json_out.write_text(json.dumps(result.to_dict(), indent=2) + "\n")
        console.print(f"instruction counts written to {json_out}", markup=False)
    return result


def say(line: str) -> None:
    console.print(line, markup=False, highlight=False)


def print_witness(result: Witness, top: int) -> None:
    """The class split and the top functions, each with its share of the invoke."""
    total = max(result.total, 1)
    say(f"{result.model} on an emulated {result.target} ({result.core}, {result.runtime}, 1 thread): "
        f"{result.total:,} instructions in one warm invoke ({result.label})")
    say("  ".join(f"{c} {n:,} ({n / total:.1%})" for c, n in result.counts.by_class.items()))
    say(f"{'instructions':>13} {'share':>6}  {'int mac':>9} {'float':>9}  function")
    ranked = sorted(result.counts.by_symbol.items(), key=lambda kv: -sum(kv[1].values()))
    for name, counts in ranked[:top]:
        n = sum(counts.values())
        say(f"{n:>13,} {n / total:>6.1%}  {counts[CLASSES[0]]:>9,} {counts[CLASSES[1]]:>9,}  {name}")
