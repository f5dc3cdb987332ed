"""`clpose bench`: parameters, MACs, FPS and decode time of models, measured in one interleaved run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from clpose.cli.options import Amp, LiveHelpOption
from clpose.config import check_option, parse_hw
from clpose.engine.runtime_names import RUNTIMES
from clpose.errors import ClposeError

DEFAULT_MODELS = ["clnet_resnet50", "simplebaseline_resnet50"]


def bench(
    model: Annotated[
        list[str] | None,
        typer.Option(help="Model name (repeatable). Default: clnet_resnet50 and simplebaseline_resnet50."),
    ] = None,
    input_size: Annotated[str, typer.Option(help="Input size HxW (height x width), e.g. 256x192.")] = "256x256",
    keypoints: Annotated[int, typer.Option(help="Number of keypoints K (16 MPII, 17 COCO, 14 LSP).")] = 16,
    batch: Annotated[
        list[str] | None,
        typer.Option(
            help="Batch size (repeatable). 'max' searches the largest that fits (CUDA). Default: 1 and "
            "8 on the CPU, 1 and max on CUDA."
        ),
    ] = None,
    device: Annotated[str, typer.Option(help="cpu, cuda or cuda:N.")] = "cpu",
    amp: Amp = "auto",
    channels_last: Annotated[bool, typer.Option(help="channels_last memory format for model and input.")] = False,
    compile_: Annotated[bool, typer.Option("--compile", help="torch.compile each model before timing.")] = False,
    cuda_graphs: Annotated[
        bool,
        typer.Option(
            "--cuda-graphs",
            help="Replay each model from a CUDA graph (with --compile: torch.compile's reduce-overhead mode). "
            "CUDA only.",
        ),
    ] = False,
    max_batch_seconds: Annotated[
        float, typer.Option(help="Time bound of each --batch max search (the largest batch found so far is used).")
    ] = 120.0,
    fps: Annotated[bool, typer.Option("--fps", help="Measure speed: FPS, latency p50/p90, decode time.")] = False,
    flops: Annotated[bool, typer.Option("--flops", help="Count parameters and MACs (FLOPs = 2 x MACs).")] = False,
    runtime: Annotated[
        list[str] | None,
        LiveHelpOption(
            "--runtime",
            lambda: (
                f"Runtime (repeatable): {', '.join(RUNTIMES)}, or all (those installed). Each model is timed in "
                "each, interleaved; the graph runtimes run its ONNX graph (clpose export's). Default: torch."
            ),
            lambda: [*RUNTIMES, "all"],
            check=False,  # _runtimes: "all" expands to the installed ones
        ),
    ] = None,
    threads: Annotated[
        int | None, typer.Option(help="CPU threads of torch and the runtimes (default: torch's choice).")
    ] = None,
    runs: Annotated[int, typer.Option(help="Timed runs per model and batch; medians are reported.")] = 30,
    warmup: Annotated[int, typer.Option(help="Untimed runs before timing (compilation happens here).")] = 5,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the results as a JSON list.")] = None,
    int8: Annotated[
        bool,
        typer.Option(
            "--int8",
            help="Also time each model's int8 graph (NNCF, calibrated on rendered people: speed only, the weights "
            "are random) in each graph runtime, interleaved with the other rows; its limit is an int8 convolution.",
        ),
    ] = False,
) -> None:
    """Measure params, MACs, FPS, latency and decode time of models in one run.

    FPS is at batch 1 (the paper's FPS), FPS' at the largest batch given (the paper's FPS'). With neither
    --fps nor --flops both are measured. Models are interleaved run by run; each row also says what fraction
    of this machine's limit it reaches: the better of a large matrix product and a large 3x3 convolution in the
    same precision, measured in the same run (a network faster than both becomes the limit).
    """
    import torch

    from clpose.engine.runtimes import check_threads
    from clpose.io import write_json
    from clpose.outputs import check_outputs
    from clpose.speed.bench import BenchSettings, run_bench

    check_outputs({"--json": json_out})
    check_option("--max-batch-seconds", max_batch_seconds, "> 0")
    if runs < 1 or warmup < 0:
        raise ClposeError(f"--runs must be >= 1 and --warmup >= 0, got {runs} and {warmup}")
    if keypoints < 1:
        raise ClposeError(f"--keypoints must be >= 1, got {keypoints}")
    for b in batch or []:
        if b != "max" and (not b.isdigit() or int(b) < 1):
            raise ClposeError(f"--batch {b!r}: expected a positive integer or 'max'")
    check_threads(threads)
    from clpose.engine.runtime_names import ranked
    from clpose.engine.runtimes import TORCH

    runtimes = _runtimes(runtime or [TORCH])
    if flops and not fps and (runtimes != [TORCH] or int8):
        raise ClposeError("--runtime and --int8 choose what times the models; --flops alone times nothing: add --fps")
    if int8:
        from clpose.engine.int8 import require_nncf

        require_nncf()
        int8_runtimes = ranked("int8_rank")
        if runtimes == [TORCH] and runtime is None:
            runtimes = int8_runtimes[:1]  # the int8 graph's runtime, beside its fp32 graph in the same runtime
        if not set(runtimes) & set(int8_runtimes):
            raise ClposeError(
                f"--int8 times int8 graphs in {' or '.join(int8_runtimes)}: add --runtime {int8_runtimes[0]}"
            )
    cuda = device.startswith("cuda")
    settings = BenchSettings(
        input_hw=parse_hw(input_size, "--input-size"),
        num_keypoints=keypoints,
        batches=list(batch) if batch else ([1, "max"] if cuda else [1, 8]),
        device=device,
        amp=amp,
        channels_last=channels_last,
        compile=compile_,
        cuda_graphs=cuda_graphs,
        max_batch_seconds=max_batch_seconds,
        fps=fps or not flops,
        flops=flops or not fps,
        runs=runs,
        warmup=warmup,
        runtimes=runtimes,
        int8=int8,
    )
    report = run_bench(list(model) if model else DEFAULT_MODELS, settings)
    _print_table(report, settings, torch.get_num_threads())
    if json_out:
        write_json(json_out, [r.to_json() for r in report.results])


def _runtimes(names: list[str]) -> list[str]:
    """--runtime values, checked; `all` is every installed runtime."""
    from clpose.engine.runtimes import installed

    out: list[str] = []
    for name in names:
        if name not in (*RUNTIMES, "all"):
            raise ClposeError(f"--runtime {name!r}: expected one of {', '.join(RUNTIMES)} or all")
        for runtime in [r for r in RUNTIMES if installed(r)] if name == "all" else [name]:
            if runtime not in out:
                out.append(runtime)
    return out


def _print_table(report, settings, threads: int) -> None:
    from rich.table import Table

    from clpose.console import console

    def fmt(value: float | None, spec: str) -> str:
        return "-" if value is None else format(value, spec)

    precision = settings.precision
    several = len(settings.runtimes) > 1 or settings.int8
    mode = "" if several else f"{precision.name}, "
    mode += "channels_last, " if settings.channels_last else ""
    mode += "compiled, " if settings.compile else ""
    mode += "CUDA graphs, " if settings.cuda_graphs else ""
    size = report.results[0].input_size
    title = f"{settings.device} ({threads} threads), {mode}input {size}, K={settings.num_keypoints}"
    if several and (settings.channels_last or settings.compile):
        title += " (channels_last and compile: torch rows)"
    table = Table(title=title)
    columns = ["model", *(["runtime", "precision"] if several else []), "batch", "params (M)", "GMACs", "GFLOPs"]
    for col in (*columns, "FPS", "p50 ms", "p90 ms", "decode ms", "% limit"):
        table.add_column(col, justify="left" if col in ("model", "runtime", "precision") else "right")
    for r in report.results:
        table.add_row(
            r.model,
            *([r.runtime, r.precision] if several else []),
            str(r.batch),
            fmt(r.params_m, ".2f"),
            fmt(r.gmacs, ".2f"),
            fmt(r.gflops, ".2f"),
            fmt(r.fps, ".1f"),
            fmt(r.latency_ms_p50, ".1f"),
            fmt(r.latency_ms_p90, ".1f"),
            fmt(r.decode_ms, ".3f"),
            fmt(None if r.limit_fraction is None else 100 * r.limit_fraction, ".0f"),
        )
    console.print(table)
    seen: dict[tuple[str, str], str] = {}
    for r in report.results:
        requested = "--int8" if r.precision == "int8" else precision.requested
        seen.setdefault((r.runtime, r.precision), f"{r.precision} ({requested}: {r.precision_reason})")
    for (runtime, _), described in seen.items():
        console.print(f"precision{f' ({runtime})' if several else ''}: {described}")
    for name, (gflops, source) in report.limits.items():
        emulated = "" if name != precision.name or precision.native else f" ({name} emulated on this device: slow)"
        unit = "GOP/s (int8)" if name == "int8" else "GFLOP/s"
        console.print(f"limit: {source}, {name}{emulated}: {gflops:.0f} {unit}. FLOPs = 2 x MACs.")
    for line in _ratios(report):
        console.print(line)
    if settings.int8:
        console.print(
            "int8 rows: random weights calibrated on 32 rendered people, so speed only; `clpose eval --int8` "
            "checks a trained network's accuracy"
        )


def _ratios(report) -> list[str]:
    """CLNet over SimpleBaseline FPS, per runtime, precision and batch, where both were timed (the paper's claim)."""
    rows = {(r.model, r.runtime, r.precision, r.batch): r.fps for r in report.results if r.fps}
    lines = []
    for (model, runtime, precision, batch), fps in rows.items():
        if not model.startswith("clnet_resnet"):
            continue
        base = rows.get((model.replace("clnet_", "simplebaseline_"), runtime, precision, batch))
        if base:
            lines.append(f"{model} / {model.replace('clnet_', 'simplebaseline_')}: {fps / base:.2f}x the FPS "
                         f"({runtime}, {precision}, batch {batch})")  # fmt: skip
    return lines
