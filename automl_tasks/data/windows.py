"""Month windows: which months train, which months are the out-of-time holdout."""

from __future__ import annotations

from dataclasses import dataclass

from automl_tasks.errors import DataError


def shift_month(month: str, delta: int) -> str:
    year, mon = map(int, month.split("-"))
    index = year * 12 + (mon - 1) + delta
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def holdout_months(month: str, count: int) -> tuple[str, ...]:
    """The `count` months ending at `month` (the run's month), oldest first."""
    return tuple(shift_month(month, -k) for k in range(count - 1, -1, -1))


def describe_months(months) -> str:
    """`2018-06`, or `2018-01..2018-06` for consecutive months; `none` for no month."""
    if not months:
        return "none"
    first, last = months[0], months[-1]
    return first if first == last else f"{first}..{last}"


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
    held = holdout_months(month, holdout_count)
    empty = [m for m in held if counts.get(m, 0) == 0]
    if empty:
        raise DataError(f"holdout month {empty[0]} has no rows (window.holdout_months: {holdout_count} "
                        f"holds out {held[0]} to {month}; the data covers {first} to {last})")
    wanted = [shift_month(held[0], -k) for k in range(train_months, 0, -1)]
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
