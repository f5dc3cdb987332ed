"""Mixed precision chosen from the machine: `amp: auto`, the default of every recipe and command.

bf16 pays only where the hardware executes it: on CPUs without AMX or AVX512-BF16 oneDNN emulates it, and a
CLNet-ResNet-18 training step runs many times slower than in fp32 (docs/benchmarks.md says how much where).
So `auto` resolves to
- CUDA: bf16 on compute capability 8.0 and newer (A100, H100, RTX 30xx ...), fp16 before that (V100, T4), which
  training pairs with a GradScaler;
- CPU: bf16 where the CPU executes it natively, otherwise fp32; any other device: fp32.

Native bf16 on a CPU is decided from what the CPU and the libraries report, never from a timing (a timing probe on a
loaded machine flips its answer from run to run: docs/benchmarks.md): the CPU's flags (AMX or AVX512-BF16,
read by torch from CPUID), oneDNN's own answer (`torch.ops.mkldnn._is_mkldnn_bf16_supported`, which follows
ONEDNN_MAX_CPU_ISA), the oneDNN cap itself (a cap at AVX512_CORE or AVX512_CORE_VNNI leaves oneDNN's answer yes
while it emulates bf16) and torch's own kernel level (ATEN_CPU_CAPABILITY below AVX-512 runs the element-wise bf16
work through AVX2). The same machine and environment always give the same answer.

The precision a model was trained with is not a property of its weights: evaluation and inference resolve
`auto` on the machine they run on.
"""

from __future__ import annotations

import contextlib
import functools
import os
from dataclasses import dataclass

import torch

from clpose.config import AMP_CHOICES
from clpose.console import warn
from clpose.errors import ClposeError

_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16, "int8": None}  # int8: its own graph
# what an emulated bf16 costs: the warning says it, the numbers are in docs/benchmarks.md
EMULATED_SLOWDOWN = "about 10x slower than fp32 (7-12x over the CPUs in docs/benchmarks.md)"
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


def cpu_int8_flags() -> list[str]:
    """The CPU's int8 dot-product instructions that torch reads from CPUID (so a masked CPUID hides them, as it does
    from OpenVINO): "AMX" (AMX-INT8 comes with the tiles) and/or "AVX512-VNNI". Without them int8 products are
    widened to 16 bits (AVX2's vpmaddubsw), which roughly halves what int8 gains (docs/benchmarks.md, "INT8")."""
    queries = (("AMX", "_is_amx_tile_supported"), ("AVX512-VNNI", "_is_vnni_supported"))
    found = []
    for label, query in queries:
        ask = getattr(torch.cpu, query, None)
        with contextlib.suppress(Exception):  # private queries: absent or failing means "not known"
            if ask is not None and ask():
                found.append(label)
    return found


def int8_precision() -> Precision:
    """int8 as it runs here (`--int8`: an int8 graph, never autocast); its reason names the CPU's int8 instructions."""
    flags = cpu_int8_flags()
    kernels = f"int8 dot products ({', '.join(flags)})" if flags else "no VNNI or AMX: int8 products widened (AVX2)"
    return Precision("int8", "--int8", f"NNCF post-training quantisation; {kernels}")


def onednn_bf16() -> bool:
    """oneDNN's answer: bf16 kernels allowed by the effective ISA (honours ONEDNN_MAX_CPU_ISA)."""
    if not torch.backends.mkldnn.is_available():
        return False
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return True  # older torch without the query: the flags and the cap decide


# oneDNN's ISA bit masks (dnnl_cpu_isa_t in dnnl_types.h, oneDNN 3.x): a cap allows native bf16 kernels when its
# mask holds every bit of avx512_core_bf16. ONEDNN_MAX_CPU_ISA takes these names (case-insensitive).
_ONEDNN_ISA_MASKS = {
    "SSE41": 0x1,
    "AVX": 0x3,
    "AVX2": 0x7,
    "AVX2_VNNI": 0xF,
    "AVX2_VNNI_2": 0x1F,
    "AVX512_CORE": 0x27,
    "AVX512_CORE_VNNI": 0x67,
    "AVX512_CORE_BF16": 0xE7,
    "AVX10_1_512": 0x1EF,
    "AVX512_CORE_FP16": 0x1EF,
    "AVX10_1_512_AMX": 0xFEF,
    "AVX512_CORE_AMX": 0xFEF,
    "AVX10_1_512_AMX_FP16": 0x1FEF,
    "AVX512_CORE_AMX_FP16": 0x1FEF,
}
_BF16_MASK = _ONEDNN_ISA_MASKS["AVX512_CORE_BF16"]


def onednn_cap() -> str | None:
    """The oneDNN ISA cap set in the environment (ONEDNN_MAX_CPU_ISA, or its older name DNNL_MAX_CPU_ISA), upper
    case, or None where none is set (ALL and DEFAULT are no cap)."""
    for name in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA"):
        value = os.environ.get(name, "").strip().upper()
        if value:
            return None if value in ("ALL", "DEFAULT") else value
    return None


def decide_bf16(flags: list[str], onednn: bool, cap: str | None, aten: str) -> tuple[bool, str]:
    """(native bf16, the reason in words) from the CPU's bf16 flags, oneDNN's answer, the oneDNN cap (None: no cap)
    and torch's CPU capability (torch.backends.cpu.get_cpu_capability(): "AVX2", "AVX512", ...). A pure function:
    the same inputs always give the same answer."""
    if not flags:
        return False, "CPU without native bf16 (no AMX or AVX512-BF16 in its flags)"
    listed = " and ".join(flags)
    if cap is not None and (_ONEDNN_ISA_MASKS.get(cap, 0) & _BF16_MASK) != _BF16_MASK:
        known = "" if cap in _ONEDNN_ISA_MASKS else " (a value clpose does not know)"
        return False, f"the CPU lists {listed} but ONEDNN_MAX_CPU_ISA={cap}{known} keeps oneDNN from its bf16 kernels"
    if not onednn:
        return False, f"the CPU lists {listed} but oneDNN reports no bf16 kernels"
    if not aten.upper().startswith("AVX512"):
        return (
            False,
            f"the CPU lists {listed} but torch's kernels run at {aten} (ATEN_CPU_CAPABILITY), which emulates bf16",
        )
    return True, f"CPU with native bf16 ({listed}; oneDNN bf16 kernels, torch kernels at {aten})"


@functools.cache
def cpu_native_bf16() -> tuple[bool, str]:
    """(whether this CPU runs bf16 natively, the reason in words): `decide_bf16` on this machine, computed once per
    process. Nothing is timed, so load on the machine cannot change the answer."""
    try:
        aten = torch.backends.cpu.get_cpu_capability()
    except (AttributeError, RuntimeError):  # torch older than 2.1: no query; the flags and oneDNN decide
        aten = "AVX512"
    return decide_bf16(cpu_bf16_flags(), onednn_bf16(), onednn_cap(), aten)
