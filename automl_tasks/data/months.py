"""Months (`YYYY-MM`): the one pattern, parse, order, arithmetic and MLflow step.

Months travel as `YYYY-MM` strings (tags, Spark values, dict keys, DAG Params); this is
the one place that reads, checks and shifts them, so no module re-derives the rules.
Standard library only: the DAG files import it for PATTERN and the backfill's first month.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from automl_tasks.errors import SpecError

# One pattern for every engine: Python (fullmatch), Spark's rlike (data/sources.py) and the
# DAG Params' JSON schema, so a month one accepts is a month all accept.
PATTERN = r"^\d{4}-(0[1-9]|1[0-2])$"
_MONTH = re.compile(PATTERN, re.ASCII)   # ASCII: \d is 0-9 only, as in Java's rlike


@dataclass(frozen=True, order=True)
class Month:
    """A calendar month; orders by time, prints as `YYYY-MM`."""

    year: int
    month: int   # 1..12

    @classmethod
    def parse(cls, text, what: str = "month") -> Month:
        """`text` as a Month, or a SpecError that names `what` and the value."""
        if not isinstance(text, str) or not _MONTH.fullmatch(text):
            raise SpecError(f"{what} must look like YYYY-MM, got {text!r}")
        return cls(int(text[:4]), int(text[5:]))

    @classmethod
    def from_step(cls, step: int) -> Month:
        return cls(step // 12, step % 12 + 1)

    @property
    def step(self) -> int:
        """Months as consecutive integers: MLflow charts a metric logged per month over time."""
        return self.year * 12 + self.month - 1

    def __add__(self, months: int) -> Month:
        return Month.from_step(self.step + months)

    def __sub__(self, months: int) -> Month:
        return Month.from_step(self.step - months)

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"


def months_ending(last: str, count: int) -> tuple[str, ...]:
    """The `count` months up to and including `last`, oldest first (a holdout, a training window)."""
    end = Month.parse(last)
    return tuple(str(end - k) for k in range(count - 1, -1, -1))


def describe_months(months) -> str:
    """`2018-06`, or `2018-01..2018-06` for consecutive months; `none` for no month."""
    if not months:
        return "none"
    first, last = months[0], months[-1]
    return first if first == last else f"{first}..{last}"
