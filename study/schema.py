"""Names of what a study records in MLflow: the contract between the search, the workers and the reports.

Every tag, parameter, metric and status value the code writes is named here;
nothing else spells them. One experiment per study (named after it). One
parent run per `search` invocation, one nested child run per keras-tuner trial.

Parent run (tag ROLE = ROLE_STUDY):
  params  the study's settings (StudySettings.to_params: dataset, tuner, max_trials, epochs,
          patience, executions_per_trial, seed, val_fraction, hyperband_factor, train_samples,
          test_eval, stop_at_chance, final_epochs, kind ("search", "ablation" or "isolation"), seeds,
          trials_per_value (an isolation's nuisance points per value; 0 for other kinds),
          equivalence_margin (percentage points, "None" when not declared), time_budget (seconds,
          "None" without one)), plus OBJECTIVE_PARAM,
          SPACE_FILE_PARAM, DATA_RESOLVED_PARAM, and with workers WORKERS_PARAM, THREADS_PARAM
  tags    STUDY, SEARCH_ID, SPACE_FILE, SPACE_DIGEST, GIT_COMMIT, COMMAND, NOTE, DEVICES,
          DATA_PREFIX + <name|resolved|source|n_train|n_test|digest|note>,
          after the search BEST_TRIAL_ID, BEST_TRIAL_RUN_ID, with a time budget SEARCH_STOP (and
          SEARCH_STOP_NOTE); with workers LAUNCH_ID, ORACLE
  input   the training data via mlflow.log_input (name, source, digest, counts)
  metrics BEST_VAL_ACCURACY, TEST_ACCURACY, TEST_LOSS (of the best trial),
          N_TRIALS_COMPLETED, N_TRIALS_FAILED
  files   the space YAML under "space/", the best model under "best_model/"
          (MLflow Keras model) and MODEL_FILE; the report under "report/"
  name    "<study>: <tuner> on <dataset>, <start time>" (+ " (resumed)")
  model   the best model registered as registered_model_name(study), alias CHAMPION_ALIAS

Child run (tag ROLE = ROLE_TRIAL, tag PARENT_RUN_ID = parent):
  params  every LeNetConfig field (LeNetConfig.to_params), plus VARIANT when the trial is a
          documented variant's recipe, BASE_VARIANT when the space changed that recipe, ARM in
          an ablation (kind "ablation": "baseline" or "<knob>=<value>", the trial's `seed` param
          pairing the arms), ISOLATION, ISOLATION_VALUE and ISOLATION_POINT in an isolation study's
          nuisance trial, FACTORIAL, FACTORIAL_REPLICATE, FACTORIAL_ROW and level.<factor> in a factorial study's run, and the tuner/* keys Hyperband adds
  tags    STUDY, SEARCH_ID, TRIAL_ID, WORKER, VARIANT, ARM, TRIAL_KIND (isolation), TRIAL_STATUS (TRIAL_STATUSES),
          STOP_REASON (STOP_REASONS), FAILURE_REASON, TRIAL_VALUES, HOST, HOST_CPU
  name    "trial <id>: <its knobs>" (the progress line's label; "<arm> seed=<seed>" in an ablation,
          the ISOLATION text in an isolation study)

Retrain run (tag ROLE = ROLE_RETRAIN, TRIAL_KIND = KIND_RETRAIN, kind "isolation"): a scientific value's
best nuisance configuration (by validation accuracy) trained with one of the fresh seeds after the grid:
params as a child run's plus ISOLATION_VALUE; metrics as a child run's plus TEST_ACCURACY / TEST_LOSS.

Final run (tag ROLE = ROLE_FINAL, TRIAL_ID = FINAL_TRIAL_ID, with final_epochs): the best trial's
configuration trained final_epochs epochs (patience off) after the search: the child run's params,
metrics and tags, plus TEST_ACCURACY; then the parent's TEST_ACCURACY, best model and champion are its.
  metrics per-epoch histories (step = epoch, from 0) of HISTORY_METRICS; BEST_VAL_ACCURACY,
          best_val_loss, best_epoch, epochs_run, param_count, wall_time_s; with several
          executions *_mean and *_std of the best metrics; TEST_ACCURACY / TEST_LOSS when the
          trial was evaluated on test; the cost (study/cost.py, measured after the fit on the machine
          in HOST): EPOCH_SECONDS, and unless measuring failed INFERENCE_MS and INFERENCE_IPS.
"""

from .files import folder_name

# --------------------------------------------------------------------------- tags
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
# keras-tuner's own values of the trial, as JSON: what a damaged trial file is rebuilt from (study/state.py).
TRIAL_VALUES = "lenet.trial_values"
STOP_REASON = "lenet.stop_reason"
VARIANT = "variant"  # a param on child runs, and a tag for easy filtering
WORKER = "lenet.worker"
# An ablation's arm (study/ablation.py): ARM_BASELINE or "<knob>=<value>"; a param and a tag on child runs.
ARM = "arm"
ARM_BASELINE = "baseline"
# An isolation study (study/isolation.py). ISOLATION: the compiled grid's one knob, a nuisance trial's whole
# configuration as text ("#03 optimizer=sgd learning_rate=0.00123 momentum=0.52"). On child runs (params):
# ISOLATION_VALUE, the scientific value ("optimizer=sgd"), and ISOLATION_POINT, the nuisance point's index
# (the same point for every value); TRIAL_KIND (a tag) says whether the run is a nuisance trial or a retrain.
ISOLATION = "isolation"
ISOLATION_VALUE = "isolation_value"
ISOLATION_POINT = "isolation_point"
TRIAL_KIND = "lenet.trial_kind"
# A factorial study (study/factorial.py). FACTORIAL: the compiled grid's one knob, a run's whole text ("r1 #05
# activation+ optimizer- seed=1 activation=relu ..."). On child runs (params): FACTORIAL_REPLICATE (0, 1, ..),
# FACTORIAL_ROW (the design's row) and LEVEL_PREFIX + factor, each factor's coded level ("-1" or "1").
FACTORIAL = "factorial"
FACTORIAL_REPLICATE = "factorial_replicate"
FACTORIAL_ROW = "factorial_row"
LEVEL_PREFIX = "level."
KIND_NUISANCE, KIND_RETRAIN = "nuisance", "retrain"
# What TensorFlow sees in the process that opened the study: "CPU", or e.g. "GPU:0 (NVIDIA ...), GPU:1".
DEVICES = "lenet.devices"
# Changes when a study starts over (`search --fresh`): reports read the latest search only.
SEARCH_ID = "lenet.search_id"
BEST_TRIAL_ID = "lenet.best_trial_id"
BEST_TRIAL_RUN_ID = "lenet.best_trial_run_id"
# A local worker finds its parent run by the launch id its launcher gave it.
LAUNCH_ID = "lenet.launch_id"
# Set on the parent run once the study is fully open and the oracle listens: remote workers wait for it.
ORACLE = "lenet.oracle"
# With a time budget (study.time_budget), on the parent run after the search: why it stopped starting trials,
# STOP_TIME_BUDGET (the next trial and the final run would not have fitted; SEARCH_STOP_NOTE says so in a line)
# or STOP_PLAN (its trials ran out first: max_trials, the grid or Hyperband's schedule).
# `bench --only search` (a study of searches): on each search's parent run, which search it is (BENCH_SIDES),
# its seed and the benchmark invocation it belongs to; on an Optuna trial's run, Optuna's state for it.
BENCH_SIDE = "lenet.bench.search"
BENCH_SEED = "lenet.bench.seed"
BENCH_ID = "lenet.bench.id"
BENCH_OPTUNA_STATE = "lenet.bench.optuna_state"
BENCH_SIDES = ("lenet-study", "optuna", "random")
SEARCH_STOP = "lenet.search_stop"
SEARCH_STOP_NOTE = "lenet.search_stop_note"
STOP_TIME_BUDGET, STOP_PLAN = "time_budget", "plan"
# MLflow's own tags that the study sets.
PARENT_RUN_ID = "mlflow.parentRunId"
NOTE = "mlflow.note.content"
EXPERIMENT_KIND = "mlflow.experimentKind"
EXPERIMENT_KIND_TRAINING = "custom_model_development"

ROLE_STUDY = "study"
ROLE_TRIAL = "trial"
# The study's chosen configuration trained longer after the search (StudySettings.final_epochs).
ROLE_FINAL = "final"
FINAL_TRIAL_ID = "final"
FINAL_RUN_ID = "lenet.final_run_id"  # on the parent run and the registered version
# An isolation study's phase 2: each scientific value's best nuisance configuration trained again with fresh
# seeds and evaluated on test, each its own child run (TRIAL_ID retrain_trial_id(value, seed)).
ROLE_RETRAIN = "retrain"


def retrain_trial_id(value: str, seed: int) -> str:
    """The trial id of a retrain: "retrain <value> seed=<seed>"."""
    return f"retrain {value} seed={seed}"

# --------------------------------------------------------------------------- status values
# TRIAL_STATUS of a child run; KILLED when its process was interrupted or died.
COMPLETED, FAILED, KILLED = "COMPLETED", "FAILED", "KILLED"
TRIAL_STATUSES = (COMPLETED, FAILED, KILLED)
# STOP_REASON of a child run.
STOP_EARLY, STOP_MAX_EPOCHS, STOP_NAN, STOP_INVALID, STOP_ERROR, STOP_CHANCE, STOP_PRUNED = (
    "early_stopping", "max_epochs", "nan", "invalid", "error", "at_chance", "pruned")
STOP_REASONS = (STOP_EARLY, STOP_MAX_EPOCHS, STOP_NAN, STOP_INVALID, STOP_ERROR, STOP_CHANCE, STOP_PRUNED)
# STOP_PRUNED: below the finished trials' median at that epoch (study.prune: median, study/pruning.py).
# A trial stopped by the study's stop_at_chance: validation accuracy still below this after N epochs.
CHANCE_ACCURACY = 0.2
# MLflow run statuses the study sets.
RUN_FINISHED, RUN_FAILED, RUN_KILLED, RUN_RUNNING = "FINISHED", "FAILED", "KILLED", "RUNNING"

# --------------------------------------------------------------------------- params
BASE_VARIANT = "base_variant"
OBJECTIVE_PARAM = "objective"
SPACE_FILE_PARAM = "space_file"
DATA_RESOLVED_PARAM = "data_resolved"
WORKERS_PARAM = "workers"
THREADS_PARAM = "threads_per_worker"
HYPERBAND_PREFIX = "tuner/"  # tuner/epochs, tuner/initial_epoch, tuner/bracket, tuner/round, tuner/trial_id

# --------------------------------------------------------------------------- metrics
HISTORY_METRICS = ("loss", "accuracy", "val_loss", "val_accuracy")
OBJECTIVE = "val_accuracy"
BEST_VAL_ACCURACY = "best_val_accuracy"
TEST_ACCURACY = "test_accuracy"
TEST_LOSS = "test_loss"
N_TRIALS_COMPLETED = "n_trials_completed"
N_TRIALS_FAILED = "n_trials_failed"

# --------------------------------------------------------------------------- artifacts
MODEL_FILE = "best_model.keras"
MODEL_NAME = "best_model"  # the MLflow Keras model on the parent run

# --------------------------------------------------------------------------- the Model Registry
# After a search that evaluated its best model on the test set, that MLflow model is registered as
# a new version of REGISTERED_MODEL_PREFIX + <study>, and CHAMPION_ALIAS moves to it. Version tags:
# TRIAL_ID, BEST_TRIAL_RUN_ID, SEARCH_ID, STUDY, DATA_PREFIX + <name|resolved|digest>, and the
# metrics TEST_ACCURACY, BEST_VAL_ACCURACY as strings.
REGISTERED_MODEL_PREFIX = "lenet-"
CHAMPION_ALIAS = "champion"


def registered_model_name(study: str) -> str:
    """The registered model a study's searches add versions to (the study's name as its folder name:
    the name itself, for every name a search accepts)."""
    return f"{REGISTERED_MODEL_PREFIX}{folder_name(study)}"
SPACE_DIR = "space"
REPORT_DIR = "report"

# --------------------------------------------------------------------------- cost beside accuracy
# Tags of child and final runs: the machine that trained the run and measured its cost.
HOST = "lenet.host"  # socket.gethostname()
HOST_CPU = "lenet.host_cpu"  # CPU model and cores, e.g. "Intel(R) Xeon(R) Processor, 2 cores"
# Metrics of child and final runs (study/cost.py): inference through the model's compiled predict function,
# median of several rounds after a warm-up; training seconds per epoch (fit time / epochs run).
INFERENCE_MS = "inference_ms_batch1"  # milliseconds per image, one image per call
INFERENCE_IPS = "inference_images_per_s_batch256"  # images per second, 256 per call
EPOCH_SECONDS = "train_s_per_epoch"
RUN_NAME = "mlflow.runName"  # MLflow's tag holding a run's name (copies of runs rename it)
