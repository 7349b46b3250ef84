"""Guest code addresses to `library:function`: the guest's /proc/self/maps, then each ELF's symbol table.

QEMU's own symbol lookup sees only the binaries it loaded (the executable, ld.so); the libraries the
guest's ld.so maps (XNNPACK inside LiteRT, MLAS inside onnxruntime) are resolved here, on the host,
from the files the maps name. Reads 64-bit little-endian ELF only (aarch64), with no dependency.

A stripped library (onnxruntime's wheel: MLAS has no symbol left) still has its unwind table, which lists
every function's start and length: those are named `fn_<address>` (its address in the file's own layout),
so each kernel still counts apart from the others, stably from run to run, if not by name.
"""

from __future__ import annotations

import bisect
import struct
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

SHT_SYMTAB, SHT_DYNSYM, STT_FUNC, PT_LOAD = 2, 11, 2, 1
# .eh_frame_hdr's search table as GCC and LLVM write it: entries datarel|sdata4, FDEs with pcrel|sdata4 addresses
EH_TABLE_ENCODING, FDE_SDATA4 = 0x3B, 0x1B


@dataclass(frozen=True)
class Mapping:
    """One executable mapping of the guest: [start, end) from a file at `offset`."""

    start: int
    end: int
    offset: int
    path: str


@dataclass(frozen=True)
class ElfSymbols:
    """A file's function symbols (sorted by address) and its loadable segments (file offset -> address)."""

    starts: tuple[int, ...]
    ends: tuple[int, ...]
    names: tuple[str, ...]
    segments: tuple[tuple[int, int, int], ...]  # (file offset, file size, virtual address)

    def name_at(self, file_offset: int) -> str | None:
        """The function holding the byte at `file_offset`, or None."""
        address = next((vaddr + file_offset - off for off, size, vaddr in self.segments
                        if off <= file_offset < off + size), None)
        if address is None:
            return None
        k = bisect.bisect_right(self.starts, address) - 1
        return self.names[k] if k >= 0 and address < self.ends[k] else None


def executable_mappings(maps: str) -> list[Mapping]:
    """The file-backed executable lines of a /proc/PID/maps text, sorted by start."""
    found = []
    for line in maps.splitlines():
        parts = line.split(maxsplit=5)
        if len(parts) == 6 and "x" in parts[1] and parts[5].startswith("/"):
            start, end = (int(v, 16) for v in parts[0].split("-"))
            found.append(Mapping(start, end, int(parts[2], 16), parts[5].strip()))
    return sorted(found, key=lambda m: m.start)


@lru_cache(maxsize=64)
def read_symbols(path: str) -> ElfSymbols:
    """Function symbols of an ELF file (.symtab when present, else .dynsym); empty for a non-ELF file."""
    data = Path(path).read_bytes()
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        return ElfSymbols((), (), (), ())
    phoff, shoff = struct.unpack_from("<QQ", data, 0x20)
    phentsize, phnum, shentsize, shnum = struct.unpack_from("<HHHH", data, 0x36)
    segments = []
    for k in range(phnum):
        kind, _, offset, vaddr, _, filesz = struct.unpack_from("<IIQQQQ", data, phoff + k * phentsize)
        if kind == PT_LOAD:
            segments.append((offset, filesz, vaddr))
    sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + k * shentsize) for k in range(shnum)]
    table = next((s for s in sections if s[1] == SHT_SYMTAB), None) or \
        next((s for s in sections if s[1] == SHT_DYNSYM), None)
    symbols: dict[int, tuple[int, str]] = {}
    if table is not None:
        strings = sections[table[6]]
        for k in range(table[5] // 24):
            name, info, _, _, value, size = struct.unpack_from("<IBBHQQ", data, table[4] + k * 24)
            if info & 0xF == STT_FUNC and value and size:
                start = strings[4] + name
                symbols.setdefault(value, (size, data[start:data.index(b"\0", start)].decode(errors="replace")))
    if table is None or table[1] == SHT_DYNSYM:  # stripped: the unwind table's functions, where no symbol is
        symbols = {**unwind_functions(data, sections), **symbols}
    ordered = _without_overlaps(sorted(symbols.items()))
    return ElfSymbols(tuple(v for v, _ in ordered), tuple(v + s for v, (s, _) in ordered),
                      tuple(n for _, (_, n) in ordered), tuple(segments))


def unwind_functions(data: bytes, sections: list[tuple]) -> dict[int, tuple[int, str]]:
    """start -> (length, "fn_<start>") of every function in .eh_frame_hdr's table (empty when there is none, or
    its encoding is not the usual one)."""
    names = sections[struct.unpack_from("<H", data, 0x3E)[0]] if sections else None
    if names is None:
        return {}
    hdr = next((s for s in sections if data[names[4] + s[0]:].startswith(b".eh_frame_hdr\0")), None)
    if hdr is None or data[hdr[4]:hdr[4] + 4] != bytes([1, FDE_SDATA4, 0x03, EH_TABLE_ENCODING]):
        return {}
    offset, vaddr = hdr[4], hdr[3]
    count = struct.unpack_from("<I", data, offset + 8)[0]
    found = {}
    for k in range(count):
        start, fde = (vaddr + v for v in struct.unpack_from("<ii", data, offset + 12 + 8 * k))
        fde_offset = fde - vaddr + offset  # .eh_frame lies in the same segment: file offsets move with addresses
        if 0 <= fde_offset + 16 <= len(data):
            length = struct.unpack_from("<i", data, fde_offset + 12)[0]  # pc_range, after length, CIE, pc_begin
            if length > 0:
                found[start] = (length, f"fn_{start:x}")
    return found


def _without_overlaps(ordered: list[tuple[int, tuple[int, str]]]) -> list[tuple[int, tuple[int, str]]]:
    """Sorted (start, (size, name)) with each function cut at the next one's start (bisect needs no overlap)."""
    cut = []
    for k, (start, (size, name)) in enumerate(ordered):
        following = ordered[k + 1][0] if k + 1 < len(ordered) else start + size
        cut.append((start, (min(size, following - start), name)))
    return cut


class Symbolizer:
    """Guest address -> 'library:function' (or 'library:?' when the library has no symbol there)."""

    def __init__(self, maps: str) -> None:
        self.mappings = executable_mappings(maps)
        self.starts = [m.start for m in self.mappings]

    def name(self, address: int) -> str:
        k = bisect.bisect_right(self.starts, address) - 1
        if k < 0 or address >= self.mappings[k].end:
            return "?"  # the vDSO, or code QEMU maps itself
        mapping = self.mappings[k]
        library = Path(mapping.path).name
        function = read_symbols(mapping.path).name_at(address - mapping.start + mapping.offset)
        return f"{library}:{function or '?'}"
