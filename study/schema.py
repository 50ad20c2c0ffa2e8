"""Names of what a study records in MLflow: the contract between search and reports.

One experiment per study (named after it). One parent run per `search`
invocation, one nested child run per keras-tuner trial.

Parent run (tag ROLE = "study"):
  params  tuner, max_trials, epochs, patience, dataset, executions_per_trial, seed,
          objective, space_file, test_eval
  tags    STUDY, SEARCH_ID, SPACE_FILE, SPACE_DIGEST, GIT_COMMIT, COMMAND,
          lenet.data.<name|resolved|source|n_train|n_test|digest|note>
  input   the training data via mlflow.log_input (name, source, digest, counts)
  metrics best_val_accuracy, test_accuracy, test_loss (of the best trial),
          n_trials_completed, n_trials_failed
  files   the space YAML under "space/", the best model under "best_model/"
          (MLflow Keras model) and "best_model.keras"

Child run (tag ROLE = "trial", tag "mlflow.parentRunId" = parent):
  params  every LeNetConfig field (see LeNetConfig.to_params), plus VARIANT when
          the trial is a documented variant, and tuner/* keys Hyperband adds
  tags    STUDY, SEARCH_ID, TRIAL_ID, TRIAL_STATUS ("COMPLETED"|"FAILED"), FAILURE_REASON,
          STOP_REASON ("early_stopping"|"max_epochs"|"nan"|"error"), VARIANT, WORKER
  metrics per-epoch histories (step = epoch, from 0) of HISTORY_METRICS;
          best_val_accuracy, best_val_loss, best_epoch, epochs_run, param_count,
          wall_time_s; with several executions *_mean and *_std of the best
          metrics; test_accuracy / test_loss when the trial was evaluated on test.
"""

ROLE = "lenet.role"
STUDY = "lenet.study"
SPACE_FILE = "lenet.space_file"
SPACE_DIGEST = "lenet.space_digest"
GIT_COMMIT = "lenet.git_commit"
COMMAND = "lenet.command"
DATA_PREFIX = "lenet.data."  # + name, resolved, source, n_train, n_test, digest, note
TRIAL_ID = "lenet.trial_id"
TRIAL_STATUS = "lenet.trial_status"
FAILURE_REASON = "lenet.failure_reason"
STOP_REASON = "lenet.stop_reason"
VARIANT = "variant"  # a param on child runs, and a tag for easy filtering
WORKER = "lenet.worker"
# Changes when a study starts over (`search --fresh`): reports read the latest search only.
SEARCH_ID = "lenet.search_id"

ROLE_STUDY = "study"
ROLE_TRIAL = "trial"

HISTORY_METRICS = ("loss", "accuracy", "val_loss", "val_accuracy")
OBJECTIVE = "val_accuracy"
