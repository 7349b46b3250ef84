"""Build-time target checks: wheels (or apt) for the arch, op versions the interpreter loads, RAM, --force."""

from __future__ import annotations

import tomllib

import flatbuffers
import pytest
from ai_edge_litert import schema_py_generated as schema

from edgekiln import targets
from edgekiln.compiler.analyze.tflite_stats import opcode_versions
from edgekiln.compiler.device import compat
from edgekiln.compiler.errors import TargetError


def model_with_opcodes(*pairs: tuple[str, int]) -> bytes:
    """A .tflite flatbuffer whose operator-code table holds these (op, version) pairs."""
    model = schema.ModelT()
    model.version = 3
    model.operatorCodes = []
    for name, version in pairs:
        code = schema.OperatorCodeT()
        code.builtinCode = getattr(schema.BuiltinOperator, name)
        code.deprecatedBuiltinCode = min(code.builtinCode, 127)
        code.version = version
        model.operatorCodes.append(code)
    builder = flatbuffers.Builder(256)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def armv7l_target_pinning_litert(tmp_path):
    text = (targets._HERE / "rpi4.toml").read_text().replace('arch = "aarch64"', 'arch = "armv7l"')
    path = tmp_path / "pi32.toml"
    path.write_text(text.replace('name = "rpi4"', 'name = "pi32"'))
    return targets.load(str(path))


def test_opcode_versions_reads_the_operator_code_table():
    data = model_with_opcodes(("FULLY_CONNECTED", 12), ("CONV_2D", 3), ("CONV_2D", 3))
    assert opcode_versions(data) == [("CONV_2D", 3), ("FULLY_CONNECTED", 12)]


def test_tflite_runtime_214_refuses_fully_connected_v12_naming_op_and_alternatives():
    data = model_with_opcodes(("FULLY_CONNECTED", 12), ("CONV_2D", 3))
    with pytest.raises(TargetError) as err:
        compat.check_ops(targets.load("rpi3-armv7l"), "tflite", data)
    line = err.value.one_line()
    assert "tflite-runtime==2.14.0, the interpreter of rpi3-armv7l, cannot load this model" in line
    assert "FULLY_CONNECTED version 12 (it has up to 10)" in line and "CONV_2D" not in line
    assert "64-bit Raspberry Pi OS" in line and "--force" in line
    compat.check_ops(targets.load("rpi4"), "tflite", data)  # LiteRT 2.3.0 loads it


def test_an_op_the_interpreter_lacks_entirely_is_named():
    with pytest.raises(TargetError, match="STABLEHLO_ADD version 1 \\(absent\\)"):
        compat.check_ops(targets.load("rpi3-armv7l"), "tflite", model_with_opcodes(("STABLEHLO_ADD", 1)))


def test_armv7l_gets_tflite_runtime_with_numpy_from_apt():
    target = targets.load("rpi3-armv7l")
    compat.check_wheels(target, "tflite")
    lines = compat.requirements(target, "tflite")
    assert lines[0].startswith("numpy==1.24.2  # from apt: python3-numpy")
    assert "tflite-runtime==2.14.0" in lines


def test_armv7l_target_with_litert_is_refused_for_want_of_a_wheel(tmp_path):
    with pytest.raises(TargetError) as err:
        compat.check_wheels(armv7l_target_pinning_litert(tmp_path), "tflite")
    assert "ai-edge-litert==2.3.0 has no wheel for armv7l / Python 3.11" in err.value.one_line()
    assert "64-bit Raspberry Pi OS" in err.value.one_line()


def test_requirements_are_the_locked_set_validated_under_emulation():
    lines = compat.requirements(targets.load("rpi4"), "tflite")
    assert {"numpy==2.4.6", "ai-edge-litert==2.3.0"} <= set(lines)
    assert all("==" in line for line in lines) and len(lines) > 2  # the interpreter's dependencies too
    assert compat.base_pins(targets.load("rpi4"), "tflite") == ["numpy==2.4.6", "ai-edge-litert==2.3.0"]


def test_force_turns_a_refusal_into_a_note():
    zero = targets.load("rpi-zero-2w")
    notes: list[str] = []
    assert compat.enforce(lambda: compat.check_memory(zero, 300 << 20, 1 << 20), True, notes) is None
    assert notes and "--force" in notes[0] and "budget of 256 MB" in notes[0]
    with pytest.raises(TargetError, match="budget of 256 MB"):
        compat.enforce(lambda: compat.check_memory(zero, 300 << 20, 1 << 20), False, [])


def measured_bases() -> dict[str, float]:
    return tomllib.loads((targets._HERE / "runtime_memory.toml").read_text())["runtime_base_mb"]


def test_onnx_estimate_exceeds_tflite_by_exactly_the_difference_of_the_measured_bases():
    rpi4, bases = targets.load("rpi4"), measured_bases()
    tflite = compat.check_memory(rpi4, 3 << 20, 5 << 20, "tflite")
    onnx = compat.check_memory(rpi4, 3 << 20, 5 << 20, "onnx")
    assert bases["onnxruntime"] > bases["ai-edge-litert"]  # onnxruntime's process is the bigger one
    assert onnx - tflite == bases["onnxruntime"] - bases["ai-edge-litert"]
    assert tflite == bases["ai-edge-litert"] + 8  # base + 3 MB model + 5 MB activations
    assert compat.check_memory(rpi4, 3 << 20, 5 << 20) == tflite  # the old three-argument call is TFLite's


def test_tflite_runtime_targets_get_their_own_base():
    armv7l = targets.load("rpi3-armv7l")
    assert compat.runtime_base(armv7l, "tflite") == ("tflite-runtime==2.14.0", measured_bases()["tflite-runtime"])


def test_the_refusal_names_the_base_and_interpreter_it_used():
    zero = targets.load("rpi-zero-2w")
    base = measured_bases()["onnxruntime"]
    with pytest.raises(TargetError, match=f"runtime {base:.0f} MB with onnxruntime==1.32.0\\) but rpi-zero-2w"):
        compat.check_memory(zero, 250 << 20, 1 << 20, "onnx")


def test_manifest_basis_says_which_interpreter_and_base():
    assert compat.memory_basis(targets.load("rpi4"), "onnx") == {
        "runtime_base_mb": measured_bases()["onnxruntime"], "runtime_interpreter": "onnxruntime==1.32.0",
        "runtime_base_source": "targets/runtime_memory.toml"}


def test_an_unmeasured_interpreter_gets_the_largest_measured_base(tmp_path):
    text = (targets._HERE / "rpi4.toml").read_text().replace("onnxruntime==1.32.0", "onnxruntime-gpu==1.32.0")
    (tmp_path / "gpu.toml").write_text(text)
    target = targets.load(str(tmp_path / "gpu.toml"))
    largest = max(measured_bases().values())
    assert compat.runtime_base(target, "onnx") == ("onnxruntime-gpu==1.32.0", largest)
    assert compat.check_memory(target, 0, 0, "onnx") == largest
    assert "not measured for onnxruntime-gpu" in compat.memory_basis(target, "onnx")["runtime_base_source"]


def test_package_names_are_normalised_before_lookup():
    assert compat.package_name("Ai_Edge.LiteRT==2.3.0") == "ai-edge-litert"
    assert compat.package_name("tflite_runtime >= 2.14") == "tflite-runtime"


def test_onnx_rpi4_requirements_are_the_locked_set_with_transitive_pins():
    rpi4 = targets.load("rpi4")
    lock = tomllib.loads((targets._HERE / "locks.toml").read_text())[compat.lock_key(rpi4, "onnx")]
    lines = compat.requirements(rpi4, "onnx")
    assert lines == lock["requirements"] and "PASS" in lock["validated"]
    assert {"numpy==2.4.6", "onnxruntime==1.32.0"} < set(lines)  # the base pins, and more
    names = {compat.package_name(line) for line in lines}
    assert {"protobuf", "flatbuffers"} <= names and all("==" in line for line in lines)


def _contrib_model(op: str) -> bytes:
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    node = helper.make_node(op, ["x"], ["y"], domain="com.microsoft")
    graph = helper.make_graph([node], "g", [x], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                   helper.make_opsetid("com.microsoft", 1)]).SerializeToString()


def test_onnx_contrib_ops_the_targets_onnxruntime_lacks_are_refused_and_fused_ones_pass() -> None:
    """The fused candidates' com.microsoft ops are checked against the pinned onnxruntime's CPU kernels."""
    import onnxruntime

    rpi4 = targets.load("rpi4")
    assert rpi4.onnx_interpreter == f"onnxruntime=={onnxruntime.__version__}"  # the table was read from this one
    for op in ("Attention", "QAttention", "SkipLayerNormalization", "BiasGelu", "FastGelu", "EmbedLayerNormalization"):
        compat.check_ops(rpi4, "onnx", _contrib_model(op))
    with pytest.raises(TargetError, match="no CPU kernel for the com.microsoft op\\(s\\) NoSuchFusedOp"):
        compat.check_ops(rpi4, "onnx", _contrib_model("NoSuchFusedOp"))
