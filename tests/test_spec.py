"""The spec contract: valid specs load, invalid ones name the field."""

import subprocess

import pytest
import yaml

from automl_tasks.errors import SpecError
from automl_tasks.spec import load_spec, load_spec_at_ref, parse_spec
from tests.support.specs import spec_dict


def parse(**override):
    return parse_spec(yaml.safe_dump(spec_dict(**override)))


def test_valid_spec_fills_defaults():
    spec = parse()
    assert spec.task == "binary" and spec.metric == "areaUnderROC"
    assert spec.validation.folds == 3 and spec.window.train_months == 4
    assert spec.algorithms["lightgbm"].trials == 2
    assert spec.promotion.approval_timeout_hours == 72


def test_default_metric_per_task():
    raw = spec_dict("regression")
    del raw["metric"]
    assert parse_spec(yaml.safe_dump(raw)).metric == "rmse"


@pytest.mark.parametrize("override, expected", [
    ({"metric": "rmse"}, "metric 'rmse'"),
    ({"metric": "auc"}, "unknown metric 'auc'"),
    ({"validation": {"method": "split", "train_ratio": 1.5}}, "train_ratio must be strictly between 0 and 1"),
    ({"validation": {"method": "cv", "folds": 11}}, "validation.folds"),
    ({"algorithms": {"catboost": {}}}, "unknown algorithm 'catboost'"),
    ({"algorithms": {"xgboost": {"search": "grid", "space": {"max_depth": {"int": [2, 8]}}}}},
     "grid search takes lists"),
    ({"algorithms": {"xgboost": {"space": {"max_dept": [3]}}}}, "unknown xgboost parameter 'max_dept'"),
    ({"algorithms": {"lightgbm": {"search": "random", "space": {"learning_rate": {"log": [0, 0.3]}}}}},
     "log range needs low > 0"),
    ({"algorithms": {"lightgbm": {"search": "random", "space": {"num_leaves": {"int": [64, 8]}}}}},
     "low must be below high"),
    ({"algorithms": {"xgboost": {"space": {"n_jobs": [4]}}}}, "set by automl_tasks"),
    ({"window": {"train_months": 0}}, "window.train_months"),
    ({"featurez": ["a"]}, "featurez: unknown field"),
    ({"features": ["default", "income"]}, "features lists 'default'"),
    ({"validation": {"method": "given"}}, "needs validation.path"),
    ({"promotion": {"approval_timeout_hours": 0}}, "promotion.approval_timeout_hours"),
])
def test_invalid_spec_names_the_field(override, expected):
    with pytest.raises(SpecError) as err:
        parse(**override)
    assert expected in str(err.value)


def test_not_yaml_and_missing_file(tmp_path):
    with pytest.raises(SpecError, match="not valid YAML"):
        parse_spec("name: [unclosed")
    with pytest.raises(SpecError, match="cannot read spec"):
        load_spec(tmp_path / "absent.yaml")


def test_relative_source_resolves_against_spec_folder(tmp_path):
    path = tmp_path / "specs" / "m.yaml"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump(spec_dict(data={"source": "../data/loans"})))
    spec = load_spec(path)
    assert spec.data.source == str((tmp_path / "data" / "loans").resolve())
    assert spec.origin["git_commit"] == "none"


def test_spec_at_git_ref_records_commit(tmp_path):
    def git(*args):
        return subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True,
                              text=True).stdout.strip()

    git("init", "-q", "-b", "master")
    git("config", "user.email", "t@example.com")
    git("config", "user.name", "t")
    (tmp_path / "m.yaml").write_text(yaml.safe_dump(spec_dict()))
    git("add", "m.yaml")
    git("commit", "-qm", "master spec")
    git("checkout", "-qb", "develop")
    (tmp_path / "m.yaml").write_text(yaml.safe_dump(spec_dict(features=["income", "age"])))
    git("commit", "-qam", "develop spec")
    develop = load_spec_at_ref(tmp_path, "develop", "m.yaml")
    master = load_spec_at_ref(tmp_path, "master", "m.yaml")
    assert develop.features == ["income", "age"] and len(master.features) > 2
    assert develop.origin["git_commit"] == git("rev-parse", "develop")
    assert master.origin["branch"] == "master"
    with pytest.raises(SpecError, match="git ref 'nope' not found"):
        load_spec_at_ref(tmp_path, "nope", "m.yaml")


def _algorithm(name: str, search: str = "grid", **fields) -> dict:
    return {"algorithms": {name: {"search": search, **fields}}}


@pytest.mark.parametrize("override, expected", [
    pytest.param({"data": {"label": "timestamp"}},
                 "data.label and data.timestamp are both 'timestamp'", id="label-is-timestamp"),
    pytest.param({"data": {"label": "month", "timestamp": None, "month_column": "month"}},
                 "data.label and data.month_column are both 'month'", id="label-is-month-column"),
    pytest.param({"data": {"label": "id"}}, "data.label and data.id are both 'id'", id="label-is-id"),
    pytest.param({"data": {"timezone": "Mars/Base"}}, "data.timezone: unknown time zone 'Mars/Base'",
                 id="unknown-timezone"),
    pytest.param({"data": {"timezone": "America"}}, "unknown time zone 'America'", id="timezone-folder"),
    pytest.param({"window": {"holdout_months": 0}}, "window.holdout_months", id="no-holdout-months"),
    pytest.param(_algorithm("xgboost", space={"max_depth": [3, 3.5]}),
                 "algorithms.xgboost: parameter 'max_depth' takes integers, got 3.5", id="float-for-int"),
    pytest.param(_algorithm("xgboost", space={"max_depth": [True]}),
                 "parameter 'max_depth' takes integers, got True", id="bool-for-int"),
    pytest.param(_algorithm("lightgbm", "random", space={"num_leaves": {"uniform": [4, 16]}}),
                 "algorithms.lightgbm: parameter 'num_leaves' takes integers, got {uniform: [4, 16]}",
                 id="uniform-for-int"),
    pytest.param(_algorithm("lightgbm", space={"learning_rate": ["0.1"]}),
                 "algorithms.lightgbm: parameter 'learning_rate' takes numbers, got '0.1'", id="text-for-number"),
    pytest.param(_algorithm("lightgbm", space={"learning_rate": [0.1]}, fixed={"n_estimators": 10.5}),
                 "parameter 'n_estimators' takes integers, got 10.5", id="fixed-float-for-int"),
    pytest.param(_algorithm("spark_gbt", "adaptive", space={"maxDepth": {"log": [2, 8]}}),
                 "algorithms.spark_gbt: parameter 'maxDepth' takes integers, got {log: [2, 8]}",
                 id="spark-log-for-int"),
    pytest.param(_algorithm("spark_linear", space={"fitIntercept": ["yes"]}),
                 "algorithms.spark_linear: parameter 'fitIntercept' takes true or false, got 'yes'",
                 id="spark-text-for-bool"),
    pytest.param(_algorithm("spark_random_forest", "random", space={"impurity": {"int": [1, 3]}}),
                 "parameter 'impurity' takes text, got the range {int: [1, 3]}", id="spark-range-for-text"),
])
def test_columns_time_zone_and_parameter_types_are_checked(override, expected):
    with pytest.raises(SpecError) as err:
        parse(**override)
    assert expected in str(err.value)


def test_parameter_types_accept_what_the_libraries_take():
    spec = parse(data={"timezone": "America/New_York"}, window={"holdout_months": 2}, algorithms={
        # None is xgboost's "default" for its Optional params; an int is a number for a float one.
        "xgboost": {"search": "grid", "space": {"max_depth": [3, None], "learning_rate": [1, 0.1]}},
        "lightgbm": {"search": "random", "space": {"num_leaves": {"int": [4, 16]},
                                                   "subsample": {"uniform": [0.5, 1]}}},
        "spark_linear": {"search": "adaptive", "space": {"regParam": {"log": [1e-4, 1]}, "maxIter": {"int": [5, 50]},
                                                         "fitIntercept": [True, False]}},
        "spark_random_forest": {"search": "grid", "space": {"impurity": ["gini", "entropy"]},
                                "fixed": {"numTrees": 10, "subsamplingRate": 1}},
    })
    assert spec.data.timezone == "America/New_York" and spec.window.holdout_months == 2
    assert parse().data.timezone == "UTC" and parse().window.holdout_months == 1
