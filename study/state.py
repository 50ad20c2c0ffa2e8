"""The tuner folder's health: check keras-tuner's files when a study resumes, and repair them from the store.

`logs/.keras-tuner/<study>/` holds what keras-tuner reloads (oracle.json, tuner0.json,
trial_<id>/trial.json); the MLflow store is the study's record. `repair_tuner_state` runs when a
study opens, before its parent run starts, and either repairs or refuses in one line:

- a trial file missing, empty or unreadable is written again from the trial's runs in the current
  search: COMPLETED with its score (best_val_accuracy) when a run finished, FAILED when one failed,
  RUNNING (trained again) when its runs were interrupted; its values are the run's TRIAL_VALUES tag.
  A trial the store holds no run of is refused (--fresh).
- tuner0.json missing or damaged is written again (keras-tuner 1.4 keeps no state in it; it is what
  makes a tuner reload the oracle).
- oracle.json missing or damaged is dropped, and the new oracle gets every trial from its file
  (`replay_trials`, from search.make_study_tuner). A Hyperband schedule cannot be rebuilt from trial
  files: refused (--fresh).
- a trial left RUNNING that the oracle would never hand out again is queued to run again.

Nothing here creates a run, and a trial FINISHED in the store is never trained again (search.guard_trials
reports it from its run). keras-tuner's internals used here are in kt_compat.
"""

from __future__ import annotations

import json
from pathlib import Path

from . import schema
from .errors import SearchError
from .lazy import lazy

kt_compat = lazy("study.kt_compat")  # keras-tuner's files; importing keras-tuner starts TensorFlow

FRESH = "start the study over with --fresh (its runs stay in MLflow)"


def _read(path: Path):
    """(content, None), or (None, what is wrong with the file: missing, empty, unreadable)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None, "missing"
    except (OSError, UnicodeDecodeError) as exc:
        return None, f"unreadable ({exc.__class__.__name__})"
    if not text.strip():
        return None, "empty"
    try:
        return json.loads(text), None
    except ValueError:
        return None, "truncated or not JSON"


def _read_trial(path: Path):
    state, problem = _read(path)
    if problem:
        return None, problem
    try:
        return kt_compat.trial_from_state(state), None
    except (KeyError, TypeError, ValueError, AttributeError):
        return None, "not a trial file"


def _order(trial_id: str):
    return (0, int(trial_id), "") if trial_id.isdigit() else (1, 0, trial_id)


def repair_tuner_state(project_dir: str | Path, tracker, space, tuner: str, echo=print) -> None:
    """Check the tuner folder of a resumed study and repair it from the store (see the module's docstring);
    SearchError when it cannot be repaired. A study that has not run a trial yet has nothing to check."""
    project_dir = Path(project_dir)
    oracle_path = project_dir / kt_compat.ORACLE_FILE
    tuner_path = project_dir / kt_compat.TUNER_FILE
    on_disk = kt_compat.trial_ids_on_disk(project_dir)
    if not (oracle_path.exists() or tuner_path.exists() or on_disk):
        return
    state, oracle_problem = _read(oracle_path)
    if state is not None and not kt_compat.oracle_state_ok(state):
        state, oracle_problem = None, "not keras-tuner's oracle state"
    ids = set(on_disk)
    if state is not None:
        ids |= set(state["start_order"]) | set(state["ongoing_trials"].values()) | set(state["retry_queue"])
    else:
        ids |= {r.data.tags.get(schema.TRIAL_ID) for r in tracker.trial_runs()} - {None, schema.FINAL_TRIAL_ID}

    trials = {}
    for trial_id in sorted(ids, key=_order):
        path = kt_compat.trial_file(project_dir, trial_id)
        trial, problem = _read_trial(path)
        if problem:
            trial = _trial_from_store(trial_id, tracker, space, f"{path} is {problem}")
            kt_compat.write_trial(project_dir, trial)
            echo(f"{path} was {problem}: rebuilt from trial {trial_id}'s runs in the MLflow store ({trial.status})")
        trials[trial_id] = trial

    if state is None:
        if tuner == "hyperband":
            raise SearchError(f"{oracle_path} is {oracle_problem}, and a Hyperband schedule cannot be rebuilt "
                              f"from the trial files: {FRESH}")
        if sorted(int(t) for t in trials if t.isdigit()) != list(range(len(trials))):
            raise SearchError(f"{oracle_path} is {oracle_problem}, and the trial files do not hold every trial "
                              f"(found {', '.join(sorted(trials, key=_order))}): {FRESH}")
        for path in (oracle_path, tuner_path):  # the tuner then starts a new oracle; replay_trials fills it
            path.unlink(missing_ok=True)
        echo(f"{oracle_path} was {oracle_problem}: keras-tuner's oracle is rebuilt from {len(trials)} trial file(s)")
        return

    waiting = set(state["ongoing_trials"].values()) | set(state["retry_queue"])
    stranded = [t for t in sorted(trials, key=_order) if trials[t].status not in kt_compat.ENDED and t not in waiting]
    if stranded:  # left RUNNING where keras-tuner never looks again: they run again
        state["retry_queue"] = list(state["retry_queue"]) + stranded
        kt_compat.write_json(oracle_path, state)
    _, tuner_problem = _read(tuner_path)
    if tuner_problem:
        kt_compat.write_tuner_state(project_dir)
        if tuner_problem != "missing" or state["end_order"]:  # missing before the first trial ended: normal
            echo(f"{tuner_path} was {tuner_problem}: written again")


def _trial_from_store(trial_id: str, tracker, space, damage: str):
    """A trial rebuilt from its runs in the current search (see the module's docstring)."""
    TrialStatus = kt_compat.TrialStatus
    runs = tracker.runs_of_trial(trial_id)
    done = [r for r in runs if r.info.status == schema.RUN_FINISHED
            and r.data.tags.get(schema.TRIAL_STATUS) == schema.COMPLETED and schema.BEST_VAL_ACCURACY in r.data.metrics]
    failed = [r for r in runs if r.info.status == schema.RUN_FAILED]
    with_values = [r for r in done + failed + runs if schema.TRIAL_VALUES in r.data.tags]
    if not with_values:
        raise SearchError(f"{damage}, and the MLflow store holds no run of trial {trial_id} (search "
                          f"{tracker.search_id}) to rebuild it from: {FRESH}")
    run = with_values[0]
    values = json.loads(run.data.tags[schema.TRIAL_VALUES])
    hps = space.hyperparameters()
    if run in done:
        metrics = run.data.metrics
        return kt_compat.new_trial(hps, trial_id, values, TrialStatus.COMPLETED, schema.OBJECTIVE,
                                   metrics[schema.BEST_VAL_ACCURACY], int(metrics.get("best_epoch", 0)))
    if run in failed:
        return kt_compat.new_trial(hps, trial_id, values, TrialStatus.FAILED,
                                   message=run.data.tags.get(schema.FAILURE_REASON))
    return kt_compat.new_trial(hps, trial_id, values, TrialStatus.RUNNING)


def replay_trials(tuner, project_dir: str | Path) -> int:
    """When repair_tuner_state dropped a damaged oracle.json, the tuner starts a new oracle: give it every
    trial from its file, then save the tuner (oracle.json, tuner0.json). Returns how many."""
    if tuner.oracle.trials:
        return 0
    trials = [trial for trial, _ in (_read_trial(kt_compat.trial_file(project_dir, t))
                                     for t in kt_compat.trial_ids_on_disk(project_dir)) if trial is not None]
    if not trials:
        return 0
    kt_compat.replay_trials(tuner.oracle, trials)
    tuner.save()
    return len(trials)
