"""A study on a Ray cluster: the chief and its workers as Ray actors (`lenet-study search SPACE --ray ADDRESS`).

The study itself runs as it does on one machine (chief.launch: the oracle served over gRPC, one parent run,
the temporary tracking server in front of a local SQLite store, the progress lines, the test set read once
at the end); Ray only places and restarts the processes:

- this process (the driver) connects to the cluster (`run_on_ray`): `local` starts a Ray of its own, `auto`
  finds the one this machine belongs to, `ray://HOST:PORT` and `HOST:PORT` name one;
- the chief is an actor pinned to the driver's node (the head node for a `ray://` client), so the oracle's
  address stays put; it serves the oracle on loopback when the cluster is one machine, else on its node's
  address (no authentication: keep the cluster's network private);
- each worker is an actor (`WorkerActor`) that runs `lenet-study worker`'s own code (worker.work) under
  its tuner id, with `num_cpus` of the cluster's CPU slots and, where the cluster has GPUs, `num_gpus=1`
  (Ray sets CUDA_VISIBLE_DEVICES). `RayWorkerPool` stands where supervise.WorkerPool stands for local
  processes, so the one restart policy (supervise.Supervisor) and the chief's loop watch both: a worker
  whose actor is lost (its process killed, its node gone) has its run marked KILLED and its trial given
  back to the oracle, and Ray starts the actor again (on another node if its own is gone) under the same
  tuner id;
- worker output reaches this terminal through Ray, each line prefixed with the worker's name; the chief's
  progress lines are printed by the driver as they come.

Ray is an optional extra (`pip install 'lenet-study[ray]'`); it is imported when `--ray` is given.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .. import tracking
from ..errors import SearchError, StudyError
from ..lazy import lazy, load
from ..paths import sqlite_file
from ..search import StudyRequest
from .chief import launch
from .net import LOOPBACK, parse_address
from .supervise import MAX_RESTARTS, TERMINATING, USER_ERROR_EXIT, parse_workers
from .worker import WorkerRequest, work

ray = lazy("ray")

RAY_MISSING = "--ray needs Ray, an optional extra: pip install 'lenet-study[ray]' (or make search RAY=1 ...)"
ADDRESSES = "'local' (start Ray here), 'auto' (this machine's cluster), ray://HOST:PORT or HOST:PORT"
STOP_WAIT_S = 60.0  # after Ctrl-C, how long the driver waits for the chief to mark runs KILLED and save
# What a worker actor's process needs from the driver's environment (the rest is the node's own).
PASSED_ENV = ("TF_CPP_MIN_LOG_LEVEL", "KERAS_BACKEND", "MLFLOW_LOGGING_LEVEL", "LENET_DATA_DIR",
              "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD",
              "MLFLOW_TRACKING_TOKEN")


def passed_env() -> dict[str, str]:
    return {k: os.environ[k] for k in PASSED_ENV if k in os.environ}


def ray_address(text: str | None) -> str:
    """`--ray`'s value as ray.init's address: local, auto, ray://HOST:PORT or HOST:PORT."""
    text = (text or "").strip()
    if text in ("local", "auto") or (text.startswith("ray://") and len(text) > len("ray://")):
        return text
    if text and ":" in text:
        host, port = parse_address(text, need_port=True, what="--ray")
        if host and port:
            return text
    raise SearchError(f"--ray {text!r}: give {ADDRESSES}")


def import_ray():
    """Ray itself, or the one line that says how to install it."""
    try:
        return load(ray)
    except ImportError:
        raise SearchError(RAY_MISSING) from None


# --------------------------------------------------------------------------- where everything runs


@dataclass(frozen=True)
class ClusterPlan:
    """How the study sits on the cluster: decided by the driver from ray.nodes(), before any actor starts."""

    workers: int
    cpus: int  # CPU slots per worker (its TensorFlow threads)
    gpus: int  # 0 or 1 per worker
    hosts: tuple[str, ...]  # the nodes' addresses (one machine may hold several nodes)
    chief_node: str  # node id
    chief_host: str  # the chief node's address

    @property
    def bind_host(self) -> str:
        """The oracle's address: loopback when every node is on one machine."""
        return LOOPBACK if len(self.hosts) <= 1 else self.chief_host


def plan_cluster(nodes: list[dict], workers, driver_node: str | None) -> ClusterPlan:
    """Workers for `--workers N|auto` on these nodes (ray.nodes()): `auto` is one per GPU where the cluster
    has GPUs, else one per CPU slot; each worker gets an even share of the CPU slots, no more than the
    largest node has, and one GPU where there are GPUs. The chief goes on the driver's node, or the head node."""
    alive = [n for n in nodes if n.get("Alive")]
    cpus = [int(n.get("Resources", {}).get("CPU", 0)) for n in alive]
    total_cpu, total_gpu = sum(cpus), int(sum(n.get("Resources", {}).get("GPU", 0) for n in alive))
    if str(workers).strip().lower() == "auto":
        n = total_gpu or total_cpu
        if not n:
            raise SearchError("--workers auto: the Ray cluster has no CPU or GPU slots for workers")
    else:
        n = parse_workers(workers, allow_zero=False)
    if total_gpu and n > total_gpu:
        raise SearchError(f"--workers {workers}: the Ray cluster has {total_gpu} GPU(s), one per worker; "
                          f"give at most {total_gpu}, or 'auto'")
    if n > total_cpu:
        raise SearchError(f"--workers {workers}: the Ray cluster has {total_cpu} CPU slot(s), at least one per "
                          f"worker; give at most {total_cpu}, or 'auto'")
    share = max(1, min(total_cpu // n, max(cpus)))
    head = next((n for n in alive if "node:__internal_head__" in n.get("Resources", {})), alive[0])
    chief = next((n for n in alive if n["NodeID"] == driver_node), head)
    hosts = tuple(sorted({n["NodeManagerAddress"] for n in alive}))
    return ClusterPlan(n, share, 1 if total_gpu else 0, hosts, chief["NodeID"], chief["NodeManagerAddress"])


def absolute_request(request: StudyRequest, user_uri: str) -> StudyRequest:
    """The request with every path absolute (the actors' working folder is Ray's, not this shell's), the store
    named, the data folder of this shell's environment, and this command line recorded on the parent run."""
    db = sqlite_file(user_uri)
    uri = f"sqlite:///{db.resolve()}" if db is not None else user_uri
    space = dataclasses.replace(request.space, path=Path(request.space.path).resolve())
    data_dir = request.data_dir or os.environ.get("LENET_DATA_DIR")
    return request.replace(space=space, tracking_uri=uri, log_dir=Path(request.log_dir).resolve(),
                           data_dir=str(Path(data_dir).resolve()) if data_dir else None,
                           command=request.command or " ".join(["lenet-study", *sys.argv[1:]]))


# --------------------------------------------------------------------------- the workers


class WorkerActor:
    """One worker as a Ray actor: `lenet-study worker`'s own loop (worker.work) under a fixed tuner id.
    Its repr is the prefix Ray puts before each line it prints on the driver's terminal."""

    def __init__(self, tuner_id: str):
        self.tuner_id = tuner_id

    def __repr__(self) -> str:
        return self.tuner_id

    def run(self, request: WorkerRequest, host: str, port: int, env: dict[str, str]) -> tuple[int, str]:
        """(0, '') when the oracle has no more trials; (USER_ERROR_EXIT, the one line) for a user error."""
        os.environ.update(env)
        context = ray.get_runtime_context()
        print(f"{self.tuner_id}: pid {os.getpid()} on node {context.get_node_id()} "
              f"({ray.util.get_node_ip_address()}), CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '')}",
              flush=True)
        try:
            return work(request, host, port), ""
        except StudyError as exc:
            print(f"lenet-study: error: {exc}", flush=True)
            return USER_ERROR_EXIT, str(exc).splitlines()[0]


@dataclass
class RayWorker:
    """A worker actor as supervise.Supervisor and the chief see a worker process."""

    tuner_id: str
    threads: int
    gpus: int
    actor: object = None
    ref: object = None  # the pending run() call
    restarts: int = 0
    state: str = "running"  # running | done | gave_up | error
    last_rc: int | None = None
    death: str = ""
    line: str = ""
    gpu = None  # Ray hands out the GPU (CUDA_VISIBLE_DEVICES), not the chief

    def exit_text(self) -> str:
        return self.death or f"exit code {self.last_rc}"

    def last_line(self) -> str:
        return self.line

    @property
    def output(self) -> str:
        return "its lines above (and Ray's logs on its node)"

    def describe(self) -> str:
        return f"{self.tuner_id} ({self.threads} CPU{', 1 GPU' if self.gpus else ''})"


class RayWorkerPool:
    """Worker actors, in place of supervise.WorkerPool's processes: `start` (again) calls the actor's run(),
    which Ray delivers to the actor once it is up (again, after a restart); `exited` reports the calls that
    ended, a lost actor as a death."""

    def __init__(self, make_request, oracle: str, env: dict[str, str], max_restarts: int = MAX_RESTARTS):
        self.make_request = make_request  # (RayWorker) -> WorkerRequest
        self.host, self.port = parse_address(oracle, need_port=True, what="oracle")
        self.env = env
        self.max_restarts = max_restarts
        self.workers: list[RayWorker] = []
        self._actor_class = ray.remote(WorkerActor)

    def add(self, tuner_id: str, cpus: int, gpus: int) -> RayWorker:
        w = RayWorker(tuner_id, cpus, gpus)
        # Ray starts a lost actor again (on another node if its own is gone); the Supervisor calls run() again.
        w.actor = self._actor_class.options(num_cpus=cpus, num_gpus=gpus, max_restarts=self.max_restarts,
                                            max_task_retries=0, scheduling_strategy="SPREAD").remote(tuner_id)
        self.workers.append(w)
        self.start(w)
        return w

    def start(self, w: RayWorker) -> None:
        env = {**self.env, "TF_NUM_INTRAOP_THREADS": str(w.threads), "TF_NUM_INTEROP_THREADS": str(w.threads),
               "OMP_NUM_THREADS": str(w.threads), "PYTHONUNBUFFERED": "1"}
        if w.gpus:
            env["TF_FORCE_GPU_ALLOW_GROWTH"] = "true"
        w.ref = w.actor.run.remote(self.make_request(w), self.host, self.port, env)
        w.state = "running"

    def exited(self) -> list[RayWorker]:
        out = []
        for w in self.running():
            ready, _ = ray.wait([w.ref], timeout=0)
            if not ready:
                continue
            try:
                w.last_rc, w.line = ray.get(ready[0])
                w.death = ""
            except ray.exceptions.RayActorError as exc:  # its process or its node is gone
                w.last_rc, w.death = -9, f"its actor was lost: {type(exc).__name__}"
            except ray.exceptions.RayTaskError as exc:  # a crash: restarted, as a process exiting 1 would be
                w.last_rc, w.death = 1, f"crashed: {str(exc).strip().splitlines()[-1][:200]}"
            out.append(w)
        return out

    def alive(self) -> list[RayWorker]:
        return self.running()

    def running(self) -> list[RayWorker]:
        return [w for w in self.workers if w.state == "running"]

    def output_hint(self, folder: Path) -> str:
        return "their output: here, each line after the worker's name"

    def terminate(self, timeout: float = 10.0) -> None:
        """Ends every actor at once (the chief marks their runs KILLED; their trials run again on resume)."""
        for w in self.workers:
            if w.actor is not None:
                try:
                    ray.kill(w.actor, no_restart=True)
                except Exception:  # noqa: BLE001 - already gone, or the cluster with it
                    pass


def ray_workers(plan: ClusterPlan, driver_env: dict[str, str]):
    """chief.launch's `start_workers`: the plan's worker actors, named worker0, worker1, ..."""

    def start(*, n, threads, oracle, study, request, log_dir, project_dir, env):
        def make_request(w: RayWorker) -> WorkerRequest:
            return WorkerRequest(oracle=oracle, study=study, space=str(request.space.path), tuner_id=w.tuner_id,
                                 threads=w.threads, data_dir=request.data_dir, log_dir=str(log_dir))

        # The chief's own settings too (it turns MLflow's run links off while its temporary server runs).
        pool = RayWorkerPool(make_request, oracle, {**driver_env, **passed_env(), **env})
        for i in range(n):
            pool.add(f"worker{i}", threads, plan.gpus)
        return pool

    return start


# --------------------------------------------------------------------------- the chief


class ChiefActor:
    """The study's chief as a Ray actor: chief.launch with worker actors. Threaded, so that `lines` and
    `stop` are answered while `run` serves the study."""

    def __init__(self):
        self.lines: collections.deque[str] = collections.deque()

    def __repr__(self) -> str:
        return "chief"

    def run(self, request: StudyRequest, plan: ClusterPlan, env: dict[str, str]):
        """('done', SearchResult), ('error', one line) or ('interrupted', '')."""
        os.environ.update(env)
        bind = None if plan.bind_host == LOOPBACK else f"{plan.bind_host}:0"
        request = request.replace(workers=plan.workers, threads=plan.cpus, oracle_bind=bind)
        try:
            return "done", launch(request, echo=self.lines.append, start_workers=ray_workers(plan, env))
        except StudyError as exc:
            return "error", str(exc).splitlines()[0]
        except KeyboardInterrupt:
            return "interrupted", ""

    def take_lines(self) -> list[str]:
        out = []
        while self.lines:
            out.append(self.lines.popleft())
        return out

    def stop(self) -> None:
        TERMINATING.set()  # the chief's loop takes the Ctrl-C path: runs marked KILLED, the oracle saved


def run_on_ray(request: StudyRequest, echo=print):
    """`lenet-study search SPACE --ray ADDRESS` (request.ray): the study's chief and workers as actors on a Ray
    cluster; returns the finish.SearchResult the chief's launch returns."""
    address = ray_address(request.ray)
    if request.oracle_bind:
        raise SearchError("--oracle-bind: not with --ray (the chief serves the oracle on its node's address)")
    if str(request.workers).strip().lower() != "auto":
        parse_workers(request.workers, allow_zero=False)
    user_uri = tracking.tracking_uri(request.tracking_uri)
    request = absolute_request(request, user_uri)
    # Every worker's lines, not one of each kind across the cluster (Ray reads this as it is imported).
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    import_ray()
    env = passed_env()
    try:
        if address == "local":
            ray.init(address="local", include_dashboard=False, log_to_driver=True, logging_level="WARNING")
        else:
            ray.init(address=address, log_to_driver=True, logging_level="WARNING")
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise SearchError(f"--ray {address}: no Ray cluster to join there ({str(exc).splitlines()[0][:160]}); "
                          f"give {ADDRESSES}") from None
    try:
        driver_node = None
        if not address.startswith("ray://"):
            driver_node = ray.get_runtime_context().get_node_id()
        plan = plan_cluster(ray.nodes(), request.workers, driver_node)
        if sqlite_file(request.tracking_uri) is not None and len(plan.hosts) > 1:
            raise SearchError(
                f"the Ray cluster spans {len(plan.hosts)} machines ({', '.join(plan.hosts)}) and the store is the "
                f"local SQLite file {request.tracking_uri}: run `mlflow server` with a PostgreSQL backend store "
                "and set MLFLOW_TRACKING_URI=http://HOST:PORT, reachable from every node")
        echo(f"Ray cluster at {address}: {len(plan.hosts)} machine(s); the chief on node {plan.chief_node[:12]} "
             f"({plan.chief_host}), {plan.workers} worker actor(s) with {plan.cpus} CPU"
             f"{' and 1 GPU' if plan.gpus else ''} each")
        affinity = ray.util.scheduling_strategies.NodeAffinitySchedulingStrategy(node_id=plan.chief_node, soft=False)
        chief = ray.remote(ChiefActor).options(num_cpus=0, max_concurrency=4, max_restarts=0,
                                               scheduling_strategy=affinity).remote()
        return _follow(chief, chief.run.remote(request, plan, env), echo)
    finally:
        ray.shutdown()


def _follow(chief, ref, echo):
    """Print the chief's lines until its run ends; Ctrl-C asks it to stop as a Ctrl-C would on one machine."""
    interrupted = False
    deadline = None
    while True:
        try:
            ready, _ = ray.wait([ref], timeout=0.5)
            for line in ray.get(chief.take_lines.remote()):
                echo(line)
            if ready:
                break
            if deadline is not None and time.monotonic() > deadline:
                ray.kill(chief, no_restart=True)
                raise KeyboardInterrupt
        except KeyboardInterrupt:
            if interrupted:
                raise
            interrupted = True
            echo("interrupted: stopping the chief and its workers (runs in progress are marked KILLED)...")
            chief.stop.remote()
            deadline = time.monotonic() + STOP_WAIT_S
    try:
        outcome, value = ray.get(ref)
    except ray.exceptions.RayError as exc:
        raise SearchError(f"the chief's actor was lost ({type(exc).__name__}); run the same command again "
                          "to resume") from None
    if outcome == "error":
        raise SearchError(value)
    if outcome == "interrupted" or interrupted:
        raise KeyboardInterrupt
    return value
