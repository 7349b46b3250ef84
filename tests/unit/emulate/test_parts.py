"""The pieces of the emulated validation that need no qemu: wheel tags, cpuinfo, requirements, reports."""

from __future__ import annotations

import zipfile

import pytest

from edgekiln import targets
from edgekiln.compiler.emulate import platforms, wheels
from edgekiln.compiler.emulate.run import parse_report
from edgekiln.compiler.emulate.userland import Userland
from edgekiln.compiler.errors import EmulationError, ValidationError


def test_wheel_tags_list_every_manylinux_glibc_up_to_the_devices():
    tags = platforms.PLATFORMS["aarch64"].wheel_platforms("2.36")
    assert tags[0] == "manylinux_2_17_aarch64" and "manylinux_2_27_aarch64" in tags
    assert "manylinux_2_36_aarch64" in tags and "manylinux_2_37_aarch64" not in tags
    assert tags[-2:] == ["manylinux2014_aarch64", "linux_aarch64"]
    assert "manylinux_2_34_armv7l" in platforms.PLATFORMS["armv7l"].wheel_platforms("2.36")


def test_cpuinfo_describes_the_boards_core():
    pi4 = platforms.cpuinfo(targets.load("rpi4"), 4)
    assert pi4.count("processor\t:") == 4 and "CPU part\t: 0xd08" in pi4 and "asimd" in pi4
    assert "CPU part\t: 0xd0b" in platforms.cpuinfo(targets.load("rpi5"), 4)
    assert "(v7l)" in platforms.cpuinfo(targets.load("rpi3-armv7l"), 4)


@pytest.mark.parametrize(("name", "message"), [("x86-64", "emulates only aarch64, armv7l"),
                                               ("jetson-nano", "Python 3.6")])
def test_targets_that_cannot_be_emulated_are_refused_clearly(name, message):
    with pytest.raises(EmulationError, match=message):
        platforms.platform_for(targets.load(name))


def test_requirement_lines_drop_comments_and_blanks(tmp_path):
    path = tmp_path / "requirements.txt"
    path.write_text("numpy==1.24.2  # from apt: python3-numpy\n\n# note\ntflite-runtime==2.14.0\n")
    assert wheels.requirement_lines(path) == ["numpy==1.24.2", "tflite-runtime==2.14.0"]


def fake_userland(tmp_path, numpy_version: str) -> Userland:
    site = tmp_path / "root" / "usr/lib/python3/dist-packages"
    (site / f"numpy-{numpy_version}.egg-info").mkdir(parents=True)
    return Userland(tmp_path / "root", "/usr/bin/python3.11", {}, "bookworm")


def test_pins_the_os_packages_satisfy_are_not_downloaded(tmp_path):
    target = targets.load("rpi3-armv7l")
    apt, pip = wheels._split_apt_provided(["numpy==1.24.2", "tflite-runtime==2.14.0"],
                                          fake_userland(tmp_path, "1.24.2"), target)
    assert apt == ["numpy==1.24.2"] and pip == ["tflite-runtime==2.14.0"]


def test_a_pin_the_os_package_contradicts_is_an_error(tmp_path):
    with pytest.raises(EmulationError, match="pins numpy==1.26.4 but the target's OS package provides numpy 1.24.2"):
        wheels._split_apt_provided(["numpy==1.26.4"], fake_userland(tmp_path, "1.24.2"), targets.load("rpi3-armv7l"))


def test_wheels_unpack_with_their_data_purelib_and_nothing_outside(tmp_path):
    wheel = tmp_path / "demo-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("demo/__init__.py", "X = 1\n")
        archive.writestr("demo-1.0.data/purelib/extra.py", "Y = 2\n")
        archive.writestr("demo-1.0.data/scripts/tool", "#!/bin/sh\n")
    site = tmp_path / "site"
    wheels._unpack_wheel(wheel, site)
    assert (site / "demo/__init__.py").is_file() and (site / "extra.py").is_file()
    assert not (site / "tool").exists() and not (site / "demo-1.0.data").exists()
    evil = tmp_path / "evil-1.0-py3-none-any.whl"
    with zipfile.ZipFile(evil, "w") as archive:
        archive.writestr("../outside.py", "")
    with pytest.raises(EmulationError, match="outside its tree"):
        wheels._unpack_wheel(evil, site)


def test_report_parsing_passes_json_through_and_names_a_runtime_refusal():
    report = parse_report(1, 'noise\n{"passed": false, "samples": []}', "", "emulated rpi4")
    assert report == {"passed": False, "samples": []}
    stderr = ("Traceback ...\nValueError: Didn't find op for builtin opcode 'FULLY_CONNECTED' version '12'.\n"
              "Registration failed.\n")
    with pytest.raises(ValidationError, match="failed on emulated rpi3-armv7l: ValueError: Didn't find op"):
        parse_report(1, "", stderr, "emulated rpi3-armv7l")
    with pytest.raises(ValidationError, match="killed by signal 11"):
        parse_report(-11, "", "", "emulated rpi4")


def test_a_null_diff_reads_back_as_infinite_a_sentence_whose_token_ids_changed():
    text = '{"passed": false, "max_abs_diff": null, "samples": [{"index": 0, "passed": false, "max_abs_diff": null}]}'
    report = parse_report(1, text, "", "emulated rpi4")
    assert report["max_abs_diff"] == float("inf") and report["samples"][0]["max_abs_diff"] == float("inf")
