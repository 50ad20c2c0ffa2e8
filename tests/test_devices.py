"""A GPU user gets the GPU: one TensorFlow package with a `gpu` extra, `make ... GPU=1`, the devices a
study reports, and one GPU per worker process (study/devices.py, supervise.WorkerPool). No GPU needed."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

from study import schema
from study.devices import describe_devices, gpu_assignment, visible_gpu_ids
from study.parallel import chief as chief_module
from study.parallel.supervise import Supervisor, WorkerPool

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "search_spaces" / "smoke.yaml"
TENSORFLOW_DISTRIBUTIONS = {"tensorflow", "tensorflow-cpu", "tensorflow-gpu", "tensorflow-intel", "tensorflow-macos"}


def _project() -> dict:
    tomllib = pytest.importorskip("tomllib")
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _requirements(specs):
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    return [(canonicalize_name(r.name), r) for r in map(Requirement, specs)]


# --------------------------------------------------------------------------- the package choice


def test_the_base_dependencies_name_one_tensorflow_distribution_on_every_platform():
    tf = [(name, r) for name, r in _requirements(_project()["dependencies"]) if name in TENSORFLOW_DISTRIBUTIONS]
    assert [name for name, _ in tf] == ["tensorflow"]
    assert tf[0][1].marker is None  # the same package on Linux, macOS and Windows


def test_no_dependency_anywhere_is_tensorflow_cpu():
    project = _project()
    specs = project["dependencies"] + [s for extra in project["optional-dependencies"].values() for s in extra]
    assert not [s for s in specs if "tensorflow-cpu" in s.lower().replace("_", "-")]


def test_the_gpu_extra_is_the_same_distribution_with_cuda():
    gpu = _requirements(_project()["optional-dependencies"]["gpu"])
    assert len(gpu) == 1
    name, req = gpu[0]
    assert name == "tensorflow" and req.extras == {"and-cuda"}
    assert req.marker.evaluate({"sys_platform": "linux"}) and not req.marker.evaluate({"sys_platform": "darwin"})


# --------------------------------------------------------------------------- the Makefile


def _make_n(tmp_path, *variables) -> str:
    if shutil.which("make") is None:
        pytest.skip("no make")
    out = subprocess.run(["make", "-n", "install", f"VENV={tmp_path / 'venv'}", *variables], cwd=ROOT,
                         capture_output=True, text=True, check=True)
    return out.stdout


def test_make_gpu_1_installs_the_gpu_extra_after_removing_tensorflow_cpu(tmp_path):
    commands = _make_n(tmp_path, "GPU=1")
    assert "-e '.[dev,gpu]'" in commands
    uninstall = commands.index("pip uninstall -y -q tensorflow-cpu")
    assert uninstall < commands.index("pip install --quiet -e")  # before: both share the tensorflow/ folder
    assert f"touch {tmp_path / 'venv'}/.installed-gpu" in commands


def test_make_without_gpu_installs_the_dev_extra_only(tmp_path):
    commands = _make_n(tmp_path)
    assert "-e '.[dev]'" in commands and ",gpu" not in commands and ".installed-gpu" not in commands
    assert "pip uninstall -y -q tensorflow-cpu" in commands  # an old venv loses tensorflow-cpu either way
    assert f"touch {tmp_path / 'venv'}/.installed\n" in commands


# --------------------------------------------------------------------------- what TensorFlow sees


def test_describe_devices_on_this_machine():
    import tensorflow as tf

    described = describe_devices()
    if tf.config.list_physical_devices("GPU"):
        assert described.startswith("GPU:0")
    else:
        assert described == "CPU"


def test_describe_devices_names_gpus_where_tensorflow_knows_their_names():
    from tensorflow.config import PhysicalDevice

    devices = [PhysicalDevice("/physical_device:CPU:0", "CPU"), PhysicalDevice("/physical_device:GPU:0", "GPU"),
               PhysicalDevice("/physical_device:GPU:1", "GPU")]

    def details(device):
        if device.name.endswith("GPU:1"):
            raise RuntimeError("no details")
        return {"device_name": "NVIDIA A100-SXM4-40GB"} if device.device_type == "GPU" else {}

    assert describe_devices(devices, details) == "GPU:0 (NVIDIA A100-SXM4-40GB), GPU:1"
    assert describe_devices(devices[:1], details) == "CPU"


@pytest.mark.slow
def test_a_study_prints_its_devices_first_and_tags_them_on_the_parent_run(tmp_path):
    from mlflow.tracking import MlflowClient

    from study.search import StudyRequest, open_study
    from study.space import load_space

    space = load_space(SMOKE)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    lines: list[str] = []
    opened = open_study(StudyRequest(space, space.settings, tracking_uri=uri, log_dir=tmp_path / "logs",
                                     command="pytest"), echo=lines.append)
    opened.tracker.end_parent()
    assert lines[0].startswith("study 'smoke': random on ") and lines[0].endswith(f", devices: {describe_devices()}")
    tags = MlflowClient(uri).get_run(opened.tracker.parent_run_id).data.tags
    assert tags[schema.DEVICES] == describe_devices()


# --------------------------------------------------------------------------- one GPU per worker


def test_gpu_assignment_round_robin_and_none_without_gpus():
    assert gpu_assignment(2, ["0", "1"]) == ["0", "1"]
    assert gpu_assignment(3, ["0", "1"]) == ["0", "1", "0"]
    assert gpu_assignment(1, ["0", "1"]) == ["0"]
    assert gpu_assignment(2, []) == [None, None]


def test_visible_gpus_come_from_the_users_cuda_visible_devices_or_nvidia_smi(tmp_path):
    assert visible_gpu_ids({"CUDA_VISIBLE_DEVICES": "5, 7"}) == ["5", "7"]
    assert visible_gpu_ids({"CUDA_VISIBLE_DEVICES": "GPU-8f3c,GPU-91aa"}) == ["GPU-8f3c", "GPU-91aa"]
    assert visible_gpu_ids({"CUDA_VISIBLE_DEVICES": ""}) == []  # hidden on purpose: no GPU
    assert visible_gpu_ids({"CUDA_VISIBLE_DEVICES": "-1"}) == []
    assert visible_gpu_ids({"CUDA_VISIBLE_DEVICES": "1,-1,2"}) == ["1"]  # CUDA stops at the first invalid entry
    assert visible_gpu_ids({}, nvidia_smi=str(tmp_path / "absent")) == []
    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/bin/sh\necho 'GPU 0: NVIDIA A100-SXM4-40GB (UUID: GPU-8f3c)'\n"
                    "echo 'GPU 1: NVIDIA A100-SXM4-40GB (UUID: GPU-91aa)'\n")
    fake.chmod(0o755)
    assert visible_gpu_ids({}, nvidia_smi=str(fake)) == ["0", "1"]


class _Proc:
    pids = iter(range(30_000_000, 40_000_000))  # never a real pid: nothing is ever signalled

    def __init__(self, env):
        self.env, self.pid, self.returncode = env, next(self.pids), None

    def poll(self):
        return self.returncode


def _pool(tmp_path, base_env, gpus):
    spawned: list[_Proc] = []

    def spawn(argv, *, env, **kwargs):
        spawned.append(_Proc(env))
        return spawned[-1]

    pool = WorkerPool(lambda w: ["lenet-study", "worker", "--tuner-id", w.tuner_id], base_env, spawn=spawn)
    for i, gpu in enumerate(gpus):
        pool.add(f"worker{i}", 1, tmp_path / f"worker{i}.log", gpu=gpu)
    return pool, spawned


def test_each_worker_gets_its_gpu_and_keeps_it_when_restarted(tmp_path):
    pool, spawned = _pool(tmp_path, {"BASE": "1"}, gpu_assignment(3, ["0", "1"]))
    assert [p.env["CUDA_VISIBLE_DEVICES"] for p in spawned] == ["0", "1", "0"]
    assert all(p.env["TF_FORCE_GPU_ALLOW_GROWTH"] == "true" for p in spawned)  # two workers share GPU 0
    assert "worker1 start (restart 0), 1 thread(s), GPU 1" in (tmp_path / "worker1.log").read_text()
    spawned[1].returncode = -9
    assert [e.kind for e in Supervisor(pool).check()] == ["restarted"]
    assert spawned[-1].env["CUDA_VISIBLE_DEVICES"] == "1"


def test_the_users_cuda_visible_devices_are_the_gpus_handed_out(tmp_path):
    base = {"CUDA_VISIBLE_DEVICES": "5,7"}
    _, spawned = _pool(tmp_path, base, gpu_assignment(2, visible_gpu_ids(base)))
    assert [p.env["CUDA_VISIBLE_DEVICES"] for p in spawned] == ["5", "7"]


def test_without_gpus_a_worker_gets_no_cuda_setting(tmp_path):
    _, spawned = _pool(tmp_path, {"BASE": "1"}, gpu_assignment(2, visible_gpu_ids({}, nvidia_smi=None)))
    assert all("CUDA_VISIBLE_DEVICES" not in p.env and "TF_FORCE_GPU_ALLOW_GROWTH" not in p.env for p in spawned)
    assert all(p.env["BASE"] == "1" for p in spawned)
    assert "GPU" not in (tmp_path / "worker0.log").read_text()


@pytest.mark.parametrize("gpus, expected", [
    (["0", "1"], "worker0 (pid {0}, GPU 0), worker1 (pid {1}, GPU 1)"),
    ([None, None], "worker0 (pid {0}), worker1 (pid {1})"),
])
def test_the_chiefs_worker_line_names_gpus_only_when_assigned(tmp_path, gpus, expected):
    pool, spawned = _pool(tmp_path, {}, gpus)
    lines: list[str] = []
    chief_module._announce(SimpleNamespace(name="smoke"), SimpleNamespace(address="127.0.0.1:1", port=1), pool,
                           2, 1, "127.0.0.1", False, "sqlite:///x.db", tmp_path, lines.append)
    assert lines[-1].startswith("2 worker(s), 1 TensorFlow thread(s) each: "
                                + expected.format(*(p.pid for p in spawned)) + "; their output: ")

