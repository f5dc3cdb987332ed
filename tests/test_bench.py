"""`clpose bench`: the JSON it writes, its option handling and its errors."""

from __future__ import annotations

import json
import re
from pathlib import Path

from typer.testing import CliRunner

from clpose.cli.app import app

runner = CliRunner()
KEYS = {
    "model",
    "input_size",
    "batch",
    "params_m",
    "gmacs",
    "gflops",
    "fps",
    "latency_ms_p50",
    "latency_ms_p90",
    "decode_ms",
}


def test_bench_json_has_the_documented_keys(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    args = [
        "bench",
        "--model",
        "clnet_resnet18",
        "--model",
        "simplebaseline_resnet18",
        "--input-size",
        "64x64",
        "--keypoints",
        "5",
        "--batch",
        "1",
        "--batch",
        "2",
        "--runs",
        "2",
        "--warmup",
        "1",
        "--threads",
        "2",
        "--json",
        str(out),
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    rows = json.loads(out.read_text())
    assert [(r["model"], r["batch"]) for r in rows] == [
        ("clnet_resnet18", 1),
        ("simplebaseline_resnet18", 1),
        ("clnet_resnet18", 2),
        ("simplebaseline_resnet18", 2),
    ]
    for row in rows:
        assert set(row) >= KEYS
        assert row["input_size"] == "64x64" and row["gflops"] == 2 * row["gmacs"]
        assert row["fps"] > 0 and row["latency_ms_p90"] >= row["latency_ms_p50"] > 0 and row["decode_ms"] > 0
        assert abs(row["fps"] - row["batch"] * 1000 / row["latency_ms_p50"]) < 1e-6 * row["fps"]
    assert rows[0]["params_m"] < rows[1]["params_m"]  # CLNet-18 is smaller than SimpleBaseline-18
    assert "clnet_resnet18" in result.output and "limit:" in result.output


def test_flops_only_skips_timing(tmp_path: Path) -> None:
    out = tmp_path / "flops.json"
    result = runner.invoke(
        app,
        [
            "bench",
            "--flops",
            "--model",
            "clnet_resnet50",
            "--input-size",
            "256x192",
            "--keypoints",
            "17",
            "--json",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    (row,) = json.loads(out.read_text())
    assert 4.1 <= row["gmacs"] <= 4.3 and 13.1 <= row["params_m"] <= 13.7
    assert row["fps"] is None and row["decode_ms"] is None


def test_bench_errors_are_one_line() -> None:
    result = runner.invoke(app, ["bench", "--model", "resnet50_clnet", "--flops"])
    assert result.exit_code == 2 and "valid: clnet_resnet10, clnet_resnet18" in result.stderr
    result = runner.invoke(app, ["bench", "--model", "clnet_resnet18", "--input-size", "250x192", "--flops"])
    assert result.exit_code == 2 and "multiples of 16 (nearest: 240x192 or 256x192)" in result.stderr
    result = runner.invoke(
        app,
        [
            "bench",
            "--model",
            "clnet_resnet18",
            "--input-size",
            "64x64",
            "--batch",
            "max",
            "--runs",
            "1",
            "--warmup",
            "0",
        ],
    )
    assert result.exit_code == 2 and "--batch max" in result.stderr
    result = runner.invoke(app, ["bench", "--input-size", "256"])
    assert result.exit_code == 2 and "HxW" in result.stderr
    result = runner.invoke(app, ["bench", "--batch", "0"])
    assert result.exit_code == 2 and "positive integer" in result.stderr


def test_bench_shows_the_resolved_precision_and_an_emulated_bf16(tmp_path: Path, monkeypatch) -> None:
    """The default (auto) on a CPU without native bf16 times fp32, as --amp off does; an explicit bf16 there runs,
    and both the table and the limit line say it is emulated. (The emulated bf16 run's reference problems are stood
    in for: their 1024^3 product alone took 40 s on an AVX2 CPU, and the fp32 run measures them for real.)"""
    common = ["bench", "--model", "clnet_resnet18", "--input-size", "32x32", "--batch", "1", "--runs", "1"]
    common += ["--warmup", "0", "--keypoints", "2"]
    result = runner.invoke(app, [*common, "--json", str(tmp_path / "auto.json")])
    assert result.exit_code == 0, result.output
    (row,) = json.loads((tmp_path / "auto.json").read_text())
    assert row["precision"] == "fp32" and row["precision_native"] and "tests run in fp32" in row["precision_reason"]
    assert "precision: fp32 (auto: tests run in fp32" in result.output
    # the limit is whichever reference problem ran faster here: the matrix product or the convolution
    text = " ".join(result.output.split())  # rich wraps long lines
    assert re.search(r"limit: (1024\^3 matrix product|3x3 conv .*channels_last), fp32: \d+ GFLOP/s", text)
    import clpose.speed.limits as limits

    monkeypatch.setattr(limits, "reference_matmul_gflops", lambda device, precision: (3.0, 1024))
    monkeypatch.setattr(limits, "reference_conv_gflops", lambda device, precision: 2.0)
    result = runner.invoke(app, [*common, "--amp", "bf16", "--json", str(tmp_path / "bf16.json")])
    assert result.exit_code == 0, result.output
    (row,) = json.loads((tmp_path / "bf16.json").read_text())
    assert row["precision"] == "bf16" and not row["precision_native"]
    assert "bf16 emulated on this device" in result.output and "10x slower than fp32" in result.output


def test_max_batch_search_is_exact_logged_and_time_bounded() -> None:
    from clpose.speed.limits import search_max_batch

    tried: list[int] = []

    def fits(batch: int) -> bool:
        tried.append(batch)
        return batch <= 300

    lines: list[str] = []
    assert search_max_batch(fits, 4096, 60.0, lines.append, "m") == 300
    assert tried[:10] == [1, 2, 4, 8, 16, 32, 64, 128, 256, 512] and len(tried) <= 18
    assert lines[0].startswith("searching the largest batch of m that fits") and lines[-1] == "  m: largest batch 300"
    assert sum(": batch " in line for line in lines) == len(tried)  # one progress line per try
    assert search_max_batch(lambda b: True, 100, 60.0, lambda line: None) == 100  # the upper bound holds
    now = [0.0]

    def slow(batch: int) -> bool:
        now[0] += 10.0  # each try takes 10 s
        return batch <= 1000

    lines.clear()
    assert search_max_batch(slow, 4096, 35.0, lines.append, "m", clock=lambda: now[0]) == 8
    assert "time bound reached: batch 8" in lines[-1]


def test_no_row_reads_above_the_limit() -> None:
    from clpose.speed.bench import BenchResult, cap_fractions

    rows = [BenchResult("a", "256x256", 1, limit_fraction=0.5), BenchResult("b", "256x256", 256, limit_fraction=1.04)]
    limit, source = cap_fractions(rows, 1000.0, "3x3 conv")
    assert limit == 1040.0 and source == "b at batch 256 (faster than the reference 3x3 conv)"
    assert rows[1].limit_fraction == 1.0 and abs(rows[0].limit_fraction - 0.5 / 1.04) < 1e-12
    untouched = [BenchResult("a", "256x256", 1, limit_fraction=0.9)]
    assert cap_fractions(untouched, 1000.0, "m") == (1000.0, "m") and untouched[0].limit_fraction == 0.9


def test_cuda_graphs_on_the_cpu_warn_and_time_eagerly(tmp_path: Path) -> None:
    out = tmp_path / "b.json"
    args = ["bench", "--model", "clnet_resnet18", "--input-size", "64x64", "--runs", "2", "--warmup", "1",
            "--batch", "1", "--cuda-graphs", "--amp", "off", "--json", str(out)]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "--cuda-graphs: CUDA graphs need a CUDA device (cpu is not one); timing without them" in result.stderr
    rows = json.loads(out.read_text())
    assert rows[0]["cuda_graphs"] is False and 0 < rows[0]["limit_fraction"] <= 1.0
    assert "limit: " in result.output and ("matrix product" in result.output or "3x3 conv" in result.output)
