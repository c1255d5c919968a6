# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.9
export AUTOML_HOME ?= $(CURDIR)/.automl_home
export AIRFLOW_HOME ?= $(AUTOML_HOME)/airflow
export MLFLOW_DISABLE_TELEMETRY := true
export PYSPARK_PYTHON := $(CURDIR)/$(BIN)/python
DEMO_DATA := $(CURDIR)/demo_data
DEMO_MONTHS ?= 2018-09 2018-10
export AIRFLOW__CORE__DAGS_FOLDER := $(CURDIR)/dags
export AIRFLOW__CORE__LOAD_EXAMPLES := False
export AUTOML_SPECS_DIR ?= $(CURDIR)/specs

.PHONY: demo test install check-java lock clean

$(BIN)/activate:
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; install Python 3.11" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: $(BIN)/activate pyproject.toml constraints.txt
	$(BIN)/pip install -q "uv==$(UV_VERSION)"
	$(BIN)/uv pip install --python $(BIN)/python -c constraints.txt -e ".[airflow,monitoring,dev]"
	@mkdir -p $(AUTOML_HOME) $(AIRFLOW_HOME)
	touch $@

install: $(VENV)/.installed check-java

check-java:
	@v=$$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -1); \
	if [ -z "$$v" ] || [ "$$v" -lt 17 ]; then \
	  echo "error: Spark needs Java 17+ (found: $${v:-none}); e.g. apt-get install -y openjdk-17-jre-headless" >&2; exit 1; fi

# The monthly DAG, in-process (dag.test), on two consecutive demo months: the first
# makes the first champion, the second compares a retrained challenger with it.
demo: install
	$(BIN)/automl-tasks demo-data --out $(DEMO_DATA)
	@$(BIN)/airflow db migrate >/dev/null
	@for month in $(DEMO_MONTHS); do \
	  echo "monthly_retrain for $$month (dag.test, promotion auto): log in $(AUTOML_HOME)/demo-$$month.log"; \
	  $(BIN)/python scripts/run_dag.py monthly_retrain --date $$month-15T00:00:00+00:00 --conf \
	    "{\"month\": \"$$month\", \"promotion\": \"auto\"}" > $(AUTOML_HOME)/demo-$$month.log 2>&1 \
	    || { tail -50 $(AUTOML_HOME)/demo-$$month.log; exit 1; }; \
	  grep '^RESULT' $(AUTOML_HOME)/demo-$$month.log; \
	done
	@echo
	@$(BIN)/automl-tasks decisions --model loan_default
	@echo
	@echo "Results are in the MLflow store under $(AUTOML_HOME) (experiments loan_default/monthly)."
	@echo "Open the UI with:"
	@echo "  $(BIN)/mlflow ui --backend-store-uri sqlite:///$(AUTOML_HOME)/mlflow.db --host 127.0.0.1 --port 5000"
	@echo "Native models (booster + metadata.json + predict.py): $(AUTOML_HOME)/models/loan_default/"
	@echo "Airflow task logs of the demo runs: $(AUTOML_HOME)/demo-<month>.log"

test: install
	$(BIN)/pytest -q

# Re-pin after changing dependencies in pyproject.toml.
lock: $(BIN)/activate
	$(BIN)/pip install -q "uv==$(UV_VERSION)"
	$(BIN)/uv pip install --python $(BIN)/python -e ".[airflow,monitoring,dev]"
	{ echo "# Exact versions tested together (Python 3.11). Regenerate with \`make lock\` after changing pyproject.toml."; \
	  $(BIN)/uv pip freeze --python $(BIN)/python | grep -v -E '^(-e |automl-tasks|uv==|pip==)'; } > constraints.txt

clean:
	rm -rf $(AUTOML_HOME) $(DEMO_DATA) spark-warehouse
