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
DEMO_MONTH ?= 2018-10

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

demo: install
	$(BIN)/automl-tasks demo-data --out $(DEMO_DATA)
	$(BIN)/automl-tasks tune --spec specs/loan_default.yaml --month $(DEMO_MONTH)
	@echo
	@echo "Results are in the MLflow store under $(AUTOML_HOME). Open the UI with:"
	@echo "  $(BIN)/mlflow ui --backend-store-uri sqlite:///$(AUTOML_HOME)/mlflow.db --host 127.0.0.1 --port 5000"
	@echo "Native models (booster + metadata.json + predict.py): $(AUTOML_HOME)/models/loan_default/"

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
