"""Targets are data: every shipped file loads; bad files and impossible targets are refused clearly."""

from __future__ import annotations

import pytest

from edgekiln import targets
from edgekiln.compiler.device import compat
from edgekiln.compiler.errors import TargetError


def test_shipped_targets_load_with_real_facts():
    names = targets.names()
    assert {"rpi-zero-2w", "rpi3", "rpi4", "rpi5", "generic-aarch64", "x86-64"} <= set(names)
    for name in names:
        t = targets.load(name)
        assert t.name == name and t.cores >= 1 and 0 < t.ram_budget_mb < t.ram_mb
        assert "==" in t.tflite_interpreter and t.sources


def test_target_is_frozen():
    t = targets.load("rpi4")
    with pytest.raises(AttributeError):
        t.cores = 8  # type: ignore[misc]


def test_unknown_target_lists_known_ones():
    with pytest.raises(targets.TargetFileError, match="unknown target 'rpi9'; known targets: .*rpi4"):
        targets.load("rpi9")


def test_unknown_key_in_target_file_is_an_error(tmp_path):
    text = (targets._HERE / "rpi4.toml").read_text() + '\nturbo = true\n'
    path = tmp_path / "mine.toml"
    path.write_text(text)
    with pytest.raises(targets.TargetFileError, match="unknown keys: turbo"):
        targets.load(str(path))


def test_wrong_type_in_target_file_is_an_error(tmp_path):
    text = (targets._HERE / "rpi4.toml").read_text().replace("cores = 4", 'cores = "four"')
    path = tmp_path / "mine.toml"
    path.write_text(text)
    with pytest.raises(targets.TargetFileError, match="'cores' must be int"):
        targets.load(str(path))


@pytest.mark.parametrize(("edit", "message"), [
    (("stall = 2.", "stall = -2."), "emulated clock_ghz, stall and cycles must be positive numbers"),
    (("cycles = {", "cycles_table = {"), r"\[emulated\] must be a table with a cycles table"),
    (("clock_ghz = 1.5", "clock_ghz = 1.5\nturbo = 1"), "bad \\[emulated\\] table: .*turbo"),
])
def test_a_bad_emulated_table_is_refused_in_one_line(tmp_path, edit, message):
    text = (targets._HERE / "rpi4.toml").read_text()
    assert edit[0] in text
    path = tmp_path / "mine.toml"
    path.write_text(text.replace(edit[0], edit[1], 1))
    with pytest.raises(targets.TargetFileError, match=message):
        targets.load(str(path))


def test_every_anchored_aarch64_board_states_its_emulated_core_clock_and_assumed_costs():
    for name, core, clock in (("rpi4", "Cortex-A72", 1.5), ("rpi3", "Cortex-A53", 1.4), ("rpi5", "Cortex-A76", 2.4),
                              ("rpi-zero-2w", "Cortex-A53", 1.0)):
        costs = targets.load(name).emulated
        assert costs is not None and (costs.core, costs.clock_ghz) == (core, clock)
        assert costs.cycles_basis.startswith("assumed") and costs.stall > 0


@pytest.mark.parametrize("name", ["rpi4", "rpi5", "rpi-zero-2w", "x86-64"])
def test_wheels_exist_for_the_pi_targets(name):
    assert compat.wheel_problem(targets.load(name), "tflite") is None
    compat.check_wheels(targets.load(name), "tflite")  # and so the check passes


def test_no_wheel_for_python_36_is_refused():
    with pytest.raises(TargetError, match=r"ai-edge-litert==2.3.0 has no wheel for aarch64 / Python 3.6"):
        compat.check_wheels(targets.load("jetson-nano"), "tflite")


def test_memory_budget_is_enforced():
    zero = targets.load("rpi-zero-2w")
    assert compat.check_memory(zero, 1 << 20, 1 << 20) < zero.ram_budget_mb
    with pytest.raises(TargetError, match="budget of 256 MB"):
        compat.check_memory(zero, 300 << 20, 1 << 20)


def test_requirements_pin_numpy_and_interpreter():
    rpi4 = targets.load("rpi4")
    assert compat.base_pins(rpi4, "tflite") == ["numpy==2.4.6", "ai-edge-litert==2.3.0"]
    locked = compat.requirements(rpi4, "tflite")  # the set an emulated validation passed with
    assert {"numpy==2.4.6", "ai-edge-litert==2.3.0"} <= set(locked) and all("==" in pin for pin in locked)
