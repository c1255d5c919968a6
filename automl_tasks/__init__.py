"""automl_tasks: the library behind the retraining DAGs. No Airflow import anywhere in it."""

__version__ = "0.1.0"
