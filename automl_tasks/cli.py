"""`automl-tasks ...`: every DAG step runnable without Airflow.

Exit codes: 0 ok, 2 bad input (one line on stderr naming the problem), 1 other failures.
With --json, stdout carries exactly one JSON object; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def _cmd_tune(args) -> dict:
    from automl_tasks.tuning.job import tune

    algorithms = args.algorithm.split(",") if args.algorithm else None
    return tune(args.model_spec, args.month, algorithms)


def _cmd_monthly(args) -> dict:
    from automl_tasks.pipelines.monthly import run_monthly

    return run_monthly(args.model_spec, args.month, promotion_mode=args.promotion, wait_s=args.wait)


def _cmd_compare_branches(args) -> dict:
    from automl_tasks.pipelines.branches import compare_branches

    return compare_branches(args.repo, args.spec, args.month, refs=tuple(args.refs.split(",")))


def _cmd_compare_deployments(args) -> dict:
    from automl_tasks.pipelines.branches import compare_deployments

    return compare_deployments(args.model_spec, args.month, branches=tuple(args.branches.split(",")))


def _cmd_score(args) -> dict:
    from automl_tasks.pipelines.scoring import score_month

    return score_month(args.model_spec, args.month, version=args.version, out=args.out)


def _show_score(result: dict) -> None:
    print(f"{result['model']} v{result['version']} scored {result['rows']} rows of {result['month']}: "
          f"{result['path']} ({', '.join(result['columns'])})")


def _cmd_decisions(args) -> dict:
    from automl_tasks.registry import promotion

    promotion.require_model(args.model)
    history = [d.to_json() for d in promotion.decision_history(args.model)]
    return {"model": args.model, "champion": promotion.current_champion(args.model), "decisions": history}


def _login() -> str:
    """The login of the person running the CLI: decisions record them as `user:<login>`."""
    import getpass

    return getpass.getuser()


def _cmd_decide(args) -> dict:
    """A person's answer to a pending decision, with the same checks as the Airflow approval."""
    from automl_tasks.errors import AutomlError
    from automl_tasks.registry import promotion

    if not args.reason.strip():
        raise AutomlError("--reason must say why (it is recorded with the decision)")
    promotion.require_model(args.model)
    user = _login()
    decision = promotion.decide(args.model, args.version, approve=args.approve, decided_by=f"user:{user}",
                                reasons=[f"{user} (CLI): {args.reason.strip()}"])
    return {**decision.to_json(), "champion": promotion.current_champion(args.model)}


def _show_decide(result: dict) -> None:
    print(f"{result['model']} v{result['version']} for {result['month']}: {result['status']} by "
          f"{result['decided_by']}; champion: v{result['champion']}")


def _cmd_rollback(args) -> dict:
    """Move `champion` back to an earlier champion, only from the one named (or read) as current."""
    from automl_tasks.errors import AutomlError
    from automl_tasks.registry import promotion, rollback

    if not args.reason.strip():
        raise AutomlError("--reason must say why (it is recorded with the rollback)")
    promotion.require_model(args.model)
    user = _login()
    current = args.from_version or promotion.current_champion(args.model)
    record = rollback.rollback(args.model, args.to, expected_current=current, decided_by=f"user:{user}",
                               reason=f"{user} (CLI): {args.reason.strip()}")
    return {**record.to_json(), "champion": promotion.current_champion(args.model)}


def _show_rollback(result: dict) -> None:
    print(f"{result['model']} champion: v{result['champion_before']} -> v{result['champion_after']} "
          f"({result['status']} by {result['decided_by']}); champion now: v{result['champion']}")


def _cmd_history(args) -> dict:
    from automl_tasks.registry.promotion import current_champion, require_model

    require_model(args.model)
    if args.aliases:      # the alias ledger instead of the month table
        from automl_tasks.registry.ledger import alias_ledger

        return {"model": args.model, "champion": current_champion(args.model),
                "aliases": [row.to_json() for row in alias_ledger(args.model)]}
    from automl_tasks.pipelines.history import history

    rows = history(args.model)
    return {"model": args.model, "metric": rows[0]["metric"] if rows else None, "months": rows}


def _cmd_ablation(args) -> dict:
    from automl_tasks.ablation.study import request, run_ablation
    from automl_tasks.spark import get_spark

    spec, spark = args.model_spec, get_spark()
    candidates, tables = request(spark, spec, candidates=args.candidates, table=args.table, on=args.on,
                                 as_of=args.as_of)
    return run_ablation(spec, args.month, candidates=candidates, tables=tables, repeats=args.repeats,
                        folds=args.folds, direction=args.direction, spark=spark)


def _show_ablation(result: dict) -> None:
    from automl_tasks.ablation.study import format_results

    print(format_results(result))


def _show_history(result: dict) -> None:
    if "aliases" in result:
        from automl_tasks.registry.ledger import AliasMove, format_ledger

        print(f"alias ledger of {result['model']} (every move of `champion`, and refused rollbacks):")
        print(format_ledger([AliasMove(**row) for row in result["aliases"]], result["champion"]))
        return
    from automl_tasks.pipelines.history import format_history

    print(format_history(result["months"], result["metric"] or "metric"))


def _show_decisions(result: dict) -> None:
    for d in result["decisions"]:
        print(f"{d['month']}  v{d['version']:<4} {d['status']:<10} by {d['decided_by'] or '-':<16} "
              f"{'; '.join(d['reasons'])[:150]}")
    print(f"champion: v{result['champion']}")


def _show_tune(result: dict) -> None:
    # The leaderboard went to stderr with the progress lines; this is the one-line outcome.
    best = result["best"]
    print(f"run {result['run_id']} in experiment {result['experiment']}; best {best['algorithm']} "
          f"{best['metric']}={best['value']:.5f}; native model in {result['model_dir']}")


def _show_json(result: dict) -> None:
    print(json.dumps(result, indent=2, default=str))


def _cmd_poc(args) -> dict:
    from automl_tasks.poc.request import PocRequest
    from automl_tasks.poc.run import run_poc

    _stop_on_sigterm()
    request = PocRequest(data=args.data, label=args.label, task=args.task, metric=args.metric,
                         time_budget_s=args.time_budget, test=args.test, segment=args.segment,
                         algorithms=args.algorithms.split(",") if args.algorithms else None,
                         validation=args.validation, name=args.name, seed=args.seed,
                         max_trials=args.max_trials)
    try:
        return run_poc(request, started=args.started)
    except SystemExit as stop:
        if stop.code != STOPPED:
            raise
        # Unwound: the run ended FAILED, the outputs removed, the jobs cancelled. Exit now: the
        # interpreter's exit would join the search's worker threads, each waiting on a Spark call.
        print("stopped by SIGTERM", file=sys.stderr, flush=True)
        os._exit(STOPPED)


STOPPED = 128 + 15          # the exit status after SIGTERM


def _stop_on_sigterm() -> None:
    """SIGTERM (a scheduler's kill, `timeout`) unwinds like an error: the MLflow run ends FAILED,
    Spark jobs are cancelled and the process exits with nothing left running. SIGUSR1 prints
    every thread's stack to stderr (what a stuck process is doing)."""
    import _thread
    import faulthandler
    import signal
    import threading

    def stop(signum, frame):
        raise SystemExit(128 + signum)

    previous = sys.unraisablehook

    def redeliver(unraisable) -> None:
        # The handler runs wherever the main thread is; inside a finalizer (py4j's JavaObject
        # cleanup, which runs all the time) Python prints its SystemExit and drops it, and the
        # search went on. Deliver the signal to the main thread again, from another thread once
        # this finalizer is over (now, the handler would run inside this hook).
        if isinstance(unraisable.exc_value, SystemExit) and unraisable.exc_value.code == STOPPED:
            threading.Timer(0.05, _thread.interrupt_main, args=(signal.SIGTERM,)).start()
        else:
            previous(unraisable)

    signal.signal(signal.SIGTERM, stop)
    sys.unraisablehook = redeliver
    if sys.__stderr__ is not None:      # the process's own stderr: sys.stderr may be captured or redirected
        faulthandler.register(signal.SIGUSR1, file=sys.__stderr__, all_threads=True)


def _show_poc(result: dict) -> None:
    best = result["best"]
    print(f"PoC run {result['run_id']} in experiment {result['experiment']} ({result['task_note']}); "
          f"best {best['algorithm']} {best['metric']}={best['value']:.5f}; re-run it with "
          f"`automl-tasks tune --spec {best['spec']}`; outputs in {result['outputs']['dir']}")


def _spec_file_argument(parser: argparse.ArgumentParser, help: str) -> None:
    """--spec naming a spec file: `main` loads it as `args.model_spec` before anything starts."""
    parser.add_argument("--spec", required=True, help=help)
    parser.set_defaults(spec_file=True)


def build_parser() -> argparse.ArgumentParser:
    from automl_tasks.models import algorithms

    parser = argparse.ArgumentParser(prog="automl-tasks", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    tune = sub.add_parser("tune", help="tune every algorithm of a spec on Spark, log to MLflow")
    _spec_file_argument(tune, "model spec YAML")
    tune.add_argument("--month", help="holdout month YYYY-MM; trains on the months before it")
    tune.add_argument("--algorithm", help="only these algorithms (comma-separated)")
    tune.add_argument("--json", action="store_true", help="print one JSON summary on stdout")
    tune.set_defaults(run=_cmd_tune, show=_show_tune, spark=True)

    monthly = sub.add_parser("monthly", help="the monthly job: drift, champion score, retrain, compare, decide")
    _spec_file_argument(monthly, "model spec YAML")
    monthly.add_argument("--month", required=True, help="the month to monitor and hold out, YYYY-MM")
    monthly.add_argument("--promotion", choices=["auto", "manual", "shadow"],
                         help="override the spec's promotion.mode")
    monthly.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                         help="if another run of this month is going, wait up to this long for it "
                              "(default 0: exit at once, naming it)")
    monthly.add_argument("--json", action="store_true", help="print one JSON summary on stdout")
    monthly.set_defaults(run=_cmd_monthly, spark=True)

    branches = sub.add_parser("compare-branches",
                              help="train the spec as on two git refs and compare them on the same month")
    branches.add_argument("--repo", default=".", help="git repository holding the spec")
    branches.add_argument("--spec", required=True, help="spec path inside the repository")
    branches.add_argument("--month", required=True, help="the holdout month, YYYY-MM")
    branches.add_argument("--refs", default="develop,master", help="candidate,baseline refs")
    branches.add_argument("--json", action="store_true")
    branches.set_defaults(run=_cmd_compare_branches, spark=True)

    deployments = sub.add_parser(
        "compare-deployments",
        help="compare the models two deployments tuned for a month (runs tagged automl.branch)")
    _spec_file_argument(deployments, "model spec YAML (names the model)")
    deployments.add_argument("--month", required=True, help="the holdout month, YYYY-MM")
    deployments.add_argument("--branches", default="develop,master", help="candidate,baseline branch tags")
    deployments.add_argument("--json", action="store_true")
    deployments.set_defaults(run=_cmd_compare_deployments, spark=True)

    score = sub.add_parser("score", help="write the champion's predictions for one month as a parquet "
                                         "partition (<out>/<model>/month=YYYY-MM/)")
    _spec_file_argument(score, "model spec YAML (names the model and the data)")
    score.add_argument("--month", required=True, help="the month to score, YYYY-MM (labels not needed)")
    score.add_argument("--version", help="score with this model version (default: the champion)")
    score.add_argument("--out", help="predictions folder (default AUTOML_PREDICTIONS_DIR, else "
                                     "$AUTOML_DATA_DIR/predictions, else $AUTOML_HOME/predictions)")
    score.add_argument("--json", action="store_true", help="print one JSON summary on stdout")
    score.set_defaults(run=_cmd_score, show=_show_score)

    decisions = sub.add_parser("decisions", help="promotion decisions and the current champion of a model")
    decisions.add_argument("--model", required=True, help="registered model name (the spec's name)")
    decisions.add_argument("--json", action="store_true")
    decisions.set_defaults(run=_cmd_decisions, show=_show_decisions)

    decide = sub.add_parser("decide", help="approve or reject a pending promotion decision (as Airflow's "
                                           "approval does: only against the champion it was measured on)")
    decide.add_argument("--model", required=True, help="registered model name (the spec's name)")
    decide.add_argument("--version", required=True, help="the challenger's model version")
    answer = decide.add_mutually_exclusive_group(required=True)
    answer.add_argument("--approve", action="store_true", help="make it champion")
    answer.add_argument("--reject", action="store_true", help="keep the champion")
    decide.add_argument("--reason", required=True, help="why (recorded with your user name)")
    decide.add_argument("--json", action="store_true")
    decide.set_defaults(run=_cmd_decide, show=_show_decide)

    rollback = sub.add_parser("rollback", help="move champion back to an earlier champion (refused, and "
                                               "recorded, if the champion is not the one you saw)")
    rollback.add_argument("--model", required=True, help="registered model name (the spec's name)")
    rollback.add_argument("--to", required=True, metavar="VERSION", help="the earlier champion to restore")
    rollback.add_argument("--from", dest="from_version", metavar="VERSION",
                          help="the champion you are replacing (default: the champion when the command starts)")
    rollback.add_argument("--reason", required=True, help="why (recorded with your user name)")
    rollback.add_argument("--json", action="store_true")
    rollback.set_defaults(run=_cmd_rollback, show=_show_rollback)

    hist = sub.add_parser("history", help="month by month: champion score, drift, challenger, decision; "
                                          "--aliases: every move of champion")
    hist.add_argument("--model", required=True, help="registered model name (the spec's name)")
    hist.add_argument("--aliases", action="store_true",
                      help="print the alias ledger instead of the month table: every champion move and "
                           "refused rollback, with who, when, from, to and why")
    hist.add_argument("--json", action="store_true")
    hist.set_defaults(run=_cmd_history, show=_show_history)

    ablation = sub.add_parser("ablation", help="add-one-feature (or drop-one) study with confidence "
                                               "intervals, logged to MLflow <name>/ablation")
    _spec_file_argument(ablation, "model spec YAML")
    ablation.add_argument("--month", help="holdout month YYYY-MM; the study trains on the months before it")
    ablation.add_argument("--candidates", help="candidate columns (comma-separated); default: the spec's "
                                               "ablation.candidates, else every column of the table")
    ablation.add_argument("--table", help="candidate table (parquet/csv path or table:db.name) to left-join")
    ablation.add_argument("--on", help="join key(s) of --table, comma-separated")
    ablation.add_argument("--as-of", help="time column of --table for a point-in-time join "
                                          "(default: its as_of column when it has one)")
    ablation.add_argument("--repeats", type=int, help="repeats of the k-fold (default ablation.repeats)")
    ablation.add_argument("--folds", type=int, help="folds per repeat (default ablation.folds)")
    ablation.add_argument("--direction", choices=["add", "drop"], default="add",
                          help="add: base + one candidate; drop: base - one base feature")
    ablation.add_argument("--json", action="store_true", help="print one JSON summary on stdout")
    ablation.set_defaults(run=_cmd_ablation, show=_show_ablation, spark=True)

    poc = sub.add_parser("poc", help="PoC on new data: exploration report, algorithm leaderboard, "
                                     "white-box candidates (MLflow <name>/poc), within a time budget")
    poc.add_argument("--data", required=True, help="training data (csv/parquet) under the data roots "
                                                   "(AUTOML_DATA_ROOTS, default the working directory)")
    poc.add_argument("--label", required=True, help="the column to predict")
    poc.add_argument("--task", choices=["binary", "multiclass", "regression"],
                     help="default: inferred from the label (and said so)")
    poc.add_argument("--metric", help="default per task: areaUnderROC | logLoss | rmse")
    poc.add_argument("--time-budget", type=float, default=300.0, help="seconds for the whole PoC (default 300)")
    poc.add_argument("--algorithms", help="comma-separated; default: every one that fits the task, of "
                                          + ", ".join(algorithms.names()))
    poc.add_argument("--validation", default="cv", help="cv, cv:K, split or split:RATIO (default cv: 3 folds)")
    poc.add_argument("--test", help="test data with the same columns (the label optional): predictions")
    poc.add_argument("--segment", help="segment column: per-segment models compared with the global one")
    poc.add_argument("--name", help="model name (default: NAME of NAME_train.csv)")
    poc.add_argument("--max-trials", type=int, help="trials per algorithm at most (default: as many as "
                                                    "the time budget allows)")
    poc.add_argument("--seed", type=int, default=0)
    poc.add_argument("--json", action="store_true", help="print one JSON summary on stdout")
    poc.set_defaults(run=_cmd_poc, show=_show_poc, spark=True)

    from automl_tasks.data import demo_command

    demo_command.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from automl_tasks.errors import AutomlError
    from automl_tasks.progress import show_on_stderr
    from automl_tasks.registry import tracking

    started = time.monotonic()       # a PoC's time budget counts from here
    args = build_parser().parse_args(argv)
    args.started = started
    show_on_stderr()
    try:
        if getattr(args, "spec_file", False):     # a bad spec fails at once, not after a JVM started
            from automl_tasks.spec import load_spec

            args.model_spec = load_spec(args.spec)
        if getattr(args, "spark", False):        # the JVM starts while the command imports and checks
            from automl_tasks.spark import start_in_background

            start_in_background()
        tracking.configure()         # this process's MLflow store (a bad MLFLOW_TRACKING_URI: exit 2)
        # Libraries print to stdout (MLflow's "View run" lines): keep stdout for our result.
        with contextlib.redirect_stdout(sys.stderr):
            try:
                result = args.run(args)
            finally:                 # any command may have used Spark (score does when it must)
                from automl_tasks.spark import release_connect_session

                release_connect_session()
    except AutomlError as exc:
        if getattr(args, "spark", False):
            from automl_tasks.spark import stop_background_start

            stop_background_start()      # the error is the command's last line
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result, default=str))
    else:
        getattr(args, "show", _show_json)(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
