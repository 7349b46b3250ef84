"""Build-time target checks: wheels (or apt) for the arch, op versions the interpreter loads, RAM, --force."""

from __future__ import annotations

import flatbuffers
import pytest
from ai_edge_litert import schema_py_generated as schema

import targets
from compiler import compat
from compiler.analyze import opcode_versions
from compiler.errors import TargetError


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
