"""What emulating one machine needs: Debian architecture, qemu binary, wheel tags, a fake /proc/cpuinfo.

Facts, as tables: a new board is a target TOML (arch + qemu_cpu); only a new ARM core or
architecture needs a row here.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgekiln.compiler.errors import EmulationError
from edgekiln.targets import Target


@dataclass(frozen=True)
class Platform:
    """One CPU architecture as Debian, QEMU and pip name it."""

    arch: str          # `uname -m` on the device
    debian_arch: str   # Debian's name for its packages
    qemu: str          # the qemu-user binary (Debian package qemu-user-static)
    wheel_arch: str    # the machine part of manylinux / linux wheel tags

    def wheel_platforms(self, glibc: str) -> list[str]:
        """Every wheel platform tag a device with this glibc accepts; pip matches them literally."""
        major, minor = (int(part) for part in glibc.split("."))
        tags = [f"manylinux_{major}_{m}_{self.wheel_arch}" for m in range(17, minor + 1)]
        return [*tags, f"manylinux2014_{self.wheel_arch}", f"linux_{self.wheel_arch}"]


PLATFORMS = {
    "aarch64": Platform("aarch64", "arm64", "qemu-aarch64-static", "aarch64"),
    "armv7l": Platform("armv7l", "armhf", "qemu-arm-static", "armv7l"),
}

# The Debian release whose python3.X a device's OS is built on (Raspberry Pi OS follows Debian).
DEBIAN_SUITES = {"3.11": "bookworm", "3.13": "trixie"}

# /proc/cpuinfo per emulated core. LiteRT and onnxruntime read it at start-up and crash on an
# x86 one (FACTS.md), so each emulated board sees its own core here; "part" is the MIDR part number.
_CORES = {
    "cortex-a53": ("0xd03", "fp asimd evtstrm crc32 cpuid"),
    "cortex-a57": ("0xd07", "fp asimd evtstrm crc32 cpuid"),
    "cortex-a72": ("0xd08", "fp asimd evtstrm crc32 cpuid"),
    "cortex-a76": ("0xd0b", "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid "
                            "asimdrdm lrcpc dcpop asimddp"),
}
_ARMV7_FEATURES = "half thumb fastmult vfp edsp neon vfpv3 tls vfpv4 idiva idivt vfpd32 lpae evtstrm"


def platform_for(target: Target) -> Platform:
    """The platform to emulate for a target, or a clear refusal."""
    if target.arch not in PLATFORMS:
        raise EmulationError(f"target {target.name} is {target.arch}: edgekiln emulates only "
                             f"{', '.join(sorted(PLATFORMS))}",
                             f"an {target.arch} bundle runs natively: `edgekiln validate BUNDLE` without --emulate")
    if target.python not in DEBIAN_SUITES:
        raise EmulationError(f"target {target.name} runs Python {target.python}, which no emulated Debian "
                             f"userland provides (have: {', '.join(sorted(DEBIAN_SUITES))})",
                             "emulate a target with Python 3.11 (Raspberry Pi OS Bookworm)")
    if not target.qemu_cpu:
        raise EmulationError(f"target {target.name} names no qemu_cpu", "add qemu_cpu to its TOML file")
    return PLATFORMS[target.arch]


def cpuinfo(target: Target, cores: int) -> str:
    """A /proc/cpuinfo of the target's core, as its kernel prints it."""
    if target.arch == "armv7l":
        block = ("model name\t: ARMv7 Processor rev 4 (v7l)\nBogoMIPS\t: 38.40\n"
                 f"Features\t: {_ARMV7_FEATURES}\nCPU implementer\t: 0x41\nCPU architecture: 7\n"
                 "CPU variant\t: 0x0\nCPU part\t: 0xd03\nCPU revision\t: 4\n")
    else:
        part, features = _CORES.get(target.qemu_cpu, _CORES["cortex-a72"])
        block = (f"BogoMIPS\t: 108.00\nFeatures\t: {features}\nCPU implementer\t: 0x41\n"
                 f"CPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: {part}\nCPU revision\t: 3\n")
    return "".join(f"processor\t: {i}\n{block}\n" for i in range(cores))
