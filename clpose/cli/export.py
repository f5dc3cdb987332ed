"""`clpose export`: ONNX or TorchScript export with a parity check."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from clpose.cli.options import Calibration, Int8, Int8Runtime


def export(
    checkpoint: Annotated[Path, typer.Argument(help="Checkpoint (best.pt / last.pt) or run folder to export.")],
    format_: Annotated[
        Literal["onnx", "torchscript"], typer.Option("--format", help="onnx (needs clpose[export]) or torchscript.")
    ] = "onnx",
    out: Annotated[Path | None, typer.Option(help="Output file (default: next to the checkpoint).")] = None,
    input_size: Annotated[str | None, typer.Option(help="Input size HxW (default: the recipe's).")] = None,
    dynamic_batch: Annotated[bool, typer.Option(help="Accept any batch size (default: the batch is fixed).")] = False,
    with_decode: Annotated[
        bool, typer.Option(help="Include the decode: the model returns keypoints (crop pixels) and scores.")
    ] = False,
    opset: Annotated[int, typer.Option(help="ONNX opset version.")] = 18,
    int8: Int8 = False,
    calibration: Calibration = None,
    runtime: Int8Runtime = "auto",
) -> None:
    """Export the network (optionally with the decode) and check it against PyTorch.

    The parity check runs random and real crops through both and asserts the maps agree within 1e-3 and the
    keypoints within 0.05 px; the file is only written when it passes.
    """
    from clpose.config import parse_hw
    from clpose.console import console
    from clpose.engine.checkpoint import find_checkpoint
    from clpose.export import KEYPOINT_TOLERANCE, MAP_TOLERANCE
    from clpose.export import export as run_export
    from clpose.outputs import check_outputs

    if checkpoint.is_dir():
        checkpoint = find_checkpoint(checkpoint)
    if int8 or calibration is not None:
        _export_int8(checkpoint, out, input_size, format_, with_decode, opset, int8, calibration, runtime)
        return
    suffix = ".onnx" if format_ == "onnx" else ".torchscript.pt"
    out = out or checkpoint.with_name(checkpoint.stem + ("-decode" if with_decode else "") + suffix)
    check_outputs({"--out": out}, {"the checkpoint": checkpoint})
    size = parse_hw(input_size, "--input-size") if input_size else None
    if format_ == "torchscript":
        console.print("note: PyTorch deprecates TorchScript (torch.jit); ONNX is the format to prefer")
    path, parity = run_export(checkpoint, out, format_, size, dynamic_batch, with_decode, opset)
    for p in parity:
        maps = "-" if p.map_diff != p.map_diff else f"{p.map_diff:.2e}"
        console.print(
            f"parity on {p.inputs} inputs: max |maps diff| {maps} (tolerance {MAP_TOLERANCE:g}), "
            f"max |keypoint diff| {p.keypoint_diff:.2e} px (tolerance {KEYPOINT_TOLERANCE:g})"
        )
    console.print(f"wrote {path}")


def _export_int8(
    checkpoint: Path,
    out: Path | None,
    input_size: str | None,
    format_: str,
    with_decode: bool,
    opset: int,
    int8: bool,
    calibration: Path | None,
    runtime: str,
) -> None:
    """`export --int8`: the int8 graph of `--int8` in infer and eval, for deployment (maps out, any batch size)."""
    from clpose.config import parse_hw
    from clpose.console import console
    from clpose.errors import ClposeError
    from clpose.export import export_int8, int8_record_path
    from clpose.outputs import check_outputs

    if not int8:
        raise ClposeError("--calibration gives the crops an int8 graph is calibrated on: add --int8")
    if format_ != "onnx" or with_decode or opset != 18:
        raise ClposeError(
            "--int8 exports the int8 ONNX graph of the maps as NNCF writes it (opset 18): no --format torchscript, "
            "--with-decode or --opset (decode the maps with the codec, clpose.codecs)"
        )
    out = out or checkpoint.with_name(checkpoint.stem + "-int8.onnx")
    check_outputs({"--out": out, "its record": int8_record_path(out)}, {"the checkpoint": checkpoint})
    crops = None
    if calibration is not None:
        from clpose.inference.calibration import path_calibration, whole_frames

        check_outputs({}, {"--calibration": calibration})
        crops = path_calibration(calibration, whole_frames, "each image one person")
    size = parse_hw(input_size, "--input-size") if input_size else None
    path, record = export_int8(checkpoint, out, size, runtime, crops)
    console.print(f"wrote {path} and {int8_record_path(path)} (calibration: {record['calibration']})")
