"""End to end: a smoke study on a few hundred real digits, tracked in a temporary MLflow store."""

from __future__ import annotations

import glob
import math
from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from study import schema
from study.cli import main as cli_main
from study.model import LeNetConfig
from study.space import load_space
from study.tracking import scoped_uri

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "search_spaces" / "smoke.yaml"
CONFIG_FIELDS = set(LeNetConfig().to_params())


@pytest.fixture(scope="session")
def runs_by_role(study_runs):
    """(client, runs of one role) of a study in the store under tmp_path."""

    def runs(tmp_path, study, role):
        client, parents, children = study_runs(f"sqlite:///{tmp_path}/mlflow.db", study)
        return client, parents if role == schema.ROLE_STUDY else children

    return runs


@pytest.fixture(scope="module")
def smoke(finished_study):
    """(folder, result, printed lines) of the smoke study finished once per test run (conftest). Read only."""
    return finished_study


def test_parent_run_records_the_study(smoke, runs_by_role):
    tmp_path, result, _ = smoke
    client, parents = runs_by_role(tmp_path, "smoke", schema.ROLE_STUDY)
    assert len(parents) == 1
    parent = parents[0]
    assert parent.info.run_id == result.parent_run_id
    assert parent.info.status == "FINISHED"
    tags, params, metrics = parent.data.tags, parent.data.params, parent.data.metrics
    assert tags[schema.SPACE_DIGEST] == load_space(SMOKE).digest
    assert tags[schema.GIT_COMMIT] and tags[schema.COMMAND] == "pytest"
    assert params["tuner"] == "random" and params["max_trials"] == "2" and params["dataset"] == "mnist-5k"
    assert tags[f"{schema.DATA_PREFIX}resolved"] == "mnist-5k"
    # The dataset through MLflow's lineage API.
    inputs = client.get_run(parent.info.run_id).inputs.dataset_inputs
    assert inputs and inputs[0].dataset.name == "mnist-5k" and inputs[0].dataset.digest
    # Test metrics and the best model on the parent; the space file attached.
    assert 0 <= metrics["test_accuracy"] <= 1 and metrics["best_val_accuracy"] == pytest.approx(result.best_val_accuracy)
    artifacts = {f.path for f in client.list_artifacts(parent.info.run_id)}
    assert {"best_model.keras", "space"} <= artifacts
    assert [f.path for f in client.list_artifacts(parent.info.run_id, "space")] == ["space/smoke.yaml"]


def test_one_child_per_trial_with_every_knob_and_metric_history(smoke, runs_by_role):
    tmp_path, result, _ = smoke
    client, children = runs_by_role(tmp_path, "smoke", schema.ROLE_TRIAL)
    assert len(children) == 2
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {result.parent_run_id}
    assert len({c.data.tags[schema.TRIAL_ID] for c in children}) == 2
    for child in children:
        assert child.info.status == "FINISHED"
        assert CONFIG_FIELDS <= set(child.data.params)
        # Any run can be rebuilt from its parameters alone.
        config = LeNetConfig.from_params(child.data.params)
        assert config.batch_size == 64 and config.epochs == 1 and config.activation in ("relu", "tanh")
        m = child.data.metrics
        for key in ("best_val_accuracy", "best_val_loss", "param_count", "epochs_run", "wall_time_s"):
            assert key in m
        assert m["param_count"] == 61706
        assert child.data.tags[schema.STOP_REASON] == "max_epochs"
        history = client.get_metric_history(child.info.run_id, "val_accuracy")
        assert [h.step for h in history] == [0]
        assert history[0].value == pytest.approx(m["best_val_accuracy"])
        assert len(client.get_metric_history(child.info.run_id, "loss")) == 1
    best = max(children, key=lambda c: c.data.metrics["best_val_accuracy"])
    assert "test_accuracy" in best.data.metrics  # only the chosen model saw the test set
    assert sum("test_accuracy" in c.data.metrics for c in children) == 1


def test_tensorboard_event_files_per_trial_with_hparams(smoke):
    tmp_path, _, _ = smoke
    from tensorboard.backend.event_processing import event_accumulator

    trial_dirs = sorted(p for p in (tmp_path / "logs" / "smoke").iterdir() if p.is_dir())
    assert len(trial_dirs) == 2
    for trial_dir in trial_dirs:
        acc = event_accumulator.EventAccumulator(str(trial_dir / "execution0"))
        acc.Reload()
        assert acc.PluginTagToContent("hparams")  # keras-tuner wrote the HParams session data
        val = event_accumulator.EventAccumulator(str(trial_dir / "execution0" / "validation"))
        val.Reload()
        assert "epoch_accuracy" in val.Tags()["tensors"] or "epoch_accuracy" in val.Tags()["scalars"]


def test_progress_lines(smoke):
    _, _, lines = smoke
    trial_lines = [line for line in lines if line.startswith("[")]
    assert len(trial_lines) == 2
    assert trial_lines[0].startswith("[1/2] trial ") and "val_acc 0." in trial_lines[0] and "left" in trial_lines[0]
    assert trial_lines[1].startswith("[2/2] trial ") and "best 0." in trial_lines[1]


def test_best_model_loads_with_keras_and_mlflow(smoke, tmp_path):
    folder, result, _ = smoke
    import keras

    client = MlflowClient(f"sqlite:///{folder}/mlflow.db")
    path = client.download_artifacts(result.parent_run_id, "best_model.keras", str(tmp_path))
    model = keras.models.load_model(path)
    assert model.count_params() == 61706
    with scoped_uri(f"sqlite:///{folder}/mlflow.db"):
        pyfunc = mlflow.keras.load_model(f"runs:/{result.parent_run_id}/best_model")
    x = np.zeros((2, 28, 28, 1), dtype="float32")
    np.testing.assert_allclose(pyfunc.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-5)


def test_predict_classifies_a_png(smoke, monkeypatch, capsys, runs_by_role, tmp_path):
    folder, result, _ = smoke
    from PIL import Image

    from study.data import load_dataset

    ds = load_dataset("mnist-5k")
    image = tmp_path / "digit.png"
    Image.fromarray(ds.x_test[0, :, :, 0]).resize((56, 56)).save(image)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{folder}/mlflow.db")
    assert cli_main(["predict", str(image), "--run", result.parent_run_id]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{image}: class ") and f"model: run {result.parent_run_id}" in out
    probs = [float(p.split(":")[1]) for p in out.split("[")[1].split("]")[0].split()]
    assert len(probs) == 10 and sum(probs) == pytest.approx(1, abs=0.01)
    # By default, and with --study, the study's champion; any models:/ URI too; the same model each time.
    for args in ([], ["--study", "smoke"], ["--model", "models:/lenet-smoke@champion"], ["--model", "models:/lenet-smoke/1"]):
        assert cli_main(["predict", str(image), *args]) == 0
        again = capsys.readouterr().out
        assert again.split("model: ")[0] == out.split("model: ")[0]  # same class and probabilities
        assert ("models:/lenet-smoke" in again) and (args[:1] == ["--model"] or "@champion (version 1, trial" in again)
    for bad, message in ((["--model", "models:/lenet-smoke@nope"], "alias nope not found"),
                         (["--model", "smoke"], "give an MLflow model URI")):
        assert cli_main(["predict", str(image), *bad]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1
    # A child run holds no model: a one-line error, exit code 2.
    _, children = runs_by_role(folder, "smoke", schema.ROLE_TRIAL)
    assert cli_main(["predict", str(image), "--run", children[0].info.run_id]) == 2
    assert "holds no best_model.keras" in capsys.readouterr().err
    assert cli_main(["predict", str(tmp_path / "missing.png")]) == 2
    assert "no such image file" in capsys.readouterr().err


def test_the_best_model_is_registered_as_the_studys_champion(smoke, runs_by_role):
    tmp_path, result, lines = smoke
    client, (parent,) = runs_by_role(tmp_path, "smoke", schema.ROLE_STUDY)
    version = client.get_model_version_by_alias("lenet-smoke", "champion")
    assert str(version.version) == "1" and "registered models:/lenet-smoke/1 as models:/lenet-smoke@champion" in lines
    tags = version.tags
    assert tags[schema.TRIAL_ID] == result.best_trial_id == parent.data.tags[schema.BEST_TRIAL_ID]
    assert tags[schema.BEST_TRIAL_RUN_ID] == parent.data.tags[schema.BEST_TRIAL_RUN_ID]
    assert float(tags[schema.TEST_ACCURACY]) == pytest.approx(parent.data.metrics["test_accuracy"], abs=5e-5)
    assert tags[schema.DATA_PREFIX + "digest"] == parent.data.tags[schema.DATA_PREFIX + "digest"]
    assert tags[schema.DATA_PREFIX + "resolved"] == "mnist-5k"


def test_runs_are_named_for_the_study_and_the_trials_knobs(smoke, runs_by_role):
    tmp_path, result, lines = smoke
    _, (parent,) = runs_by_role(tmp_path, "smoke", schema.ROLE_STUDY)
    assert parent.info.run_name.startswith("smoke: random on mnist-5k, 20")
    _, children = runs_by_role(tmp_path, "smoke", schema.ROLE_TRIAL)
    for child in children:
        name = child.info.run_name
        trial_id = child.data.tags[schema.TRIAL_ID]
        assert name.startswith(f"trial {trial_id}: {child.data.params['activation']} ")
        assert f"lr={float(child.data.params['learning_rate']):.2g}" in name
        assert any(line.split(" | ")[0].endswith(name.split(": ", 1)[1]) for line in lines)  # the progress label


def test_make_ui_prints_the_latest_studys_runs_link(smoke, monkeypatch, capsys, tmp_path_factory):
    tmp_path, result, _ = smoke
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    assert cli_main(["ui", "--port", "5077", "--dry-run"]) == 0
    link, command = capsys.readouterr().out.strip().splitlines()
    assert link == (f"runs of the latest study 'smoke': http://127.0.0.1:5077/#/experiments/{result.experiment_id}"
                    "/runs?workflowType=machine_learning")
    assert command.endswith(f"-m mlflow ui --backend-store-uri {uri} --host 127.0.0.1 --port 5077")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path_factory.mktemp('empty')}/mlflow.db")
    assert cli_main(["ui", "--dry-run"]) == 0
    assert capsys.readouterr().out.startswith("no study in sqlite:///")


@pytest.mark.slow
def test_resume_runs_only_new_trials_and_marks_killed_runs(tmp_path, run_study, runs_by_role):
    run_study(tmp_path)
    client, children = runs_by_role(tmp_path, "smoke", schema.ROLE_TRIAL)
    assert len(children) == 2
    # A process killed mid-trial leaves a RUNNING run behind.
    exp = client.get_experiment_by_name("smoke")
    orphan = client.create_run(exp.experiment_id, tags={schema.ROLE: schema.ROLE_TRIAL}).info.run_id
    result, lines = run_study(tmp_path, max_trials=3)
    assert any("resuming: 2 trial(s)" in line for line in lines)
    assert client.get_run(orphan).info.status == "KILLED"
    _, children = runs_by_role(tmp_path, "smoke", schema.ROLE_TRIAL)
    finished = [c for c in children if c.info.status == "FINISHED"]
    assert len(finished) == 3 and len({c.data.tags[schema.TRIAL_ID] for c in finished}) == 3
    _, parents = runs_by_role(tmp_path, "smoke", schema.ROLE_STUDY)
    assert len(parents) == 2  # one parent per invocation
    # Finished, and run again as it was: it says so, reads no data (so not the test set), logs and registers nothing.
    with pytest.MonkeyPatch.context() as patch:
        def no_data(*args, **kwargs):
            raise AssertionError("a finished study read its data again")
        patch.setattr("study.data.prepare_data", no_data)
        patch.setattr("study.search.prepare_data", no_data, raising=False)
        same, lines = run_study(tmp_path, max_trials=3)
    assert same.finished_before and same.completed == 3 and same.parent_run_id == result.parent_run_id
    assert same.test_accuracy == result.test_accuracy and lines == []
    assert f"study 'smoke' is finished (3 trial(s) completed" in same.done_line()
    assert "--max-trials above 3" in same.done_line() and "--fresh" in same.done_line()
    _, again = runs_by_role(tmp_path, "smoke", schema.ROLE_TRIAL)
    assert len(again) == len(children) and len([c for c in again if c.info.status == "FINISHED"]) == 3
    _, parents = runs_by_role(tmp_path, "smoke", schema.ROLE_STUDY)
    assert len(parents) == 2
    assert sorted(int(v.version) for v in client.search_model_versions("name = 'lenet-smoke'")) == [1, 2]
    # --fresh starts over under a new search id; earlier runs stay in the store.
    run_study(tmp_path, fresh=True)
    _, after = runs_by_role(tmp_path, "smoke", schema.ROLE_TRIAL)
    search_ids = {c.data.tags[schema.SEARCH_ID] for c in after if c.info.status == "FINISHED"}
    assert len(after) == len(again) + 2 and len(search_ids) == 2
    # One registered version per search that chose a model; the champion is the latest search's choice.
    versions = client.search_model_versions("name = 'lenet-smoke'")
    assert sorted(int(v.version) for v in versions) == [1, 2, 3]
    champion = client.get_model_version_by_alias("lenet-smoke", "champion")
    _, parents = runs_by_role(tmp_path, "smoke", schema.ROLE_STUDY)
    newest = max(parents, key=lambda r: r.info.start_time)
    assert str(champion.version) == "3" and champion.tags[schema.SEARCH_ID] == newest.data.tags[schema.SEARCH_ID]


@pytest.mark.slow
def test_nan_and_impossible_trials_are_recorded_as_failed_and_the_study_goes_on(tmp_path, run_study, runs_by_role):
    space_file = tmp_path / "faults.yaml"
    space_file.write_text(
        "study:\n  dataset: mnist-5k\n  train_samples: 300\n  tuner: grid\n  max_trials: 10\n  epochs: 1\n"
        "  patience: 0\n  val_fraction: 0.25\n"
        "space:\n  c1_padding: {choice: [same, valid]}\n  optimizer: {fixed: sgd}\n"
        "  input_scaling: {fixed: raw}\n  activation: {fixed: relu}\n"
        "  learning_rate: {choice: [0.001, 100000.0]}\n  batch_size: {fixed: 64}\n"
    )
    result, lines = run_study(tmp_path, space_path=space_file)
    client, children = runs_by_role(tmp_path, "faults", schema.ROLE_TRIAL)
    assert len(children) == 4
    by_status = {}
    for child in children:
        by_status.setdefault(child.data.tags[schema.TRIAL_STATUS], []).append(child)
    assert len(by_status["COMPLETED"]) == 1 and len(by_status["FAILED"]) == 3
    reasons = sorted(c.data.tags[schema.FAILURE_REASON] for c in by_status["FAILED"])
    assert reasons[0].startswith("diverged: the loss became NaN")
    assert all(r.startswith("impossible configuration: C5") for r in reasons[1:])
    nan_run = next(c for c in by_status["FAILED"] if c.data.tags[schema.STOP_REASON] == "nan")
    assert nan_run.info.status == "FAILED" and nan_run.data.params["learning_rate"] == "100000.0"
    _, parents = runs_by_role(tmp_path, "faults", schema.ROLE_STUDY)
    assert parents[0].info.status == "FINISHED"
    assert parents[0].data.metrics["n_trials_failed"] == 3 and parents[0].data.metrics["n_trials_completed"] == 1
    assert result.completed == 1 and math.isfinite(result.test_accuracy)
    assert sum("FAILED" in line for line in lines) == 3


def test_search_command_gives_one_line_errors(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli_main(["search", str(SMOKE), "--dataset", "cifar10"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "lenet-study: error: command line: study.dataset: 'cifar10' is not allowed; allowed: mnist, fashion_mnist, mnist-5k"
    assert cli_main(["search", "nope.yaml"]) == 2
    assert "nope.yaml: cannot read the space file" in capsys.readouterr().err
    assert not glob.glob(str(tmp_path / "mlflow.db"))  # nothing was started


@pytest.mark.slow
def test_hyperband_trials_record_their_budget_and_continuations(tmp_path, run_study, runs_by_role):
    run_study(tmp_path, tuner="hyperband", epochs=2, hyperband_factor=2, patience=0, max_trials=10, seed=1)
    client, children = runs_by_role(tmp_path, "smoke", schema.ROLE_TRIAL)
    assert len(children) >= 4 and all(c.info.status == "FINISHED" for c in children)
    for child in children:
        params = child.data.params
        assert {"tuner/epochs", "tuner/initial_epoch", "tuner/bracket", "tuner/round"} <= set(params)
        # Every trial ran its Hyperband budget: no early stopping with patience 0.
        assert child.data.tags[schema.STOP_REASON] == "max_epochs"
    continued = [c for c in children if "tuner/trial_id" in c.data.params]
    assert continued, "Hyperband continues a trial of the first round"
    for child in continued:
        start = int(child.data.params["tuner/initial_epoch"])
        steps = [m.step for m in client.get_metric_history(child.info.run_id, "val_accuracy")]
        assert steps == list(range(start, int(child.data.params["tuner/epochs"])))


@pytest.mark.slow
def test_trials_run_with_the_long_lived_objects_frozen_and_the_collector_restored(tmp_path, monkeypatch, run_study):
    import gc

    from study import tuner

    frozen_during_fit = []
    fit = tuner.fit_model

    def recording_fit(*args, **kwargs):
        frozen_during_fit.append(gc.get_freeze_count())
        return fit(*args, **kwargs)

    monkeypatch.setattr(tuner, "fit_model", recording_fit)
    before = gc.get_freeze_count()
    run_study(tmp_path, max_trials=1)
    # TensorFlow, MLflow and the data: keras-tuner's two collections per trial need not walk them.
    assert frozen_during_fit and min(frozen_during_fit) > 100_000
    assert gc.get_freeze_count() == before  # nothing stays out of the collector's reach afterwards
    with pytest.raises(RuntimeError), tuner.gc_frozen():
        raise RuntimeError("a failing study")
    assert gc.get_freeze_count() == before


MODERN = """
study:
  dataset: mnist-5k
  train_samples: 400
  tuner: random
  max_trials: 3
  epochs: 2
  patience: 0
  stop_at_chance: 1
  final_epochs: 2
  val_fraction: 0.25
space:
  activation: {choice: [relu, sigmoid]}
  optimizer: {choice: [adam, sgd]}
  learning_rate: {choice: [0.001, 1.0e-6]}
  augment: {choice: [none, shift]}
  batch_norm: {choice: [false, true]}
  lr_schedule: {choice: [constant, cosine]}
start_with:
  - {activation: sigmoid, optimizer: sgd, learning_rate: 1.0e-6}
  - {activation: relu, learning_rate: 0.001, augment: shift, batch_norm: true, lr_schedule: cosine}
"""


@pytest.mark.slow
def test_start_with_a_chance_stop_and_a_final_run(tmp_path, run_study, runs_by_role):
    space_file = tmp_path / "modern.yaml"
    space_file.write_text(MODERN)
    result, lines = run_study(tmp_path, space_path=space_file)
    client, children = runs_by_role(tmp_path, "modern", schema.ROLE_TRIAL)
    by_id = {c.data.tags[schema.TRIAL_ID]: c for c in children}
    assert sorted(by_id) == ["0", "1", "2"]
    # The start_with configurations first, in order; knobs an entry leaves out take their first choice.
    first, second = by_id["0"].data.params, by_id["1"].data.params
    assert (first["activation"], first["optimizer"], first["learning_rate"], first["augment"]) == ("sigmoid", "sgd", "1e-06", "none")
    assert (second["activation"], second["optimizer"], second["augment"], second["batch_norm"], second["lr_schedule"]) == (
        "relu", "adam", "shift", "True", "cosine")
    # A network still at chance after stop_at_chance epochs stops, with its own reason; it is a result, not a failure.
    stuck = by_id["0"]
    assert stuck.data.tags[schema.STOP_REASON] == "at_chance" and stuck.data.metrics["epochs_run"] == 1
    assert stuck.data.tags[schema.TRIAL_STATUS] == "COMPLETED"
    # The best trial's configuration trained final_epochs epochs, as its own run; it is the study's model.
    _, (parent,) = runs_by_role(tmp_path, "modern", schema.ROLE_STUDY)
    finals = client.search_runs([parent.info.experiment_id], f"tags.`{schema.ROLE}` = 'final'")
    assert len(finals) == 1
    final = finals[0]
    best = by_id[parent.data.tags[schema.BEST_TRIAL_ID]]
    assert final.data.tags["mlflow.parentRunId"] == parent.info.run_id and final.info.status == "FINISHED"
    assert final.info.run_name.startswith(f"trial final: trial {best.data.tags[schema.TRIAL_ID]}'s configuration, 2 epochs")
    assert LeNetConfig.from_params(final.data.params) == LeNetConfig.from_params(best.data.params).replace(epochs=2, patience=0)
    assert parent.data.tags[schema.FINAL_RUN_ID] == final.info.run_id
    assert parent.data.metrics["test_accuracy"] == pytest.approx(final.data.metrics["test_accuracy"])
    assert result.test_accuracy == pytest.approx(final.data.metrics["test_accuracy"])
    champion = client.get_model_version_by_alias("lenet-modern", "champion")
    assert champion.tags[schema.FINAL_RUN_ID] == final.info.run_id
    assert any(line.startswith("final: val_accuracy") for line in lines)
    # Reports read trials only: the final run is not a point of the search.
    from study import report

    runs = report.load_study("modern", tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    assert sorted(runs.trials["trial_id"]) == ["0", "1", "2"]


def test_start_with_names_the_entry_and_the_knob_in_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(MODERN.replace("augment: shift, batch_norm", "augment: rotate, batch_norm"))
    with pytest.raises(Exception) as err:
        load_space(bad)
    assert str(err.value) == f"{bad}: start_with[1].augment: 'rotate' is not among its values (none, shift)"
    bad.write_text(MODERN.replace("tuner: random", "tuner: hyperband"))
    with pytest.raises(Exception, match="start_with: the hyperband tuner chooses its own trials"):
        load_space(bad)


def test_time_left_is_counted_in_the_epochs_the_plan_still_holds(monkeypatch):
    import keras_tuner as kt

    from study import kt_compat, tuner
    from study.progress import Progress

    clock = [100.0]
    monkeypatch.setattr(tuner.time, "monotonic", lambda: clock[0])
    lines = []
    progress = Progress(4, echo=lines.append)
    progress.trial_epochs, progress.final_epochs = [1, 1, 3, 9], 5
    clock[0] += 10  # a 1-epoch trial took 10 s: 10 s per epoch
    progress.trial_done("0", "relu", schema.COMPLETED, 0.9, 1, 10.0)
    assert lines[-1].endswith("elapsed 0:10, ~3:00 left (18 epochs)")  # (1 + 3 + 9 + 5) x 10 s
    clock[0] += 20
    progress.trial_done("1", "tanh", schema.COMPLETED, 0.8, 1, 20.0)  # 30 s for 2 epochs
    assert lines[-1].endswith("~4:15 left (17 epochs)")
    # Hyperband's plan: its most aggressive bracket first, every trial's own epochs.
    oracle = kt.oracles.HyperbandOracle(objective=kt.Objective("val_accuracy", "max"), max_epochs=9, factor=3)
    plan = kt_compat.hyperband_trial_epochs(oracle)
    assert len(plan) == kt_compat.hyperband_schedule_size(oracle) == 23
    assert plan[:9] == [1] * 9 and plan[9:12] == [2] * 3 and plan[12] == 6 and plan[-3:] == [9] * 3


@pytest.mark.slow
def test_the_oracle_skips_configurations_that_make_no_lenet(tmp_path, run_study, runs_by_role):
    space_file = tmp_path / "shapes.yaml"
    space_file.write_text("study:\n  dataset: mnist-5k\n  train_samples: 300\n  tuner: random\n  max_trials: 3\n"
                          "  epochs: 1\n  val_fraction: 0.25\n  seed: 3\nspace:\n  c1_padding: {fixed: valid}\n"
                          "  c5: {choice: [conv, dense]}\n  activation: {choice: [relu, tanh, sigmoid]}\n"
                          "  learning_rate: {float: [0.0005, 0.005], sampling: log}\n")
    result, lines = run_study(tmp_path, space_path=space_file)
    _, children = runs_by_role(tmp_path, "shapes", schema.ROLE_TRIAL)
    # valid padding + 5x5 kernels + a convolutional C5 leaves no map: never proposed, every trial trains.
    assert len(children) == 3 and result.completed == 3 and result.failed == 0
    assert {c.data.params["c5"] for c in children} == {"dense"}


def test_augment_auto_is_each_datasets_usual_augmentation():
    from study.space import StudySettings, resolve_config

    assert resolve_config({"augment": "auto"}, StudySettings(dataset="mnist")).augment == "shift-rotate"
    assert resolve_config({"augment": "auto"}, StudySettings(dataset="fashion_mnist")).augment == "flip-shift"
    space = load_space(ROOT / "search_spaces" / "lenet.yaml")
    assert "auto" in space.knobs["augment"]["values"]


def test_an_oracle_stuck_on_an_impossible_configuration_gets_a_possible_random_one():
    import keras_tuner as kt

    from study import tuner
    from study.space import resolve_config

    hp = kt.HyperParameters()
    hp.Choice("c1_padding", ["valid"])
    hp.Choice("kernel_size", [5, 3])
    hp.Choice("c5", ["conv", "dense"])
    oracle = kt.oracles.RandomSearchOracle(objective=kt.Objective("val_accuracy", "max"), max_trials=5,
                                           hyperparameters=hp, seed=2)
    impossible = {"c1_padding": "valid", "kernel_size": 5, "c5": "conv"}
    oracle.populate_space = lambda trial_id: {"status": "RUNNING", "values": dict(impossible)}  # like a GP optimum
    tuner.start_with(type("T", (), {"oracle": oracle})(), [])
    for i in range(5):
        values = oracle.populate_space(str(i))["values"]
        assert values != impossible
        resolve_config(values)  # a LeNet-5 that can be built
