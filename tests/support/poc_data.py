"""Small PoC tables with planted facts (each one a warning or an effect the PoC must find)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def churn_frame(n: int = 400, seed: int = 0) -> pd.DataFrame:
    """Binary `churn` (~7% positive: imbalance) with one column of each warning kind.

    customer_id: ID-like; constant_flag: constant; notes_code: high-cardinality text;
    mostly_missing: 70% null; refund_issued: the label with 1% flips (leakage); signup_date: a
    date (left out of the features).
    tenure, monthly_fee and plan carry the real (noisy) signal.
    """
    rng = np.random.default_rng(seed)
    tenure = rng.integers(1, 72, n)
    fee = rng.normal(60, 15, n).round(2)
    plan = rng.choice(["basic", "plus", "pro"], n)
    region = rng.choice(["north", "south", "east"], n)
    score = -3.3 - 0.04 * (tenure - 36) + 0.03 * (fee - 60) + np.where(plan == "basic", 0.5, 0.0)
    churn = (rng.random(n) < 1 / (1 + np.exp(-score))).astype(int)
    churn[:4] = 1                           # at least a few positives whatever the draw
    refund = np.where(rng.random(n) < 0.01, 1 - churn, churn)
    mostly_missing = np.where(rng.random(n) < 0.7, np.nan, rng.normal(size=n))
    return pd.DataFrame({
        "customer_id": np.arange(100_000, 100_000 + n), "tenure": tenure, "monthly_fee": fee, "plan": plan,
        "region": region, "constant_flag": "yes", "notes_code": [f"code_{i % (n // 2)}" for i in range(n)],
        "mostly_missing": mostly_missing, "refund_issued": refund,
        "signup_date": pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 365, n), unit="D"),
        "churn": churn})


def segment_frame(n: int = 600, seed: int = 1) -> pd.DataFrame:
    """Binary `bought` whose relation to `price` flips sign in segment "outlet"."""
    rng = np.random.default_rng(seed)
    channel = rng.choice(["web", "store", "outlet"], n, p=[0.4, 0.35, 0.25])
    price = rng.normal(0, 1, n)
    visits = rng.poisson(3, n)
    slope = np.where(channel == "outlet", 2.5, -2.5)
    logit = slope * price + 0.2 * (visits - 3)
    bought = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return pd.DataFrame({"channel": channel, "price": price.round(3), "visits": visits, "bought": bought})


def write_csv(frame: pd.DataFrame, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)
    return path
