"""The one home of the month rule (data/months.py) and of number formatting (formatting.py)."""

import logging
import re
from datetime import date

import pytest

from automl_tasks.data.months import PATTERN, Month, describe_months, first_scheduled, months_ending
from automl_tasks.errors import ConfigError, SpecError
from automl_tasks.formatting import number
from automl_tasks.spec import check_month


def test_month_parses_prints_orders_and_shifts():
    month = Month.parse("2018-01")
    assert (month.year, month.month, str(month)) == (2018, 1, "2018-01")
    assert str(month - 1) == "2017-12" and str(month + 11) == "2018-12" and str(month + 12) == "2019-01"
    assert str(Month.parse("0999-12") + 1) == "1000-01"                 # four digits, always
    assert month.step == 2018 * 12 and Month.from_step(month.step) == month
    assert (Month.parse("2017-10").step, Month.parse("2017-11").step) == (2017 * 12 + 9, 2017 * 12 + 10)
    assert Month.parse("2017-12") < month < Month.parse("2018-02")
    assert sorted(map(Month.parse, ["2018-10", "2018-02", "2017-11"])) == [
        Month(2017, 11), Month(2018, 2), Month(2018, 10)]


@pytest.mark.parametrize("bad", ["2018-13", "2018-00", "2018-1", "18-01", "2018-01-01", "2018/01", "", " 2018-01",
                                 "2018-01\n", "٢٠١٨-01", None, 201801])
def test_a_bad_month_is_an_error_naming_the_value(bad):
    with pytest.raises(SpecError, match=re.escape(f"month must look like YYYY-MM, got {bad!r}")):
        Month.parse(bad)
    with pytest.raises(SpecError, match=re.escape(f"AUTOML_FIRST_MONTH must look like YYYY-MM, got {bad!r}")):
        Month.parse(bad, "AUTOML_FIRST_MONTH")
    with pytest.raises(SpecError, match=re.escape(repr(bad))):
        check_month(bad)


def test_check_month_returns_the_month_and_the_pattern_is_the_parsers():
    assert check_month("2018-06") == "2018-06"
    assert re.fullmatch(PATTERN, "2018-06") and not re.fullmatch(PATTERN, "2018-6")


def test_month_ranges():
    assert months_ending("2018-02", 3) == ("2017-12", "2018-01", "2018-02")
    assert months_ending("2018-02", 1) == ("2018-02",) and months_ending("2018-02", 0) == ()
    assert describe_months(("2018-01", "2018-02", "2018-03")) == "2018-01..2018-03"
    assert describe_months(["2018-06"]) == "2018-06" and describe_months(()) == "none"


def test_number_keeps_each_reports_missing_mark():
    assert number(0.12345) == "0.1235" and number(0.5, digits=5) == "0.50000" and number(0.25, digits=3) == "0.250"
    assert number(0.0, signed=True) == "+0.0000" and number(-0.01234, True) == "-0.0123"
    assert number(None) == "-" and number(None, True, missing="–") == "–"
    assert number(float("nan")) == "nan"          # only None is missing; NaN shows as it is


def test_the_schedule_starts_at_the_chosen_month_or_now_and_catchup_is_bounded(caplog):
    """AUTOML_FIRST_MONTH / AUTOML_MAX_CATCHUP_MONTHS (docs/operations.md): never a silent 2018."""
    today = date(2026, 3, 17)
    assert first_scheduled(None, None, today) == first_scheduled("", "12", today) == Month(2026, 3)
    assert first_scheduled("2025-06", None, today) == Month(2025, 6)          # within 12 months
    assert first_scheduled("2025-03", None, today) == Month(2025, 3)          # exactly 12 back
    assert first_scheduled("2026-05", None, today) == Month(2026, 5)          # the future: nothing to catch up
    assert caplog.records == []
    with caplog.at_level(logging.WARNING, logger="automl_tasks.data.months"):
        assert first_scheduled("2018-01", None, today) == Month(2025, 3)      # moved up to the bound
    [warning] = caplog.records
    assert warning.levelno == logging.WARNING
    assert warning.getMessage().startswith(
        "AUTOML_FIRST_MONTH=2018-01 is 98 months before 2026-03, more than AUTOML_MAX_CATCHUP_MONTHS=12: "
        "the schedule starts at 2025-03 instead"), warning.getMessage()
    assert first_scheduled("2018-01", "1200", today) == Month(2018, 1)        # raised: the demo, the tests
    assert first_scheduled("2025-12", "0", today) == Month(2026, 3)           # 0: no catchup at all
    with pytest.raises(SpecError, match="AUTOML_FIRST_MONTH must look like YYYY-MM, got '2018-1'"):
        first_scheduled("2018-1", None, today)
    for bad in ("-1", "twelve", "1.5"):
        with pytest.raises(ConfigError, match=f"AUTOML_MAX_CATCHUP_MONTHS must be a whole number.*{re.escape(repr(bad))}"):
            first_scheduled("2025-01", bad, today)
