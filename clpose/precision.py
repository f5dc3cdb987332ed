"""Mixed precision chosen from the machine: `amp: auto`, the default of every recipe and command.

bf16 pays only where the hardware executes it: on CPUs without AMX or AVX512-BF16 oneDNN emulates it, and a
CLNet-ResNet-18 training step runs 10-60x slower than in fp32 (docs/benchmarks.md). So `auto` resolves to
- CUDA: bf16 on compute capability 8.0 and newer (A100, H100, RTX 30xx ...), fp16 before that (V100, T4), which
  training pairs with a GradScaler;
- CPU: bf16 where the CPU executes it natively, otherwise fp32; any other device: fp32.

Native bf16 on a CPU is known from three signals, since none is enough alone: the CPU's flags (AMX or
AVX512-BF16, read by torch from CPUID, blind to a cap on oneDNN), oneDNN's own answer
(`torch.ops.mkldnn._is_mkldnn_bf16_supported`, which follows ONEDNN_MAX_CPU_ISA but also says yes for
AVX-512 CPUs that only emulate bf16), and a probe of a few milliseconds that times one convolution in both
precisions: bf16 is chosen only when it runs faster. The answer is computed once per process.

The precision a model was trained with is not a property of its weights: evaluation and inference resolve
`auto` on the machine they run on.
"""

from __future__ import annotations

import contextlib
import functools
import statistics
import time
from dataclasses import dataclass

import torch

from clpose.config import AMP_CHOICES
from clpose.console import warn
from clpose.errors import ClposeError

_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
# what an emulated bf16 costs, measured (docs/benchmarks.md): the warning names it
EMULATED_SLOWDOWN = "about 10x slower than fp32 (a CLNet-ResNet-18 training step on an AVX2 CPU: 11x)"
_warned: set[str] = set()


@dataclass(frozen=True)
class Precision:
    """A resolved precision: `name` is fp32, bf16 or fp16 (autocast), `requested` what the user asked for
    (auto, off, bf16, fp16), `reason` why, `native` False where bf16/fp16 is emulated (slow)."""

    name: str
    requested: str
    reason: str
    native: bool = True

    @property
    def dtype(self) -> torch.dtype | None:
        return _DTYPES[self.name]

    @property
    def grad_scaler(self) -> bool:
        """Whether training needs a GradScaler (fp16: its small range underflows small gradients)."""
        return self.name == "fp16"

    def autocast(self, device: torch.device | str, cache: bool = True) -> contextlib.AbstractContextManager:
        """Autocast to this precision on `device` (a no-op for fp32). `cache=False` for CUDA-graph capture: the
        cast weights autocast caches are freed when the outermost autocast exits, and a graph would keep reading
        them (torch.cuda.make_graphed_callables refuses a caching autocast for that reason)."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(torch.device(device).type, dtype=self.dtype, cache_enabled=cache)

    def describe(self) -> str:
        """One line: "bf16 (auto: ...)" or "fp32 (off)"."""
        return f"{self.name} ({self.requested}: {self.reason})"

    def to_json(self) -> dict[str, str | bool]:
        return {"name": self.name, "requested": self.requested, "reason": self.reason, "native": self.native}


FP32 = Precision("fp32", "off", "as asked")


def resolve_precision(amp: str, device: torch.device | str) -> Precision:
    """The precision that `amp` (auto, off, bf16 or fp16) means on `device`.

    An explicit bf16 where it is emulated still runs, with a warning printed once per process; fp16 on a CPU
    is a ClposeError (CPU autocast to fp16 is emulated on nearly every CPU and not needed: use auto).
    """
    if amp not in AMP_CHOICES:
        raise ClposeError(f"amp {amp!r}: expected one of {', '.join(AMP_CHOICES)}")
    device = torch.device(device)
    if amp == "off":
        return FP32
    if device.type == "cuda":
        return _resolve_cuda(amp, device)
    if device.type != "cpu":
        if amp == "auto":
            return Precision("fp32", amp, f"no automatic mixed precision on {device.type}")
        return Precision(amp, amp, f"asked for on {device.type}")
    if amp == "fp16":
        raise ClposeError("amp fp16 is for CUDA GPUs; on the CPU use auto (bf16 where the CPU has it natively)")
    native, why = cpu_native_bf16()
    if amp == "auto":
        return Precision("bf16" if native else "fp32", amp, why)
    if not native:
        _warn_once(
            f"bf16 was asked for on a CPU without native bf16 ({why}): it is emulated and runs "
            f"{EMULATED_SLOWDOWN}; amp auto or off would use fp32"
        )
    return Precision("bf16", amp, why, native)


def _resolve_cuda(amp: str, device: torch.device) -> Precision:
    major, minor = torch.cuda.get_device_capability(device)
    native_bf16 = major >= 8
    name = torch.cuda.get_device_name(device)
    where = f"{name}, compute capability {major}.{minor}"
    if amp == "auto":
        if native_bf16:
            return Precision("bf16", amp, f"{where}: native bf16")
        return Precision("fp16", amp, f"{where}: no native bf16 (8.0 or newer has it), fp16 with a GradScaler")
    if amp == "bf16" and not native_bf16:
        _warn_once(
            f"bf16 was asked for on a GPU without native bf16 ({where}): it is emulated and slow; "
            "amp auto would use fp16 with a GradScaler"
        )
        return Precision("bf16", amp, f"{where}: bf16 emulated", native=False)
    return Precision(amp, amp, where)


def _warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        warn(message)


def cpu_bf16_flags() -> list[str]:
    """The CPU's native bf16 features that torch reads from CPUID: "AMX" and/or "AVX512-BF16" (empty on
    other CPUs, and on torch versions without these queries)."""
    queries = (("AMX", "_is_amx_tile_supported"), ("AVX512-BF16", "_is_avx512_bf16_supported"))
    found = []
    for label, query in queries:
        ask = getattr(torch.cpu, query, None)
        with contextlib.suppress(Exception):  # private queries: absent or failing means "not known"
            if ask is not None and ask():
                found.append(label)
    return found


def onednn_bf16() -> bool:
    """oneDNN's answer: bf16 kernels allowed by the effective ISA (honours ONEDNN_MAX_CPU_ISA)."""
    if not torch.backends.mkldnn.is_available():
        return False
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return True  # older torch: the flags and the probe decide


def bf16_speedup(runs: int = 5) -> float:
    """fp32 time / bf16 time of one 3x3 convolution (64 -> 64 channels, 28x28, batch 4, channels_last,
    inference): above 1 where bf16 is native, about 0.1 where it is emulated. A few milliseconds."""
    conv = torch.nn.Conv2d(64, 64, 3, padding=1, bias=False).eval().to(memory_format=torch.channels_last)
    x = torch.randn(4, 64, 28, 28).contiguous(memory_format=torch.channels_last)
    times: dict[str, float] = {}
    with torch.inference_mode():
        for name in ("fp32", "bf16"):
            ctx = Precision(name, name, "probe")
            with ctx.autocast("cpu"):
                for _ in range(2):  # the first call creates oneDNN's kernel
                    conv(x)
                samples = []
                for _ in range(runs):
                    start = time.perf_counter()
                    conv(x)
                    samples.append(time.perf_counter() - start)
            times[name] = statistics.median(samples)
    return times["fp32"] / times["bf16"]


@functools.cache
def cpu_native_bf16() -> tuple[bool, str]:
    """(whether this CPU runs bf16 natively, the reason in words); computed once per process."""
    flags = cpu_bf16_flags()
    if not flags:
        return False, "CPU without native bf16 (no AMX or AVX512-BF16 in its flags)"
    listed = " and ".join(flags)
    if not onednn_bf16():
        return False, f"the CPU lists {listed} but oneDNN's bf16 kernels are off (ONEDNN_MAX_CPU_ISA?)"
    speedup = bf16_speedup()
    if speedup < 1.0:
        return False, (
            f"the CPU lists {listed} but a bf16 convolution ran {1 / speedup:.1f}x slower than fp32 in a probe "
            "(emulated: oneDNN capped by ONEDNN_MAX_CPU_ISA?)"
        )
    return True, f"CPU with native bf16 ({listed}; a bf16 convolution ran {speedup:.1f}x faster than fp32)"
