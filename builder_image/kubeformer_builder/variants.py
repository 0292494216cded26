"""Build the candidate variants of a requested precision and pick the one to ship.

`auto` and `int8` search int8 in rising cost: quantize everything, once per int8 scheme worth
trying on the build CPU's ISA (`quantize.schemes_for`: dynamic and static QDQ, full-range u8s8 on
VNNI/AMX, 7-bit or u8 weights where u8s8 saturates; TensorRT's symmetric s8s8); if the gate fails,
keep the nodes that measured most sensitive in fp32; as a last resort keep the FFN output
projections in fp32. `auto` on TensorRT also tries fp16. Every candidate, kept or rejected, goes
to report.json with its gate numbers, latency and int8 scheme. A candidate that cannot be built
(the quantizer, calibration or engine build raises) is rejected with that reason: it never fails
the build.

TensorRT variants are strongly typed graphs (fp16 casts, explicit Q/DQ). Each graph is first
judged on ONNX Runtime (`graph_gate`, CPU without CUDA), so what an fp16 or int8 variant costs
in accuracy is known before, and without, any engine; only a graph that passes is compiled, and
the engine is judged again on the GPU.
"""

from __future__ import annotations

import logging
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from tqdm import tqdm

from kubeformer_builder import inference
from kubeformer_builder.config import Backend, BuildConfig, Precision
from kubeformer_builder.errors import BackendUnavailableError, GateError, KubeformerError
from kubeformer_builder.evaluation import BASELINE, Evaluator, Runner
from kubeformer_builder.gate import NEIGHBOURS_COSINE_FLOOR, GateReport
from kubeformer_builder.isa import Isa
from kubeformer_builder.stages import quantize
from kubeformer_builder.stages.fp16 import convert_mixed_fp16
from kubeformer_builder.stages.quantize import Int8Scheme
from kubeformer_builder.timing import Latency, Speedup, speedup

log = logging.getLogger("kubeformer.variants")

# Sensitivity ranking runs on a subset of the held-out batches: it only has to order nodes.
_RANKING_BATCHES = 4


@dataclass
class Candidate:
    name: str
    precision: Precision
    path: Path
    excluded: tuple[str, ...] = ()
    engine: Path | None = None  # what ships: the ONNX itself, or the TensorRT plan built from it
    gate: GateReport | None = None
    graph_gate: GateReport | None = None  # TensorRT: the graph's gate on ONNX Runtime, before the engine
    latency: dict[str, Latency] = field(default_factory=dict)
    error: str | None = None  # why the candidate could not be built or judged
    nonfinite_tensors: tuple[str, ...] = ()  # activations left out of calibration (inf/NaN)
    runner: Runner | None = field(default=None, repr=False)  # kept for timing once the search is over
    scheme: Int8Scheme | None = None  # how an int8 candidate was quantized

    @property
    def passed(self) -> bool:
        return self.error is None and self.gate is not None and self.gate.passed

    def rejection(self) -> str:
        """Why this candidate did not pass, one line for GateError and the log."""
        if self.error is not None:
            return f"{self.name}: could not be built ({self.error})"
        if self.gate is None:
            return f"{self.name}: not judged"
        gate = self.gate
        if gate.moved:
            floor = NEIGHBOURS_COSINE_FLOOR
            return f"{self.name}: mean cosine {gate.mean_cosine:.4f} to the reference < {floor}"
        return f"{self.name}: {gate.metric} {gate.score:.4f}, drop {gate.drop:.4f} > {gate.max_drop}"

    def speedups(self, baseline: dict[str, Latency]) -> dict[str, Speedup]:
        """Speedup over PyTorch per timing case (single request, batched), from interleaved rounds."""
        return {k: speedup(baseline[k], self.latency[k]) for k in baseline if k in self.latency}

    def speedup(self, baseline: dict[str, Latency]) -> float:
        """Geometric mean of the median speedups at single-request and batched shapes (noisy or not)."""
        ratios = [s.value for s in self.speedups(baseline).values()]
        return math.prod(ratios) ** (1 / len(ratios)) if ratios else 0.0

    def to_dict(self, baseline: dict[str, Latency]) -> dict:
        """report.json's entry; speedup_vs_pytorch is null when any of its ratios is noisy."""
        ratios = self.speedups(baseline)
        noisy = any(s.noisy for s in ratios.values())
        return {
            "name": self.name,
            "precision": self.precision.value,
            "kept_fp32_nodes": list(self.excluded),
            "gate": self.gate.to_dict() if self.gate else None,
            "error": self.error,
            "calibration_nonfinite_tensors": list(self.nonfinite_tensors),
            "int8_scheme": self.scheme.to_dict() if self.scheme else None,
            "graph_gate": self.graph_gate.to_dict() if self.graph_gate else None,
            "latency": {k: v.to_dict() for k, v in self.latency.items()},
            "speedup_vs_pytorch": round(self.speedup(baseline), 3) if ratios and not noisy else None,
            "speedups": {k: s.to_dict() for k, s in ratios.items()},
        }


class VariantSearch:
    """`isa`: the integer dot-product ISA of the CPU the engine is timed on (isa.host_cpu().isa)."""

    def __init__(
        self,
        config: BuildConfig,
        evaluator: Evaluator,
        fused: Path,
        workdir: Path,
        calib: Sequence[inference.Batch],
        isa: Isa,
        engines: bool = True,
    ):
        """`engines=False` judges TensorRT variants on their graphs only (a machine without a GPU)."""
        self.config, self.evaluator, self.fused, self.workdir, self.calib = (
            config,
            evaluator,
            fused,
            workdir,
            calib,
        )
        self.schemes = quantize.schemes_for(isa, config.backend is Backend.TENSORRT)
        self.engines = engines
        self.tried: list[Candidate] = []

    def judge(self, candidate: Candidate) -> Candidate:
        if candidate.error is None:
            try:
                candidate.graph_gate = self.evaluator.check_graph(candidate.path)
                if candidate.graph_gate is not None and not (candidate.graph_gate.passed and self.engines):
                    candidate.gate = candidate.graph_gate  # no engine: the graph failed, or no GPU here
                else:
                    run, candidate.engine = self.evaluator.runner(candidate.path, candidate.precision)
                    candidate.gate = self.evaluator.check(run)
                    if candidate.passed:
                        candidate.runner = run
            except KubeformerError:
                raise
            except Exception as exc:  # an engine that cannot be built or run rejects this candidate only
                candidate.error = _failure(candidate.name, exc)
        if candidate.gate is not None and candidate.error is None:
            log.info(
                "variant %s: %s %.4f (drop %.4f, max %.4f) %s",
                candidate.name,
                candidate.gate.metric,
                candidate.gate.score,
                candidate.gate.drop,
                candidate.gate.max_drop,
                "passed" if candidate.passed else "REJECTED",
            )
        self.tried.append(candidate)
        return candidate

    def fp32(self) -> Candidate:
        return self.judge(Candidate("fp32", Precision.FP32, self.fused))

    def fp16(self) -> Candidate:
        import onnx
        from onnxruntime.transformers.onnx_model import OnnxModel

        if self.config.backend is Backend.TENSORRT:  # strongly typed: fp16 comes from the graph
            target = convert_mixed_fp16(self.fused, self.workdir / "fp16")
            return self.judge(Candidate("fp16", Precision.FP16, target))
        if not inference.has_cuda():
            raise BackendUnavailableError(
                "optimization.precision: fp16 runs fast only on a GPU and this build machine has no CUDA; "
                "use fp32 or int8 for CPU serving, or build on a GPU node"
            )
        model = OnnxModel(onnx.load(str(self.fused)))
        model.convert_float_to_float16(keep_io_types=True)
        target = self.workdir / "fp16" / "model.onnx"
        target.parent.mkdir(parents=True, exist_ok=True)
        model.save_model_to_file(str(target))
        return self.judge(Candidate("fp16", Precision.FP16, target))

    def _int8(self, scheme: Int8Scheme, exclude: Sequence[str], label: str) -> Candidate:
        dest = self.workdir / f"int8-{scheme.name}-{label}"
        suffix = "" if not exclude else f"-keep{len(exclude)}"
        name = f"int8-{scheme.name}{suffix}"
        candidate = Candidate(name, Precision.INT8, dest / "model.onnx", tuple(exclude), scheme=scheme)
        try:
            if not scheme.static:
                candidate.path = quantize.quantize_dynamic(self.fused, dest, scheme, exclude)
            else:
                result = quantize.quantize_static(
                    self.fused, dest, self.calib, self.config.calibration.method, scheme, exclude
                )
                candidate.path, candidate.nonfinite_tensors = result.path, result.nonfinite_tensors
                candidate.excluded += tuple(n for n in result.fp32_nodes if n not in exclude)
        except KubeformerError:
            raise
        except Exception as exc:  # a quantizer or calibration failure rejects this candidate only
            candidate.error = _failure(candidate.name, exc)
        return candidate

    def int8(self) -> list[Candidate]:
        found = [self.judge(self._int8(scheme, (), "all")) for scheme in self.schemes]
        if any(c.passed for c in found):
            return found
        try:
            ranking = self.rank_sensitivity()
        except KubeformerError:
            raise
        except Exception as exc:  # without a ranking, go straight to the last resort
            log.warning("int8 sensitivity ranking failed, skipping it: %s", _failure("ranking", exc))
            ranking = []
        failing = 0
        for count in _exclusion_steps(len(ranking)):
            found = self._keeping(ranking[:count])
            if any(c.passed for c in found):
                return self._fewest_kept(ranking, failing, count, found)
            failing = count
        ffn = quantize.ffn_output_matmuls(self.fused)
        return [self.judge(self._int8(scheme, ffn, "ffn")) for scheme in self.schemes] if ffn else []

    def _keeping(self, exclude: Sequence[str]) -> list[Candidate]:
        return [self.judge(self._int8(scheme, exclude, f"top{len(exclude)}")) for scheme in self.schemes]

    def _fewest_kept(
        self, ranking: list[str], failing: int, passing: int, found: list[Candidate]
    ) -> list[Candidate]:
        """Bisect between a failing and a passing count of fp32 nodes: each node kept costs speed.

        Assumes the drop shrinks as more of the most sensitive nodes stay fp32, which is what the
        ranking is for; every count tried is judged and reported either way.
        """
        while passing - failing > 1:
            middle = (failing + passing) // 2
            trial = self._keeping(ranking[:middle])
            if any(c.passed for c in trial):
                passing, found = middle, trial
            else:
                failing = middle
        return found

    def rank_sensitivity(self) -> list[str]:
        """Nodes ordered by the gate drop when each alone is quantized, worst first.

        Measured with ONNX Runtime dynamic int8 on every backend (the first dynamic scheme listed
        for this ISA, else u8s8): a fast proxy that needs no calibration or engine build per node,
        and only has to order the nodes.
        """
        proxy = next((s for s in self.schemes if not s.static), quantize.DYNAMIC_U8S8)
        nodes = quantize.quantizable_nodes(self.fused)
        log.info("measuring int8 sensitivity of %d nodes", len(nodes))
        drops = {}
        for node in tqdm(nodes, desc="int8 sensitivity", unit="node", file=sys.stderr, mininterval=2):
            others = [n for n in nodes if n != node]
            path = quantize.quantize_dynamic(self.fused, self.workdir / "sensitivity", proxy, others)
            session = inference.make_session(path)
            run = partial(inference.run_session, session)
            drops[node] = self.evaluator.check(run, samples=_RANKING_BATCHES).drop
        return sorted(nodes, key=lambda n: drops[n], reverse=True)

    def run(self) -> list[Candidate]:
        precision = self.config.precision
        if precision is Precision.FP32:
            self.fp32()
        elif precision is Precision.FP16:
            self.fp16()
        elif precision is Precision.INT8:
            self.int8()
        else:  # auto: fp32 is the floor, int8 competes; fp16 too on TensorRT, often the fastest there
            self.fp32()
            if self.config.backend is Backend.TENSORRT:
                self.fp16()
            self.int8()
        return self.tried


def _failure(name: str, exc: Exception) -> str:
    """The reason a candidate failed, logged with its traceback."""
    reason = f"{type(exc).__name__}: {exc}".splitlines()[0][:500]
    log.warning("variant %s could not be built: %s", name, reason, exc_info=exc)
    return reason


def _exclusion_steps(total: int) -> list[int]:
    """1, 2, 4, ... up to half of the nodes: fp32 islands cost speed, so keep them few."""
    steps, count = [], 1
    while count <= max(1, total // 2) and count <= total:
        steps.append(count)
        count *= 2
    return steps


def time_candidates(evaluator: Evaluator, candidates: list[Candidate]) -> dict[str, Latency]:
    """Time PyTorch and every passing candidate interleaved; sets each one's latency and
    returns PyTorch's (the baseline every speedup is measured against)."""
    timed = [c for c in candidates if c.passed and c.runner is not None]
    found = evaluator.time_against_reference({str(i): c.runner for i, c in enumerate(timed)})
    for i, candidate in enumerate(timed):
        candidate.latency = found[str(i)]
    return found[BASELINE]


def choose(candidates: list[Candidate], baseline: dict[str, Latency], precision: Precision) -> Candidate:
    """The fastest candidate that passed the gate; GateError listing every failure otherwise."""
    passing = [c for c in candidates if c.passed]
    if not passing:
        details = "; ".join(c.rejection() for c in candidates)
        raise GateError(f"accuracy gate: no {precision.value} variant passed ({details})")
    return max(passing, key=lambda c: c.speedup(baseline))
