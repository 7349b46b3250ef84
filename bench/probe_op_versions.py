"""Measure which builtin op versions a TFLite interpreter package can load; write targets/op_versions.toml.

An interpreter resolves every entry of a model's operator-code table when it is created
(`Didn't find op for builtin opcode 'X' version 'V'`), used or not. So appending one extra
(op, version) entry to a tiny valid model and creating an interpreter from it tells, without
any guessing, whether that interpreter build registers that op at that version.

    python bench/probe_op_versions.py --python /tmp/tfl214/bin/python --pin tflite-runtime==2.14.0

`--python` is an interpreter of a (throwaway) venv with the package installed, e.g. on x86:
`python3.11 -m venv /tmp/tfl214 && /tmp/tfl214/bin/pip install tflite-runtime==2.14.0 'numpy<2'`.
The op registry is the same on every architecture of one release (one source file,
tensorflow/lite/kernels/register.cc), so an x86 wheel describes the armv7l one too.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

MAX_VERSION = 16  # the highest version any builtin op has reached is 13 (FULLY_CONNECTED, TF 2.21)
TABLE = Path(__file__).resolve().parent.parent / "targets" / "op_versions.toml"

# Runs inside the probed venv: which of the given model files can an interpreter be created from?
_CHECKER = """
import json, sys
try:
    from ai_edge_litert.interpreter import Interpreter
except ImportError:
    from tflite_runtime.interpreter import Interpreter
ok = []
for path in sys.argv[1:]:
    try:
        Interpreter(model_path=path)
        ok.append(path)
    except (ValueError, RuntimeError):
        pass
print(json.dumps(ok))
"""


def tiny_model() -> bytes:
    """A valid one-op float model (x + x) from TensorFlow's converter."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from edgekiln.compiler.tf_env import import_tf

    tf = import_tf()

    @tf.function(input_signature=[tf.TensorSpec([1, 4], tf.float32)])
    def double(x: object) -> object:
        return x + x

    converter = tf.lite.TFLiteConverter.from_concrete_functions([double.get_concrete_function()], double)
    return bytes(converter.convert())


def with_extra_opcode(base: bytes, code: int, version: int) -> bytes:
    """`base` with one unused operator-code entry (code, version) appended to its table."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(base), 0)
    extra = schema.OperatorCodeT()
    extra.builtinCode, extra.deprecatedBuiltinCode, extra.version = code, min(code, 127), version
    model.operatorCodes.append(extra)
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def probe(python: str, base: bytes) -> dict[str, int]:
    """op name -> highest version the interpreter of `python` loads (ops it lacks entirely are absent)."""
    from ai_edge_litert import schema_py_generated as schema

    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    with tempfile.TemporaryDirectory(prefix="edgekiln-probe-") as work:
        files = {}
        for code in sorted(names):
            for version in range(1, MAX_VERSION + 1):
                path = Path(work) / f"{code}_{version}.tflite"
                path.write_bytes(with_extra_opcode(base, code, version))
                files[str(path)] = (code, version)
        result = subprocess.run([python, "-c", _CHECKER, *files], capture_output=True, text=True, check=True)
        loaded = [files[p] for p in json.loads(result.stdout.splitlines()[-1])]
    highest: dict[str, int] = {}
    for code, version in loaded:
        highest[names[code]] = max(highest.get(names[code], 0), version)
    return highest


def write_table(pin: str, highest: dict[str, int], interpreter_version: str) -> None:
    """Replace `pin`'s section of targets/op_versions.toml, keeping the other sections."""
    existing = tomllib.loads(TABLE.read_text()) if TABLE.is_file() else {}
    existing[pin] = {"probed_with": interpreter_version, "max_version": dict(sorted(highest.items()))}
    lines = ["# Highest builtin op version each TFLite interpreter package loads, per op (absent op = not",
             "# registered at all). Measured, not copied: `python bench/probe_op_versions.py --python PY --pin PIN`",
             "# appends one (op, version) operator code to a tiny model and tries to create an interpreter.", ""]
    for section, data in sorted(existing.items()):
        lines += [f'["{section}"]', f'probed_with = "{data["probed_with"]}"', f'["{section}".max_version]']
        lines += [f"{op} = {version}" for op, version in data["max_version"].items()] + [""]
    TABLE.write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", required=True, help="python of a venv with the interpreter package")
    parser.add_argument("--pin", required=True, help="the package==version it has, e.g. tflite-runtime==2.14.0")
    args = parser.parse_args()
    base = tiny_model()
    highest = probe(args.python, base)
    where = "import platform; print(platform.machine(), platform.python_version())"
    version = subprocess.run([args.python, "-c", where], capture_output=True, text=True, check=True).stdout.strip()
    write_table(args.pin, highest, f"{args.pin} on {version}")
    print(f"{args.pin}: {len(highest)} builtin ops; written to {TABLE}")
    for op in ("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "MUL", "MEAN", "SOFTMAX"):
        print(f"  {op}: max version {highest.get(op, 'absent')}")


if __name__ == "__main__":
    main()
