"""`lenet-study`: one command with subcommands; the Makefile targets only call it."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

from . import tracking
from .bench import run_bench
from .errors import StudyError
from .lazy import lazy
from .model import build_lenet, count_params
from .parallel.chief import launch
from .parallel.cluster import run_on_ray
from .parallel.worker import WorkerRequest, run_worker
from .predict import predict_image
from .quiet import quiet_startup
from .report import (ReportError, findings_markers, include_findings, list_studies, load_study, run_notebooks,
                     write_report)
from .search import StudyRequest, load_space_with_overrides, run_search
from .pruning import PRUNERS
from .space import load_space
from .spacefile import TUNERS, time_budget_seconds
from .train import train_one
from .variants import VARIANTS, get_variant

# Quiet TensorFlow's C++ start-up chatter before anything imports it (nothing above does: TensorFlow,
# keras-tuner and MLflow load on first use, through study/lazy.py).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")

tuner_module = lazy("study.tuner")  # set_debug, for -v; importing keras-tuner starts TensorFlow

# What the user asked for and cannot have: one line, no traceback (-v shows it). Every error of ours is a
# StudyError; a file named on the command line that is not there is Python's own.
USER_ERRORS = (StudyError, FileNotFoundError)


class UsageError(StudyError, ValueError):
    """A flag that names something unusable (a file where a folder goes); one line for the user."""


def check_folder(flag: str, value) -> None:
    """A folder flag (--log-dir, --out): an existing folder, or one that can be made there (the nearest
    part of the path that exists is a writable folder). Checked before anything starts."""
    path = Path(value)
    existing = next(p for p in (path, *path.parents) if p.exists())  # "." or "/" at the latest
    if not existing.is_dir():
        where = "a file" if existing == path else f"{existing} is a file"
        raise UsageError(f"{flag} {value}: {where}, not a folder; give a folder (it is made if missing)")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"{flag} {value}: {existing} is not writable")


def cmd_variants(args) -> int:
    if args.name:
        variant = get_variant(args.name)
        model = build_lenet(variant.config)
        print(f"{variant.name}: {variant.recipe}")
        model.summary(print_fn=lambda line, *a, **k: print(line))
        return 0
    rows = [("name", "dataset", "recipe", "params", "reported")]
    for v in VARIANTS.values():
        reported = f"{v.reported:.4f} ({v.reported_as})" if v.reported is not None else v.reported_as
        rows.append((v.name, v.dataset, v.recipe, f"{count_params(v.config):,}", reported))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(r, widths)).rstrip())
    return 0


def cmd_space(args) -> int:
    print(load_space(args.file).describe())
    return 0


def study_request(args):
    """The one request object for `search`, from its flags."""
    started = time.monotonic()  # a time budget counts from here
    budget = None if args.time_budget is None else time_budget_seconds(args.time_budget, "--time-budget")
    space, settings = load_space_with_overrides(
        args.space, tuner=args.tuner, max_trials=args.max_trials, epochs=args.epochs, dataset=args.dataset,
        executions_per_trial=args.executions_per_trial, seed=args.seed, time_budget=budget, prune=args.prune,
    )
    check_folder("--log-dir", args.log_dir)
    return StudyRequest(space, settings, study=args.name, fresh=args.fresh, data_dir=args.data_dir,
                        log_dir=args.log_dir, workers=args.workers, oracle_bind=args.oracle_bind, ray=args.ray,
                        started=started)


def cmd_search(args) -> int:
    request = study_request(args)
    tracking.check_store(request.tracking_uri)  # a bad URI or a silent server: one line before the data loads
    run = run_on_ray if request.ray else launch if request.parallel else run_search
    print(run(request).done_line())
    return 0


def cmd_worker(args) -> int:
    check_folder("--log-dir", args.log_dir)
    return run_worker(WorkerRequest(
        oracle=args.oracle, study=args.study, space=args.space, parent_run_id=args.parent_run_id,
        tuner_id=args.tuner_id, workers=args.workers, threads=args.threads, data_dir=args.data_dir,
        log_dir=args.log_dir))


def cmd_predict(args) -> int:
    result = predict_image(args.image, study=args.study, run_id=args.run, invert=args.invert, model_uri=args.model)
    print(result.text())
    return 0


def cmd_train(args) -> int:
    train_one(variant=args.variant, run_id=args.run, dataset=args.dataset, epochs=args.epochs,
              data_dir=args.data_dir, save=args.save, seed=args.seed)
    return 0


def cmd_report(args) -> int:
    check_folder("--out", args.out)
    if args.results and not Path(args.results).is_file():
        raise UsageError(f"--results {args.results}: no such file; give the page whose findings blocks to fill")
    tracking.check_store(must_exist=True)
    studies = args.studies or list_studies()
    if not studies:
        raise ReportError("no studies in the MLflow store yet; run `make search` first")
    for study in studies:
        runs = load_study(study)  # once: the report and its notebooks share it
        out = write_report(study, out_root=args.out, runs=runs)
        print(f"{study}: wrote {out}/report.md and report.html")
        if args.results:
            # The figures go beside the page (docs/figures/), where the docs site serves them.
            if include_findings(args.results, study, out, Path(args.results).parent / "figures"):
                print(f"{study}: findings copied into {args.results}")
            else:
                print(f"{study}: {args.results} has no {findings_markers(study)[0]} block; its findings stay in "
                      f"{out}/report.md")
        if not args.no_notebooks:
            for path in run_notebooks(study, out_root=args.out, runs=runs):
                print(f"{study}: executed notebook → {path}")
    return 0


def cmd_ui(args) -> int:
    """Print the link to the latest study's runs table, then become `mlflow ui` on the same store."""
    uri = tracking.check_store()
    latest = tracking.latest_study(tracking.client(uri))
    base = f"http://{args.host}:{args.port}"
    if latest:
        print(f"runs of the latest study {latest[0]!r}: {tracking.ui_link(base, latest[1])}", flush=True)
    else:
        print(f"no study in {uri} yet (run `make search`); the MLflow UI: {base}", flush=True)
    command = tracking.ui_command(uri, args.host, args.port)
    if args.dry_run:
        print(" ".join(command))
        return 0
    os.execv(command[0], command)


def cmd_bench(args) -> int:
    return run_bench(args)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lenet-study", description=__doc__)
    p.add_argument("-v", "--verbose", action="store_true",
                   help="show library logs, TensorFlow's start-up lines and tracebacks")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("variants", help="list the documented variants, or show one's layers")
    s.add_argument("name", nargs="?", help="a variant name: print its layer-by-layer summary")
    s.set_defaults(func=cmd_variants)

    s = sub.add_parser("space", help="validate a search-space file and print the resolved space")
    s.add_argument("file")
    s.set_defaults(func=cmd_space)

    s = sub.add_parser("search", help="run (or resume) a study: keras-tuner trials tracked in MLflow")
    s.add_argument("space", nargs="?", default="search_spaces/lenet.yaml")
    s.add_argument("--tuner", choices=list(TUNERS))
    s.add_argument("--prune", choices=list(PRUNERS),
                   help="stop trials below the finished trials' median at an epoch (default: the space file's "
                        "study.prune, else none)")
    s.add_argument("--max-trials", type=int)
    s.add_argument("--epochs", type=int)
    s.add_argument("--dataset")
    s.add_argument("--executions-per-trial", type=int)
    s.add_argument("--seed", type=int)
    s.add_argument("--time-budget", metavar="DURATION",
                   help="end the study within this time (45s, 15m, 1h): trials start while one more and the "
                        "final run still fit (default: the space file's study.time_budget, else none)")
    s.add_argument("--name", help="study name (default: the space file's name)")
    s.add_argument("--fresh", action="store_true", help="start the study over (earlier runs stay in MLflow)")
    s.add_argument("--data-dir", help="folder with mnist.npz / fashion_mnist.npz (default: $LENET_DATA_DIR)")
    s.add_argument("--log-dir", default="logs", help="TensorBoard and tuner state folder (default: logs)")
    s.add_argument("--workers", default="1", help="trials in parallel on this machine: N or auto (with --ray: worker "
                                                  "actors, auto = one per GPU, else one per CPU slot of the cluster)")
    s.add_argument("--ray", nargs="?", const="auto", metavar="ADDRESS",
                   help="run the chief and the workers as actors on a Ray cluster: 'local' starts one here, 'auto' "
                        "(the default) joins this machine's, or ray://HOST:PORT, HOST:PORT (needs the ray extra)")
    s.add_argument("--oracle-bind", metavar="HOST[:PORT]",
                   help="serve the oracle to remote workers on this address (default: 127.0.0.1, any free port); "
                        "no authentication: private networks only. With --workers 0: the chief only")
    s.set_defaults(func=cmd_search)

    s = sub.add_parser("worker", help="join a study whose chief (search --oracle-bind) runs on another machine")
    s.add_argument("--oracle", required=True, metavar="HOST:PORT", help="the chief's oracle address")
    s.add_argument("--study", required=True, help="the study's name (its MLflow experiment)")
    s.add_argument("--space", help="the chief's space file (default: the path the chief recorded); must be identical")
    s.add_argument("--parent-run-id", help="the study's parent run (default: its newest RUNNING parent run)")
    s.add_argument("--tuner-id", help="this worker's id; restart a worker under the same id (default: the host name)")
    s.add_argument("--workers", default="1", help="worker processes on this machine: N or auto (one per core)")
    s.add_argument("--threads", type=int, help="TensorFlow threads per worker process (default: cores / workers)")
    s.add_argument("--data-dir", help="folder with mnist.npz / fashion_mnist.npz (default: $LENET_DATA_DIR)")
    s.add_argument("--log-dir", default="logs", help="TensorBoard and tuner folder, shared with the chief")
    s.set_defaults(func=cmd_worker)

    s = sub.add_parser("predict", help="classify a grayscale image with a study's best model")
    s.add_argument("image")
    g = s.add_mutually_exclusive_group()
    g.add_argument("--study", help="use this study's champion model (default: the most recent study with a best "
                                   "model; its latest best model when it registered none)")
    g.add_argument("--run", help="a parent run id holding best_model.keras")
    g.add_argument("--model", metavar="URI", help="an MLflow model URI: models:/lenet-<study>@champion, "
                                                  "models:/NAME/VERSION or runs:/RUN_ID/best_model")
    s.add_argument("--invert", action="store_true", help="for a dark digit on a light background")
    s.set_defaults(func=cmd_predict)

    s = sub.add_parser("train", help="train one configuration: a documented variant or a run's parameters")
    g = s.add_mutually_exclusive_group(required=True)
    g.add_argument("--variant")
    g.add_argument("--run", help="an MLflow run id whose parameters to rebuild")
    s.add_argument("--dataset")
    s.add_argument("--epochs", type=int, help="default: the variant's, or the trial's (a Hyperband trial's budget)")
    s.add_argument("--seed", type=int, help="seeds the weights and the shuffling (default: the variant's or the "
                                            "trial's); a trial's data split keeps its study's seed")
    s.add_argument("--data-dir")
    s.add_argument("--save", help="write the trained model to this .keras file")
    s.set_defaults(func=cmd_train)

    s = sub.add_parser("report", help="figures, tables and notebooks from the MLflow store (never trains)")
    s.add_argument("studies", nargs="*", help="study names (default: every study in the store)")
    s.add_argument("--out", default="reports")
    s.add_argument("--no-notebooks", action="store_true")
    s.add_argument("--results", metavar="FILE", help="also copy each study's Findings into FILE (docs/results.md), "
                   "between its <!-- findings: STUDY --> and <!-- /findings: STUDY --> lines, and the figures they "
                   "link into figures/ beside FILE")
    s.set_defaults(func=cmd_report)

    s = sub.add_parser("ui", help="print the latest study's runs link, then serve the MLflow UI on the store")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=5000)
    s.add_argument("--dry-run", action="store_true", help="print the link and the mlflow command, start nothing")
    s.set_defaults(func=cmd_ui)

    s = sub.add_parser("bench", help="benchmarks: tracking overhead and worker scaling; --only one of seven")
    s.add_argument("--only", choices=["tracking", "workers", "throughput", "search", "time-to-accuracy", "report",
                                      "oracle"],
                   help="run one benchmark (default: tracking and workers; the other five take long)")
    s.add_argument("--data-dir")
    s.add_argument("--dataset", help="default: mnist for tracking, workers and throughput; mnist-5k for search "
                                     "(mnist with --data-dir for the full setting); the study's for time-to-accuracy")
    s.add_argument("--trials", type=int, default=3, help="tracking and workers: trials per side (at most 3)")
    s.add_argument("--epochs", type=int, help="epochs per trial (default: 3 for tracking and workers, 1 per "
                                              "timed fit for throughput, 2 for search)")
    s.add_argument("--train-samples", type=int, default=None, help="subsample the training set (default: all)")
    s.add_argument("--rounds", type=int, default=3,
                   help="tracking and throughput: rounds of the sides, their order alternating; report: runs of "
                        "each report (default: 3)")
    s.add_argument("--space", help="search, report and oracle: the space file (default: search_spaces/lenet.yaml)")
    s.add_argument("--max-trials", type=int, help="search: override the space's max_trials; report: the trials of "
                                                  "the study it runs (default: 6)")
    s.add_argument("--budget", metavar="DURATION",
                   help="search: each search's wall-clock budget, final run included (45s, 2m, 1h; default: 100s)")
    s.add_argument("--seeds", type=int, help="search: seeds, each running all three searches (default: 10)")
    s.add_argument("--out", help="search: folder for bench-search/search_quality.png and .csv (default: reports)")
    s.add_argument("--study", help="time-to-accuracy: the study whose best trial races the recipe (default: lenet); "
                                    "report: the study to grow (default: a small one run here)")
    s.add_argument("--run", metavar="RUN_ID", help="time-to-accuracy: race this run's configuration instead")
    s.add_argument("--threshold", type=float, help="time-to-accuracy: the test accuracy to reach (default: 0.9876)")
    s.add_argument("--max-epochs", type=int, help="time-to-accuracy: cap both sides' epochs (default: the "
                                                  "configuration's; 20 for the recipe)")
    s.add_argument("--sizes", metavar="N,N,...", help="report: the study sizes to time, the first the baseline "
                                                      "(default: 23,1000,10000); oracle: the finished trials to "
                                                      "measure at (default: 100,1000)")
    s.set_defaults(func=cmd_bench)
    one_line_errors(s)
    return p


def one_line_errors(parser: argparse.ArgumentParser) -> None:
    """A bad flag value in one line, `lenet-study: error: <subcommand>: ...` and exit 2, instead of argparse's
    usage block (`-h` still shows it)."""
    name = parser.prog.split()[-1]

    def error(message):
        print(f"lenet-study: error: {name}: {message}", file=sys.stderr)
        sys.exit(2)

    parser.error = error


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # TensorFlow's start-up lines (the ones absl prints whatever TF_CPP_MIN_LOG_LEVEL says) left out of stderr.
    with quiet_startup(enabled=not args.verbose):
        return _run(args)


def _run(args) -> int:
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    for noisy in ("alembic", "mlflow", "absl", "tensorflow"):
        logging.getLogger(noisy).setLevel(logging.INFO if args.verbose else logging.ERROR)
    logging.getLogger("study").setLevel(logging.INFO)
    if args.verbose and args.command in ("search", "worker"):
        tuner_module.set_debug(True)
    try:
        return args.func(args) or 0
    except KeyboardInterrupt:
        print("lenet-study: interrupted", file=sys.stderr)
        return 130
    except USER_ERRORS as exc:
        if args.verbose:
            raise
        message = str(exc)
        if isinstance(exc, FileNotFoundError):
            message = f"{exc.filename}: no such file"
        print(f"lenet-study: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
