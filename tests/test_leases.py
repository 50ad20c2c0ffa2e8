"""The chief's two blind spots, fixed in study/kt_compat.py, with fake workers, in milliseconds: a worker told
IDLE backs off before asking again, and the trial of a worker that has gone silent goes back to the queue
while the chief stops waiting for that worker. Clocks and sleeps are the tests' own: nothing here depends on
the machine's speed."""

from __future__ import annotations

import threading
import time

import keras_tuner as kt
import pytest

from study import kt_compat
from study.kt_compat import TrialStatus
from study.parallel.chief import ChiefServer


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def _oracle(tmp_path, max_trials=4):
    hp = kt.HyperParameters()
    hp.Choice("units", [1, 2, 3, 4, 5, 6, 7, 8])
    oracle = kt.oracles.RandomSearchOracle(objective=kt.Objective("val_accuracy", "max"), max_trials=max_trials,
                                           hyperparameters=hp, seed=1)
    oracle._set_project_dir(str(tmp_path), "p")
    oracle.max_retries_per_trial = 1  # as the chief sets it: a trial given back runs once more
    return oracle


# --------------------------------------------------------------------------- a worker told IDLE


class IdleThenRunning:
    """An oracle client that answers IDLE `idle` times, then hands out a trial."""

    def __init__(self):
        self.calls = 0
        self.idle = 0

    def create_trial(self, tuner_id):
        self.calls += 1
        if self.idle:
            self.idle -= 1
            return kt.engine.trial.Trial(kt.HyperParameters(), status=TrialStatus.IDLE)
        return kt.engine.trial.Trial(kt.HyperParameters(), trial_id=str(self.calls), status=TrialStatus.RUNNING)


def test_a_worker_told_idle_waits_longer_each_time_then_starts_again_from_short():
    client, sleeps = IdleThenRunning(), []
    kt_compat.wait_when_idle(client, first_s=0.05, max_s=0.4, sleep=sleeps.append)
    client.idle = 6
    trial = client.create_trial("w0")
    assert trial.status == TrialStatus.RUNNING and client.calls == 7  # keras-tuner's loop never sees IDLE
    assert sleeps == [0.05, 0.1, 0.2, 0.4, 0.4, 0.4]  # doubling, capped: no busy loop against the chief
    sleeps.clear()
    client.idle = 2
    client.create_trial("w0")
    assert sleeps == [0.05, 0.1]  # a trial between: the next wait is short again
    sleeps.clear()
    client.create_trial("w0")
    assert sleeps == []  # an answer at once: no wait at all


def test_the_default_backoff_is_bounded_and_starts_short():
    assert 0 < kt_compat.IDLE_FIRST_S <= 0.1 < kt_compat.IDLE_MAX_S <= 5
    assert kt_compat.HEARTBEAT_S * 3 <= kt_compat.LEASE_S  # a few missed beats do not cost a trial


# --------------------------------------------------------------------------- a worker gone silent


def test_a_silent_workers_trial_goes_back_to_the_queue_and_runs_once_more(tmp_path):
    oracle, clock = _oracle(tmp_path), FakeClock()
    chief = ChiefServer(oracle, lease_s=60)
    chief.leases.clock = clock
    alive = oracle.create_trial("alive")
    chief.leases.heard_from("alive")
    gone = oracle.create_trial("gone")
    chief.leases.heard_from("gone")
    clock.now += 50
    assert chief.reclaim_lapsed() == []  # within the lease: nothing happens
    chief.leases.heard_of_trial(oracle, alive.trial_id)  # an epoch report or a heartbeat from "alive"
    clock.now += 20
    assert chief.reclaim_lapsed() == [gone.trial_id]
    assert "gone" not in oracle.tuner_ids and "gone" not in oracle.ongoing_trials  # no longer waited for
    assert oracle.ongoing_trials["alive"].trial_id == alive.trial_id
    assert kt_compat.retry_queue(oracle) == [gone.trial_id]
    (trial_id, note), = chief.drain()
    assert trial_id == gone.trial_id and note == "no word from gone for 60 s"
    assert not chief.all_trials_done()

    # The live worker finishes its trial, then is handed the silent one's: the same trial, not a new one.
    oracle.update_trial(alive.trial_id, {"val_accuracy": 0.5})
    assert chief.end_trial(kt.engine.trial.Trial(alive.hyperparameters, trial_id=alive.trial_id,
                                                 status=TrialStatus.COMPLETED))
    again = oracle.create_trial("alive")
    assert again.trial_id == gone.trial_id and again.status == TrialStatus.RUNNING
    assert chief.reclaim_lapsed() == []  # the new holder gets a whole lease


def test_a_silent_worker_that_comes_back_with_its_result_settles_the_trial_once(tmp_path):
    oracle, clock = _oracle(tmp_path), FakeClock()
    chief = ChiefServer(oracle, lease_s=60)
    chief.leases.clock = clock
    late = oracle.create_trial("late")
    clock.now += 61
    chief.leases.lapsed(oracle)  # first seen now: a whole lease from here
    clock.now += 61
    assert chief.reclaim_lapsed() == [late.trial_id]
    result = kt.engine.trial.Trial(late.hyperparameters, trial_id=late.trial_id, status=TrialStatus.COMPLETED)
    oracle.update_trial(late.trial_id, {"val_accuracy": 0.7})
    assert chief.end_trial(result)  # taken: nobody ran it again yet
    assert kt_compat.retry_queue(oracle) == [] and oracle.trials[late.trial_id].status == TrialStatus.COMPLETED
    assert not chief.end_trial(result)  # and only once


def test_heartbeats_over_grpc_keep_a_workers_lease_and_silence_loses_it(tmp_path, monkeypatch):
    """Two real keras-tuner worker clients against a real chief on loopback: the one sending heartbeats
    keeps its trial through a long 'epoch', the silent one loses its trial. The chief's clock is the test's;
    the heartbeat thread's interval is short so that the test waits on it, not on a lease."""
    from keras_tuner.src.distribute.oracle_client import OracleClient

    oracle, clock = _oracle(tmp_path), FakeClock()
    chief = ChiefServer(oracle, lease_s=60).start()
    chief.leases.clock = clock
    try:
        monkeypatch.setenv("KERASTUNER_ORACLE_IP", chief.host)
        monkeypatch.setenv("KERASTUNER_ORACLE_PORT", str(chief.port))
        monkeypatch.setenv("KERASTUNER_TUNER_ID", "beating")
        beating = OracleClient(oracle)
        heartbeat = kt_compat.keep_lease(beating, interval_s=0.01)
        kt_compat.wait_when_idle(beating)
        silent = OracleClient(oracle)
        kept = beating.create_trial("beating")
        lost = silent.create_trial("silent")
        assert kept.status == lost.status == TrialStatus.RUNNING and heartbeat.trial_id == kept.trial_id

        clock.now += 61  # both leases would have lapsed, but "beating" beats: wait until the chief hears it
        deadline = time.monotonic() + 30
        while chief.leases.heard.get("beating") != clock.now:
            assert time.monotonic() < deadline, "no heartbeat reached the chief"
            time.sleep(0.01)
        assert chief.reclaim_lapsed() == [lost.trial_id]
        assert set(oracle.ongoing_trials) == {"beating"}

        kept.status = TrialStatus.COMPLETED
        beating.update_trial(kept.trial_id, {"val_accuracy": 0.9})
        beating.end_trial(kept)
        assert heartbeat.trial_id is None  # no trial held: no more beats
        assert oracle.trials[kept.trial_id].status == TrialStatus.COMPLETED
    finally:
        heartbeat.stop()
        chief.stop()
