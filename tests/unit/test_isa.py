"""The CPU's integer dot-product ISA from /proc/cpuinfo, the int8 schemes it gets, the serving warning."""

from __future__ import annotations

import pytest

from kubeformer_builder.isa import (
    Isa,
    cpu_from_cpuinfo,
    has_int8_dot,
    isa_from_flags,
    parse_cpuinfo,
    saturates_u8s8,
    serving_mismatch,
)
from kubeformer_builder.manifest import Manifest
from kubeformer_builder.serving.fetch import cpu_warning
from kubeformer_builder.stages.quantize import schemes_for

BASE_X86 = "fpu sse sse2 ssse3 sse4_1 sse4_2 avx fma"
# Flag sets as Linux reports them for one CPU of each family.
CPUS = {
    "sapphire-rapids": (f"{BASE_X86} avx2 avx512f avx512bw avx512_vnni amx_tile amx_int8", Isa.AMX),
    "zen4 (this machine), cascade-lake": (f"{BASE_X86} avx2 avx512f avx512bw avx512_vnni", Isa.AVX512_VNNI),
    "alder-lake": (f"{BASE_X86} avx2 avx_vnni", Isa.AVX_VNNI),
    "skylake-sp": (f"{BASE_X86} avx2 avx512f avx512bw avx512vl", Isa.AVX512),
    "haswell": (f"{BASE_X86} avx2", Isa.AVX2),
    "westmere": ("fpu sse sse2 sse4_2", Isa.BASELINE),
}


@pytest.mark.parametrize("cpu", list(CPUS))
def test_x86_flags_give_the_best_int8_isa(cpu):
    flags, expected = CPUS[cpu]
    assert isa_from_flags(flags.split(), "x86_64") is expected


def test_arm_features_and_machine_name():
    assert isa_from_flags(["fp", "asimd", "aes", "crc32", "asimddp", "i8mm"], "aarch64") is Isa.ARM64_DOTPROD
    assert isa_from_flags(["fp", "asimd", "aes", "crc32"], "aarch64") is Isa.ARM64
    assert isa_from_flags((), "arm64") is Isa.ARM64  # no flags (macOS): the machine name decides
    assert isa_from_flags((), "x86_64") is Isa.BASELINE


def test_saturation_and_dot_product_split_the_isas():
    assert {isa for isa in Isa if saturates_u8s8(isa)} == {Isa.AVX2, Isa.AVX512}
    assert {isa for isa in Isa if has_int8_dot(isa)} == {
        Isa.AMX,
        Isa.AVX512_VNNI,
        Isa.AVX_VNNI,
        Isa.ARM64_DOTPROD,
    }


X86_CPUINFO = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8370C CPU @ 2.80GHz
flags\t\t: fpu avx2 avx512f avx512bw avx512_vnni avx512_bf16

processor\t: 1
model name\t: another
flags\t\t: fpu avx2
"""
ARM_CPUINFO = """processor\t: 0
BogoMIPS\t: 243.75
Features\t: fp asimd evtstrm aes crc32 asimddp
CPU part\t: 0xd0c
"""


def test_cpuinfo_is_read_from_the_first_processor():
    flags, model = parse_cpuinfo(X86_CPUINFO)
    assert "avx512_vnni" in flags and model == "Intel(R) Xeon(R) Platinum 8370C CPU @ 2.80GHz"
    cpu = cpu_from_cpuinfo(X86_CPUINFO, "x86_64")
    assert cpu.isa is Isa.AVX512_VNNI
    assert cpu.flags == ("avx2", "avx512_bf16", "avx512_vnni", "avx512bw", "avx512f")  # fpu is not recorded
    arm = cpu_from_cpuinfo(ARM_CPUINFO, "aarch64")
    assert (arm.isa, arm.flags, arm.model) == (Isa.ARM64_DOTPROD, ("asimddp",), "0xd0c")
    assert cpu_from_cpuinfo("", "x86_64").to_dict() == {"isa": "baseline", "flags": [], "model": ""}


def test_int8_dot_product_cpus_get_full_range_u8s8():
    for isa in (Isa.AVX512_VNNI, Isa.AMX, Isa.AVX_VNNI, Isa.ARM64_DOTPROD):
        schemes = schemes_for(isa, tensorrt=False)
        assert [(s.static, s.activations, s.weights, s.reduce_range) for s in schemes] == [
            (False, "u8", "s8", False),
            (False, "u8", "s8", False),
            (True, "u8", "s8", False),
        ]
        assert all(s.per_channel for s in schemes)
        assert {"EmbedLayerNormalization", "Gather"} & set(schemes[0].ops)  # embeddings int8 or fp32:
        assert not {"EmbedLayerNormalization", "Gather"} & set(schemes[1].ops)  # the timing picks


def test_saturating_cpus_get_only_saturation_safe_schemes():
    for isa in (Isa.AVX2, Isa.AVX512):
        schemes = schemes_for(isa, tensorrt=False)
        assert schemes and all(s.saturation_safe for s in schemes)
        assert {(s.weights, s.reduce_range) for s in schemes if not s.static} == {("s8", True), ("u8", False)}


def test_unknown_cpus_try_both_families_and_tensorrt_only_symmetric_s8s8():
    baseline = schemes_for(Isa.BASELINE, tensorrt=False)
    assert {s.saturation_safe for s in baseline} == {True, False}
    (trt,) = schemes_for(Isa.AVX512_VNNI, tensorrt=True)
    assert trt.static and (trt.activations, trt.weights, trt.ops) == ("s8", "s8", ("MatMul",))
    names = [s.name for isa in Isa for s in schemes_for(isa, tensorrt=False)]
    assert all(name.startswith(("dynamic", "static")) for name in names)


def test_serving_on_another_cpu_warns():
    assert serving_mismatch("avx512_vnni", Isa.AVX512_VNNI, saturation_safe=False) is None
    slower = serving_mismatch("avx2", Isa.AVX512_VNNI, saturation_safe=True)
    assert "built and timed on a CPU with avx2" in slower and "saturate" not in slower
    drift = serving_mismatch("avx512_vnni", Isa.AVX2, saturation_safe=False)
    assert "saturate" in drift and "rebuild" in drift
    assert "saturate" not in serving_mismatch("avx512_vnni", Isa.AVX2, saturation_safe=True)


def manifest_with(cpu):
    task, backend = "feature-extraction", "onnxruntime"
    return Manifest("k" * 64, "m", task, backend, "int8", "int8-dynamic", {}, {}, (), cpu)


def test_fetch_judges_the_manifest_cpu_block():
    vnni = cpu_from_cpuinfo(X86_CPUINFO, "x86_64")
    haswell = cpu_from_cpuinfo("flags\t: avx2\n", "x86_64")
    scheme = schemes_for(Isa.AVX512_VNNI, tensorrt=False)[0].to_dict()
    built = manifest_with({**vnni.to_dict(), "int8_scheme": scheme})
    assert cpu_warning(built, vnni) is None
    assert "saturate" in cpu_warning(built, haswell)
    assert "saturate" not in cpu_warning(manifest_with({**vnni.to_dict(), "int8_scheme": None}), haswell)
    assert cpu_warning(manifest_with(None), haswell) is None  # TensorRT or an older artifact


def test_fetch_logs_the_warning(monkeypatch, caplog):
    from kubeformer_builder.serving import fetch

    vnni = cpu_from_cpuinfo(X86_CPUINFO, "x86_64")
    scheme = schemes_for(Isa.AVX512_VNNI, tensorrt=False)[0].to_dict()
    monkeypatch.setattr(fetch, "host_cpu", lambda: cpu_from_cpuinfo("flags\t: avx2\n", "x86_64"))
    with caplog.at_level("WARNING", logger="kubeformer.fetch"):
        fetch.check_cpu(manifest_with({**vnni.to_dict(), "int8_scheme": scheme}), "s3://b/a")
    assert "s3://b/a: this artifact was built and timed on a CPU with avx512_vnni" in caplog.text
