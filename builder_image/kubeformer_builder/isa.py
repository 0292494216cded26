"""The CPU's integer dot-product support: what decides which int8 scheme is fast and exact there.

ONNX Runtime's int8 GEMMs (MLAS) pick their kernel from the CPU at run time:

- AMX-INT8 (`amx_int8`), AVX512-VNNI (`avx512_vnni`), AVX-VNNI (`avx_vnni`) and Arm's dot
  product (`asimddp`) multiply u8 by s8 and accumulate in int32 in one instruction (VPDPBUSD,
  UDOT/SDOT): u8 activations x s8 weights at full 8-bit range is both the fastest and exact.
- AVX2 and AVX-512 without VNNI do u8 x s8 with VPMADDUBSW, which adds pairs of products into a
  saturating int16: full-range s8 weights can overflow it. Weights quantized to 7 bits
  (`reduce_range`) or u8 weights (u8u8 takes the VPMADDWD path, no saturation) avoid that.

The same rule is in Optimum's `AutoQuantizationConfig` (optimum/onnxruntime/configuration.py:
`avx512_vnni` and `arm64` fix reduce_range=False; `avx2`/`avx512` expose reduce_range "to counter
the VPMADDUBSW saturation", and `avx2` uses u8 weights) and ONNX Runtime's quantization guide
("reduce_range ... designed for the U8S8 format on AVX2 and AVX512 (non-VNNI) machines to
mitigate saturation issues; not needed on machines supporting VNNI"). sentence-transformers'
`export_dynamic_quantized_onnx_model(model, "avx512_vnni" | "avx2" | "arm64", ...)` is one of
those configs with `is_static=False`.

Detection reads the kernel's flags from /proc/cpuinfo (x86 `flags`, Arm `Features`), as
archspec's Linux detector does; archspec's `host()` itself maps the CPU to a named
microarchitecture whose feature list can lack flags the CPU has (avx512_vnni on an x86_64_v4
match), and py-cpuinfo is unmaintained since 2022. Fallback where /proc/cpuinfo cannot be read
(not Linux): no flags, so the ISA is `arm64` or `baseline` from the machine name, and the build
tries the saturation-safe schemes as well (the timing still picks the fastest).
"""

from __future__ import annotations

import functools
import logging
import platform
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

log = logging.getLogger("kubeformer.isa")

CPUINFO = Path("/proc/cpuinfo")


class Isa(str, Enum):
    """The best integer dot-product instruction set of a CPU, best first."""

    AMX = "amx"  # AMX-INT8 tiles (Sapphire Rapids and later)
    AVX512_VNNI = "avx512_vnni"  # VPDPBUSD on 512-bit vectors (Cascade Lake, Ice Lake, Zen 4)
    AVX_VNNI = "avx_vnni"  # VEX-encoded VPDPBUSD on 256-bit vectors (Alder Lake, Zen 5 client)
    AVX512 = "avx512"  # AVX-512BW without VNNI (Skylake-SP): VPMADDUBSW, saturates
    AVX2 = "avx2"  # VPMADDUBSW on 256-bit vectors, saturates
    ARM64_DOTPROD = "arm64_dotprod"  # UDOT/SDOT (Armv8.2-A dotprod: Graviton 2+, Apple M)
    ARM64 = "arm64"  # NEON without dot product
    BASELINE = "baseline"  # none of the above, or the flags could not be read


# x86 flag (as Linux names it) or Arm feature that grants each ISA, checked in this order.
_GRANTED_BY = (
    (Isa.AMX, "amx_int8"),
    (Isa.AVX512_VNNI, "avx512_vnni"),
    (Isa.AVX_VNNI, "avx_vnni"),
    (Isa.AVX512, "avx512bw"),
    (Isa.AVX2, "avx2"),
    (Isa.ARM64_DOTPROD, "asimddp"),
)
# The flags worth recording: the ones above plus what shapes other int8/bf16 kernels.
RECORDED_FLAGS = frozenset(
    {flag for _, flag in _GRANTED_BY} | {"avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "i8mm", "sve"}
)
_ARM_MACHINES = frozenset({"aarch64", "arm64", "armv8l"})


def isa_from_flags(flags: Iterable[str], machine: str) -> Isa:
    """The ISA a set of /proc/cpuinfo flags grants; `machine` (platform.machine()) breaks the tie
    when no flag is known. Pure: no I/O."""
    present = frozenset(flags)
    for isa, flag in _GRANTED_BY:
        if flag in present:
            return isa
    return Isa.ARM64 if machine.lower() in _ARM_MACHINES else Isa.BASELINE


def has_int8_dot(isa: Isa) -> bool:
    """True where u8 x s8 accumulates in int32 without saturation (VNNI, AMX, Arm dot product)."""
    return isa in (Isa.AMX, Isa.AVX512_VNNI, Isa.AVX_VNNI, Isa.ARM64_DOTPROD)


def saturates_u8s8(isa: Isa) -> bool:
    """True where ONNX Runtime's u8 x s8 kernel sums pairs into a saturating int16 (VPMADDUBSW)."""
    return isa in (Isa.AVX2, Isa.AVX512)


def parse_cpuinfo(text: str) -> tuple[frozenset[str], str]:
    """(flags, model name) of the first processor in /proc/cpuinfo text; empty when absent."""
    flags: frozenset[str] = frozenset()
    model = ""
    for line in text.splitlines():
        key, separator, value = line.partition(":")
        if not separator:
            if flags:
                break  # the first processor's block is enough: every core reports the same
            continue
        key = key.strip()
        if key in ("flags", "Features") and not flags:
            flags = frozenset(value.split())
        elif key in ("model name", "CPU part") and not model:
            model = value.strip()
    return flags, model


@dataclass(frozen=True)
class CpuInfo:
    isa: Isa
    flags: tuple[str, ...]  # the recorded int8/bf16-relevant flags this CPU has, sorted
    model: str  # "model name" (x86) or "CPU part" (Arm); "" when unknown

    def to_dict(self) -> dict[str, object]:
        return {"isa": self.isa.value, "flags": list(self.flags), "model": self.model}


def cpu_from_cpuinfo(text: str, machine: str) -> CpuInfo:
    """The CpuInfo that /proc/cpuinfo text describes. Pure: no I/O."""
    flags, model = parse_cpuinfo(text)
    return CpuInfo(isa_from_flags(flags, machine), tuple(sorted(flags & RECORDED_FLAGS)), model)


@functools.cache
def host_cpu() -> CpuInfo:
    """This machine's CpuInfo; without a readable /proc/cpuinfo, the machine name alone decides."""
    try:
        text = CPUINFO.read_text()
    except OSError as exc:
        log.info("cannot read %s (%s): int8 schemes chosen without CPU flags", CPUINFO, exc)
        text = ""
    return cpu_from_cpuinfo(text, platform.machine())


def serving_mismatch(built: str, serving: Isa, saturation_safe: bool) -> str | None:
    """A warning when an artifact built on a CPU with ISA `built` runs on one with `serving`, else None.

    `saturation_safe`: the artifact's int8 scheme avoids VPMADDUBSW saturation (reduce_range, u8
    weights, or no int8 at all). Without it, a CPU that saturates may answer differently from what
    the accuracy gate measured; any other difference only moves speed.
    """
    if built == serving.value:
        return None
    message = (
        f"this artifact was built and timed on a CPU with {built} and this CPU has {serving.value}: "
        "its int8 scheme and latency were chosen for the build CPU"
    )
    if saturates_u8s8(serving) and not saturation_safe:
        message += (
            f"; its u8s8 full-range weights can saturate int16 sums on {serving.value} (VPMADDUBSW), so "
            "answers may drift from the accuracy gate's; rebuild on a node like this one"
        )
    return message
