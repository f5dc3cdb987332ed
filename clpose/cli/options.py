"""Options that several commands share, written once: the device and the precision of a trained network, and the
check of a name against one of clpose's registries (metrics, datasets), whose valid names are read when the command
runs, so that a registered entry is a valid value with no edit here."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Annotated, Any

import typer

from clpose.config import AMP_HELP, AmpName
from clpose.engine.runtime_names import ranked, runtime_choices, runtime_help
from clpose.errors import ClposeError

Device = Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")]
Amp = Annotated[AmpName, typer.Option(help=AMP_HELP)]


class LiveHelpOption(typer.models.OptionInfo):
    """A typer option whose help and choices are read from a registry each time the command is built (at every run),
    so that a runtime registered by a plugin is listed with the built-in ones; typer copies both from here."""

    def __init__(
        self,
        option: str,
        help_of: Callable[[], str],
        choices: Callable[[], Iterable[str]],
        check: bool = True,  # False: the command checks the value itself
        **kwargs: Any,
    ) -> None:
        self._help_of, self._choices = help_of, choices
        callback = registered(option, choices) if check else None
        super().__init__(default=..., param_decls=(), callback=callback, **kwargs)

    @property
    def help(self) -> str:  # type: ignore[override]
        return self._help_of()

    @help.setter
    def help(self, value: str | None) -> None:  # OptionInfo.__init__ assigns it; the registry is the source
        pass

    @property
    def metavar(self) -> str:  # type: ignore[override]
        return "[" + "|".join(self._choices()) + "]"

    @metavar.setter
    def metavar(self, value: str | None) -> None:
        pass


def registered(option: str, names: Callable[[], Iterable[str]]) -> Callable[[Any], Any]:
    """A typer callback that accepts a value only if `names()` (read at that moment) holds it."""

    def check(value: Any) -> Any:
        if value is None:
            return value
        if isinstance(value, list):  # a repeatable option
            return [check(v) for v in value]
        valid = list(names())
        if value not in valid:
            close = difflib.get_close_matches(value, valid, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ClposeError(f"{option} {value!r}: unknown{hint}; valid: {', '.join(valid)}")
        return value

    return check


def _runtime_option(default_said: str, **kwargs: Any) -> LiveHelpOption:
    return LiveHelpOption("--runtime", lambda: runtime_help(default_said), runtime_choices, **kwargs)


# --runtime: auto or a name in clpose.engine.runtime_names.RUNTIMES, read when the command runs
Runtime = Annotated[str, _runtime_option("$CLPOSE_RUNTIME, else auto", envvar="CLPOSE_RUNTIME", show_envvar=False)]
EvalRuntime = Annotated[str, _runtime_option("torch, the reference (the other runtimes' scores equal its within the "
                                             "tolerances of docs/evaluation.md)")]  # fmt: skip
Int8Runtime = Annotated[
    str,
    LiveHelpOption(
        "--runtime",
        lambda: f"With --int8: the runtime that checks the int8 graph (auto: {', else '.join(ranked('int8_rank'))}).",
        lambda: ["auto", *ranked("int8_rank")],
    ),
]
Threads = Annotated[
    int | None, typer.Option(help="CPU threads of the network and the runtime (default: torch's, one per core).")
]
Int8 = Annotated[
    bool,
    typer.Option(
        "--int8",
        help="Run the network's int8 graph (NNCF post-training quantisation, in openvino or onnxruntime): calibrated "
        "on crops of the recipe's training split (or --calibration), compared with fp32 on held-out crops when it is "
        "made, refused past the accuracy budget (docs/inference.md, INT8), cached beside the checkpoint. infer's "
        "single-shot detector (ssdlite320_mobilenet_v3_large) is quantised and checked too, on whole frames.",
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


def save_format_names() -> list[str]:
    from clpose.evaluation.submission import save_format_names as names

    return names()


def metric_names() -> list[str]:
    from clpose.evaluation.metrics import METRICS

    return list(METRICS)


def dataset_names() -> list[str]:
    from clpose.data.prepare import DATASETS

    return list(DATASETS)
