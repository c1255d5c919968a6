"""Month windows: which months train, which months are the out-of-time holdout."""

from __future__ import annotations

from dataclasses import dataclass

from automl_tasks.data.months import Month, describe_months, months_ending
from automl_tasks.errors import DataError


@dataclass(frozen=True)
class Window:
    train: tuple[str, ...]        # months that train (and validate, by the validation method)
    holdout: str | None           # the run's month (--month), or None: names the run in tags and messages
    # Every month held out (window.holdout_months of them, ending at `holdout`), compared as one.
    holdout_months: tuple[str, ...]

    def describe_holdout(self) -> str:
        """`2018-06`, or `2018-05..2018-06` for a holdout of several months; `none` without one."""
        return describe_months(self.holdout_months)


def select_window(counts: dict[str, int], month: str | None, train_months: int,
                  min_rows_per_month: int = 1, holdout_count: int = 1) -> Window:
    """Pick the window from per-month row counts, or say exactly which month is wrong.

    The holdout is the `holdout_count` months ending at `month`; the `train_months`
    months before the first of them train.
    """
    if not counts:
        raise DataError("the data has no rows")
    first, last = min(counts), max(counts)
    if month is None:
        return Window(tuple(sorted(counts)), None, ())
    if month < first or month > last:
        raise DataError(f"month {month} is outside the data, which covers {first} to {last}")
    if counts.get(month, 0) == 0:
        raise DataError(f"month {month} has no rows (the data covers {first} to {last})")
    held = months_ending(month, holdout_count)
    empty = [m for m in held if counts.get(m, 0) == 0]
    if empty:
        raise DataError(f"holdout month {empty[0]} has no rows (window.holdout_months: {holdout_count} "
                        f"holds out {held[0]} to {month}; the data covers {first} to {last})")
    wanted = list(months_ending(str(Month.parse(held[0]) - 1), train_months))
    available = [m for m in wanted if m >= first]
    if len(available) < len(wanted):
        raise DataError(
            f"window for {month} asks for {train_months} training months ({wanted[0]} to {wanted[-1]}) "
            f"but the data starts at {first}: only {len(available)} available")
    empty = [m for m in wanted if counts.get(m, 0) < min_rows_per_month]
    if empty:
        raise DataError(f"training month {empty[0]} has {counts.get(empty[0], 0)} rows "
                        f"(window {wanted[0]} to {wanted[-1]} for {month}); "
                        f"missing months: {', '.join(empty)}")
    return Window(tuple(wanted), month, held)
