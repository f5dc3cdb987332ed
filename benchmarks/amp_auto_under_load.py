"""`amp: auto` under load: the precision it resolves to in N fresh processes while every core is kept busy.

    python benchmarks/amp_auto_under_load.py --runs 10
    ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 python benchmarks/amp_auto_under_load.py --runs 10

Each run is a new Python process (the decision is cached per process), started while one busy-looping process per
core competes for the CPU. The decision reads the CPU's flags and the libraries' answers and times nothing, so every
run must print the same line; the script exits 1 if they differ.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import subprocess
import sys
import time

CODE = "from clpose.precision import resolve_precision as r; p = r('auto', 'cpu'); print(p.name, '|', p.reason)"


def _spin(stop: float) -> None:
    x = 0
    while time.time() < stop:
        x = (x * 1103515245 + 12345) % 2**31


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--busy", type=int, default=os.cpu_count() or 2, help="busy processes (default: one per core)")
    args = parser.parse_args()
    stop = time.time() + 600
    busy = [multiprocessing.Process(target=_spin, args=(stop,), daemon=True) for _ in range(args.busy)]
    for p in busy:
        p.start()
    try:
        time.sleep(1.0)  # let the load settle
        answers = []
        for i in range(args.runs):
            out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, check=True).stdout
            answers.append(out.strip())
            print(f"run {i + 1}: {answers[-1]}", flush=True)
    finally:
        for p in busy:
            p.terminate()
    distinct = sorted(set(answers))
    print(
        f"{len(answers)} runs with {args.busy} busy processes on {os.cpu_count()} cores: "
        f"{len(distinct)} distinct answer(s)"
    )
    return 0 if len(distinct) == 1 else 1


if __name__ == "__main__":
    sys.exit(main())
