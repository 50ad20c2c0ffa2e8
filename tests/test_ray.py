"""`lenet-study search SPACE --ray ADDRESS` (study/parallel/cluster.py).

The fast checks pin the flags and how a study sits on a cluster, without Ray. The slow ones run the real
thing on Ray's own multi-node test cluster (`ray.cluster_utils.Cluster`: several Ray nodes in this one
machine): a study with 2 worker actors on 2 nodes tracks every trial once; a worker actor's process killed
mid-trial, and a worker's node removed mid-trial, lose no trial, run none twice to completion, and leave no
MLflow run RUNNING. A real Slurm allocation or Kubernetes cluster is not tested here.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from study import schema
from study.cli import main as cli_main
from study.errors import SearchError
from study.parallel.cluster import RAY_MISSING, plan_cluster, ray_address

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "search_spaces" / "smoke.yaml"
STUDY = "raydist"


# --------------------------------------------------------------------------- fast: flags and plans


def _node(node_id, ip="10.0.0.1", cpu=4, gpu=0, head=False):
    resources = {"CPU": cpu, **({"GPU": gpu} if gpu else {}), **({"node:__internal_head__": 1.0} if head else {})}
    return {"NodeID": node_id, "Alive": True, "NodeManagerAddress": ip, "Resources": resources}


def test_ray_addresses_are_checked_with_the_flag_named():
    for ok in ("local", "auto", "ray://head:10001", "10.0.0.1:6379"):
        assert ray_address(ok) == ok
    for bad in ("", "nowhere", "ray://", "10.0.0.1:port"):
        with pytest.raises(SearchError, match="--ray"):
            ray_address(bad)


def test_workers_auto_is_one_per_cpu_slot_or_per_gpu_and_the_chief_sits_on_the_drivers_node():
    cpu_only = [_node("h", cpu=2, head=True), _node("a", ip="10.0.0.2", cpu=4), _node("b", ip="10.0.0.3", cpu=2)]
    plan = plan_cluster(cpu_only, "auto", driver_node="a")
    assert (plan.workers, plan.cpus, plan.gpus, plan.chief_node) == (8, 1, 0, "a")
    assert plan.bind_host == "10.0.0.2"  # several machines: the oracle on the chief node's address
    plan = plan_cluster(cpu_only, "2", driver_node=None)  # a ray:// client: the head node
    assert (plan.workers, plan.cpus, plan.chief_node) == (2, 4, "h")  # an even share, no more than a node has
    gpus = [_node("h", cpu=8, gpu=2, head=True), _node("g", ip="10.0.0.2", cpu=8, gpu=1)]
    plan = plan_cluster(gpus, "auto", driver_node="h")
    assert (plan.workers, plan.gpus) == (3, 1)
    one_machine = [_node("h", cpu=0, head=True), _node("a", cpu=1), _node("b", cpu=1)]
    assert plan_cluster(one_machine, "2", driver_node="h").bind_host == "127.0.0.1"


def test_more_workers_than_the_cluster_holds_is_refused_in_one_line():
    with pytest.raises(SearchError, match=r"--workers 5: the Ray cluster has 4 CPU slot\(s\)"):
        plan_cluster([_node("h", cpu=4, head=True)], "5", driver_node="h")
    with pytest.raises(SearchError, match=r"--workers 3: the Ray cluster has 2 GPU\(s\)"):
        plan_cluster([_node("h", cpu=8, gpu=2, head=True)], "3", driver_node="h")


def test_without_ray_installed_the_flag_says_how_to_install_it(monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(sys.modules, "ray", None)  # as if the extra were not installed
    assert cli_main(["search", str(SMOKE), "--ray", "local", "--workers", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"lenet-study: error: {RAY_MISSING}" and "Traceback" not in err
    assert cli_main(["search", str(SMOKE), "--ray", "nowhere"]) == 2
    assert "--ray 'nowhere': give 'local'" in capsys.readouterr().err
    assert cli_main(["search", str(SMOKE), "--ray", "local", "--oracle-bind", "0.0.0.0:7000"]) == 2
    assert "--oracle-bind: not with --ray" in capsys.readouterr().err


# --------------------------------------------------------------------------- slow: a multi-node cluster


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("MLFLOW_TRACKING_URI", "LENET_DATA_DIR", "RAY_ADDRESS") and not k.startswith("KERASTUNER_")}
    env.update(PYTHONUNBUFFERED="1", TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(ROOT))
    return env


@pytest.fixture
def cluster(monkeypatch):
    """A head node with no CPU slot (the driver and the chief) and three 1-CPU worker nodes: two workers, one
    node spare for a worker whose node goes away. Every node's processes import this checkout."""
    cluster_utils = pytest.importorskip("ray.cluster_utils")
    for key in ("MLFLOW_TRACKING_URI", "RAY_ADDRESS"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    cluster = cluster_utils.Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    nodes = [cluster.add_node(num_cpus=1) for _ in range(3)]
    cluster.wait_for_nodes()
    try:
        yield cluster, nodes
    finally:
        cluster.shutdown()


def _search(cluster, tmp_path, act=None, epochs=1):
    """The smoke study (4 trials) with 2 worker actors on the cluster; act(output so far) is called every
    0.2 s until it returns what it did. Returns (output, what act did) once the search has ended."""
    cmd = [sys.executable, "-m", "study.cli", "search", str(SMOKE), "--ray", cluster.address, "--workers", "2",
           "--max-trials", "4", "--seed", "1", "--name", STUDY, "--epochs", str(epochs)]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)
    reader.start()
    done = None
    try:
        deadline = time.monotonic() + 300
        while act is not None and done is None and time.monotonic() < deadline and proc.poll() is None:
            done = act("".join(lines))
            time.sleep(0.2)
        assert proc.wait(400) == 0, "".join(lines)[-4000:]
    finally:
        if proc.poll() is None:
            proc.kill()
    reader.join(10)
    out = "".join(lines)
    assert act is None or done is not None, "nothing was done mid-trial: " + out[-4000:]
    return out, done


def _where(out: str) -> dict[str, tuple[int, str]]:
    """Each worker's latest (pid, node id), from the line a worker actor prints as it starts."""
    found = {}
    for name, pid, node in re.findall(r"(worker\d): pid (\d+) on node ([0-9a-f]+)", out):
        found[name] = (int(pid), node)
    return found


def _running_trial_of(out: str, worker: str):
    """The trial `worker` is running now according to the store, or None; and the client."""
    uri = (m := re.search(r"tracking server (http://127\.0\.0\.1:\d+)", out)) and m.group(1)
    if not uri or worker not in _where(out):
        return None
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(STUDY)
    flt = f"tags.`{schema.WORKER}` = '{worker}' and attributes.status = 'RUNNING'"
    runs = client.search_runs([exp.experiment_id], flt) if exp else []
    return runs[0].data.tags[schema.TRIAL_ID] if runs else None


def _assert_every_trial_once(study_runs, tmp_path, killed_trial=None):
    client, parents, children = study_runs(f"sqlite:///{tmp_path}/mlflow.db", STUDY)
    assert [p.info.status for p in parents] == ["FINISHED"]
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parents[0].info.run_id}
    assert not [c for c in children if c.info.status == "RUNNING"]
    finished = sorted(c.data.tags[schema.TRIAL_ID] for c in children if c.info.status == "FINISHED")
    assert finished == ["0", "1", "2", "3"]  # every trial, none twice
    assert {c.data.tags[schema.WORKER] for c in children} <= {"worker0", "worker1"}
    assert parents[0].data.metrics["n_trials_completed"] == 4
    dead = [(c.data.tags[schema.TRIAL_ID], c.data.tags[schema.WORKER]) for c in children if c.info.status == "KILLED"]
    assert dead == ([] if killed_trial is None else [(killed_trial, "worker0")])
    return children


@pytest.mark.slow
def test_two_worker_actors_on_two_nodes_track_every_trial_once(cluster, tmp_path, study_runs):
    out, _ = _search(cluster[0], tmp_path)
    _assert_every_trial_once(study_runs, tmp_path)
    where = _where(out)
    assert set(where) == {"worker0", "worker1"} and where["worker0"][1] != where["worker1"][1]  # two nodes
    assert re.search(r"\(worker[01] pid=\d+(, ip=[^)]*)?\)", out)  # worker output here, after the worker's name
    assert len(re.findall(r"^\[\d/4\] trial \d", out, flags=re.M)) == 4  # the chief's progress lines
    assert "done: 4 trial(s) completed, 0 failed" in out


@pytest.mark.slow
def test_a_worker_actor_killed_mid_trial_loses_no_trial(cluster, tmp_path, study_runs):
    def kill_worker0(out):
        trial = _running_trial_of(out, "worker0")
        if trial is None:
            return None
        pid = _where(out)["worker0"][0]
        os.kill(pid, signal.SIGSTOP)  # frozen: its trial cannot end between the check and the kill
        if _running_trial_of(out, "worker0") != trial:
            os.kill(pid, signal.SIGCONT)
            return None
        os.kill(pid, signal.SIGKILL)
        return trial

    out, killed = _search(cluster[0], tmp_path, kill_worker0, epochs=3)
    assert re.search(rf"worker0 died \(its actor was lost: \w+\); its run for trial {killed} marked KILLED; "
                     r"restarted", out), out[-3000:]
    _assert_every_trial_once(study_runs, tmp_path, killed_trial=killed)


@pytest.mark.slow
def test_a_workers_node_removed_mid_trial_loses_no_trial(cluster, tmp_path, study_runs):
    ray_cluster, nodes = cluster
    removed = []

    def remove_worker0s_node(out):
        trial = _running_trial_of(out, "worker0")
        if trial is None:
            return None
        pid, node_id = _where(out)["worker0"]
        os.kill(pid, signal.SIGSTOP)  # frozen: its trial cannot end between the check and the removal
        if _running_trial_of(out, "worker0") != trial:
            os.kill(pid, signal.SIGCONT)
            return None
        node = next(n for n in nodes if n.node_id == node_id)
        ray_cluster.remove_node(node, allow_graceful=False)
        removed.append(node_id)
        return trial

    out, lost = _search(ray_cluster, tmp_path, remove_worker0s_node, epochs=3)
    assert re.search(rf"worker0 died \(its actor was lost: \w+\); its run for trial {lost} marked KILLED", out)
    _assert_every_trial_once(study_runs, tmp_path, killed_trial=lost)
