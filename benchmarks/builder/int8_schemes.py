"""int8 schemes on MiniLM (real weights), timed interleaved: which scheme wins on this CPU's ISA.

Every scheme quantizes the build's own fused graph (full int8, no node kept fp32) and is judged
by the build's gate (mean cosine against fp32 PyTorch on held-out sentences). Timing goes round
robin over schemes and shapes, several rounds, and reports medians, so a machine busy with other
work slows every scheme alike. Rows:

- the schemes `quantize.schemes_for` lists for this CPU (the build's candidates; on AVX512-VNNI
  the same dynamic u8s8 as before ISA detection), and the ones it lists for other ISAs, which
  run here too (reduce_range, u8u8);
- MatMul only (attention fp32); per-tensor weights;
- ONNX Runtime's MatMulNBits at 8 bits (blockwise weights, block 128, symmetric, accuracy_level 4
  = int8 compute), where its quantizer's dependency onnx-ir is installed (row left out otherwise);
- sentence-transformers' `export_dynamic_quantized_onnx_model(model, "avx512_vnni")` settings
  (Optimum `AutoQuantizationConfig.avx512_vnni(is_static=False)`: dynamic u8s8, per-channel,
  reduce_range off, Optimum's default dynamic ops) applied with ONNX Runtime's quantizer to the
  unfused export, as that one-liner does; Optimum itself is not installed here.

    .venv/bin/python benchmarks/builder/int8_schemes.py [--rounds 4]

Writes benchmarks/builder/results/minilm-int8-schemes.json and prints the table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import onnx
from run import HERE, commit, minilm_dir

from kubeformer_builder import calibration, inference, progress
from kubeformer_builder.config import parse_build_config
from kubeformer_builder.isa import Isa, host_cpu
from kubeformer_builder.pipeline import prepare
from kubeformer_builder.stages import quantize
from kubeformer_builder.versions import runtime_versions

SHAPES = ((1, 16), (1, 128), (32, 128))
# Optimum's ORT_DEFAULT_OPS_DYNAMIC_QUANTIZATION (optimum/onnxruntime/configuration.py).
OPTIMUM_DYNAMIC_OPS = ["MatMul", "Attention", "LSTM", "Gather", "Transpose", "EmbedLayerNormalization"]


def sentence_transformers_vnni(exported: Path, dest: Path) -> Path:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    dest.mkdir(parents=True)
    quantize_dynamic(
        str(exported),
        str(dest / "model.onnx"),
        weight_type=QuantType.QInt8,
        per_channel=True,
        reduce_range=False,
        op_types_to_quantize=OPTIMUM_DYNAMIC_OPS,
    )
    return dest / "model.onnx"


def matmul_nbits8(fused: Path, dest: Path) -> Path | None:
    try:
        from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

        quantizer = MatMulNBitsQuantizer(
            onnx.load(str(fused)), bits=8, block_size=128, is_symmetric=True, accuracy_level=4
        )
    except ImportError:  # ONNX Runtime 1.31's quantizer imports onnx-ir lazily
        return None
    quantizer.process()
    dest.mkdir(parents=True)
    onnx.save_model(quantizer.model.model, str(dest / "model.onnx"))
    return dest / "model.onnx"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    progress.configure()
    config = parse_build_config(
        source=f"file://{minilm_dir()}", task="feature-extraction", max_drop=0.005, name="minilm"
    )
    cpu = host_cpu()
    chosen = quantize.schemes_for(cpu.isa, tensorrt=False)
    dynamic = quantize.DYNAMIC_U8S8
    schemes = {
        **{f"kubeformer {s.name} (chosen for {cpu.isa.value})": s for s in chosen if not s.static},
        **{
            f"{s.name} (chosen for avx2)": s
            for s in quantize.schemes_for(Isa.AVX2, tensorrt=False)
            if not s.static
        },
        "dynamic, MatMul only": replace(dynamic, ops=("MatMul",)),
        "dynamic, per-tensor weights": replace(dynamic, per_channel=False),
    }
    with tempfile.TemporaryDirectory(prefix="kubeformer-schemes-") as scratch:
        work = Path(scratch)
        prepared = prepare(config, work, {})
        paths = {
            label: quantize.quantize_dynamic(prepared.fused, work / f"s{i}", scheme)
            for i, (label, scheme) in enumerate(schemes.items())
        }
        paths["sentence-transformers avx512_vnni settings"] = sentence_transformers_vnni(
            prepared.exported, work / "st"
        )
        nbits = matmul_nbits8(prepared.fused, work / "nbits")
        if nbits is not None:
            paths["MatMulNBits 8-bit, block 128, accuracy_level 4"] = nbits
        paths["fp32 fused"] = prepared.fused
        runs, rows = {}, {}
        for label, path in paths.items():
            session = inference.make_session(path)
            runs[label] = lambda batch, s=session: inference.run_session(s, batch)
            gate = prepared.evaluator.check(runs[label])
            rows[label] = {"cosine": round(gate.score, 5), "drop": round(gate.drop, 5), "samples": {}}
        texts = calibration.builtin_corpus()
        batches = {
            shape: inference.tokenize(
                prepared.tokenizer,
                config.task,
                [texts[(i * 7) % len(texts)] * 8 for i in range(shape[0])],
                prepared.wrapper.input_names,
                shape[1],
                pad_to=shape[1],
            )
            for shape in SHAPES
        }
        for _ in range(args.rounds):
            for label, run in runs.items():
                for shape, batch in batches.items():
                    run(batch)  # warm
                    samples = rows[label]["samples"].setdefault(f"{shape[0]}x{shape[1]}", [])
                    for _ in range(15 if shape[0] == 1 else 3):
                        start = time.perf_counter()
                        run(batch)
                        samples.append((time.perf_counter() - start) * 1000.0)
    for row in rows.values():
        row["p50_ms"] = {shape: round(statistics.median(v), 2) for shape, v in row.pop("samples").items()}
    report = {
        "commit": commit(),
        "cpu": cpu.to_dict(),
        "threads": inference.cpu_threads(),
        "rounds": args.rounds,
        "versions": runtime_versions(),
        "rows": rows,
    }
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "minilm-int8-schemes.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"{'scheme':<48} {'1x16':>8} {'1x128':>8} {'32x128':>9} {'cosine':>8}")
    for label, row in rows.items():
        t = row["p50_ms"]
        print(f"{label:<48} {t['1x16']:>8} {t['1x128']:>8} {t['32x128']:>9} {row['cosine']:>8}")


if __name__ == "__main__":
    main()
