"""A study's time budget (study/budget.py): durations as written, the rule that stops starting trials, and a
real study kept to a budget on a fake clock (the clock moves only when a fit trains; nothing here depends
on the machine's speed)."""

from __future__ import annotations

import itertools
import random

import pytest
from conftest import SMOKE, store_uri

from study import schema
from study.budget import FINISH_RESERVE_S, BudgetError, TimeBudget, format_duration, parse_duration
from study.spacefile import SpaceError


class FakeClock:
    def __init__(self, now: float = 0.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("text, seconds", [("45s", 45), ("15m", 900), ("1h", 3600), ("1h30m", 5400),
                                           ("2.5m", 150), ("90", 90), (90, 90), (0.5, 0.5), (" 2m 5s ", 125)])
def test_durations_as_a_user_writes_them(text, seconds):
    assert parse_duration(text) == seconds
    assert parse_duration(format_duration(seconds)) == max(1, seconds) if seconds >= 1 else True


@pytest.mark.parametrize("text", ["15x", "-3m", "0s", "0", "m", "", "1m1h", "inf", "nan", True, None, [15]])
def test_bad_durations_are_refused(text):
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize("value, shown", [("15x", "'15x'"), ("-3m", "'-3m'"), ("0s", "'0s'"), (-5, "-5"),
                                          ("true", "'true'")])
def test_a_bad_budget_in_a_space_file_is_one_line_naming_the_file_key_and_what_is_allowed(tmp_path, value, shown):
    from study.space import load_space

    path = tmp_path / "budget.yaml"
    text = SMOKE.read_text().replace("study:\n", f"study:\n  time_budget: {value}\n" if value != "true"
                                     else "study:\n  time_budget: 'true'\n", 1)
    path.write_text(text)
    with pytest.raises(SpaceError) as caught:
        load_space(path)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: study.time_budget: {shown} is not allowed; give a duration such as 45s, 15m")


def test_a_budget_in_a_space_file_is_kept_in_seconds_and_round_trips_through_the_parent_params(tmp_path):
    from study.space import load_space
    from study.spacefile import StudySettings

    path = tmp_path / "budget.yaml"
    path.write_text(SMOKE.read_text().replace("study:\n", "study:\n  time_budget: 1h30m\n", 1))
    space = load_space(path)
    assert space.settings.time_budget == 5400
    assert "time_budget=1h30m" in space.describe()
    assert StudySettings.from_params(space.settings.to_params(), base=space.settings) == space.settings
    assert space.settings.override(time_budget=60).time_budget == 60  # the flag overrides the file
    assert StudySettings.from_params(StudySettings().to_params()).time_budget is None


def test_a_bad_time_budget_flag_is_one_line(capsys):
    from study.cli import main

    assert main(["search", str(SMOKE), "--time-budget", "15x"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("lenet-study: error: --time-budget: '15x' is not allowed; give a duration such as 45s, 15m, 1h "
                   "or 1h30m (a number alone is seconds), above 0")


def test_the_default_study_keeps_to_a_budget_under_15_minutes():
    from conftest import ROOT

    from study.space import load_space

    budget = load_space(ROOT / "search_spaces" / "lenet.yaml").settings.time_budget
    assert budget is not None and budget * 1.1 <= 15 * 60  # kept within 10%, it ends inside 15 minutes


# --------------------------------------------------------------------------- the rule, simulated


def _simulate(budget_s: float, per_epoch: float, setup: float, epochs: int, final_epochs: int, noise: float,
              seed: int) -> tuple[TimeBudget, float, int]:
    """A search as the study runs one on a fake clock: start-up, the probe, trials while can_start says so
    (each costing set-up + epochs x a rate that varies by +-noise), then the final run and the finish."""
    rng = random.Random(seed)
    clock = FakeClock()
    budget = TimeBudget(budget_s, final_epochs, clock=clock)
    clock.now += 5.0  # imports and data
    budget.calibrate(setup, per_epoch * rng.uniform(1 - noise, 1 + noise))
    clock.now += 2 * setup + per_epoch * 0.2  # the probe's two short fits
    rates = {}
    n = 0
    while budget.can_start(epochs):
        budget.begin(str(n))
        rates[n] = per_epoch * rng.uniform(1 - noise, 1 + noise)
        clock.now += setup + epochs * rates[n]
        budget.record(str(n), epochs, score=rng.random())
        n += 1
    best = max(budget.trials, key=lambda t: t[2])
    best_rate = (best[0] - setup) / epochs
    clock.now += setup + final_epochs * best_rate + FINISH_RESERVE_S * rng.uniform(0.5, 1.0)
    return budget, clock.now, n


@pytest.mark.parametrize("per_epoch, setup", [(0.5, 0.2), (8.0, 3.0), (20.0, 6.0), (60.0, 10.0)])
def test_the_rule_keeps_any_budget_a_trial_and_the_final_run_fit_in(per_epoch, setup):
    epochs, final_epochs = 4, 15
    smallest = 5 + 2 * setup + per_epoch * 0.2 + (setup + epochs * per_epoch) * 1.25 \
        + setup + final_epochs * per_epoch * 1.25 + FINISH_RESERVE_S
    for budget_s, seed in itertools.product([smallest, smallest * 1.5, smallest * 3, 900, 3600], range(5)):
        if budget_s < smallest:
            continue
        budget, end, n = _simulate(budget_s, per_epoch, setup, epochs, final_epochs, noise=0.1, seed=seed)
        assert n >= 1
        assert end <= budget_s * 1.1, (budget_s, end, n)  # within the budget, give or take 10%
        # ...and it used the budget: it stopped only when one more trial would not have fitted.
        assert end >= budget_s - 2.5 * (setup + epochs * per_epoch) - FINISH_RESERVE_S, (budget_s, end, n)
        assert budget.stopped.startswith(f"time budget: {n} trial(s) fitted in ")


def test_a_slow_machine_runs_fewer_trials_in_the_same_budget():
    counts = [_simulate(900, per_epoch, 2.0, 4, 15, noise=0.0, seed=0)[2] for per_epoch in (5.0, 10.0, 20.0)]
    assert counts[0] > counts[1] > counts[2] >= 1


def test_the_final_run_is_reserved_at_the_best_trials_rate_when_it_is_slower():
    clock = FakeClock()
    budget = TimeBudget(1000, 10, clock=clock)
    budget.begin("0"); clock.now += 40; budget.record("0", 4, score=0.9)  # noqa: E702 - 10 s per epoch
    budget.begin("1"); clock.now += 20; budget.record("1", 4, score=0.5)  # noqa: E702 - 5 s per epoch
    assert budget.seconds_per_epoch() == pytest.approx(7.5)
    assert budget.final_seconds() == pytest.approx(10 * 10 + FINISH_RESERVE_S)
    assert budget.trial_seconds(4) == pytest.approx(30)


def test_the_final_run_is_reserved_at_the_fits_own_rate_without_the_searchs_costs():
    """A trial's duration holds the oracle's proposal, the logging and the cost measurement; the final run
    pays none of them: it is reserved at the seconds per epoch the trials' fits took."""
    clock = FakeClock()
    budget = TimeBudget(1000, 10, clock=clock)
    budget.calibrate(2.0, 1.0)
    budget.begin("0"); clock.now += 22; budget.record("0", 4, score=0.9, fit_per_epoch=1.5)  # noqa: E702
    budget.begin("1"); clock.now += 18; budget.record("1", 4, score=0.5, fit_per_epoch=2.5)  # noqa: E702
    assert budget.seconds_per_epoch() == pytest.approx((20 + 16) / 8)  # the next trial pays what trials paid
    assert budget.final_seconds() == pytest.approx(2.0 + 10 * 2.0 + FINISH_RESERVE_S)  # the mean fit rate: 2.0
    budget.record("2", 4, score=0.95, seconds=30, fit_per_epoch=3.0)  # a slower best configuration
    assert budget.final_seconds() == pytest.approx(2.0 + 10 * 3.0 + FINISH_RESERVE_S)


def test_too_small_a_budget_is_refused_in_one_line_before_any_trial():
    clock = FakeClock(100.0)
    budget = TimeBudget(60, 15, clock=clock, where="lenet.yaml: study.time_budget")
    clock.now += 8  # start-up
    budget.calibrate(2.0, 3.0)
    with pytest.raises(BudgetError) as caught:
        budget.check_first(4)
    need = 8 + 2 + 4 * 3 + 2 + 15 * 3 + FINISH_RESERVE_S
    assert str(caught.value) == (
        f"lenet.yaml: study.time_budget 1m is too small: one trial of 4 epoch(s) and the final run of 15 epochs "
        f"need about {format_duration(need - 8)} here (3.00 s per epoch measured on this machine, 8 s already "
        f"spent starting); give at least {format_duration(need)}")
    TimeBudget(need, 15, clock=FakeClock(), where="x").check_first(4)  # nothing measured yet: nothing to refuse


# --------------------------------------------------------------------------- a real study on a fake clock

SECONDS_PER_EPOCH = 10.0
# The smoke study on a continuous space (it cannot run out of configurations before the budget does), on
# 30 training digits: one batch per epoch.
BUDGET_SPACE = """\
study:
  dataset: mnist-5k
  train_samples: 40
  tuner: random
  max_trials: 50
  epochs: 1
  patience: 0
  final_epochs: 2
  seed: 0
  val_fraction: 0.25
space:
  learning_rate: {float: [1.0e-4, 1.0e-2], sampling: log}
  optimizer: {fixed: adam}
  batch_size: {fixed: 64}
"""


@pytest.fixture
def fake_fits(monkeypatch):
    """A fake clock that moves SECONDS_PER_EPOCH for every epoch a fit trains (trials, the probe, the final)."""
    from study import tuner

    clock = FakeClock(1000.0)
    fit_model = tuner.fit_model

    def timed(*args, **kwargs):
        history = fit_model(*args, **kwargs)
        clock.now += SECONDS_PER_EPOCH * len(history.epoch)
        history.fit_seconds = SECONDS_PER_EPOCH * len(history.epoch)  # what the trial records as its fit's time
        history.epoch_ends = [SECONDS_PER_EPOCH * (i + 1) for i in range(len(history.epoch))]  # ...and its epochs'
        return history

    monkeypatch.setattr(tuner, "fit_model", timed)
    return clock


def _request(tmp_path, clock, budget: float):
    from study.search import StudyRequest
    from study.space import load_space

    path = tmp_path / "budget.yaml"
    path.write_text(BUDGET_SPACE)
    space = load_space(path)
    return StudyRequest(space, space.settings.override(time_budget=budget), tracking_uri=store_uri(tmp_path),
                        log_dir=tmp_path / "logs", command="pytest", clock=clock)


def test_a_study_stops_starting_trials_in_time_for_its_final_run(tmp_path, fake_fits, study_runs):
    from study.search import run_search

    lines: list[str] = []
    result = run_search(_request(tmp_path, fake_fits, budget=80), echo=lines.append)
    # The probe's two fits: 20 s, 10 s per epoch and no set-up. The final run (2 epochs) and the finish then
    # need 30 s: a 1-epoch trial starts while 10 + 30 s fit in what is left, at 20, 30 and 40 s.
    assert result.completed == 3 and result.test_accuracy is not None
    assert fake_fits.now - 1000 == 70  # the final run ended at 70 s of the 80
    assert any(line.startswith("time budget 1m20s: ~10.0 s per epoch and 0.0 s of set-up per trial measured "
                               "here; room for about 3 trial(s)") for line in lines)
    stop = "time budget: 3 trial(s) fitted in 0:50 of 1:20; no more started: the next (~0:10) and the final run " \
           "(~0:30) would not fit in the 0:30 left"
    assert stop in lines
    assert lines.index(stop) < next(i for i, line in enumerate(lines) if line.startswith("final: training"))
    assert lines[-1] == "time budget 1m20s: the study ended after 1:10"
    trial_lines = [line for line in lines if line.startswith("[")]
    assert len(trial_lines) == 3 and trial_lines[0].endswith("~0:50 left (time budget 1m20s)")
    _, parents, children = study_runs(store_uri(tmp_path), "budget")
    tags = parents[0].data.tags
    assert tags[schema.SEARCH_STOP] == schema.STOP_TIME_BUDGET and tags[schema.SEARCH_STOP_NOTE] == stop
    assert float(parents[0].data.params["time_budget"]) == 80 and len(children) == 3


def test_a_budget_too_small_for_one_trial_and_the_final_run_is_refused_before_any_run(tmp_path, fake_fits):
    import mlflow

    from study.search import run_search

    with pytest.raises(BudgetError) as caught:
        run_search(_request(tmp_path, fake_fits, budget=45), echo=lambda line: None)
    # After the probe (20 s), one trial (10 s) and the final run with the finish (30 s) need 60 s.
    assert str(caught.value) == (
        "--time-budget 45s is too small: one trial of 1 epoch(s) and the final run of 2 epochs need about 40s here "
        "(10.00 s per epoch measured on this machine, 20 s already spent starting); give at least 1m")
    experiment = mlflow.MlflowClient(store_uri(tmp_path)).get_experiment_by_name("budget")
    runs = mlflow.MlflowClient(store_uri(tmp_path)).search_runs([experiment.experiment_id]) if experiment else []
    assert runs == []  # refused before the parent run started
