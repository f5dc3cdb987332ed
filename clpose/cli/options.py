"""Options that several commands share, written once: the device and the precision of a trained network, and the
check of a name against one of clpose's registries (metrics, datasets), whose valid names are read when the command
runs, so that a registered entry is a valid value with no edit here."""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import typer

from clpose.config import AMP_HELP, AmpName
from clpose.engine.runtime_names import RUNTIME_HELP
from clpose.errors import ClposeError

T = TypeVar("T")

Device = Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")]
Amp = Annotated[AmpName, typer.Option(help=AMP_HELP)]
RuntimeName = Literal["auto", "torch", "onnxruntime", "openvino"]  # clpose.engine.runtimes.RUNTIME_CHOICES
Runtime = Annotated[RuntimeName, typer.Option(envvar="CLPOSE_RUNTIME", help=RUNTIME_HELP, show_envvar=False)]
Threads = Annotated[
    int | None, typer.Option(help="CPU threads of the network and the runtime (default: torch's, one per core).")
]
Int8 = Annotated[
    bool,
    typer.Option(
        "--int8",
        help="Run the network's int8 graph (NNCF post-training quantisation, in openvino or onnxruntime): calibrated "
        "on crops of the recipe's training split (or --calibration), compared with fp32 on held-out crops when it is "
        "made, refused past the accuracy budget (docs/inference.md, INT8), cached beside the checkpoint.",
    ),
]
Calibration = Annotated[
    Path | None,
    typer.Option(
        help="With --int8: images, a folder or a video to calibrate on where the recipe's training data is not on "
        "this machine (crops of the people found in them; every fifth held out for the check).",
    ),
]
Compile = Annotated[
    bool,
    typer.Option(
        "--compile",
        help="torch runtime: torch.compile the network (inductor, freezing) for long inputs such as a video or a "
        "dataset; each batch size compiles once (the time is shown).",
    ),
]


def registered(option: str, names: Callable[[], Iterable[str]]) -> Callable[[str | None], str | None]:
    """A typer callback that accepts a value only if `names()` (read at that moment) holds it."""

    def check(value: str | None) -> str | None:
        if value is None:
            return value
        valid = list(names())
        if value not in valid:
            close = difflib.get_close_matches(value, valid, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ClposeError(f"{option} {value!r}: unknown{hint}; valid: {', '.join(valid)}")
        return value

    return check


def options_from(cls: type[T], params: Mapping[str, Any], **renamed: Any) -> T:
    """An options dataclass (e.g. EvalOptions, InferOptions) from a command's parameters of the same names, and
    `renamed` for the fields whose option is spelt otherwise on the command line."""
    names = {f.name for f in dataclasses.fields(cls)} - set(renamed)
    return cls(**{k: v for k, v in params.items() if k in names}, **renamed)


def metric_names() -> list[str]:
    from clpose.evaluation.metrics import METRICS

    return list(METRICS)


def dataset_names() -> list[str]:
    from clpose.data.prepare import DATASETS

    return list(DATASETS)
