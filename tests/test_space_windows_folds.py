"""Pure parts of tuning: spaces, month windows, validation folds."""

import itertools
import math
from collections import Counter

import numpy as np
import pytest

from automl_tasks.data.prepare import Matrix
from automl_tasks.data.months import Month
from automl_tasks.data.windows import select_window
from automl_tasks.errors import DataError
from automl_tasks.spec import ValidationSpec
from automl_tasks.tuning import space as spaces
from automl_tasks.tuning.search import Adaptive
from automl_tasks.tuning.sweep import CoordinateSweep, ends
from automl_tasks.tuning.validation import make_folds


def test_grid_is_the_cartesian_product():
    dims = spaces.parse_space("xgboost", {"max_depth": [3, 6], "learning_rate": [0.05, 0.2], "gamma": 0})
    configs = spaces.grid(dims)
    assert len(configs) == 4
    assert {(c["max_depth"], c["learning_rate"]) for c in configs} == {(3, 0.05), (3, 0.2), (6, 0.05), (6, 0.2)}
    assert all(c["gamma"] == 0 for c in configs)


def test_random_is_seeded_and_in_range():
    dims = spaces.parse_space("lightgbm", {"num_leaves": {"int": [15, 127]},
                                           "learning_rate": {"log": [0.01, 0.3]},
                                           "subsample": {"uniform": [0.5, 1.0]},
                                           "boosting_type": {"choice": ["gbdt", "dart"]}})
    a, b = spaces.random_configs(dims, 50, seed=3), spaces.random_configs(dims, 50, seed=3)
    assert a == b and a != spaces.random_configs(dims, 50, seed=4)
    assert all(15 <= c["num_leaves"] <= 127 and isinstance(c["num_leaves"], int) for c in a)
    rates = np.array([c["learning_rate"] for c in a])
    assert rates.min() >= 0.01 and rates.max() <= 0.3
    # log-uniform: about half the draws fall below the geometric middle (~0.055)
    assert 0.3 < np.mean(rates < np.sqrt(0.01 * 0.3)) < 0.7
    assert {c["boosting_type"] for c in a} == {"gbdt", "dart"}


def test_random_stops_at_the_size_of_a_small_discrete_space():
    dims = spaces.parse_space("xgboost", {"max_depth": [3, 4]})
    assert len(spaces.random_configs(dims, 10, seed=0)) == 2


def test_adaptive_warm_start_is_proposed_first_and_limits_trials():
    dims = spaces.parse_space("lightgbm", {"num_leaves": {"int": [4, 64]}, "learning_rate": {"log": [0.01, 0.3]}})
    search = Adaptive(dims, greater_is_better=True, trials=5, seed=0,
                      warm_start=[{"num_leaves": 31, "learning_rate": 0.1, "not_in_space": 1}])
    first = search.ask(2)
    assert first[0] == {"num_leaves": 31, "learning_rate": 0.1}
    for config in first:
        search.tell(config, 0.5)
    rest = search.ask(10)
    assert len(rest) == 3 and search.ask(1) == []


def _corner_optimum(config):
    """Separable, best at few leaves, the largest step and full subsample: a corner of the box."""
    return (-abs(config["num_leaves"] - 4) - 10 * abs(math.log(config["learning_rate"] / 0.3))
            - 5 * abs(config["subsample"] - 1.0) - (config["booster"] != "gbdt"))


CORNER_SPACE = {"num_leaves": {"int": [4, 64]}, "learning_rate": {"log": [0.01, 0.3]},
                "subsample": {"uniform": [0.5, 1.0]}, "booster": {"choice": ["dart", "gbdt"]}}


def test_cold_sweep_tries_the_centre_every_pair_of_ends_then_moves_from_the_best():
    dims = spaces.parse_space("lightgbm", {**CORNER_SPACE, "max_bin": 255})
    sweep = CoordinateSweep(dims, greater_is_better=True)
    centre = sweep.propose()
    assert centre == {"num_leaves": 34, "learning_rate": pytest.approx(math.sqrt(0.003)),
                      "subsample": 0.75, "booster": "dart", "max_bin": 255}
    design = [sweep.propose() for _ in range(8)]
    assert all(c["max_bin"] == 255 for c in design)
    for a, b in itertools.combinations(CORNER_SPACE, 2):   # an orthogonal array over the ends
        pairs = Counter((c[a], c[b]) for c in design)
        assert len(pairs) == 4 and set(pairs.values()) == {2}, (a, b, pairs)
    assert sweep.propose() is None          # the moves wait for the whole design's results
    for config in [centre, *design]:
        sweep.tell(config, _corner_optimum(config))
    best = max(design, key=_corner_optimum)
    move = sweep.propose()
    changed = [k for k in move if move[k] != best[k]]
    assert len(changed) == 1 and move[changed[0]] in spaces_ends(dims, changed[0])


def spaces_ends(dims, name):
    return next(ends(d) for d in dims if d.name == name)


def test_warm_sweep_steps_a_quarter_of_each_range_around_the_warm_point():
    dims = spaces.parse_space("lightgbm", CORNER_SPACE)
    warm = {"num_leaves": 60, "learning_rate": 0.1, "subsample": 0.8, "booster": "gbdt"}
    sweep = CoordinateSweep(dims, greater_is_better=True, warm=warm)
    sweep.tell(warm, _corner_optimum(warm))
    proposed = [sweep.propose() for _ in range(6)]
    assert [p["num_leaves"] for p in proposed[:2]] == [45, 64]          # 60 -/+ 15, clipped at 64
    rates = [p["learning_rate"] for p in proposed[2:4]]
    assert rates == pytest.approx([0.1 * 30 ** -0.25, 0.1 * 30 ** 0.25])  # a quarter of the log-range
    assert [p["subsample"] for p in proposed[4:6]] == pytest.approx([0.675, 0.925])


@pytest.mark.parametrize("slots", [1, 2, 3])
def test_adaptive_reaches_a_corner_optimum_in_one_sweep(slots):
    """Random start-up draws land on no corner; the sweep, one axis at a time, gets there even
    when a wave is proposed before the one before it is scored (two waves in flight)."""
    dims = spaces.parse_space("lightgbm", CORNER_SPACE)
    search = Adaptive(dims, greater_is_better=True, trials=None, seed=0)
    waves, told = [search.ask(slots)], []
    while len(told) < 18:   # centre, 8-run design, moves, a combination, and the waves in flight
        waves.append(search.ask(slots))
        for config in waves.pop(0):
            search.tell(config, _corner_optimum(config))
            told.append(config)
    assert {"num_leaves": 4, "learning_rate": 0.3, "subsample": 1.0, "booster": "gbdt"} in told


def test_adaptive_proposes_nothing_while_the_sweep_waits_for_results_in_flight():
    """A TPE config asked while the design's last results are out would be queued ahead of the
    first move and delay it by a wave: the search proposes nothing until the results are in."""
    dims = spaces.parse_space("lightgbm", CORNER_SPACE)
    search = Adaptive(dims, greater_is_better=True, trials=None, seed=0)
    design = search.ask(20)
    assert len(design) == 9                 # the centre and the 8-run array, no TPE behind them
    for config in design[:-1]:
        search.tell(config, _corner_optimum(config))
    assert search.ask(2) == []              # one design result is still out
    search.tell(design[-1], _corner_optimum(design[-1]))
    best = max(design, key=_corner_optimum)
    moves = search.ask(2)
    assert len(moves) == 2
    assert all(sum(m[k] != best[k] for k in best) == 1 for m in moves)


def test_window_selection():
    counts = {str(Month(2018, 1) + k): 100 for k in range(12)}
    window = select_window(counts, "2018-10", 6)
    assert window.train == ("2018-04", "2018-05", "2018-06", "2018-07", "2018-08", "2018-09")
    assert window.holdout == "2018-10"
    assert select_window(counts, None, 6).holdout is None


@pytest.mark.parametrize("month, counts_change, expected", [
    ("2019-05", {}, "month 2019-05 is outside the data, which covers 2018-01 to 2018-12"),
    ("2018-03", {}, "asks for 6 training months (2017-09 to 2018-02) but the data starts at 2018-01"),
    ("2018-10", {"2018-10": 0}, "month 2018-10 has no rows"),
    ("2018-10", {"2018-06": 0}, "training month 2018-06 has 0 rows"),
])
def test_window_errors_name_the_month(month, counts_change, expected):
    counts = {str(Month(2018, 1) + k): 100 for k in range(12)}
    counts.update(counts_change)
    with pytest.raises(DataError) as err:
        select_window(counts, month, 6)
    assert expected in str(err.value)


def test_holdout_of_several_months_ends_at_the_month():
    counts = {str(Month(2018, 1) + k): 100 for k in range(12)}
    window = select_window(counts, "2018-10", 4, holdout_count=3)
    assert window.holdout == "2018-10"                      # the run's month names the run
    assert window.holdout_months == ("2018-08", "2018-09", "2018-10")
    assert window.train == ("2018-04", "2018-05", "2018-06", "2018-07")
    assert window.describe_holdout() == "2018-08..2018-10"
    one = select_window(counts, "2018-10", 4)
    assert one.holdout_months == ("2018-10",) and one.describe_holdout() == "2018-10"
    assert one.train == ("2018-06", "2018-07", "2018-08", "2018-09")
    everything = select_window(counts, None, 4, holdout_count=3)
    assert everything.holdout_months == () and everything.describe_holdout() == "none"


@pytest.mark.parametrize("month, start, counts_change, expected", [
    pytest.param("2018-10", "2018-01", {"2018-09": 0}, "holdout month 2018-09 has no rows (window.holdout_months: "
                 "3 holds out 2018-08 to 2018-10; the data covers 2018-01 to 2018-12)", id="empty-holdout-month"),
    pytest.param("2018-02", "2018-01", {}, "holdout month 2017-12 has no rows", id="holdout-before-the-data"),
    pytest.param("2018-08", "2018-03", {}, "asks for 4 training months (2018-02 to 2018-05) but the data "
                 "starts at 2018-03", id="training-before-the-data"),
])
def test_holdout_months_errors_name_the_month(month, start, counts_change, expected):
    counts = {str(Month.parse(start) + k): 100 for k in range(12)}
    counts.update(counts_change)
    with pytest.raises(DataError) as err:
        select_window(counts, month, 4, holdout_count=3)
    assert expected in str(err.value)


def _matrix(n=300, classes=2, seed=0):
    rng = np.random.default_rng(seed)
    months = np.array([f"2018-0{1 + i % 3}" for i in range(n)], dtype=object)
    return Matrix(rng.normal(size=(n, 3)), rng.integers(0, classes, n), months)


def test_stratified_cv_folds_keep_class_shares():
    train = _matrix(n=600)
    folds = make_folds(train, None, ValidationSpec(method="cv", folds=3), "binary",
                       ("2018-01", "2018-02", "2018-03"), classes=[0, 1])
    assert folds.n_folds == 3 and set(np.unique(folds.fold_ids)) == {0, 1, 2}
    share = train.y.mean()
    for f in range(3):
        _, valid = folds.split(f)
        assert abs(train.y[valid].mean() - share) < 0.01
    assert folds.refit_rows.all()


def test_split_time_and_given():
    train = _matrix(n=1000)
    split = make_folds(train, None, ValidationSpec(method="split", train_ratio=0.8), "binary",
                       ("2018-01", "2018-02", "2018-03"), classes=[0, 1])
    assert abs((split.fold_ids == 0).mean() - 0.2) < 0.01
    timed = make_folds(train, None, ValidationSpec(method="time", months=1), "binary",
                       ("2018-01", "2018-02", "2018-03"), classes=[0, 1])
    assert set(train.months[timed.fold_ids == 0]) == {"2018-03"}
    given = make_folds(train, _matrix(n=50, seed=2), ValidationSpec(method="given", path="x"), "binary",
                       ("2018-01",), classes=[0, 1])
    assert len(given.y) == 1050 and (given.fold_ids == 0).sum() == 50 and given.refit_rows.sum() == 1000


def test_too_few_rows_per_class_for_the_folds():
    train = _matrix(n=100)
    train.y[:] = 0
    train.y[:2] = 1
    with pytest.raises(DataError, match="class 1 has 2 rows in the window .* 3-fold cv needs at least 3"):
        make_folds(train, None, ValidationSpec(method="cv", folds=3), "binary", ("2018-01", "2018-03"),
                   classes=[0, 1])
