# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.9
# Bytecode is written at install: uv does not by default, and where PYTHONDONTWRITEBYTECODE is
# set (this CI machine, many container images) every process would compile mlflow, pyspark,
# xgboost, ... again: 3.7 s of a plain import, 6 s of a tune command (bench/RESULTS.md, "Bytecode at install").
UV_INSTALL := $(BIN)/uv pip install --compile-bytecode --python $(BIN)/python
export AUTOML_HOME ?= $(CURDIR)/.automl_home
export AIRFLOW_HOME ?= $(AUTOML_HOME)/airflow
export MLFLOW_DISABLE_TELEMETRY := true
export PYSPARK_PYTHON := $(CURDIR)/$(BIN)/python
DEMO_DATA := $(CURDIR)/demo_data
export AIRFLOW__CORE__DAGS_FOLDER := $(CURDIR)/dags
export AIRFLOW__CORE__PLUGINS_FOLDER := $(CURDIR)/plugins
export AIRFLOW__CORE__LOAD_EXAMPLES := False
export AUTOML_SPECS_DIR ?= $(CURDIR)/specs

.PHONY: demo stack-demo test install check-java lock clean

$(BIN)/activate:
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; install Python 3.11" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: $(BIN)/activate pyproject.toml constraints.txt
	$(BIN)/pip install -q "uv==$(UV_VERSION)"
	$(UV_INSTALL) -c constraints.txt -e ".[airflow,monitoring,dev]"
	@mkdir -p $(AUTOML_HOME) $(AIRFLOW_HOME)
	touch $@

# The local driver JVM's class-data archive (automl_tasks/spark_classes.py): each later JVM
# start maps Spark's classes from it, about 4 s sooner to a first `prepare` (bench/RESULTS.md,
# "A class-data archive"). Written again whenever the packages are.
CLASS_ARCHIVE := $(VENV)/share/automl-tasks/spark-classes.jsa
$(CLASS_ARCHIVE): $(VENV)/.installed | check-java
	@echo "recording Spark's classes into $@ (once per install; log: $(VENV)/spark-classes.log)"
	@$(BIN)/python -m automl_tasks.spark_classes --out $@ > $(VENV)/spark-classes.log 2>&1 \
	  || { tail -30 $(VENV)/spark-classes.log; exit 1; }
	@grep '^wrote' $(VENV)/spark-classes.log

install: $(VENV)/.installed check-java $(CLASS_ARCHIVE)

check-java:
	@v=$$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -1); \
	if [ -z "$$v" ] || [ "$$v" -lt 17 ]; then \
	  echo "error: Spark needs Java 17+ (found: $${v:-none}); e.g. apt-get install -y openjdk-17-jre-headless" >&2; exit 1; fi

# The monthly DAG, in-process (dag.test), backfilling DEMO_MONTHS of the demo data in
# auto mode, then the last month once more with develop vs master. The demo's concept shift
# is at 2018-07, its covariate shift in DEMO_COVARIATE_SHIFT; the spec's labels arrive two
# months late, so each run monitors its month and evaluates the one two months before, and
# the month table shows each month's estimated and realized AUC. The specs come from a generated git repo: master = specs/loan_default.yaml,
# develop = the same plus two bureau features. Last, a feature ablation of the bureau table
# (planted: two useful columns, two noise columns, one leaky column).
DEMO_MONTHS ?= 2018-01 2018-02 2018-03 2018-04 2018-05 2018-06 2018-07 2018-08 2018-09 2018-10
DEMO_COVARIATE_SHIFT ?= 2018-03,2018-04
DEMO_REPO := $(DEMO_DATA)/specs_repo
DEMO_LOG := $(AUTOML_HOME)/demo.log
demo: export AUTOML_SPECS_DIR := $(DEMO_REPO)/specs
demo: export AUTOML_SPECS_REPO := $(DEMO_REPO)
demo: export AUTOML_FIRST_MONTH := $(firstword $(DEMO_MONTHS))
# The demo's months are years back: no catchup bound (docs/operations.md, "First month and catchup").
demo: export AUTOML_MAX_CATCHUP_MONTHS := 1200
demo: export MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR := false
demo: install
	$(BIN)/automl-tasks demo-data --out $(DEMO_DATA) --covariate-shift $(DEMO_COVARIATE_SHIFT) \
	  --specs-repo $(DEMO_REPO) --spec specs/loan_default.yaml
	@$(BIN)/airflow db migrate >/dev/null
	@# A month's run starts when the month is over: logical date = the first day of the next month.
	@dates=""; for month in $(DEMO_MONTHS); do \
	  dates="$$dates --date $$(date -u -d "$$month-01 +1 month" +%Y-%m-01T00:00:00+00:00)"; done; \
	echo "backfilling monthly_retrain over $(DEMO_MONTHS) (dag.test, promotion auto); log: $(DEMO_LOG)"; \
	$(BIN)/python scripts/run_dag.py monthly_retrain $$dates --conf '{"promotion": "auto"}' > $(DEMO_LOG) 2>&1 \
	  || { tail -50 $(DEMO_LOG); exit 1; }; \
	sed -nE 's/^RESULT \{"logical_date": "([^"]*)", "state": "([^"]*)".*/  run at \1 (for the month before): \2/p' $(DEMO_LOG)
	@last=$(lastword $(DEMO_MONTHS)); \
	echo "develop vs master in the run for $$last (on the month it evaluates: the re-run reuses its runs; log: $(DEMO_LOG:.log=-branches.log))"; \
	$(BIN)/python scripts/run_dag.py monthly_retrain --date $$(date -u -d "$$last-01 +1 month" +%Y-%m-01T00:00:00+00:00) \
	  --conf '{"promotion": "auto", "refs": "develop,master"}' > $(DEMO_LOG:.log=-branches.log) 2>&1 \
	  || { tail -50 $(DEMO_LOG:.log=-branches.log); exit 1; }; \
	grep -o 'develop vs master .*winner [a-z]*' $(DEMO_LOG:.log=-branches.log) | tail -1
	@echo
	@$(BIN)/automl-tasks history --model loan_default
	@echo
	@last=$(lastword $(DEMO_MONTHS)); \
	echo "feature ablation on $$last: the bureau table's columns on top of the champion's features (log: $(DEMO_LOG:.log=-ablation.log))"; \
	$(BIN)/automl-tasks ablation --spec $(DEMO_REPO)/specs/loan_default.yaml --month $$last \
	  --table $(DEMO_DATA)/bureau.parquet --on id 2> $(DEMO_LOG:.log=-ablation.log) \
	  || { tail -30 $(DEMO_LOG:.log=-ablation.log); exit 1; }
	@echo
	@$(BIN)/automl-tasks history --model loan_default --aliases
	@echo
	@echo "Results are in the MLflow store under $(AUTOML_HOME) (experiment loan_default/monthly:"
	@echo "one run per month with the decision summary, monitor/tuning/comparison runs inside it)."
	@echo "Open the UI with:"
	@echo "  $(BIN)/mlflow ui --backend-store-uri sqlite:///$(AUTOML_HOME)/mlflow.db --host 127.0.0.1 --port 5000"
	@echo "Native models (booster + metadata.json + predict.py): $(AUTOML_HOME)/models/loan_default/"
	@echo "Decisions: $(BIN)/automl-tasks decisions --model loan_default"
	@echo "Logs: $(DEMO_LOG), $(DEMO_LOG:.log=-branches.log), $(DEMO_LOG:.log=-ablation.log)"

# Two workers, a test file each at a time (a file's module fixtures start once): most of the suite's
# time is waiting on JVMs, servers and schedulers, which two files overlap on 2 cores.
TEST_WORKERS ?= 2
test: install
	$(BIN)/pytest -q -n $(TEST_WORKERS) --dist loadfile

# The compose stack's first run (README, "Deploying"), after `docker compose up -d`: the demo
# data in ./demo_data (mounted where specs/loan_default.yaml reads it), then two months of that
# spec through the Airflow REST API, as the admin of .env.
stack-demo: install
	$(BIN)/automl-tasks demo-data --out $(DEMO_DATA) >/dev/null
	$(BIN)/python scripts/stack_demo.py --env-file .env

# Re-pin after changing dependencies in pyproject.toml.
lock: $(BIN)/activate
	$(BIN)/pip install -q "uv==$(UV_VERSION)"
	$(UV_INSTALL) -e ".[airflow,monitoring,dev,bench]"
	{ echo "# Exact versions tested together (Python 3.11). Regenerate with \`make lock\` after changing pyproject.toml."; \
	  $(BIN)/uv pip freeze --python $(BIN)/python | grep -v -E '^(-e |automl-tasks|uv==|pip==)'; } > constraints.txt

clean:
	rm -rf $(AUTOML_HOME) spark-warehouse
	# demo_data/ itself stays (its README is tracked: docker compose bind-mounts the folder).
	if [ -d $(DEMO_DATA) ]; then find $(DEMO_DATA) -mindepth 1 -maxdepth 1 ! -name README.md -exec rm -rf {} +; fi
