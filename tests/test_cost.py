"""Cost beside accuracy: every trial and the final run record inference latency, images per second,
training seconds per epoch and the host; a failed measurement never loses a trial."""

from __future__ import annotations

import logging
import socket
from types import SimpleNamespace

import numpy as np
import pytest

from study import cost, schema


class _Clock:
    """A perf_counter that only moves when the fake model computes."""

    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


class _FakeModel:
    """predict_on_batch costs 0.5 ms per call plus 0.01 ms per image on the fake clock."""

    input_shape = (None, 28, 28, 1)

    def __init__(self, clock):
        self.clock = clock
        self.batches: list[tuple] = []

    def predict_on_batch(self, x):
        self.batches.append(x.shape)
        self.clock.now += 0.5e-3 + 0.01e-3 * len(x)
        return np.zeros((len(x), 10), dtype="float32")


def test_inference_is_warmed_up_then_timed_in_rounds_at_batch_1_and_256(monkeypatch):
    clock = _Clock()
    monkeypatch.setattr(cost.time, "perf_counter", clock)
    model = _FakeModel(clock)
    measured = cost.measure_inference(model)
    n1 = cost.WARMUP_CALLS + cost.REPEATS * cost.CALLS_PER_ROUND[1]
    n256 = cost.WARMUP_CALLS + cost.REPEATS * cost.CALLS_PER_ROUND[256]
    assert model.batches == [(1, 28, 28, 1)] * n1 + [(256, 28, 28, 1)] * n256
    assert measured.ms_per_image == pytest.approx(0.51)
    assert measured.images_per_s == pytest.approx(256 / (0.5e-3 + 2.56e-3))
    assert measured.metrics() == {schema.INFERENCE_MS: measured.ms_per_image,
                                  schema.INFERENCE_IPS: measured.images_per_s}


def test_a_real_lenet_is_measured_in_well_under_a_few_seconds():
    import keras

    from study.model import LeNetConfig
    from study.tuner import build_trial_model

    keras.utils.set_random_seed(0)
    measured = cost.measure_inference(build_trial_model(LeNetConfig(), None, 100))
    assert measured.ms_per_image > 0 and measured.images_per_s > 0
    assert 0 < measured.seconds  # the figure itself belongs to the README, not to a test


def test_seconds_per_epoch_is_the_fits_time_over_their_epochs():
    fits = [SimpleNamespace(fit_seconds=6.0, epoch=[0, 1, 2]), SimpleNamespace(fit_seconds=2.0, epoch=[0])]
    assert cost.seconds_per_epoch(fits) == pytest.approx(2.0)
    assert cost.seconds_per_epoch([SimpleNamespace(epoch=[0])]) is None  # a fit nobody timed
    assert cost.seconds_per_epoch([SimpleNamespace(fit_seconds=1.0, epoch=[])]) is None


def test_the_steady_epoch_leaves_out_each_fits_first_epoch():
    # The first epoch traces the model (3 s here); the epochs after it are what a longer fit pays.
    fits = [SimpleNamespace(epoch_ends=[3.0, 3.5, 4.1]), SimpleNamespace(epoch_ends=[2.8, 3.5])]
    assert cost.steady_seconds_per_epoch(fits) == pytest.approx(0.6)  # median of 0.5, 0.6, 0.7
    assert cost.steady_seconds_per_epoch([SimpleNamespace(epoch_ends=[3.0])]) is None  # one epoch: nothing steady
    assert cost.steady_seconds_per_epoch([SimpleNamespace(epoch=[0, 1])]) is None  # a fit nobody timed


def test_a_timed_fit_keeps_each_epochs_end():
    import keras

    from study.model import LeNetConfig
    from study.tuner import build_trial_model

    keras.utils.set_random_seed(0)
    x, y = np.random.default_rng(0).uniform(0, 255, (64, 28, 28, 1)).astype("float32"), np.arange(64) % 10
    model = build_trial_model(LeNetConfig(epochs=3), None, 64)
    history = cost.timed_fit(model, x, y, batch_size=32, epochs=3, verbose=0, steps_per_epoch=1)
    assert len(history.epoch_ends) == 3 and all(b > a > 0 for a, b in zip(history.epoch_ends, history.epoch_ends[1:]))
    assert history.epoch_ends[-1] <= history.fit_seconds


def test_a_failing_measurement_is_one_log_line_and_no_metric(monkeypatch, caplog):
    def broken(model, **_):
        raise RuntimeError("no predict\nfunction here")

    monkeypatch.setattr(cost, "measure_inference", broken)
    fits = [SimpleNamespace(fit_seconds=3.0, epoch=[0, 1], model=object())]
    with caplog.at_level(logging.WARNING, logger="study.cost"):
        metrics = cost.trained_cost(fits, "trial 07")
    assert metrics == {schema.EPOCH_SECONDS: 1.5}
    assert [r.getMessage() for r in caplog.records] == [
        "trial 07: inference latency not measured (RuntimeError: no predict function here)"]


def test_the_host_names_this_machine_and_its_cpu():
    tags = cost.host_tags()
    assert tags[schema.HOST] == socket.gethostname()
    assert tags[schema.HOST_CPU].endswith(" cores") and len(tags[schema.HOST_CPU]) > len(" cores")


@pytest.mark.slow
def test_every_trial_and_the_final_run_record_their_cost_and_host(tmp_path, run_study, study_runs):
    from conftest import store_uri

    result, _ = run_study(tmp_path, final_epochs=1)
    client, _, children = study_runs(store_uri(tmp_path), "smoke")
    final = client.get_run(client.get_run(result.parent_run_id).data.tags[schema.FINAL_RUN_ID])
    assert len(children) == 2
    for run in [*children, final]:
        m = run.data.metrics
        assert m[schema.INFERENCE_MS] > 0 and m[schema.INFERENCE_IPS] > 0
        # Seconds per epoch: the fit alone, within the run's wall time (1 epoch each here).
        assert 0 < m[schema.EPOCH_SECONDS] <= m["wall_time_s"]
        assert run.data.tags[schema.HOST] == socket.gethostname()
        assert run.data.tags[schema.HOST_CPU] == cost.cpu_model()


@pytest.mark.slow
def test_a_trial_whose_measurement_fails_is_kept(tmp_path, run_study, study_runs, monkeypatch, caplog):
    from conftest import store_uri

    def broken(model, **_):
        raise RuntimeError("measuring broke")

    monkeypatch.setattr(cost, "measure_inference", broken)
    with caplog.at_level(logging.WARNING, logger="study.cost"):
        result, _ = run_study(tmp_path, max_trials=1)
    _, _, children = study_runs(store_uri(tmp_path), "smoke")
    assert result.completed == 1 and len(children) == 1
    run = children[0]
    assert run.data.tags[schema.TRIAL_STATUS] == schema.COMPLETED and run.info.status == "FINISHED"
    assert schema.INFERENCE_MS not in run.data.metrics and schema.INFERENCE_IPS not in run.data.metrics
    assert run.data.metrics[schema.EPOCH_SECONDS] > 0
    lines = [r.getMessage() for r in caplog.records if r.name == "study.cost"]
    trial_id = run.data.tags[schema.TRIAL_ID]
    assert lines == [f"trial {trial_id}: inference latency not measured (RuntimeError: measuring broke)"]
