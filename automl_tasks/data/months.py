"""Months (`YYYY-MM`): the one pattern, parse, order, arithmetic and MLflow step.

Months travel as `YYYY-MM` strings (tags, Spark values, dict keys, DAG Params); this is
the one place that reads, checks and shifts them, so no module re-derives the rules.
Standard library only: the DAG files import it for PATTERN and the schedule's first month.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import date

from automl_tasks.errors import ConfigError, SpecError

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


# A schedule's catchup creates at most this many runs before the current month (docs/operations.md).
MAX_CATCHUP_MONTHS = 12


def first_scheduled(first: str | None, max_catchup: str | None, today: date) -> Month:
    """The month a monthly schedule starts at, from AUTOML_FIRST_MONTH (`first`) and
    AUTOML_MAX_CATCHUP_MONTHS (`max_catchup`, default 12) on `today`.

    Unset or empty `first`: the current month, so no history is backfilled. A `first` more than
    `max_catchup` months before the current month is moved up to that bound, with a warning
    (logged: the dag-processor's log of the DAG file), not an error: FIRST_MONTH stays fixed while
    time passes, so an error would break a deployment that has run for a year; the bound only
    limits how many runs unpausing (or an outage) can start at once."""
    now = Month(today.year, today.month)
    if not first:
        return now
    start = Month.parse(first, "AUTOML_FIRST_MONTH")
    raw = "" if max_catchup is None else max_catchup.strip()
    if raw and not raw.isdigit():
        raise ConfigError(f"AUTOML_MAX_CATCHUP_MONTHS must be a whole number of months (0 or more), got {raw!r}")
    bound = now - (int(raw) if raw else MAX_CATCHUP_MONTHS)
    if start < bound:
        logging.getLogger(__name__).warning(
            "AUTOML_FIRST_MONTH=%s is %d months before %s, more than AUTOML_MAX_CATCHUP_MONTHS=%d: the "
            "schedule starts at %s instead (catchup would start a run for every month). To build the older "
            "months, raise AUTOML_MAX_CATCHUP_MONTHS or backfill them (docs/operations.md)",
            start, now.step - start.step, now, now.step - bound.step, bound)
        return bound
    return start
