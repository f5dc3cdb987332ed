"""The machine a benchmark ran on, as the tables in docs/ name it (the benchmarks' own helper: clpose does not time
by the CPU's name)."""

from __future__ import annotations

import platform
from pathlib import Path


def cpu_description() -> str:
    """The CPU's model name and its vector-extension flags (Linux /proc/cpuinfo; the platform elsewhere)."""
    try:
        info = Path("/proc/cpuinfo").read_text(encoding="utf-8")
    except OSError:
        return platform.processor() or platform.machine()
    fields = dict(line.split(":", 1) for line in info.splitlines() if ":" in line)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    flags = set(fields.get("flags", "").split())
    vector = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16") if f in flags]
    family = f"family {fields.get('cpu family', '?')} model {fields.get('model', '?')}"
    return f"{fields.get('model name', '?')} ({family}; {' '.join(vector)})"
