"""Deterministic demo data: a monthly loan-default table plus a joinable bureau table.

No data files are committed; the demo, the tests and the benchmarks generate them here.
One loans table serves three specs (labels `default` binary, `grade` multiclass,
`loss` regression). Planted facts the rest of the project can be checked against:

* gradual drift: the income level rises (~+30% over the range) and debt_ratio widens;
* concept shift at `shift_month`: debt_ratio almost stops mattering for `default` and
  the "east"/"south_west" regions become risky, so a model retrained after the shift
  beats the pre-shift champion on post-shift months;
* covariate shift in `covariate_months` (none unless asked): debt_ratio rises by
  COVARIATE_SHIFT while the label's dependence on it stays, so a model's estimated metric
  without labels (monitoring/estimation.py) should follow the month, unlike the concept shift;
* purpose `LATE_PURPOSE` appears only in the last months (an unseen category at scoring);
* the bureau table: `bureau_score` and `num_late_payments` observe latent variables that
  drive `default` but appear nowhere in the loans table (useful), `noise_1`/`noise_2` are
  independent noise, `days_to_default_flag` is the label with 1% flips (leaky).

Latents and bureau values are pure functions of (id, seed) through a counter-based hash,
so `generate_bureau` rebuilds them from any subset of loans, in any row order.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

DEFAULT_SHIFT_MONTH = "2018-07"
LATE_PURPOSE = "solar_panels"
REGIONS = np.array(["north", "north_east", "east", "south", "south_west", "west", "central"], dtype=object)
SHIFT_REGIONS = ("east", "south_west")  # risky only from the shift month on
COVARIATE_SHIFT = 0.15                   # debt_ratio's rise in a covariate-shift month
EMPLOYMENT = np.array(["salaried", "self_employed", "unemployed", "retired"], dtype=object)
PURPOSES = np.array(["car", "home", "education", "business", "debt_consolidation"], dtype=object)
SEGMENTS = np.array(["retail", "sme", "premium"], dtype=object)
GRADES = np.array(["A", "B", "C"], dtype=object)
SALARY_BINS = np.array([20_000, 40_000, 70_000])
SALARY_RANGES = np.array(["<20k", "20-40k", "40-70k", "70k+"], dtype=object)

# Stream numbers keep the hashed per-id draws independent of each other.
_Z_CREDIT, _Z_LATE, _SCORE_NOISE, _LATE_DRAW, _NOISE_1, _NOISE_2, _FLIP, _ASOF, _ASOF_LATE = range(1, 10)


def _months(start: str, n_months: int) -> pd.PeriodIndex:
    if n_months < 2:
        raise ValueError(f"n_months={n_months!r}: need at least 2 months (one each side of the shift)")
    try:
        first = pd.Period(start, freq="M")
    except (ValueError, TypeError) as exc:
        raise ValueError(f"start={start!r} is not a month (expected 'YYYY-MM')") from exc
    return pd.period_range(first, periods=n_months, freq="M")


def _shift_index(months: pd.PeriodIndex, shift_month: str | None) -> int:
    """Index of the first post-shift month; it must leave at least one month before it."""
    if shift_month is None:  # the documented default when it fits, else 3/4 into the range
        inside = months[0] < pd.Period(DEFAULT_SHIFT_MONTH, freq="M") <= months[-1]
        shift_month = DEFAULT_SHIFT_MONTH if inside else str(months[(3 * len(months)) // 4])
    try:
        shift = pd.Period(shift_month, freq="M")
    except (ValueError, TypeError) as exc:
        raise ValueError(f"shift_month={shift_month!r} is not a month (expected 'YYYY-MM')") from exc
    if not months[0] < shift <= months[-1]:
        raise ValueError(f"shift_month={shift_month!r} must lie after {months[0]} and no later than "
                         f"{months[-1]} (the generated months)")
    return int(shift.ordinal - months[0].ordinal)


def _month_index(months: pd.PeriodIndex, month: str, what: str) -> int:
    try:
        period = pd.Period(month, freq="M")
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{what}: {month!r} is not a month (expected 'YYYY-MM')") from exc
    if not months[0] <= period <= months[-1]:
        raise ValueError(f"{what}: {month} lies outside the generated months {months[0]}..{months[-1]}")
    return int(period.ordinal - months[0].ordinal)


def _uniform(ids: np.ndarray, seed: int, stream: int) -> np.ndarray:
    """Uniform [0, 1) per id: a SplitMix64 hash of (id, seed, stream), order-independent."""
    with np.errstate(over="ignore"):
        x = ids.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
        x += np.uint64((seed * 0x2545F4914F6CDD1D + stream * 0xD1342543DE82EF95) % 2**64)
        x ^= x >> np.uint64(30)
        x *= np.uint64(0xBF58476D1CE4E5B9)
        x ^= x >> np.uint64(27)
        x *= np.uint64(0x94D049BB133111EB)
        x ^= x >> np.uint64(31)
    return (x >> np.uint64(11)).astype(np.float64) * 2.0**-53


def _normal(ids: np.ndarray, seed: int, stream: int) -> np.ndarray:
    """Standard normal per id (Box-Muller on two hashed uniforms, streams apart from _uniform's)."""
    u1, u2 = _uniform(ids, seed, 1000 + 2 * stream), _uniform(ids, seed, 1001 + 2 * stream)
    return np.sqrt(-2.0 * np.log1p(-u1)) * np.cos(2.0 * np.pi * u2)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def generate_loans(n_months: int = 24, rows_per_month: int = 2000, *, start: str = "2017-01",
                   shift_month: str | None = None, covariate_months=(), seed: int = 0) -> pd.DataFrame:
    """One row per loan, `rows_per_month` loans in each of `n_months` months from `start`.

    `shift_month` (YYYY-MM) is the first month of the new default mechanism; None means
    DEFAULT_SHIFT_MONTH when it lies in the range, else the month 3/4 of the way in.
    `covariate_months`: months whose debt_ratio rises (the other months are unchanged).
    """
    months = _months(start, n_months)
    shift = _shift_index(months, shift_month)
    covariate = [_month_index(months, c, "covariate_months") for c in covariate_months]
    if rows_per_month < 1:
        raise ValueError(f"rows_per_month={rows_per_month!r} must be at least 1")
    rng = np.random.default_rng([seed, 0x10A5])
    n = n_months * rows_per_month
    m = np.repeat(np.arange(n_months), rows_per_month)
    frac = m / (n_months - 1)  # 0 at the first month, 1 at the last: drives gradual drift

    # Timestamps uniform within each month, sorted so ids increase with time; whole seconds.
    starts = months.to_timestamp(how="start").values
    secs = (months.to_timestamp(how="end").values - starts) // np.timedelta64(1, "s")
    offs = np.sort(rng.random((n_months, rows_per_month)), axis=1) * secs[:, None]
    timestamp = np.repeat(starts, rows_per_month) + offs.ravel().astype("timedelta64[s]")
    ids = np.arange(1, n + 1, dtype=np.int64)

    age = np.clip(rng.normal(42, 12, n), 18, 80).astype(np.int64)
    emp = rng.choice(4, n, p=[0.66, 0.18, 0.08, 0.08])
    emp = np.where(age >= 67, 3, np.where(emp == 3, 0, emp))  # retirees are the old
    region = rng.integers(0, len(REGIONS), n)
    income = np.exp(np.log(32_000) + 0.28 * frac + rng.normal(0, 0.55, n)
                    - 0.9 * (emp == 2) - 0.3 * (emp == 3) + 0.15 * (emp == 1))
    seg = np.where(emp == 1, 1, np.where(income > 65_000, 2, 0))  # retail / sme / premium
    loan_length = rng.choice(np.array([12, 24, 36, 60]), n, p=[0.2, 0.3, 0.3, 0.2])
    loan_amount = income * np.exp(rng.normal(np.log(0.3), 0.4, n)) * (1 + loan_length / 120)
    car = income * np.exp(rng.normal(np.log(0.45), 0.5, n))
    debt_ratio = np.clip(0.35 + rng.normal(0, 1, n) * (0.10 + 0.08 * frac)           # widens
                         + COVARIATE_SHIFT * np.isin(m, covariate), 0.0, 1.5)
    history = (age - 18) * rng.uniform(0.1, 1.0, n)
    purpose = rng.choice(len(PURPOSES), n, p=[0.3, 0.25, 0.1, 0.15, 0.2])
    late = m >= n_months - max(1, n_months // 8)  # the unseen-at-training purpose
    purpose = np.where(late & (rng.random(n) < 0.03), len(PURPOSES), purpose)
    business = purpose == 3

    # Latents: hashed per id, seen again only through the bureau table.
    z_credit, z_late = _normal(ids, seed, _Z_CREDIT), _normal(ids, seed, _Z_LATE)
    dr_z = (debt_ratio - 0.35) / 0.12
    inc_z = (np.log(income) - np.log(32_000)) / 0.55
    post = m >= shift
    shifted_region = np.isin(region, np.flatnonzero(np.isin(REGIONS, SHIFT_REGIONS)))
    # The shift: debt_ratio nearly stops mattering, two regions turn risky; the intercept
    # moves so the positive rate stays near 19% and only the mechanism changes.
    logit = (-1.9 + np.where(post, 0.15, 0.9) * dr_z - 0.45 * inc_z + 0.4 * (loan_length == 60)
             + 0.8 * (emp == 2) + 0.3 * (emp == 1) - 0.03 * history + 0.3 * business
             - 0.2 * (seg == 2) + np.where(post, 1.3, 0.0) * shifted_region
             - 0.9 * z_credit + 0.7 * z_late - np.where(post, 0.15, 0.0))
    default = (rng.random(n) < _sigmoid(logit)).astype(np.int64)

    g = 0.8 * dr_z - 0.6 * inc_z - 0.7 * z_credit + 0.3 * (loan_length == 60) + rng.normal(0, 0.5, n)
    grade = np.where(g < -0.45, 0, np.where(g > 0.75, 2, 1))
    lgd = _sigmoid(-0.8 + 0.6 * dr_z + 0.5 * business - 0.5 * np.log(car / loan_amount))
    loss = loan_amount * lgd * np.exp(rng.normal(0, 0.25, n))

    return pd.DataFrame({  # copy=False: skips a slow consolidation of the string columns
        "id": ids, "timestamp": timestamp.astype("datetime64[ns]"),
        "month": months.strftime("%Y-%m").values.astype(object)[m],
        "income": income.round(2), "loan_amount": loan_amount.round(2), "loan_length": loan_length,
        "car_value": np.where(rng.random(n) < 0.05, np.nan, car.round(2)),
        "debt_ratio": debt_ratio.round(4), "age": age, "credit_history_years": history.round(1),
        "salary_range": SALARY_RANGES[np.searchsorted(SALARY_BINS, income, side="right")],
        "region": REGIONS[region], "employment": EMPLOYMENT[emp],
        "purpose": np.append(PURPOSES, LATE_PURPOSE)[purpose],
        "segment": SEGMENTS[seg], "default": default, "grade": GRADES[grade], "loss": loss.round(2),
    }, copy=False)


def generate_bureau(loans: pd.DataFrame, *, seed: int = 0) -> pd.DataFrame:
    """Candidate features, one row per loan id (same order as `loans`), joinable on `id`.

    Pass the seed used for `generate_loans`: the useful columns observe its latents.
    """
    ids = loans["id"].to_numpy(np.int64)
    z_credit, z_late = _normal(ids, seed, _Z_CREDIT), _normal(ids, seed, _Z_LATE)
    score = 650 + 60 * z_credit + 25 * _normal(ids, seed, _SCORE_NOISE)
    lam = np.exp(0.4 + 0.8 * z_late)  # expected late payments; normal approximation of Poisson
    late = np.maximum(0, np.rint(lam + np.sqrt(lam) * _normal(ids, seed, _LATE_DRAW))).astype(np.int64)
    flip = _uniform(ids, seed, _FLIP) < 0.01
    leaky = loans["default"].to_numpy(np.int64) ^ flip  # the label itself, 1% flipped
    # Known up to 30 days before the loan; 5% of rows arrive late (after the loan timestamp).
    back = _uniform(ids, seed, _ASOF) * 30 * 86_400
    back = np.where(_uniform(ids, seed, _ASOF_LATE) < 0.05, -1 - back / 3, back)
    as_of = loans["timestamp"].to_numpy("datetime64[ns]") - back.astype("timedelta64[s]")
    return pd.DataFrame({
        "id": ids, "as_of": as_of.astype("datetime64[ns]"), "bureau_score": score.round(1),
        "num_late_payments": late, "noise_1": _normal(ids, seed, _NOISE_1),
        "noise_2": _uniform(ids, seed, _NOISE_2), "days_to_default_flag": leaky,
    })


def _write_atomic(df: pd.DataFrame, path: Path, fmt: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    if fmt == "csv":
        df.to_csv(tmp, index=False)
    else:  # microsecond timestamps: Spark cannot read Parquet TIMESTAMP(NANOS)
        df.to_parquet(tmp, index=False, engine="pyarrow", coerce_timestamps="us")
    os.replace(tmp, path)


def write_demo_data(out_dir, *, n_months=24, rows_per_month=2000, start="2017-01",
                    shift_month=None, covariate_months=(), seed=0, fmt="parquet") -> dict[str, str]:
    """Write loans (`loans/YYYY-MM.parquet` per month, or `loans.csv`) and `bureau.parquet`.

    Rewriting replaces: stale month files from an earlier, longer run are removed.
    """
    if fmt not in ("parquet", "csv"):
        raise ValueError(f"fmt={fmt!r} must be 'parquet' or 'csv'")
    loans = generate_loans(n_months, rows_per_month, start=start, shift_month=shift_month,
                           covariate_months=covariate_months, seed=seed)     # bad arguments: nothing written
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if fmt == "csv":
        loans_path = out / "loans.csv"
        _write_atomic(loans, loans_path, "csv")
    else:
        loans_path = out / "loans"
        loans_path.mkdir(exist_ok=True)
        keep = set()
        for month, part in loans.groupby("month", sort=True):
            keep.add(f"{month}.parquet")
            _write_atomic(part.reset_index(drop=True), loans_path / f"{month}.parquet", "parquet")
        for stale in loans_path.glob("[0-9][0-9][0-9][0-9]-[0-9][0-9].parquet"):
            if stale.name not in keep:
                stale.unlink()
    bureau_path = out / "bureau.parquet"
    _write_atomic(generate_bureau(loans, seed=seed), bureau_path, "parquet")
    return {"loans": str(loans_path), "bureau": str(bureau_path)}


BUREAU_FEATURES = ["bureau_score", "num_late_payments"]


def develop_variant(master: dict, bureau_path: str) -> dict:
    """The demo's `develop` spec: master plus the bureau table's two useful columns."""
    data = {**master["data"], "join": [{"source": bureau_path, "on": "id"}]}
    return {**master, "data": data, "features": list(master["features"]) + BUREAU_FEATURES}


def write_specs_repo(repo_dir, spec_path: str, branches: dict[str, dict]) -> dict[str, str]:
    """A git repo holding one spec file per branch (the first branch is the root); returns commits.

    Each later branch starts from the first one, like a feature branch off master.
    """
    import subprocess

    import yaml

    repo = Path(repo_dir)
    if repo.exists() and any(repo.iterdir()):
        raise ValueError(f"{repo} exists and is not empty; remove it or pick another folder")
    (repo / spec_path).parent.mkdir(parents=True, exist_ok=True)

    # Fixed identity and dates: the same specs give the same commits, so a re-run reuses its runs.
    env = {**os.environ, "GIT_AUTHOR_DATE": "2018-01-01T00:00:00Z", "GIT_COMMITTER_DATE": "2018-01-01T00:00:00Z"}

    def git(*args: str) -> str:
        identity = ["-c", "user.name=automl demo", "-c", "user.email=demo@localhost", "-c", "commit.gpgsign=false"]
        return subprocess.run(["git", *identity, *args], cwd=repo, check=True, capture_output=True,
                              text=True, env=env).stdout.strip()

    names = list(branches)
    git("init", "-q", "-b", names[0])
    commits = {}
    for branch in names:
        if branch != names[0]:
            git("checkout", "-q", "-b", branch, names[0])
        (repo / spec_path).write_text(yaml.safe_dump(branches[branch], sort_keys=False))
        git("add", spec_path)
        git("commit", "-q", "-m", f"{spec_path} on {branch}")
        commits[branch] = git("rev-parse", "HEAD")
    git("checkout", "-q", names[0])
    return commits
