"""The runtimes that may serve CLIP on this machine: each candidate (a backend and a
precision) as a Trial, listed in preference order for the settings, the device and the
CPU's flags."""

import importlib.util
import logging
import math
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from app.config import Settings
from app.schemas.health import ClipCandidate
from app.services.clip.runtime import Backend, Precision, Runtime

logger = logging.getLogger(__name__)

# Preference order: with a forced backend or precision, the first passing candidate serves.
CPU_CANDIDATES: tuple[tuple[Backend, Precision], ...] = (
    ("onnx", "int8"),
    ("torch", "bf16"),
    ("onnx", "fp32"),
    ("torch", "fp32"),
)
CUDA_CANDIDATES: tuple[tuple[Backend, Precision], ...] = (("torch", "fp16"), ("torch", "fp32"))


@dataclass(frozen=True)
class Int8Recipe:
    """One way of quantising the fp32 export to int8 (ONNX Runtime dynamic quantisation:
    weights quantised once, activations per batch at run time as uint8); `onnx_export.py`
    applies it, and each recipe that suits the CPU is a candidate of its own.

    Which recipes suit a CPU: ONNX Runtime's U8S8 kernels (uint8 activations, int8
    weights) on x86 without VNNI multiply with `vpmaddubsw`, which saturates the int16 sum
    of two products, and the embeddings drift (min cosine 0.981 on a ViT-B-32 on an
    AVX2-only EPYC). Its quantisation guide names the two ways out: 7-bit weights
    (`reduce_range`) or uint8 weights too (U8U8, another kernel). Per-channel scales
    recover part of the precision either loses."""

    name: str
    weight_type: Literal["QInt8", "QUInt8"]
    per_channel: bool = False
    reduce_range: bool = False
    needs_vnni: bool = False  # saturates without VNNI (see above)

    @property
    def kind(self) -> str:
        """The artifact kind; plain U8S8 keeps the name it had before recipes existed."""
        return "onnx-int8" if self.name == "u8s8" else f"onnx-int8-{self.name}"

    def describe(self) -> str:
        weights = "int8" if self.weight_type == "QInt8" else "uint8"
        return (
            f"dynamic; weights {weights}"
            + (" (7-bit range)" if self.reduce_range else "")
            + (", per output channel" if self.per_channel else ", per tensor")
            + "; activations uint8 per batch"
        )


INT8_RECIPES = {
    recipe.name: recipe
    for recipe in (
        Int8Recipe("u8s8", "QInt8", needs_vnni=True),
        Int8Recipe("u8s8-per-channel", "QInt8", per_channel=True, needs_vnni=True),
        Int8Recipe("u8s8-reduce-range", "QInt8", reduce_range=True),
        Int8Recipe("u8u8", "QUInt8"),
        Int8Recipe("u8u8-per-channel", "QUInt8", per_channel=True),
    )
}


@dataclass
class Trial:
    """One candidate: how it did at the gate and, under `auto`, how fast it ran."""

    backend: Backend
    precision: Precision
    recipe: str | None = None  # int8: which quantisation (INT8_RECIPES)
    threshold: float | None = None
    min_cosine: float | None = None
    same_best_tag: bool | None = None
    clear_probes: int | None = None
    passed: bool = False
    ms_per_image: dict[str, float] | None = None
    threads: int | None = None  # intra-op threads it ran with (None: TORCH_THREADS)
    error: str | None = None
    outcome: str | None = None  # why it serves, or why another one does
    runtime: Runtime | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return f"{self.backend}-{self.precision}" + (f"-{self.recipe}" if self.recipe else "")

    @property
    def artifact(self) -> str:
        """The artifact kind of an ONNX trial's export."""
        if self.recipe is not None:
            return INT8_RECIPES[self.recipe].kind
        return f"onnx-{self.precision}"

    def score(self) -> float:
        """Geometric mean of ms per image over the timed batch sizes (lower is better):
        each size counts by its ratio, so batch 1's larger numbers do not drown the rest."""
        if not self.ms_per_image:
            return math.inf
        values = list(self.ms_per_image.values())
        return float(math.prod(values) ** (1 / len(values)))

    def candidate(self) -> ClipCandidate:
        """The trial's record: as /health shows it and a remembered choice stores it."""
        return ClipCandidate(
            backend=self.backend,
            precision=self.precision,
            recipe=self.recipe,
            threshold=self.threshold,
            min_cosine=self.min_cosine,
            same_best_tag=self.same_best_tag,
            clear_probes=self.clear_probes,
            passed=self.passed,
            ms_per_image=self.ms_per_image,
            threads=self.threads,
            error=self.error,
            outcome=self.outcome,
        )

    def to_dict(self) -> dict[str, Any]:
        return self.candidate().model_dump()

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Trial":
        """A trial as `to_dict` wrote it (a remembered choice's record)."""
        return cls(**{k: v for k, v in data.items() if k in _FIELDS})

    def summary(self) -> str:
        if self.error:
            return f"{self.name} dropped ({self.error})"
        timing = ""
        if self.ms_per_image:
            timing = ", " + ", ".join(f"b{b} {ms:.1f}" for b, ms in self.ms_per_image.items())
            timing += " ms/img"
        return f"{self.name} min cosine {self.min_cosine:.5f}{timing}"

    def close(self) -> None:
        """Release the trial's runtime, if it still has one."""
        if self.runtime is not None:
            self.runtime.close()
            self.runtime = None


# x86 flags of the VNNI instructions, with which ONNX Runtime's U8S8 kernels do not saturate.
VNNI_FLAGS = {"avx512_vnni", "avx_vnni", "amx_int8"}


_FIELDS = {f.name for f in fields(Trial)} - {"runtime"}


def plan(
    settings: Settings,
    device: str,
    flags: set[str] | None = None,
    *,
    torch_installed: bool | None = None,
) -> list[Trial]:
    """The candidates for these settings on this device, in preference order. A bf16
    candidate the CPU would only emulate is listed as skipped unless bf16 was forced; int8
    comes as one candidate per quantisation recipe that suits the CPU (the others are
    listed as skipped, with why); without torch installed, the torch candidates are listed
    as skipped."""
    backend, precision = settings.clip_backend, settings.clip_precision
    pool = CUDA_CANDIDATES if device == "cuda" else CPU_CANDIDATES
    flags = cpu_flags() if flags is None else flags
    trials = []
    for b, p in pool:
        if backend in ("auto", b) and precision in ("auto", p):
            trials.extend(int8_trials(flags) if p == "int8" else [Trial(b, p)])
    if not trials:
        offered = ", ".join(f"{b}-{p}" for b, p in pool)
        raise ValueError(
            f"CLIP_BACKEND={backend} with CLIP_PRECISION={precision} has no runtime on "
            f"{device} (available: {offered})"
        )
    if torch_installed is None:
        torch_installed = importlib.util.find_spec("torch") is not None
    native_bf16 = bool(flags & {"avx512_bf16", "amx_bf16"})
    for trial in trials:
        if trial.backend == "torch" and not torch_installed:
            trial.error = "skipped: torch is not installed"
        elif trial.precision == "bf16" and not native_bf16:
            if precision == "bf16":
                logger.warning(
                    "CLIP_PRECISION=bf16 on a CPU without AVX512-BF16 or AMX: emulated, slow"
                )
            else:
                trial.error = "skipped: the CPU has neither AVX512-BF16 nor AMX"
    return trials


def int8_trials(flags: set[str]) -> list[Trial]:
    """One int8 trial per recipe, in preference order; on x86 without VNNI the recipes that
    would saturate are listed as skipped."""
    saturates = "avx2" in flags and not flags & VNNI_FLAGS
    trials = []
    for recipe in INT8_RECIPES.values():
        trial = Trial("onnx", "int8", recipe=recipe.name)
        if recipe.needs_vnni and saturates:
            trial.error = "skipped: U8S8 saturates on x86 without VNNI (ONNX Runtime's guide)"
        elif not recipe.needs_vnni and not saturates:
            trial.error = "skipped: needed only on x86 without VNNI, where U8S8 saturates"
        trials.append(trial)
    return trials


def cpu_flags() -> set[str]:
    """The CPU's feature flags (Linux /proc/cpuinfo; empty elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()
