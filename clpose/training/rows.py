"""One epoch of training as a typed record (`EpochRow`): what the loop measures, the health warnings judge,
curves.png draws and metrics.jsonl keeps, one line per epoch. The loss's own parts (a LossEntry's) travel in `parts`;
in the file they sit beside the row's fields, as they always have, so a part may not take a field's name."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from clpose.errors import ClposeError


@dataclass
class EpochRow:
    """An epoch's numbers.

    Attributes:
        epoch: 1-based.
        loss: the mean total loss over the epoch's samples; `parts` the mean of each part the loss returned.
        samples_per_s, data_wait, steps, seconds: the epoch's speed, the share of it spent waiting for data, its
            optimiser steps and its seconds.
        lr, precision, precision_reason: the learning rate at its end and what the epoch ran in.
        metric, value, scale, table: the validation metric's name, its raw headline (None where the epoch was not
            validated or the value is undefined), its printed scale (COCO's AP x 100) and its whole table.
        warnings: the health warnings of this epoch (clpose.training.health).
    """

    epoch: int
    loss: float = math.nan
    parts: dict[str, float] = field(default_factory=dict)
    samples_per_s: float = math.nan
    data_wait: float = math.nan
    steps: int = 0
    seconds: float = math.nan
    lr: float = math.nan
    precision: str = ""
    precision_reason: str = ""
    metric: str = ""
    value: float | None = None
    scale: float = 1.0  # rows written before the scale was recorded: 1
    table: dict[str, Any] | None = None
    warnings: list[str] = field(default_factory=list)

    @staticmethod
    def check_parts(parts: dict[str, Any]) -> None:
        """A ClposeError where a loss part has the name of a row field (it would overwrite it in metrics.jsonl)."""
        taken = [p for p in parts if p in FIELDS]
        if taken:
            raise ClposeError(
                f"the loss returns a part named {taken[0]!r}, the name of a field of metrics.jsonl's rows "
                f"({', '.join(sorted(FIELDS - {'parts'}))}): rename the part in its loss"
            )

    def to_json(self) -> dict[str, Any]:
        """The metrics.jsonl line: the fields in order, with the loss parts after `loss`."""
        self.check_parts(self.parts)
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "parts"}
        head = {k: data.pop(k) for k in ("epoch", "loss")}
        return {**head, **self.parts, **data}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EpochRow:
        """A metrics.jsonl line read back: the row's fields by name, every other number a loss part."""
        known = {k: v for k, v in data.items() if k in FIELDS and k != "parts"}
        parts = {k: float(v) for k, v in data.items() if k not in FIELDS and isinstance(v, int | float)}
        return cls(**known, parts=parts)

    def scored(self) -> bool:
        """Whether the epoch was validated (its value may still be undefined: n/a)."""
        return self.value is not None or self.table is not None


FIELDS = frozenset(f.name for f in dataclasses.fields(EpochRow))
