"""Every `python -m runtime` command works on every target the project ships a lock for, or says in one line
what to install: the modules each command imports (read from runtime/ with ast) against what each lock of
targets/locks.toml installs."""

from __future__ import annotations

import ast
import hashlib
import io
import json
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import ROOT

COMMANDS = ("info", "validate", "bench", "race", "profile")
INTERPRETERS = {"tflite": ("ai_edge_litert", "tflite_runtime", "tensorflow"), "onnx": ("onnxruntime",)}
# Modules only one command imports, for one format, and where: (command, format) -> modules
EXTRA = {("profile", "tflite"): {"flatbuffers", "ai_edge_litert"}}
EXTRA_AT = {"flatbuffers": "_tflite", "ai_edge_litert": "_tflite",  # runtime/profile.py's function importing them
            # a bundle that takes text (runtime/text.py): not in any lock; the bundle's own requirements.txt pins it
            # (compiler/text_bundle.TOKENIZERS_PIN), and without it every command says so in one line
            "tokenizers": "__init__"}
HINTED = {("profile", "tflite")}  # commands that print a one-line install hint when their extra modules are missing


def third_party_imports() -> dict[str, set[str]]:
    """Module -> the runtime functions that import it ("" at module level), for modules outside the stdlib."""
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / "runtime").glob("*.py")):
        tree = ast.parse(path.read_text())
        for function in [tree, *[n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)]]:
            name = "" if function is tree else function.name
            body = function.body if function is tree else list(ast.walk(function))
            for node in body:
                modules = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                    [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module else []
                for module in modules:
                    top = module.split(".")[0]
                    if top not in sys.stdlib_module_names and top != "__future__":
                        found.setdefault(top, set()).add(name)
    return found


def lock_modules(requirements: list[str]) -> set[str]:
    return {line.split("==")[0].strip().lower().replace("-", "_") for line in requirements}


def test_the_tables_name_every_module_the_runtime_imports():
    imports = third_party_imports()
    interpreters = {m for ms in INTERPRETERS.values() for m in ms}
    assert set(imports) == {"numpy"} | interpreters | set(EXTRA_AT), imports  # a new import: say which command
    assert "" in imports["numpy"]  # every command needs numpy
    for module, function in EXTRA_AT.items():
        assert function in imports[module], (module, imports[module])


@pytest.mark.parametrize("key", sorted(tomllib.loads((ROOT / "targets" / "locks.toml").read_text())))
def test_each_lock_installs_what_each_command_imports_or_the_command_hints(key: str):
    lock = tomllib.loads((ROOT / "targets" / "locks.toml").read_text())[key]
    installed = lock_modules(lock["requirements"])
    model_format = "onnx" if "onnxruntime" in key else "tflite"
    assert "numpy" in installed
    assert installed & set(INTERPRETERS[model_format]), f"{key}: no {model_format} interpreter"
    for command in COMMANDS:
        missing = EXTRA.get((command, model_format), set()) - installed
        assert not missing or (command, model_format) in HINTED, f"{key}: `{command}` imports {missing}"


def test_a_text_bundle_pins_the_tokenizers_it_imports_for_every_arch_with_a_wheel():
    from edgekiln.compiler.text_bundle import TOKENIZERS_PIN

    wheels = tomllib.loads((ROOT / "targets" / "wheels.toml").read_text())
    assert TOKENIZERS_PIN.startswith("tokenizers==") and TOKENIZERS_PIN in wheels, "wheels.toml: no tokenizers wheel"
    assert {"aarch64", "armv7l"} <= set(wheels[TOKENIZERS_PIN]["glibc"])  # the Pi arches a text bundle ships to
    text_source = (ROOT / "runtime" / "text.py").read_text()
    assert "install its requirements (the `tokenizers` package)" in text_source  # the one-line hint


def test_the_armv7l_lock_is_one_that_needs_the_hint():
    locks = tomllib.loads((ROOT / "targets" / "locks.toml").read_text())
    hinted = [k for k in locks if EXTRA[("profile", "tflite")] - lock_modules(locks[k]["requirements"])
              and "onnxruntime" not in k]
    assert [k for k in hinted if "armv7l" in k] == hinted and hinted  # only the 32-bit lock lacks the schema


def relu_tflite() -> bytes:
    """A one-op .tflite model (RELU on [1, 4] float32), written with LiteRT's schema: no TensorFlow."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as fb

    model, graph, code, op = fb.ModelT(), fb.SubGraphT(), fb.OperatorCodeT(), fb.OperatorT()
    code.builtinCode = code.deprecatedBuiltinCode = fb.BuiltinOperator.RELU
    tensors = []
    for k, name in enumerate((b"x", b"y")):
        tensor = fb.TensorT()
        tensor.shape, tensor.type, tensor.buffer, tensor.name = [1, 4], fb.TensorType.FLOAT32, k + 1, name
        tensors.append(tensor)
    op.opcodeIndex, op.inputs, op.outputs = 0, [0], [1]
    graph.tensors, graph.operators, graph.inputs, graph.outputs = tensors, [op], [0], [1]
    model.version, model.operatorCodes, model.subgraphs = 3, [code], [graph]
    model.buffers = [fb.BufferT() for _ in range(3)]
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def tflite_bundle(folder: Path) -> Path:
    model = relu_tflite()
    x = np.linspace(-1, 1, 4, dtype=np.float32).reshape(1, 4)
    buffer = io.BytesIO()
    np.savez(buffer, input_0=x, output_0=np.maximum(x, 0))
    (folder / "model.tflite").write_bytes(model)
    (folder / "golden.npz").write_bytes(buffer.getvalue())
    (folder / "manifest.json").write_text(json.dumps({
        "schema_version": 1, "model": {"file": "model.tflite", "format": "tflite",
                                       "sha256": hashlib.sha256(model).hexdigest(), "inputs": [], "outputs": []},
        "golden": {"file": "golden.npz", "samples": 1, "atol": 1e-6, "rtol": 1e-6},
        "target": {"name": "rpi3-armv7l", "default_threads": 1}}))
    shutil.copytree(ROOT / "runtime", folder / "runtime", ignore=shutil.ignore_patterns("__pycache__"))
    return folder


def run_profile(bundle: Path, hidden: tuple[str, ...]) -> subprocess.CompletedProcess:
    """`python -m runtime profile` in the bundle, with `hidden` modules uninstallable (as on a lock without
    them): the real runtime, the real interpreter."""
    hide = "".join(f"sys.modules[{m!r}] = None; " for m in hidden)
    code = f"import sys; {hide}from runtime.__main__ import main; sys.exit(main(['profile']))"
    return subprocess.run([sys.executable, "-c", code], cwd=bundle, capture_output=True, text=True, timeout=120)


def test_profile_works_where_the_schema_is_installed(tmp_path: Path):
    done = run_profile(tflite_bundle(tmp_path), ())
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("prefix-differences: sum of ops") and "RELU" in done.stdout


@pytest.mark.parametrize("hidden", [("flatbuffers",), ("ai_edge_litert.schema_py_generated",)])
def test_profile_without_the_schema_says_what_to_install_in_one_line(tmp_path: Path, hidden: tuple[str, ...]):
    done = run_profile(tflite_bundle(tmp_path), hidden)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.startswith("error: profiling a .tflite model needs ") and "pip install" in done.stderr
