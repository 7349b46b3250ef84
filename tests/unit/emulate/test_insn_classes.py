"""The witness plugin's A64 decoder on known encodings, and the counting arithmetic (no QEMU needed).

The decoder is the plugin's own C source built with -DEDGEKILN_CLASSIFY_ONLY and called through ctypes.
Encodings are the assemblers' (LLVM's MC tests and clang output list them), not recomputed from the fields.
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess
from pathlib import Path

import pytest

from edgekiln.compiler.emulate import witness
from edgekiln.compiler.emulate.elf_symbols import Symbolizer, read_symbols
from edgekiln.compiler.errors import EmulationError
from tests.system import require

KNOWN = [  # (word, instruction, class)
    (0x4E228020, "smlal2 v0.8h, v1.16b, v2.16b", "int_simd_mac"),
    (0x0E22C020, "smull v0.8h, v1.8b, v2.8b", "int_simd_mac"),
    (0x4EA29C20, "mul v0.4s, v1.4s, v2.4s", "int_simd_mac"),
    (0x6EA2B420, "sqrdmulh v0.4s, v1.4s, v2.4s", "int_simd_mac"),
    (0x4E829420, "sdot v0.4s, v1.16b, v2.16b", "int_simd_mac"),
    (0x0F422020, "smlal v0.4s, v1.4h, v2.h[0]", "int_simd_mac"),
    (0x4E22CC20, "fmla v0.4s, v1.4s, v2.4s", "float_simd"),
    (0x6E22DC20, "fmul v0.4s, v1.4s, v2.4s", "float_simd"),
    (0x6E22FC20, "fdiv v0.4s, v1.4s, v2.4s", "float_simd"),
    (0x4EA0F820, "fabs v0.4s, v1.4s", "float_simd"),
    (0x4F821020, "fmla v0.4s, v1.4s, v2.s[0]", "float_simd"),
    (0x4E21D820, "scvtf v0.4s, v1.4s", "float_simd"),
    (0x1E222820, "fadd s0, s1, s2", "float_simd"),
    (0x4E206820, "sadalp v0.8h, v1.16b", "simd_other"),
    (0x4EA28420, "add v0.4s, v1.4s, v2.4s", "simd_other"),
    (0x4E040C20, "dup v0.4s, w1", "simd_other"),
    (0x4C407000, "ld1 {v0.16b}, [x0]", "load_store"),
    (0x3DC00000, "ldr q0, [x0]", "load_store"),
    (0xF9400020, "ldr x0, [x1]", "load_store"),
    (0xA9BF7BFD, "stp x29, x30, [sp, #-16]!", "load_store"),
    (0xD65F03C0, "ret", "branch"),
    (0x54000001, "b.ne .", "branch"),
    (0x94000000, "bl .", "branch"),
    (0xB4000000, "cbz x0, .", "branch"),
    (0x8B020020, "add x0, x1, x2", "other"),
    (0xD503201F, "nop", "other"),
]


@pytest.fixture(scope="module")
def decoder(tmp_path_factory) -> Path:
    """The decoder alone, as a shared object."""
    compiler = shutil.which("cc")
    require(None if compiler else "no C compiler (cc): install Debian's gcc")
    out = tmp_path_factory.mktemp("decoder") / "classify.so"
    subprocess.run([str(compiler), "-shared", "-fPIC", "-O2", "-DEDGEKILN_CLASSIFY_ONLY", "-o", str(out),
                    str(witness.PLUGIN_SOURCE)], check=True)
    return out


@pytest.mark.parametrize(("word", "instruction", "expected"), KNOWN, ids=[k[1] for k in KNOWN])
def test_known_encodings_fall_in_their_class(decoder, word, instruction, expected):
    classify = ctypes.CDLL(str(decoder)).edgekiln_insn_class
    classify.argtypes, classify.restype = [ctypes.c_uint32], ctypes.c_int
    assert witness.CLASSES[classify(word)] == expected, instruction


def test_the_plugin_source_names_the_classes_in_the_order_python_reads_them():
    source = witness.PLUGIN_SOURCE.read_text()
    assert ", ".join(f'"{c}"' for c in witness.CLASSES) in " ".join(source.split())


def test_blocks_resolve_to_functions_and_only_a_marked_window_is_read(decoder):
    symbols = read_symbols(str(decoder))
    start = symbols.starts[symbols.names.index("edgekiln_insn_class")]
    offset, _, vaddr = next(s for s in symbols.segments if s[2] <= start < s[2] + s[1])
    base = 0x7F0000000000
    maps = f"{base:x}-{base + 0x100000:x} r-xp 00000000 fe:00 1 {decoder}\n"
    address = base + start - vaddr + offset
    assert Symbolizer(maps).name(address) == "classify.so:edgekiln_insn_class"
    assert Symbolizer(maps).name(base - 4) == "?"
    blocks = {"window": True, "classes": list(witness.CLASSES), "blocks": [[address, 3, 2, 0, 0, 1, 1, 0]]}
    one = witness.aggregate(blocks, maps)
    assert one.by_class == {"int_simd_mac": 6, "float_simd": 0, "simd_other": 0, "load_store": 3, "branch": 3,
                            "other": 0}
    assert list(one.by_symbol) == ["classify.so:edgekiln_insn_class"]
    with pytest.raises(EmulationError, match="no counting window"):  # a whole process is not one invoke
        witness.aggregate({**blocks, "window": False}, maps)


def test_the_driver_marks_the_window_the_plugin_reads():
    source, driver = witness.PLUGIN_SOURCE.read_text(), witness.DRIVER.read_text()
    for mark in ("0xED6E0001", "0xED6E0002"):
        assert mark in source and mark in driver
    assert driver.index("MARK_START)") < driver.index("model.backend.run(feeds)\nmark(MARK_END)")


def test_a_stripped_library_still_counts_per_function_by_its_unwind_table(decoder, tmp_path):
    named = read_symbols(str(decoder))
    start = named.starts[named.names.index("edgekiln_insn_class")]
    stripped = tmp_path / "stripped.so"
    done = subprocess.run(["strip", "--strip-all", "--keep-symbol=none", "-o", str(stripped), str(decoder)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    found = read_symbols(str(stripped))
    assert "edgekiln_insn_class" in found.names  # exported: .dynsym keeps its name
    local = [n for n in found.names if n.startswith("fn_")]  # the static helpers: named by their address
    assert local and all(int(n[3:], 16) != start for n in local)
    k = found.names.index("edgekiln_insn_class")
    assert found.starts[k] == start
    assert all(end <= after for end, after in zip(found.ends, found.starts[1:], strict=False))  # no overlap
