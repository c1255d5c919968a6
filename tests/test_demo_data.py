"""The demo generator's planted facts: the rest of the project is checked against them."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pandas.testing as pdt
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from threadpoolctl import threadpool_limits

from automl_tasks.data.demo import (
    COVARIATE_SHIFT,
    DEFAULT_SHIFT_MONTH,
    LATE_PURPOSE,
    generate_bureau,
    generate_loans,
    write_demo_data,
)

NUMERIC = ["income", "loan_amount", "loan_length", "car_value", "debt_ratio", "age", "credit_history_years"]
CATEGORICAL = ["salary_range", "region", "employment", "purpose", "segment"]
EXPECTED_DTYPES = {
    "id": "int64", "timestamp": "datetime64[ns]", "month": "object", "income": "float64",
    "loan_amount": "float64", "loan_length": "int64", "car_value": "float64", "debt_ratio": "float64",
    "age": "int64", "credit_history_years": "float64", "salary_range": "object", "region": "object",
    "employment": "object", "purpose": "object", "segment": "object", "default": "int64",
    "grade": "object", "loss": "float64",
}


@pytest.fixture(scope="module")
def loans() -> pd.DataFrame:
    return generate_loans(24, 1500, seed=0)


@pytest.fixture(scope="module")
def joined(loans) -> pd.DataFrame:
    return loans.merge(generate_bureau(loans, seed=0), on="id", validate="one_to_one")


def _design(df: pd.DataFrame, extra: list[str]) -> pd.DataFrame:
    """Standardised numeric + one-hot categoricals, fitted on the whole frame (fine for a test)."""
    x = df[NUMERIC + extra].astype(float)
    x = x.assign(income=np.log(x.income), loan_amount=np.log(x.loan_amount),
                 car_value=np.log(x.car_value).fillna(np.log(x.car_value).median()))
    x = pd.concat([x, pd.get_dummies(df[CATEGORICAL], dtype=float)], axis=1)
    return (x - x.mean()) / x.std().replace(0, 1)


def _auc(df: pd.DataFrame, train: pd.Series, test: pd.Series, extra=(), base=True) -> float:
    x = _design(df, list(extra))
    cols = list(x.columns) if base else list(extra)
    with threadpool_limits(1):  # BLAS threads on a busy CI box make these tiny fits 20x slower
        model = LogisticRegression(max_iter=2000).fit(x.loc[train, cols], df.loc[train, "default"])
    return roc_auc_score(df.loc[test, "default"], model.predict_proba(x.loc[test, cols])[:, 1])


def test_same_arguments_give_identical_frames():
    a, b = generate_loans(6, 300, seed=3), generate_loans(6, 300, seed=3)
    pdt.assert_frame_equal(a, b)
    pdt.assert_frame_equal(generate_bureau(a, seed=3), generate_bureau(b, seed=3))
    assert not generate_loans(6, 300, seed=4)["income"].equals(a["income"])


def test_columns_dtypes_and_month_coverage(loans):
    assert dict(loans.dtypes.astype(str)) == EXPECTED_DTYPES
    assert loans["id"].is_unique
    months = pd.period_range("2017-01", periods=24, freq="M").strftime("%Y-%m").tolist()
    assert sorted(loans["month"].unique()) == months
    assert (loans.groupby("month").size() == 1500).all()
    # month is the timestamp's month; timestamps are spread over the whole month.
    assert (loans["timestamp"].dt.strftime("%Y-%m") == loans["month"]).all()
    days = loans.loc[loans["month"] == "2017-01", "timestamp"].dt.day
    assert days.min() <= 2 and days.max() >= 30
    assert set(loans["loan_length"]) == {12, 24, 36, 60}
    assert set(loans["grade"]) == {"A", "B", "C"}
    assert set(loans["segment"]) == {"retail", "sme", "premium"}
    assert 6 <= loans["region"].nunique() <= 8
    assert (loans["loss"] > 0).all()


def test_label_rates_missing_values_and_feature_label_links(loans):
    for _, month in loans.groupby("month"):
        assert 0.13 <= month["default"].mean() <= 0.26
    assert 0.03 <= loans["car_value"].isna().mean() <= 0.07
    assert loans.drop(columns="car_value").notna().all().all()
    # grade follows risk: C loans carry more debt than A loans; loss grows with the loan.
    by_grade = loans.groupby("grade")["debt_ratio"].mean()
    assert by_grade["A"] < by_grade["B"] < by_grade["C"]
    assert loans[["loss", "loan_amount"]].corr(method="spearman").iloc[0, 1] > 0.5
    salary = loans.groupby("salary_range")["income"].agg(["min", "max"])
    assert salary.loc["<20k", "max"] < 20_000 <= salary.loc["20-40k", "min"]


def test_gradual_drift_in_income_and_debt_ratio(loans):
    first, last = loans[loans["month"] <= "2017-03"], loans[loans["month"] >= "2018-10"]
    assert last["income"].median() > 1.15 * first["income"].median()
    assert last["debt_ratio"].std() > 1.3 * first["debt_ratio"].std()


def test_late_purpose_only_in_late_months(loans):
    months = loans.loc[loans["purpose"] == LATE_PURPOSE, "month"].unique()
    assert len(months) > 0 and min(months) >= "2018-07"
    assert loans.loc[loans["month"] < "2018-07", "purpose"].nunique() == 5


@pytest.mark.parametrize("bad", ["2017-01", "2016-12", "2019-01", "not-a-month"])
def test_shift_month_outside_range_is_rejected_by_name(bad):
    with pytest.raises(ValueError, match=bad):
        generate_loans(24, 10, shift_month=bad)


def test_covariate_shift_raises_debt_ratio_in_its_months_and_keeps_its_effect():
    """Only the named month changes; its debt_ratio rises (clipped at 1.5) and, drawn from the same
    uniforms with the same mechanism, every default stays a default and some rows newly default."""
    plain = generate_loans(6, 400, start="2018-01", shift_month="2018-06", seed=2)
    moved = generate_loans(6, 400, start="2018-01", shift_month="2018-06", covariate_months=["2018-03"], seed=2)
    month = plain["month"] == "2018-03"
    pdt.assert_frame_equal(plain[~month], moved[~month])
    rise = (moved.loc[month, "debt_ratio"] - plain.loc[month, "debt_ratio"]).round(4)
    assert rise.between(0, COVARIATE_SHIFT).all() and (rise == COVARIATE_SHIFT).mean() > 0.95   # clipped to [0, 1.5]
    assert (moved.loc[month, "default"] >= plain.loc[month, "default"]).all()
    assert moved.loc[month, "default"].sum() > plain.loc[month, "default"].sum()
    pdt.assert_frame_equal(plain.loc[month].drop(columns=["debt_ratio", "default", "grade", "loss"]),
                           moved.loc[month].drop(columns=["debt_ratio", "default", "grade", "loss"]))


def test_a_covariate_month_outside_the_data_is_refused_by_name(tmp_path, capsys):
    from automl_tasks.cli import main

    assert main(["demo-data", "--out", str(tmp_path / "d"), "--months", "3", "--covariate-shift", "2030-01"]) == 2
    assert "covariate_months: 2030-01 lies outside the generated months 2017-01..2017-03" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()


def test_default_shift_month_and_fallback():
    assert pd.Period(DEFAULT_SHIFT_MONTH, freq="M") > pd.Period("2017-01", freq="M")
    # The shift only moves labels: features agree everywhere, labels agree before both shifts.
    a = generate_loans(24, 200, seed=1)
    b = generate_loans(24, 200, shift_month="2018-09", seed=1)
    pdt.assert_frame_equal(a.drop(columns="default"), b.drop(columns="default"))
    early = a["month"] < DEFAULT_SHIFT_MONTH
    assert a.loc[early, "default"].equals(b.loc[early, "default"])
    assert not a["default"].equals(b["default"])
    # A short range that excludes the default shift month still generates (3/4 of the way in).
    assert generate_loans(4, 10, start="2020-01")["month"].nunique() == 4


def test_concept_shift_makes_a_retrained_model_win(loans):
    month = loans["month"]
    before = month.between("2018-01", "2018-06")  # six months before DEFAULT_SHIFT_MONTH
    after = month.between("2018-07", "2018-11")
    scored = month == "2018-12"
    stale, fresh = _auc(loans, before, scored), _auc(loans, after, scored)
    assert fresh - stale > 0.03, (stale, fresh)


def test_bureau_features_useful_noise_and_leaky(joined):
    train = joined["month"] < "2018-01"
    test = joined["month"].between("2018-01", "2018-06")
    base = _auc(joined, train, test)
    assert base > 0.7
    assert _auc(joined, train, test, ["bureau_score"]) - base > 0.02
    assert _auc(joined, train, test, ["num_late_payments"]) - base > 0.005
    for noise in ("noise_1", "noise_2"):
        assert abs(_auc(joined, train, test, [noise]) - base) < 0.003
    assert _auc(joined, train, test, ["days_to_default_flag"], base=False) > 0.97


def test_bureau_shape_and_order_independence(loans):
    bureau = generate_bureau(loans, seed=0)
    assert list(bureau.columns) == ["id", "as_of", "bureau_score", "num_late_payments",
                                    "noise_1", "noise_2", "days_to_default_flag"]
    assert bureau["id"].equals(loans["id"])
    assert 0.9 <= (bureau["as_of"] <= loans["timestamp"]).mean() < 1.0
    assert 0.005 <= (bureau["days_to_default_flag"] != loans["default"]).mean() <= 0.015
    # Values are a function of (id, seed): any subset, in any order, gets the same values.
    subset = loans.sample(frac=0.2, random_state=1)
    again = generate_bureau(subset, seed=0).set_index("id").sort_index()
    pdt.assert_frame_equal(again, bureau.set_index("id").loc[again.index])


def test_write_demo_data_parquet_is_readable_and_idempotent(tmp_path):
    paths = write_demo_data(tmp_path, n_months=4, rows_per_month=50, shift_month="2017-03")
    files = sorted(p.name for p in (tmp_path / "loans").iterdir())
    assert files == ["2017-01.parquet", "2017-02.parquet", "2017-03.parquet", "2017-04.parquet"]
    expected = generate_loans(4, 50, shift_month="2017-03")
    pdt.assert_frame_equal(pd.read_parquet(paths["loans"]).sort_values("id", ignore_index=True),
                           expected, check_dtype=False)
    assert pd.read_parquet(paths["bureau"])["id"].tolist() == expected["id"].tolist()
    # Rewriting with fewer months replaces: no stale month files, no duplicated rows.
    write_demo_data(tmp_path, n_months=3, rows_per_month=50, shift_month="2017-03")
    assert len(list((tmp_path / "loans").iterdir())) == 3
    assert len(pd.read_parquet(paths["loans"])) == 150
    assert not list(tmp_path.rglob(".*.tmp"))


def test_write_demo_data_csv(tmp_path):
    paths = write_demo_data(tmp_path, n_months=2, rows_per_month=20, fmt="csv")
    assert paths["loans"].endswith("loans.csv")
    back = pd.read_csv(paths["loans"], parse_dates=["timestamp"])
    assert len(back) == 40
    assert back["car_value"].isna().sum() == generate_loans(2, 20)["car_value"].isna().sum()
    with pytest.raises(ValueError, match="xlsx"):
        write_demo_data(tmp_path, fmt="xlsx")


def test_demo_specs_repo_is_reproducible_and_never_overwrites_a_foreign_folder(tmp_path, capsys):
    """Same specs, same commits (so a re-run demo reuses its runs); a folder it did not write is refused."""
    import subprocess
    from pathlib import Path

    from automl_tasks.cli import main

    spec = Path(__file__).resolve().parents[1] / "specs" / "loan_default.yaml"
    args = ["demo-data", "--out", str(tmp_path / "data"), "--months", "3", "--rows-per-month", "20",
            "--specs-repo", str(tmp_path / "repo"), "--spec", str(spec), "--json"]
    runs = []
    for _ in range(2):
        assert main(args) == 0
        runs.append(json.loads(capsys.readouterr().out)["specs_repo"]["commits"])
    assert runs[0] == runs[1] and set(runs[0]) == {"master", "develop"}
    diff = subprocess.run(["git", "diff", "master", "develop"], cwd=tmp_path / "repo", capture_output=True,
                          text=True, check=True).stdout
    assert "+- bureau_score" in diff and "bureau.parquet" in diff

    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    bad = ["demo-data", "--out", str(tmp_path / "other_data"), "--months", "3",
           "--specs-repo", str(foreign), "--spec", str(spec)]
    assert main(bad) == 2
    assert "was not written by demo-data" in capsys.readouterr().err
    assert (foreign / "notes.txt").read_text() == "keep me" and not (tmp_path / "other_data").exists()
