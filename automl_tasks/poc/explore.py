"""White-box data exploration before a PoC trains: column profile, warnings, HTML report.

`profile_columns` and `findings` are pure (a pandas sample in, plain records out);
`single_feature_scores` fits one small model per feature on Spark (the leakage probe, as
the ablation study runs it, through automl_tasks.fitting); `report_html` puts Evidently's
data summary and our warnings into one page.

Warnings (kind: when):
  constant          one distinct value (or none: all null)
  id_like           every non-null value distinct (integers or text): an ID cannot generalise
  high_cardinality  a categorical column with > 50 values, or more values than half its rows
  heavy_missing     at least half of the values missing
  label_imbalance   classification: the rarest class holds under 10% of the rows
  leakage           the feature alone predicts the label almost perfectly (out of fold:
                    areaUnderROC / accuracy / r2 at or above ablation.leakage_threshold)
  datetime          a date/time column, which the PoC leaves out of the features
"""

from __future__ import annotations

import html
import math
from dataclasses import asdict, dataclass, field

import numpy as np

from automl_tasks.data.labels import class_key

NUMERIC = ("double", "float", "int", "bigint", "smallint", "tinyint")
HEAVY_MISSING = 0.5
HIGH_CARDINALITY = 50
IMBALANCE = 0.1
MIN_ROWS_FOR_ID = 20
PROBE_PARAMS = {"n_estimators": 50, "num_leaves": 15}
PROBE_FOLDS = 3


@dataclass
class ColumnProfile:
    name: str
    kind: str                     # numeric | boolean | categorical | datetime | other
    dtype: str                    # Spark's type name
    missing_share: float
    unique: int                   # distinct non-null values
    stats: dict = field(default_factory=dict)
    role: str = "feature"         # feature | label | segment


@dataclass
class Finding:
    kind: str
    column: str | None
    message: str


def kind_of(dtype: str) -> str:
    if dtype.startswith("decimal") or dtype in NUMERIC:
        return "numeric"
    if dtype == "boolean":
        return "boolean"
    if dtype == "string":
        return "categorical"
    if dtype in ("timestamp", "timestamp_ntz", "date"):
        return "datetime"
    return "other"


def _number(value) -> float | None:
    return None if value is None or (isinstance(value, float) and not math.isfinite(value)) else float(value)


def profile_columns(pdf, dtypes: dict[str, str], label: str, segment: str | None = None) -> list[ColumnProfile]:
    """One profile per column of the (sampled) frame, in its column order."""
    out = []
    for name in pdf.columns:
        values = pdf[name]
        kind = kind_of(dtypes[name])
        present = values.dropna()
        stats: dict = {}
        if kind == "numeric" and len(present):
            numbers = present.astype(float)
            stats = {"mean": _number(numbers.mean()), "std": _number(numbers.std()),
                     "min": _number(numbers.min()), "median": _number(numbers.median()),
                     "max": _number(numbers.max()),
                     "integral": bool(np.all(np.mod(numbers.to_numpy(), 1) == 0))}
        elif len(present):
            counts = present.astype(str).value_counts()
            stats = {"top": str(counts.index[0]), "top_share": float(counts.iloc[0] / len(present))}
        role = "label" if name == label else "segment" if name == segment else "feature"
        missing = float(values.isna().mean()) if len(values) else 0.0
        out.append(ColumnProfile(name, kind, dtypes[name], missing, int(present.nunique()), stats, role))
    return out


def findings(profiles: list[ColumnProfile], n_rows: int, task: str, label_shares: dict[str, float],
             leak_scores: dict[str, float], leak_metric: str, leak_threshold: float) -> list[Finding]:
    """The warnings, column by column, then the label's."""
    out = []
    for p in profiles:
        if p.role == "label":
            continue
        present = round(n_rows * (1 - p.missing_share))
        if p.kind == "datetime":
            out.append(Finding("datetime", p.name, f"{p.name!r} is a date/time: left out of the features "
                                                    "(derive numbers from it, e.g. month or age, to use it)"))
            continue
        if p.unique <= 1:
            what = f"a single value ({p.stats.get('top', p.stats.get('min'))!r})" if p.unique else "no values (all null)"
            out.append(Finding("constant", p.name, f"{p.name!r} has {what}: it carries no information"))
            continue
        text_or_int = p.kind == "categorical" or (p.kind == "numeric" and p.stats.get("integral"))
        if text_or_int and present >= MIN_ROWS_FOR_ID and p.unique == present:
            out.append(Finding("id_like", p.name, f"{p.name!r}: all {present} values are distinct, like an ID; "
                                                  "a model cannot generalise from it (leave it out)"))
        elif p.kind == "categorical" and (p.unique > HIGH_CARDINALITY or p.unique > present / 2):
            out.append(Finding("high_cardinality", p.name,
                               f"{p.name!r}: {p.unique} categories in {present} rows (high cardinality: "
                               "rare categories are learned from a few rows)"))
        if p.missing_share >= HEAVY_MISSING:
            out.append(Finding("heavy_missing", p.name, f"{p.name!r}: {p.missing_share:.0%} of the values are missing"))
        score = leak_scores.get(p.name)
        if score is not None and score >= leak_threshold:
            out.append(Finding("leakage", p.name,
                               f"{p.name!r} alone predicts the label with {leak_metric} {score:.4f} "
                               f"(>= {leak_threshold:g}, out of fold): likely leakage, e.g. a value known "
                               "only after the outcome"))
    if task != "regression" and label_shares:
        rarest = min(label_shares, key=label_shares.get)
        if label_shares[rarest] < IMBALANCE:
            out.append(Finding("label_imbalance", None,
                               f"label imbalance: class {rarest!r} is {label_shares[rarest]:.1%} of the rows "
                               f"({len(label_shares)} classes); prefer areaUnderPR or logLoss to accuracy"))
    return out


def label_shares(pdf, label: str, task: str) -> dict[str, float]:
    if task == "regression":
        return {}
    counts = pdf[label].dropna().map(class_key).value_counts(normalize=True)
    return {str(k): float(v) for k, v in counts.items()}


def single_feature_scores(spark, prepared, metric: str, slots: int) -> dict[str, float]:
    """Each feature alone, out of fold (3-fold cv, a small LightGBM), on the rows where it is
    observed: the leakage probe (`fitting.LEAK_METRIC` is the scale-free metric for it)."""
    from automl_tasks import fitting
    from automl_tasks.spec import ValidationSpec
    from automl_tasks.tuning.validation import make_folds

    spec, train = prepared.spec, prepared.train
    folds = make_folds(train, None, ValidationSpec(method="cv", folds=PROBE_FOLDS), spec.task,
                       prepared.window.train, seed=spec.seed, classes=prepared.classes)
    staged = fitting.stage(spark, train.X, train.y, folds.fold_ids)
    learner = fitting.Learner("lightgbm", spec.task, tuple(prepared.encoding.categorical_idx), 1, spec.seed)
    names = prepared.encoding.feature_names
    fits = {(name, f): fitting.Fit(PROBE_PARAMS, metric, f, columns=(j,), observed_only=True)
            for j, name in enumerate(names) for f in range(PROBE_FOLDS)}
    values = fitting.run_keyed(spark, staged, learner, fits, min(len(fits), 4 * slots))
    scores = {}
    for name in names:
        fold_values = [values[(name, f)]["value"] for f in range(PROBE_FOLDS)]
        if all(v is not None for v in fold_values):
            scores[name] = float(np.mean(fold_values))
    return scores


# --- the report ------------------------------------------------------------------------------

def _stat_text(p: ColumnProfile) -> str:
    s = p.stats
    if not s:
        return ""
    if "mean" in s:
        return ", ".join(f"{k} {s[k]:.4g}" for k in ("mean", "std", "min", "median", "max") if s[k] is not None)
    return f"top {s['top']!r} ({s['top_share']:.0%})"


def findings_html(profiles: list[ColumnProfile], found: list[Finding], n_rows: int, task_note: str) -> str:
    """Our part of the page: the warnings, then one row per column."""
    esc = html.escape
    items = "".join(f"<li><b>{esc(f.kind)}</b>: {esc(f.message)}</li>" for f in found) or "<li>none</li>"
    rows = "".join(
        f"<tr><td>{esc(p.name)}</td><td>{esc(p.role)}</td><td>{esc(p.kind)} ({esc(p.dtype)})</td>"
        f"<td>{p.missing_share:.1%}</td><td>{p.unique}</td><td>{esc(_stat_text(p))}</td>"
        f"<td>{esc(', '.join(f.kind for f in found if f.column == p.name))}</td></tr>" for p in profiles)
    return (
        '<section id="automl-exploration" style="font-family:sans-serif;margin:16px">'
        f"<h2>Data exploration ({n_rows} rows, {len(profiles)} columns)</h2><p>{esc(task_note)}</p>"
        f"<h3>Warnings</h3><ul>{items}</ul>"
        "<h3>Columns</h3><table border='1' cellpadding='4' style='border-collapse:collapse'>"
        "<tr><th>column</th><th>role</th><th>type</th><th>missing</th><th>unique</th><th>stats</th>"
        f"<th>warnings</th></tr>{rows}</table></section>")


def report_html(pdf, profiles: list[ColumnProfile], found: list[Finding], task_note: str, title: str) -> str:
    """Evidently's data summary with our warnings and column table at the top."""
    from automl_tasks.monitoring.drift import summary_html

    numerical = [p.name for p in profiles if p.kind == "numeric"]
    categorical = [p.name for p in profiles if p.kind in ("categorical", "boolean")]
    frame = pdf.copy()
    for name in categorical:   # Evidently's categories: text (booleans and mixed values alike)
        frame[name] = frame[name].map(lambda v: None if v is None or v != v else str(v))
    page = summary_html(frame, numerical=numerical, categorical=categorical, title=title)
    ours = findings_html(profiles, found, len(pdf), task_note)
    return page.replace("<body>", "<body>\n" + ours, 1) if "<body>" in page else ours + page


def to_records(profiles: list[ColumnProfile], found: list[Finding]) -> dict:
    return {"columns": [asdict(p) for p in profiles], "warnings": [asdict(f) for f in found]}
