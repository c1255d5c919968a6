"""Month windows: which months train, which month is the out-of-time holdout."""

from __future__ import annotations

from dataclasses import dataclass

from automl_tasks.errors import DataError


def shift_month(month: str, delta: int) -> str:
    year, mon = map(int, month.split("-"))
    index = year * 12 + (mon - 1) + delta
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


@dataclass(frozen=True)
class Window:
    train: tuple[str, ...]        # months that train (and validate, by the validation method)
    holdout: str | None           # the out-of-time month, or None without --month


def select_window(counts: dict[str, int], month: str | None, train_months: int,
                  min_rows_per_month: int = 1) -> Window:
    """Pick the window from per-month row counts, or say exactly which month is wrong."""
    if not counts:
        raise DataError("the data has no rows")
    first, last = min(counts), max(counts)
    if month is None:
        return Window(tuple(sorted(counts)), None)
    if month < first or month > last:
        raise DataError(f"month {month} is outside the data, which covers {first} to {last}")
    if counts.get(month, 0) == 0:
        raise DataError(f"month {month} has no rows (the data covers {first} to {last})")
    wanted = [shift_month(month, -k) for k in range(train_months, 0, -1)]
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
    return Window(tuple(wanted), month)
