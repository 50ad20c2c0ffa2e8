"""Bad input of every kind a user can give gets one line, `lenet-study: error: ...`, exit code 2 and no
traceback, before anything is created: no mlflow.db, no parent run. And `train --run` retrains a trial
as its study did."""

from __future__ import annotations

import os
import re
import socket
import struct
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from study import schema, tracking
from study import store as mlflow_store
from study.cli import main as cli_main
from study.model import ConfigError, LeNetConfig
from study.space import StudySettings, load_space, resolve_config

ROOT = Path(__file__).resolve().parents[1]
ALLOWED_STORES = ("sqlite:///path/to/mlflow.db, http(s)://host:port (an MLflow server), "
                  "postgresql://user:password@host:port/db, mysql://... or mssql://...")


@pytest.fixture
def here(tmp_path, monkeypatch):
    """A fresh working folder with the default store (./mlflow.db, not there yet)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("LENET_DATA_DIR", raising=False)
    return tmp_path


def one_line_error(capsys, *argv: str) -> str:
    """Run the CLI in this process; assert exit code 2 and a single line on stderr; return it."""
    assert cli_main(list(argv)) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def nothing_created(folder: Path) -> None:
    assert not (folder / "mlflow.db").exists() and not (folder / "mlruns").exists()


# --------------------------------------------------------------------------- space files: what space refuses


SPACE_ERRORS = [
    ("space:\n  c5_units: {fixed: 0}\n", "space.c5_units.fixed: 0 is outside the allowed range [1, 4096]"),
    ("space:\n  dense_units: {choice: [[84], [120, 5000]]}\n",
     "space.dense_units.choice: [120, 5000] has a width outside the allowed range [1, 4096]"),
    ("space:\n  learning_rate: {float: [0.0, 0.1]}\n",
     "space.learning_rate.float: 0.0 is outside the allowed range (0, 1000000]"),
    ("space:\n  learning_rate: {fixed: -0.01}\n",
     "space.learning_rate.fixed: -0.01 is outside the allowed range (0, 1000000]"),
    ("space:\n  optimizer: {fixed: sgd}\n  momentum: {float: [0.0, 1.0]}\n",
     "space.momentum.float: 1.0 is outside the allowed range [0.0, 1.0)"),
    ("space:\n  seed: {choice: [0, -1]}\n", "space.seed.choice: -1 is outside the allowed range [0, 2147483647]"),
    ("study:\n  seed: 4294967296\nspace:\n  activation: {fixed: relu}\n",
     "study.seed: 4294967296 is not allowed; need an integer in [0, 2147483647]"),
    ("study:\n  seed: -1\nspace:\n  activation: {fixed: relu}\n",
     "study.seed: -1 is not allowed; need an integer in [0, 2147483647]"),
    ("space:\n  batch_size: {fixed: 0}\n", "space.batch_size.fixed: 0 is outside the allowed range [1, 65536]"),
    ("space:\n  batch_size: {choice: [64, 1000000]}\n",
     "space.batch_size.choice: 1000000 is outside the allowed range [1, 65536]"),
    ("space:\n  epochs: {fixed: 0}\n", "space.epochs.fixed: 0 is outside the allowed range [1, 10000]"),
    ("study:\n  epochs: 20000\nspace:\n  activation: {fixed: relu}\n",
     "study.epochs: 20000 is not allowed; need an integer of at least 1 (at most 10000)"),
    ("space:\n  patience: {int: [-1, 3]}\n", "space.patience.int: -1 is outside the allowed range [0, 10000]"),
    ("study:\n  patience: -2\nspace:\n  activation: {fixed: relu}\n",
     "study.patience: -2 is not allowed; need an integer, 0 (off) to 10000"),
    ("study:\n  description: 5\nspace:\n  activation: {fixed: relu}\n",
     "study.description: 5 is not allowed; need a text (quote it)"),
    # a knob that only acts under another knob's value, used where that knob can have another value
    ("space:\n  momentum: {float: [0.0, 0.9]}\n",
     "space.momentum: only sgd takes momentum, and optimizer can be adam here; add when: {optimizer: sgd} to "
     "momentum, or fix optimizer to sgd"),
    ("space:\n  optimizer: {choice: [sgd, rmsprop]}\n  momentum: {fixed: 0.5}\n",
     "space.momentum: only sgd takes momentum, and optimizer can be rmsprop here; add when: {optimizer: sgd} to "
     "momentum, or fix optimizer to sgd"),
    ("space:\n  variant: {choice: [tf2-classic, tf2-classic-mse]}\n  label_smoothing: {choice: [0.0, 0.1]}\n",
     "space.label_smoothing: only the crossentropy loss takes it, and loss can be mse here; add when: "
     "{loss: crossentropy} to label_smoothing, or fix loss to crossentropy"),
    # ranges keras-tuner would refuse once the search (and its parent run) had started
    ("space:\n  batch_size: {int: [16, 128], step: 1.5}\n",
     "space.batch_size.step: 1.5 must be a whole number for an int knob"),
    ("space:\n  learning_rate: {float: [0.001, 0.1], step: 0.5, sampling: log}\n",
     "space.learning_rate.step: 0.5 must be above 1 with log sampling (each value is the one before times step)"),
    ("space:\n  kernel_size: {choice: [3, 5.0]}\n", "space.kernel_size.choice: 5.0 is not allowed; allowed: 3, 5"),
    # YAML itself: a key given twice, an alias (the "billion laughs" expansion)
    ("study:\n  epochs: 3\nspace:\n  activation: {choice: [relu]}\nstudy:\n  epochs: 1\n",
     "not valid YAML at line 5: duplicate key 'study' (first at line 1); a key may appear once"),
    ("space:\n  activation: {choice: [relu], choice: [tanh]}\n",
     "not valid YAML at line 2: duplicate key 'choice' (first at line 2); a key may appear once"),
    ('a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a]\n'
     "c: &c [*b, *b, *b, *b, *b, *b, *b, *b]\nspace:\n  activation: {choice: [relu]}\n",
     "not valid YAML at line 2: alias *a: aliases are not allowed in a space file; write the value out"),
]


@pytest.mark.parametrize("text, message", SPACE_ERRORS, ids=[m.split(":")[0] + f"-{i}" for i, (_, m) in enumerate(SPACE_ERRORS)])
def test_space_refuses_in_one_line_what_cannot_run(here, capsys, text, message):
    path = here / "bad.yaml"
    path.write_text(text)
    assert one_line_error(capsys, "space", str(path)) == f"lenet-study: error: {path}: {message}"


def test_search_refuses_the_same_file_before_anything_starts(here, capsys):
    path = here / "bad.yaml"
    path.write_text("study:\n  dataset: mnist-5k\nspace:\n  momentum: {float: [0.0, 0.9]}\n")
    line = one_line_error(capsys, "search", str(path))
    assert line.startswith(f"lenet-study: error: {path}: space.momentum: only sgd takes momentum")
    nothing_created(here)  # no store, so no FAILED parent run either


def test_the_space_command_is_one_line_in_a_real_process(here):
    path = here / "bad.yaml"
    path.write_text("space:\n  c5_units: {int: [0, 120]}\n")
    out = subprocess.run([sys.executable, "-m", "study.cli", "space", str(path)], capture_output=True, text=True)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines() == [
        f"lenet-study: error: {path}: space.c5_units.int: 0 is outside the allowed range [1, 4096]"]


def test_what_space_accepts_builds_every_extreme_and_leaves_shapes_to_the_trials(here):
    path = here / "edges.yaml"
    path.write_text(
        "study:\n  seed: 2147483647\n  epochs: 10000\nspace:\n"
        "  c1_padding: {choice: [same, valid]}\n  kernel_size: {choice: [3, 5]}\n  c5: {choice: [conv, dense]}\n"
        "  c5_units: {int: [1, 4096]}\n  dense_units: {choice: [[1], [4096, 1]]}\n"
        "  optimizer: {choice: [sgd, adam]}\n  momentum: {float: [0.0, 0.99], when: {optimizer: sgd}}\n"
        "  learning_rate: {choice: [1, 0.1, 1000000]}\n  batch_size: {choice: [1, 65536]}\n"
        "  seed: {choice: [0, 2147483647]}\n  epochs: {int: [1, 10000], step: 10, sampling: log}\n"
        "  patience: {int: [0, 10000]}\n")
    space = load_space(path)
    assert space.knobs["learning_rate"]["values"] == [1.0, 0.1, 1000000.0]  # one type for keras-tuner's Choice
    hp = space.hyperparameters()  # what the search builds once its parent run exists
    # Every value of every knob, the others at their first value, is a config LeNetConfig takes.
    first = {k: v for k, v in hp.values.items() if hp.is_active(k)}
    for knob, spec in space.knobs.items():
        values = spec["values"] if spec["type"] == "choice" else [spec["min"], spec["max"]]
        for value in values:
            trial = dict(first, **{knob: value}, **({"optimizer": "sgd"} if knob == "momentum" else {}))
            config = resolve_config({k: (",".join(map(str, v)) if isinstance(v, list) else v)
                                     for k, v in trial.items()}, space.settings)
            assert isinstance(config, LeNetConfig)
    # A shape that leaves no spatial extent (valid padding, 5x5 kernels, a convolutional C5) is a
    # combination: the search records it as a FAILED trial; the space file is fine.
    with pytest.raises(ConfigError, match="no spatial extent"):
        resolve_config(dict(first, c1_padding="valid", kernel_size=5, c5="conv"), space.settings)


# --------------------------------------------------------------------------- data files and images


def _npz_with_declared_shape(path: Path, shape: tuple[int, ...]) -> None:
    """An .npz of a few hundred bytes whose x_train header declares `shape` (uint8) with no data."""
    small = {"y_train": np.arange(20) % 10, "x_test": np.zeros((10, 28, 28), np.uint8), "y_test": np.arange(10)}
    with zipfile.ZipFile(path, "w") as archive:
        with archive.open("x_train.npy", "w") as member:
            np.lib.format.write_array_header_1_0(member, {"descr": "|u1", "fortran_order": False, "shape": shape})
        for key, array in small.items():
            with archive.open(f"{key}.npy", "w") as member:
                np.lib.format.write_array(member, array)


def test_an_npz_too_large_once_decompressed_is_refused_before_it_is_read(here, capsys):
    folder = here / "data"
    folder.mkdir()
    npz = folder / "mnist.npz"
    _npz_with_declared_shape(npz, (10_000_000, 28, 28))
    assert npz.stat().st_size < 10_000  # a few kilobytes on disk
    line = one_line_error(capsys, "train", "--variant", "tf2-classic", "--data-dir", str(folder))
    assert line == (f"lenet-study: error: {npz}: its arrays would take 7.3 GiB once decompressed (x_train: shape "
                    "(10000000, 28, 28) of uint8); the limit is 2 GiB (full MNIST takes 55 MB)")
    assert "training" not in capsys.readouterr().out


def test_an_npz_whose_labels_miss_classes_is_refused(here, capsys):
    folder = here / "data"
    folder.mkdir()
    rng = np.random.default_rng(0)
    np.savez(folder / "mnist.npz", x_train=rng.integers(0, 256, (100, 28, 28), dtype=np.uint8),
             y_train=np.full(100, 3), x_test=rng.integers(0, 256, (20, 28, 28), dtype=np.uint8),
             y_test=np.arange(20) % 10)
    line = one_line_error(capsys, "train", "--variant", "tf2-classic", "--data-dir", str(folder))
    assert line == (f"lenet-study: error: {folder / 'mnist.npz'} [y_train]: no image of class 0, 1, 2, 4, 5, 6, 7, 8, "
                    "9; the dataset has 10 classes (0-9) and each must appear")


def _png_header_only(path: Path, width: int, height: int) -> None:
    """A PNG that declares width x height pixels and holds none: what Pillow opens before it decodes."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))


@pytest.mark.parametrize("side", [8_000, 20_000])  # above this project's limit; above Pillow's own bomb guard
def test_predict_refuses_a_huge_image_in_one_line(here, capsys, side):
    image = here / "huge.png"
    _png_header_only(image, side, side)
    assert one_line_error(capsys, "predict", str(image)) == (
        f"lenet-study: error: {image}: {side}x{side} pixels is too large an image; the limit is 50,000,000 pixels "
        "(a digit needs 28x28)")
    nothing_created(here)


def test_predict_on_a_fifo_or_a_device_does_not_wait(here, capsys):
    fifo = here / "digit.png"
    os.mkfifo(fifo)
    for path in (fifo, Path("/dev/zero")):
        assert one_line_error(capsys, "predict", str(path)) == (
            f"lenet-study: error: {path}: not a regular file (a folder, FIFO or device); give an image file")
    nothing_created(here)


# --------------------------------------------------------------------------- reports: HTML from the store


MARKUP = "<script>alert(1)</script>"


def test_report_html_escapes_everything_from_the_store(tmp_path):
    from test_report import _parent, _trial

    from study import report

    study = f"{MARKUP} & co"
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    exp = client.create_experiment(study, artifact_location=(tmp_path / "artifacts").as_uri())
    parent = _parent(client, exp, study, start=0, end=100)
    client.set_tag(parent, "lenet.note", f"{MARKUP} & tag")  # the report lists the parent's tags and params
    client.log_param(parent, "description", f"{MARKUP} & param")
    for i, activation in enumerate(("relu", "tanh")):
        _trial(client, exp, parent, f"0{i}", LeNetConfig(activation=activation), start=10 * i, end=10 * i + 5,
               acc=0.9 + i / 100, param_count=61706)
    _trial(client, exp, parent, "02", LeNetConfig(), start=30, end=35, acc=None, param_count=61706, status="FAILED",
           trial_status="FAILED", stop="error", failure=f"ValueError: {MARKUP} & boom [see](javascript:alert(2))")
    out = report.write_report(study, out_root=tmp_path / "reports", tracking_uri=uri, log_to_mlflow=False)
    page = (out / "report.html").read_text()
    assert "<script" not in page.lower()
    links = re.findall(r'href="([^"]*)"', page)
    assert links and all(link.startswith("http://") for link in links), links  # the MLflow UI's, nothing else
    escaped = "&lt;script&gt;alert(1)&lt;/script&gt;"
    for text in (f"{escaped} &amp; co", f"{escaped} &amp; tag", f"{escaped} &amp; param", f"{escaped} &amp; boom"):
        assert text in page, text
    assert f"<title>Study report: {escaped} &amp; co</title>" in page
    assert "<table>" in page and page.count("data:image/png;base64,") >= 1  # still a report: tables, figures


# --------------------------------------------------------------------------- folders, files, flags, the store


def test_a_log_dir_or_report_folder_that_is_a_file(here, capsys):
    afile = here / "notes.txt"
    afile.write_text("mine")
    smoke = str(ROOT / "search_spaces" / "smoke.yaml")
    assert one_line_error(capsys, "search", smoke, "--log-dir", str(afile)) == (
        f"lenet-study: error: --log-dir {afile}: a file, not a folder; give a folder (it is made if missing)")
    assert one_line_error(capsys, "search", smoke, "--log-dir", str(afile / "logs")) == (
        f"lenet-study: error: --log-dir {afile / 'logs'}: {afile} is a file, not a folder; give a folder "
        "(it is made if missing)")
    assert one_line_error(capsys, "report", "--out", str(afile)) == (
        f"lenet-study: error: --out {afile}: a file, not a folder; give a folder (it is made if missing)")
    assert one_line_error(capsys, "report", "--results", str(here / "RESULTS.md")) == (
        f"lenet-study: error: --results {here / 'RESULTS.md'}: no such file; give the page whose findings blocks "
        "to fill")
    nothing_created(here)
    assert afile.read_text() == "mine"


def test_train_save_is_checked_before_training(here, capsys):
    afile = here / "notes.txt"
    afile.write_text("mine")
    target = afile / "model.keras"
    assert one_line_error(capsys, "train", "--variant", "small-kernel", "--save", str(target)) == (
        f"lenet-study: error: --save {target}: cannot write there ({afile} is a file, not a folder)")
    assert one_line_error(capsys, "train", "--variant", "small-kernel", "--save", "model.pt") == (
        "lenet-study: error: --save model.pt: name a .keras file (Keras's format), e.g. model.keras")
    assert "training" not in capsys.readouterr().out


@pytest.mark.parametrize("uri, message", [
    ("ftp://x", f"MLFLOW_TRACKING_URI 'ftp://x': not a store this project can use; allowed: {ALLOWED_STORES}"),
    ("foo", f"MLFLOW_TRACKING_URI 'foo': MLflow 3 keeps no runs in a file store (a plain path or file:); use "
            f"{ALLOWED_STORES}"),
    ("file:///tmp/mlruns", f"MLFLOW_TRACKING_URI 'file:///tmp/mlruns': MLflow 3 keeps no runs in a file store "
                           f"(a plain path or file:); use {ALLOWED_STORES}"),
])
def test_a_tracking_uri_this_project_cannot_use(here, capsys, monkeypatch, uri, message):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    for argv in (["search", str(ROOT / "search_spaces" / "smoke.yaml")], ["report"], ["ui", "--dry-run"]):
        assert one_line_error(capsys, *argv) == f"lenet-study: error: {message}"
    assert sorted(p.name for p in here.iterdir()) == []  # no store, no folder named foo, no logs


def test_a_tracking_server_that_does_not_answer(here, capsys, monkeypatch):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}")
    monkeypatch.setattr(mlflow_store, "STORE_WAIT_S", 1.0)  # 12 s in use; the wait is bounded either way
    assert one_line_error(capsys, "search", str(ROOT / "search_spaces" / "smoke.yaml")) == (
        f"lenet-study: error: no MLflow tracking server answers on http://127.0.0.1:{port} (waited 1 s)")
    nothing_created(here)


def test_a_read_only_command_does_not_create_an_empty_store(here, capsys):
    assert one_line_error(capsys, "train", "--run", "0123abc") == (
        "lenet-study: error: no MLflow store at mlflow.db (tracking URI sqlite:///mlflow.db) yet: run `make search` "
        "first, or set MLFLOW_TRACKING_URI to the store that holds the study")
    assert one_line_error(capsys, "report") == (
        "lenet-study: error: no MLflow store at mlflow.db (tracking URI sqlite:///mlflow.db) yet: run `make search` "
        "first, or set MLFLOW_TRACKING_URI to the store that holds the study")
    nothing_created(here)


@pytest.mark.parametrize("argv, message", [
    (["search", "SMOKE", "--seed", "-1"], "command line: study.seed: -1 is not allowed; need an integer in [0, 2147483647]"),
    (["train", "--variant", "small-kernel", "--seed", "-1"], "--seed -1: need an integer in [0, 2147483647]"),
    (["train", "--variant", "small-kernel", "--epochs", "0"], "--epochs 0: need an integer in [1, 10000]"),
    (["train", "--run", "0123abc", "--epochs", "-3"], "--epochs -3: need an integer in [1, 10000]"),
])
def test_flags_out_of_range(here, capsys, argv, message):
    argv = [str(ROOT / "search_spaces" / "smoke.yaml") if a == "SMOKE" else a for a in argv]
    assert one_line_error(capsys, *argv) == f"lenet-study: error: {message}"
    nothing_created(here)


# --------------------------------------------------------------------------- train --run reproduces the trial


@pytest.mark.slow
def test_train_run_retrains_a_trial_on_its_studys_data_and_split(tmp_path, run_study, study_runs, monkeypatch,
                                                                  capsys):
    result, _ = run_study(tmp_path)  # smoke: 400 of mnist-5k's digits, val_fraction 0.25, 1 epoch
    client, _, children = study_runs(f"sqlite:///{tmp_path}/mlflow.db", "smoke")
    best = next(c for c in children if c.data.tags[schema.TRIAL_ID] == result.best_trial_id)
    recorded_val, recorded_test = best.data.metrics["best_val_accuracy"], best.data.metrics["test_accuracy"]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    assert cli_main(["train", "--run", best.info.run_id]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"training trial {result.best_trial_id} of study 'smoke' (run {best.info.run_id}): ")
    assert out[0].endswith(", 1 epoch(s), seed 0, on mnist-5k (300 train / 100 val: val_fraction 0.25, split seed 0, "
                           "train_samples 400)")
    val = re.fullmatch(r"best val_accuracy (\S+) \(the trial recorded (\S+)\)", out[-2])
    test = re.fullmatch(r"test_accuracy (\S+) \(the trial recorded (\S+)\)  test_loss \S+", out[-1])
    assert val and test, out
    assert float(val[2]) == pytest.approx(recorded_val, abs=5e-5) and float(test[2]) == pytest.approx(recorded_test, abs=5e-5)
    # The same data, split, seed and knobs on the same CPU: the same figures, within a little.
    assert float(val[1]) == pytest.approx(recorded_val, abs=0.02)
    assert float(test[1]) == pytest.approx(recorded_test, abs=0.02)


def _synthetic_trial(tmp_path: Path, params: dict[str, str], parent_tags: dict[str, str] | None = None) -> str:
    """A study's parent run with the settings of a quick study and one trial run with `params`."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    exp = client.create_experiment("hb", artifact_location=(tmp_path / "artifacts").as_uri())
    settings = StudySettings(dataset="mnist-5k", tuner="hyperband", epochs=3, train_samples=200, val_fraction=0.25)
    parent = client.create_run(exp, tags={schema.ROLE: schema.ROLE_STUDY, schema.STUDY: "hb", **(parent_tags or {})})
    for key, value in settings.to_params().items():
        client.log_param(parent.info.run_id, key, value)
    child = client.create_run(exp, tags={schema.ROLE: schema.ROLE_TRIAL, schema.STUDY: "hb", schema.TRIAL_ID: "0004",
                                         schema.PARENT_RUN_ID: parent.info.run_id})
    for key, value in params.items():
        client.log_param(child.info.run_id, key, value)
    client.log_metric(child.info.run_id, schema.BEST_VAL_ACCURACY, 0.5)
    return child.info.run_id


def test_train_run_of_a_hyperband_trial_trains_its_budget_and_says_so(tmp_path, monkeypatch, capsys):
    params = {**LeNetConfig(activation="relu", epochs=3, batch_size=64).to_params(), "tuner/epochs": "2",
              "tuner/initial_epoch": "0"}
    run_id = _synthetic_trial(tmp_path, params)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    assert cli_main(["train", "--run", run_id]) == 0
    out = capsys.readouterr().out.splitlines()
    assert ", 2 epoch(s), seed 0, on mnist-5k (150 train / 50 val: val_fraction 0.25, split seed 0, train_samples 200)" \
        in out[0]
    assert out[1] == "note: a Hyperband trial: 2 epochs, its budget (tuner/epochs)"
    assert [line.split(":")[0] for line in out if line.startswith("epoch ")] == ["epoch 1", "epoch 2"]
    assert out[-2].endswith("(the trial recorded 0.5000)")
    assert out[-1].startswith("test_accuracy ") and "(the study did not evaluate this trial on the test set)" in out[-1]


def test_train_run_refuses_other_data_than_its_studys(tmp_path, monkeypatch, capsys):
    run_id = _synthetic_trial(tmp_path, LeNetConfig(epochs=1).to_params(), {f"{schema.DATA_PREFIX}digest": "0ther"})
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    line = one_line_error(capsys, "train", "--run", run_id)
    assert re.fullmatch(rf"lenet-study: error: run {run_id}: its study trained on other data \(digest 0ther\) than "
                        r"mnist-5k loads here \(mnist-5k, digest \w+\); give --data-dir \(or LENET_DATA_DIR\) holding "
                        r"the study's files, or --dataset to train on others", line), line
