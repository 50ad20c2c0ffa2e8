"""keras-tuner's private API, all of it in one place: a keras-tuner upgrade touches this file only.

keras-tuner 1.4 exposes no public way to serve an oracle from a process of our
own, end a trial from outside a tuner, read a GridSearch's order back, size a
Hyperband schedule, or silence failed-trial tracebacks. What the study needs of
that is wrapped here, named for what it does; nothing else in `study/` imports
`keras_tuner.src` or touches an attribute that starts with an underscore.
Checked against keras-tuner 1.4.7 and 1.4.8.

Also here, the two blind spots of keras-tuner's distributed mode that the study fixes: a worker told
IDLE asks again at once, in a tight loop (`wait_when_idle` backs off instead), and a trial whose worker
is gone for good stays ongoing until a process with the same tuner id returns (`Leases`: a worker
sends heartbeats while it holds a trial, and the chief gives back the trial of one it has not heard
from for a lease's length, and stops waiting for that worker).
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from functools import cmp_to_key
from pathlib import Path
from typing import Any

import keras_tuner as kt
import numpy as np
from keras_tuner.src import config as kt_config
from keras_tuner.src import utils as kt_utils
from keras_tuner.src.engine import tuner_utils as kt_tuner_utils
from keras_tuner.src.engine.oracle import synchronized as kt_synchronized
from keras_tuner.src.tuners.gridsearch import LinkedList

from .files import write_atomic
from .lazy import lazy

# keras-tuner's distributed mode (gRPC and its protocol buffers): only a chief and its workers load it.
grpc = lazy("grpc")
kt_protos = lazy("keras_tuner.src.protos")
kt_oracle_chief = lazy("keras_tuner.src.distribute.oracle_chief")
scipy_optimize = lazy("scipy.optimize")  # the Bayesian oracle's acquisition search

# Trial statuses (keras_tuner.engine.trial.TrialStatus is public; the constants are re-exported for short names).
TrialStatus = kt.engine.trial.TrialStatus
Trial = kt.engine.trial.Trial


def write_state_atomically() -> None:
    """keras-tuner writes its state (oracle.json, tuner0.json, every trial_<id>/trial.json, build_config.json)
    in place through one function, `keras_tuner.src.utils.save_json` (called as `utils.save_json` by
    Stateful.save, Oracle.save / _save_trial via Trial.save, and Tuner.run_trial): a full disk or a kill
    mid-write left a truncated file that every resume then failed on. Local paths now go through
    files.write_atomic (a temporary file in the same folder, fsync, os.replace); other file systems
    (gs://...) keep keras-tuner's own writer. Applied once, when this module is imported."""
    original = kt_utils.save_json
    if getattr(original, "writes_atomically", False):
        return

    def save_json(path, obj):
        if "://" in str(path):
            return original(path, obj)
        text = json.dumps(obj)
        write_atomic(path, text)
        return text

    save_json.writes_atomically = True
    kt_utils.save_json = save_json


write_state_atomically()


def set_debug(debug: bool) -> None:
    """keras-tuner prints a traceback for every failed trial unless its DEBUG flag is off."""
    kt_config.DEBUG = debug


class DeclaredSpace:
    """Tuner mixin: the space is declared whole before the search (space.Space.hyperparameters), so
    keras-tuner's first exploration of it, which builds a model with the default values for every
    condition (`Tuner._populate_initial_space`), is skipped: it finds nothing new, costs a model build
    per tuner, and fails outright where the defaults make no possible LeNet-5."""

    def _populate_initial_space(self):
        return None


# --------------------------------------------------------------------------- oracle internals


def random_values(oracle) -> dict | None:
    """A random, not yet tried point of the oracle's space (None when the space is exhausted)."""
    return oracle._random_values()


def retry_queue(oracle) -> list[str]:
    """Trial ids the oracle will hand out again (INVALID trials, and trials running when it was reloaded)."""
    return oracle._retry_queue


def set_retry_queue(oracle, trial_ids: list[str]) -> None:
    oracle._retry_queue = list(trial_ids)


def save_trial(oracle, trial) -> None:
    """Write one trial's file (trial_<id>/trial.json), as oracle.end_trial does."""
    oracle._save_trial(trial)


def synchronized(func):
    """keras-tuner's per-oracle lock, for code that changes an oracle served to workers."""
    return kt_synchronized(func)


def checkpoint_path(tuner, trial_id: str) -> str:
    """Where the tuner keeps a trial's best weights."""
    return tuner._get_checkpoint_fname(trial_id)


def hyperband_trial_epochs(oracle) -> list[int] | None:
    """The epochs each trial of a Hyperband schedule trains, in the order the oracle runs them (its
    most aggressive bracket first; a continued trial trains from its predecessor's last epoch), or
    None for another oracle."""
    if not hasattr(oracle, "_get_num_brackets"):
        return None
    out: list[int] = []
    for bracket in reversed(range(oracle._get_num_brackets())):
        for round_num in range(oracle._get_num_rounds(bracket)):
            start = oracle._get_epochs(bracket, round_num - 1) if round_num else 0
            out += [oracle._get_epochs(bracket, round_num) - start] * oracle._get_size(bracket, round_num)
    return out * oracle.hyperband_iterations


def hyperband_schedule_size(oracle) -> int | None:
    """How many trials one Hyperband iteration runs (every bracket, every round), or None for
    another oracle."""
    if not hasattr(oracle, "_get_num_brackets"):
        return None
    total = 0
    for bracket in range(oracle._get_num_brackets()):
        for round_num in range(oracle._get_num_rounds(bracket)):
            total += oracle._get_size(bracket, round_num)
    return total * oracle.hyperband_iterations


class ResumableGridOracle(kt.oracles.GridSearchOracle):
    """GridSearchOracle whose resume works: 1.4.8 forgets its trial order on reload (keras-tuner #1055)."""

    def set_state(self, state):
        super().set_state(state)
        self._rebuild_order()

    def _rebuild_order(self):
        ids = sorted(
            self.trials,
            key=cmp_to_key(lambda a, b: self._compare(self.trials[a].hyperparameters.values,
                                                      self.trials[b].hyperparameters.values)),
        )
        self._ordered_ids = LinkedList()
        self._populate_next = []
        for trial_id in ids:
            self._ordered_ids.insert(trial_id)
            self._populate_next.append(trial_id)

    def reload(self):
        super().reload()
        self._rebuild_order()


class BayesianOracle(kt.oracles.BayesianOptimizationOracle):
    """keras-tuner's Gaussian-process oracle (its GP, its upper confidence bound, its random initial points)
    with a cheaper search for the bound's optimum.

    keras-tuner 1.4.8 minimises the bound by L-BFGS-B from 50 uniform random starts with finite-difference
    gradients: about 25,000 one-point GP predictions, 8.4 s per proposal on a 2-core CPU with the default
    space's 16 knobs and 5 finished trials; longer than the trial it proposes when trials are short. Here
    the bound is scored on `raw_samples` uniform random points in one batched prediction and only the best
    `restarts` of them are polished with L-BFGS-B (BoTorch's raw_samples/num_restarts heuristic for the
    starting points): a few hundred milliseconds, and a start at least as good as the best random point.
    """

    raw_samples = 1024
    restarts = 5

    def populate_space(self, trial_id):
        completed = [t for t in self.trials.values() if t.status == TrialStatus.COMPLETED]
        initial = self.num_initial_points or max(3 * len(self.hyperparameters.space), 3)
        if len(completed) < initial:
            return self._random_populate_space()
        x, y = self._vectorize_trials()
        self.gpr.fit(np.nan_to_num(x, posinf=0, neginf=0), np.nan_to_num(y, posinf=0, neginf=0))

        def bound(points):  # lower is better: keras-tuner frames every objective as a minimisation
            mu, sigma = self.gpr.predict(np.atleast_2d(points), return_std=True)
            return np.asarray(mu).ravel() - self.beta * np.asarray(sigma).ravel()

        bounds = self._get_hp_bounds()
        raw = self._random_state.uniform(bounds[:, 0], bounds[:, 1], size=(self.raw_samples, bounds.shape[0]))
        scores = bound(raw)
        best_x, best = raw[int(np.argmin(scores))], float(np.min(scores))
        for start in raw[np.argsort(scores)[:self.restarts]]:
            result = scipy_optimize.minimize(lambda p: float(bound(p)[0]), x0=start, bounds=bounds,
                                             method="L-BFGS-B")
            if float(result.fun) < best:
                best_x, best = result.x, float(result.fun)
        return {"status": TrialStatus.RUNNING, "values": self._vector_to_values(best_x)}


def trial_results(histories, objective, extra: dict[str, float]) -> dict[str, float]:
    """What a trial reports to its oracle, as keras-tuner makes it of the fits' histories (the metrics of the
    best epoch, averaged over executions), with `extra` metrics beside them (a pruned study's curve)."""
    return {**kt_tuner_utils.convert_to_metrics_dict(histories, objective), **extra}


# --------------------------------------------------------------------------- the tuner folder's files

ORACLE_FILE = "oracle.json"
TUNER_FILE = "tuner0.json"  # the tuner's own state, named after its tuner id ("tuner0" outside a worker)
# What Oracle.set_state reads (a subclass reads more, and says so with a KeyError of its own).
ORACLE_STATE_KEYS = ("ongoing_trials", "hyperparameters", "start_order", "end_order", "run_times", "retry_queue",
                     "seed", "seed_state", "tried_so_far", "id_to_hash", "display")
ENDED = (TrialStatus.COMPLETED, TrialStatus.FAILED)


def trial_file(project_dir, trial_id: str):
    """Where a trial's state lives: trial_<id>/trial.json."""
    return Path(project_dir) / f"trial_{trial_id}" / "trial.json"


def trial_ids_on_disk(project_dir) -> list[str]:
    """The ids of the trial folders (trial_<id>/) in a tuner folder, whatever they still hold."""
    return [p.name[len("trial_"):] for p in Path(project_dir).glob("trial_*") if p.is_dir()]


def trial_from_state(state) -> Trial:
    """A Trial from a trial file's content (KeyError, TypeError or ValueError when it is not one)."""
    return Trial.from_state(state)


def oracle_state_ok(state) -> bool:
    return isinstance(state, dict) and all(key in state for key in ORACLE_STATE_KEYS)


def new_trial(hyperparameters, trial_id: str, values: dict, status: str, objective: str | None = None,
              score: float | None = None, best_step: int = 0, message: str | None = None) -> Trial:
    """A trial as the oracle would have saved it: the space with these values, its status, and for a
    COMPLETED trial the objective's best value (to maximise) as its score."""
    hps = hyperparameters.copy()
    hps.values = dict(values)
    trial = Trial(hps, trial_id=trial_id, status=status, message=message)
    if objective and score is not None:
        trial.metrics.register(objective, "max")
        trial.metrics.update(objective, float(score), step=best_step)
        trial.score, trial.best_step = float(score), best_step
    return trial


def write_trial(project_dir, trial) -> None:
    trial_file(project_dir, trial.trial_id).parent.mkdir(parents=True, exist_ok=True)
    trial.save(str(trial_file(project_dir, trial.trial_id)))


def write_json(path, state) -> None:
    """Through keras-tuner's own writer (write_state_atomically made it atomic)."""
    kt_utils.save_json(str(path), state)


def write_tuner_state(project_dir) -> None:
    """tuner0.json as keras-tuner 1.4 writes it: the tuner keeps no state of its own ({}); the file's
    presence is what makes a tuner reload the oracle."""
    write_json(Path(project_dir) / TUNER_FILE, {})


def replay_trials(oracle, trials) -> None:
    """Give a new oracle (its oracle.json was lost) the trials from their files, as a reload would have:
    ended trials count as ended, the others wait in the retry queue to run again."""
    for trial in sorted(trials, key=lambda t: int(t.trial_id)):
        oracle.trials[trial.trial_id] = trial
        oracle.start_order.append(trial.trial_id)
        oracle._record_values(trial)
        if trial.status in ENDED:
            oracle.end_order.append(trial.trial_id)
            oracle._run_times[trial.trial_id] += 1
        else:
            trial.status = TrialStatus.RUNNING
            oracle._retry_queue.append(trial.trial_id)
    if isinstance(oracle, ResumableGridOracle):
        oracle._rebuild_order()


# --------------------------------------------------------------------------- the oracle over gRPC


def oracle_servicer_class():
    """keras-tuner's gRPC OracleServicer (keras_tuner/distribute/oracle_chief.py), to subclass."""
    return kt_oracle_chief.OracleServicer


def add_oracle_servicer(servicer, server) -> None:
    kt_protos.get_service_grpc().add_OracleServicer_to_server(servicer, server)


def create_trial_response(trial) -> Any:
    return kt_protos.get_service().CreateTrialResponse(trial=trial.to_proto())


def end_trial_response() -> Any:
    return kt_protos.get_service().EndTrialResponse()


def trial_from_request(request):
    return Trial.from_proto(request.trial)


def invalidate_remote_trials(address: str, trial_ids: list[str], timeout: float = 10.0) -> None:
    """Give trials back to a chief's oracle as INVALID (keras-tuner retries them or counts them failed),
    with short time-outs: keras-tuner's own client waits up to an hour for a chief that is gone."""
    if not trial_ids:
        return
    service = kt_protos.get_service()
    with grpc.insecure_channel(address) as channel:
        stub = kt_protos.get_service_grpc().OracleStub(channel)
        for trial_id in trial_ids:
            with contextlib.suppress(grpc.RpcError):
                trial = Trial.from_proto(stub.GetTrial(service.GetTrialRequest(trial_id=trial_id), timeout=timeout).trial)
                if trial.status == TrialStatus.RUNNING:
                    trial.status = TrialStatus.INVALID
                    stub.EndTrial(service.EndTrialRequest(trial=trial.to_proto()), timeout=timeout)


# --------------------------------------------------------------------------- idle workers and lost ones

IDLE_FIRST_S = 0.05  # a worker told IDLE waits this long before asking again, doubled each time...
IDLE_MAX_S = 2.0  # ...up to this (a Hyperband bracket waiting on its slowest trial may take minutes)
HEARTBEAT_S = 10.0  # a worker holding a trial tells the chief it is alive this often
LEASE_S = 120.0  # the chief gives back the trial of a worker it has not heard from for this long


def wait_when_idle(oracle, *, first_s: float = IDLE_FIRST_S, max_s: float = IDLE_MAX_S, sleep=time.sleep) -> None:
    """A worker's oracle client (keras-tuner's OracleClient, on this tuner instance) asks again for a trial
    after an IDLE answer only once it has waited, doubling the wait each time up to max_s: keras-tuner's
    `search` loop re-asks at once, a busy loop of gRPC calls against a chief that serves one at a time.
    The wait starts again from first_s with every call that gets an answer other than IDLE."""
    create_trial = oracle.create_trial

    def create_trial_patiently(tuner_id):
        delay = first_s
        trial = create_trial(tuner_id)
        while trial.status == TrialStatus.IDLE:
            sleep(delay)
            delay = min(delay * 2, max_s)
            trial = create_trial(tuner_id)
        return trial

    oracle.create_trial = create_trial_patiently


class Heartbeat:
    """A worker's heartbeat: while it holds a trial (from the oracle client's create_trial until its
    end_trial), a daemon thread asks the chief for that trial every interval_s seconds (GetTrial, the one
    call of keras-tuner's protocol that changes nothing); the chief counts every call naming the trial as
    a sign of life (Leases). Installed on the client instance by `keep_lease`."""

    def __init__(self, send, interval_s: float = HEARTBEAT_S):
        self.send = send  # (trial_id) -> None; errors are the chief's to notice, not the worker's
        self.interval_s = interval_s
        self.trial_id: str | None = None
        self.beats = 0
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="lease-heartbeat", daemon=True)
        self._thread.start()

    def hold(self, trial_id: str | None) -> None:
        self.trial_id = trial_id

    def _loop(self) -> None:
        while not self._wake.wait(self.interval_s):
            trial_id = self.trial_id
            if trial_id is not None:
                with contextlib.suppress(Exception):
                    self.send(trial_id)
                    self.beats += 1

    def stop(self) -> None:
        self._wake.set()


def keep_lease(client, interval_s: float = HEARTBEAT_S, timeout_s: float = 10.0) -> Heartbeat:
    """Heartbeats from a worker's oracle client (keras-tuner's OracleClient) while it holds a trial."""
    service = kt_protos.get_service()

    def send(trial_id):
        client.stub.GetTrial(service.GetTrialRequest(trial_id=trial_id), timeout=timeout_s)

    heartbeat = Heartbeat(send, interval_s)
    create_trial, end_trial = client.create_trial, client.end_trial

    def create_trial_holding(tuner_id):
        trial = create_trial(tuner_id)
        heartbeat.hold(trial.trial_id if trial.status == TrialStatus.RUNNING else None)
        return trial

    def end_trial_releasing(trial):
        try:
            return end_trial(trial)
        finally:
            heartbeat.hold(None)

    client.create_trial, client.end_trial = create_trial_holding, end_trial_releasing
    return heartbeat


class Leases:
    """The chief's side: when it last heard from each worker (tuner id) that holds a trial.

    Every call a worker makes counts (asking for a trial, reporting an epoch, ending a trial, a
    heartbeat); a call naming only a trial counts for the worker that holds it. `lapsed(oracle)` gives
    the workers holding a trial that have been silent for longer than lease_s; a worker first seen
    holding a trial (one handed out before this chief started) gets a whole lease from then."""

    def __init__(self, lease_s: float = LEASE_S, clock=time.monotonic):
        self.lease_s = lease_s
        self.clock = clock
        self.heard: dict[str, float] = {}

    def heard_from(self, tuner_id: str) -> None:
        self.heard[tuner_id] = self.clock()

    def heard_of_trial(self, oracle, trial_id: str) -> None:
        for tuner_id, trial in list(oracle.ongoing_trials.items()):
            if trial.trial_id == trial_id:
                self.heard_from(tuner_id)

    def lapsed(self, oracle) -> list[tuple[str, Trial]]:
        now = self.clock()
        out = []
        for tuner_id, trial in list(oracle.ongoing_trials.items()):
            last = self.heard.setdefault(tuner_id, now)
            if now - last > self.lease_s:
                out.append((tuner_id, trial))
        return out


def reclaim_lapsed(oracle, leases: Leases) -> list[Trial]:
    """The trials of workers whose lease lapsed, as INVALID trials to end (the caller ends them: keras-tuner
    then runs each again, or counts it FAILED); those workers are forgotten, so a chief waiting for every
    worker to hear "stop" no longer waits for them. A worker that comes back asks for a trial and is a
    worker again; a result it still reports for its old trial is taken if nobody has reported one yet."""

    def lapse():
        out = []
        for tuner_id, trial in leases.lapsed(oracle):
            oracle.tuner_ids.discard(tuner_id)
            leases.heard.pop(tuner_id, None)
            silent = f"no word from {tuner_id} for {leases.lease_s:g} s"
            out.append(Trial(trial.hyperparameters, trial_id=trial.trial_id, status=TrialStatus.INVALID,
                             message=silent))
        return out

    return synchronized(lambda _oracle: lapse())(oracle)


# --------------------------------------------------------------------------- a client of the chief, without a tuner


@contextlib.contextmanager
def oracle_stub(address: str):
    """A gRPC stub of the chief's oracle at HOST:PORT, as keras-tuner's OracleClient holds one (for simulated
    workers: keras-tuner's own client reads its address from the environment and needs a tuner)."""
    with grpc.insecure_channel(address) as channel:
        yield kt_protos.get_service_grpc().OracleStub(channel)


def remote_create_trial(stub, tuner_id: str, timeout: float = 600.0) -> Trial:
    request = kt_protos.get_service().CreateTrialRequest(tuner_id=tuner_id)
    return Trial.from_proto(stub.CreateTrial(request, wait_for_ready=True, timeout=timeout).trial)


def remote_get_trial(stub, trial_id: str, timeout: float = 600.0) -> Trial:
    request = kt_protos.get_service().GetTrialRequest(trial_id=trial_id)
    return Trial.from_proto(stub.GetTrial(request, wait_for_ready=True, timeout=timeout).trial)


def remote_update_trial(stub, trial_id: str, metrics: dict[str, float], step: int = 0, timeout: float = 600.0):
    request = kt_protos.get_service().UpdateTrialRequest(trial_id=trial_id, metrics=metrics, step=step)
    return stub.UpdateTrial(request, wait_for_ready=True, timeout=timeout)


def remote_end_trial(stub, trial, timeout: float = 600.0) -> None:
    request = kt_protos.get_service().EndTrialRequest(trial=trial.to_proto())
    stub.EndTrial(request, wait_for_ready=True, timeout=timeout)

