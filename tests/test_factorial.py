"""Factorial screening studies: the design (study/factorial.py), the file's checks, and the analysis
(study/report/factorial.py) validated against known truth: synthetic responses built on real designs, with
known main effects and an interaction, and with none."""

from __future__ import annotations

import dataclasses
import itertools
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.stats as scipy_stats
from mlflow.entities import Param
from statsmodels.stats.multitest import multipletests
from mlflow.tracking import MlflowClient
from test_report import Store, _parent, _trial

from study import report, schema
from study.factorial import (alias_chains, build_design, design_resolution, parse_run, run_label, run_name,
                             run_params)
from study.report import factorial as fa
from study.report.findings import findings
from study.report.registry import figures
from study.report.render import render_markdown
from study.report.stats import lenth_pse
from study.space import load_space
from study.spacefile import SpaceError, resolve_config

EIGHT = ("activation", "pooling", "kernel_size", "c5", "batch_norm", "augment", "label_smoothing", "optimizer")
FACTORS = """\
factors:
  activation: [tanh, relu]
  pooling: [avg, max]
  kernel_size: [3, 5]
  c5: [dense, conv]
  batch_norm: [false, true]
  augment: [none, shift-rotate]
  label_smoothing: [0.0, 0.1]
  optimizer:
    - {optimizer: sgd, learning_rate: 0.03, momentum: 0.9}
    - {optimizer: adam, learning_rate: 0.001}
"""


def _write(folder: Path, body: str, *, resolution: int = 5, seeds: int = 2, baseline: str = "{variant: small-kernel, "
           "c1_padding: same}", name: str = "fact.yaml") -> Path:
    path = folder / name
    path.write_text(f"study:\n  kind: factorial\n  epochs: 1\n  resolution: {resolution}\n  seeds: {seeds}\n"
                    f"baseline: {baseline}\n" + body)
    return path


# --------------------------------------------------------------------------- the design


@pytest.mark.parametrize("k, res, runs", [(4, 5, 16), (5, 5, 16), (6, 5, 32), (8, 5, 64), (8, 4, 16), (7, 3, 8),
                                          (10, 4, 32)])
def test_the_design_has_the_fewest_runs_and_the_resolution_its_columns_give(k, res, runs):
    names = tuple(f"f{i}" for i in range(k))
    design = build_design(names, res)
    assert design.runs == runs
    assert design.resolution is None or design.resolution >= res  # None: a full factorial
    m = design.matrix
    assert set(np.unique(m)) == {-1.0, 1.0}
    assert np.all(m.sum(axis=0) == 0)  # balanced
    assert np.allclose(m.T @ m, runs * np.eye(k))  # main effects orthogonal
    if res >= 5:  # every main effect and two-factor interaction in its own chain
        assert all(len(chain) == 1 for chain in design.chains)
        assert len(design.chains) == k + k * (k - 1) // 2
    if res == 4:  # main effects clear of two-factor interactions, which alias among themselves
        assert all(len(chain) == 1 for chain in design.chains if any(":" not in e for e in chain))


def test_resolution_and_aliases_are_computed_from_the_columns():
    full = np.array(list(itertools.product((-1.0, 1.0), repeat=3)))
    assert design_resolution(full) is None
    half = np.column_stack([full, full.prod(axis=1)])  # D = ABC: I = ABCD, resolution IV
    assert design_resolution(half) == 4
    chains = alias_chains(half, ("a", "b", "c", "d"))
    assert {c for c in chains if len(c) > 1} == {("a:b", "c:d"), ("a:c", "b:d"), ("a:d", "b:c")}
    three = np.column_stack([full, full[:, 0] * full[:, 1]])  # D = AB: resolution III
    assert design_resolution(three) == 3
    assert ("c", "a:b") not in alias_chains(three, ("a", "b", "c", "d"))
    assert ("a:b", "d") in [tuple(sorted(c)) for c in alias_chains(three, ("a", "b", "c", "d"))] or \
        ("d", "a:b") in alias_chains(three, ("a", "b", "c", "d"))
    assert design_resolution(np.column_stack([full, full[:, 0]])) == 2  # a column twice


def test_a_run_name_reads_back_as_its_configuration():
    name = run_name(1, 5, {"activation": 1, "optimizer": -1}, 7,
                    {"activation": "relu", "optimizer": "sgd", "learning_rate": 0.03, "momentum": 0.9})
    assert name == ("r1 #05 activation+ optimizer- seed=7 activation=relu optimizer=sgd learning_rate=0.03 "
                    "momentum=0.9")
    assert parse_run(name) == (1, 5, {"activation": 1, "optimizer": -1}, 7,
                               {"activation": "relu", "optimizer": "sgd", "learning_rate": 0.03, "momentum": 0.9})
    config = resolve_config({"variant": "small-kernel", schema.FACTORIAL: name})
    assert (config.seed, config.activation, config.optimizer, config.momentum) == (7, "relu", "sgd", 0.9)
    assert run_params(name) == {schema.FACTORIAL: name, schema.FACTORIAL_REPLICATE: "1", schema.FACTORIAL_ROW: "5",
                                "level.activation": "1", "level.optimizer": "-1"}


def test_each_replicate_is_the_whole_design_in_its_own_shuffled_order(tmp_path):
    space = load_space(_write(tmp_path, FACTORS, seeds=3))
    f = space.factorial
    assert f.design.runs == 64 and f.design.resolution == 5 and f.seeds == (0, 1, 2)
    assert space.settings.max_trials == 192 and space.knobs[schema.FACTORIAL]["values"] == list(f.order)
    parsed = [parse_run(n) for n in f.order]
    replicates = [r for r, *_ in parsed]
    assert replicates == sorted(replicates)  # one replicate after another: an interrupted study holds whole ones
    orders = []
    for replicate in range(3):
        rows = [row for r, row, *_ in parsed if r == replicate]
        assert sorted(rows) == list(range(64))
        orders.append(rows)
        for r, row, codes, seed, knobs in parsed:
            if r == replicate:
                assert seed == replicate and list(codes.values()) == list(f.design.matrix[row])
    assert orders[0] != orders[1] != orders[2] and orders[0] != list(range(64))
    sgd = [f.configs[n] for n in f.order if parse_run(n)[2]["optimizer"] < 0]
    assert all((c.optimizer, c.learning_rate, c.momentum) == ("sgd", 0.03, 0.9) for c in sgd)
    assert {c.c1_padding for c in f.configs.values()} == {"same"}


def test_the_space_command_prints_size_generators_and_aliases(tmp_path, capsys):
    from study import cli

    path = _write(tmp_path, FACTORS, resolution=4)
    assert cli.main(["space", str(path)]) == 0
    out = capsys.readouterr().out
    assert "design: 2^(8-4) = 16 runs, resolution IV" in out
    assert "generators: batch_norm = " in out
    assert "aliases: 7 chains" in out and "activation:pooling = " in out
    assert "trials: 32 (16 runs x 2 replicates)" in out


@pytest.mark.parametrize("body, settings, words", [
    ("factors:\n  activation: [relu]\n  pooling: [avg, max]\n", {}, ["factors.activation", "exactly two levels",
                                                                    "1 levels"]),
    ("factors:\n  activation: [relu, tanh, sigmoid]\n  pooling: [avg, max]\n", {},
     ["factors.activation", "exactly two levels", "3 levels"]),
    ("factors:\n  colour: [red, blue]\n  pooling: [avg, max]\n", {}, ["factors.colour", "not a knob", "knobs:"]),
    ("factors:\n  pooling: [avg, max]\n  speed: [{warp: 1}, {warp: 2}]\n", {}, ["factors.speed[0].warp",
                                                                               "allowed:"]),
    ("factors:\n  activation: [relu, relu]\n  pooling: [avg, max]\n", {}, ["factors.activation", "the same"]),
    ("factors:\n  activation: [relu, tanh]\n", {}, ["factors", "at least 2 factors"]),
    ("factors:\n  optimizer: [sgd, adam]\n  lr: [{learning_rate: 0.1}, {optimizer: adam}]\n", {},
     ["factors.lr", "optimizer is also set by factor optimizer"]),
    ("factors:\n  activation: [relu, tanh]\n  pooling: [avg, max]\n", {"baseline": "{activation: relu}"},
     ["factors.activation", "also fixed under baseline"]),
    (FACTORS, {"resolution": 6}, ["study.resolution", "3, 4 or 5"]),
    (FACTORS, {"baseline": "{variant: small-kernel}"}, ["factors: run #", "kernel_size=5", "c5=conv",
                                                        "makes no LeNet-5", "hole"]),
])
def test_bad_factorial_files_name_the_file_the_key_and_what_is_allowed(tmp_path, body, settings, words):
    path = _write(tmp_path, body, **settings)
    with pytest.raises(SpaceError) as err:
        load_space(path)
    message = str(err.value)
    assert "\n" not in message and str(path) in message
    for word in words:
        assert word in message, message


def test_a_resolution_no_design_reaches_within_256_runs_is_refused(tmp_path):
    # 20 two-level factors at resolution V need more than 256 runs
    knobs = [("dropout", 0.0, 0.1), ("weight_decay", 0.0, 0.001), ("label_smoothing", 0.0, 0.1),
             ("learning_rate", 0.001, 0.002), ("batch_size", 64, 128), ("c1_filters", 6, 8), ("c3_filters", 16, 20),
             ("c5_units", 120, 100), ("warmup", 0.1, 0.2), ("momentum", 0.0, 0.5), ("activation", "relu", "tanh"),
             ("pooling", "avg", "max"), ("kernel_size", 3, 5), ("c5", "dense", "conv"), ("batch_norm", False, True),
             ("augment", "none", "shift"), ("input_scaling", "unit", "symmetric"), ("lr_schedule", "constant", "cosine"),
             ("optimizer", "adam", "nadam"), ("patience", 0, 2)]
    assert len(knobs) == 20
    body = "factors:\n" + "".join(f"  {k}: [{_yaml(a)}, {_yaml(b)}]\n" for k, a, b in knobs)
    with pytest.raises(SpaceError) as err:
        load_space(_write(tmp_path, body, baseline="{c1_padding: same}"))
    assert "study.resolution" in str(err.value) and "256 runs" in str(err.value)


def _yaml(value) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


# --------------------------------------------------------------------------- the analysis, on synthetic truth


def _frame(matrix: np.ndarray, names, replicates: int, truth, rng, noise: float) -> pd.DataFrame:
    """Runs of `replicates` copies of the design; the response 0.98 + a block shift + the true effects (high − low,
    so half of each multiplies the coded column) + noise."""
    rows = []
    for r in range(replicates):
        shift = rng.normal(0, noise)
        for i, row in enumerate(matrix):
            coded = dict(zip(names, row))
            y = 0.98 + shift + sum(size / 2 * np.prod([coded[f] for f in effect.split(":")])
                                   for effect, size in truth.items()) + rng.normal(0, noise)
            rows.append({fa.REPLICATE: r, fa.ROW: i, **coded, "y": y})
    return pd.DataFrame(rows)


def test_the_analysis_recovers_known_main_effects_and_an_interaction():
    names = EIGHT
    design = build_design(names, 5)
    truth = {"optimizer": 0.004, "activation": -0.003, "batch_norm:augment": 0.002}
    frame = _frame(design.matrix, names, 2, truth, np.random.default_rng(0), 0.001)
    terms = [t for t, _ in fa._terms(design.chains)]
    fitted = fa.fit(frame, list(names), terms, "y")
    assert fitted["method"] == "OLS t"
    for term in terms:
        estimate, se, df, p = fitted[term]
        assert df == 128 - 1 - 1 - len(terms)  # intercept, block, effects
        assert abs(estimate - truth.get(term, 0.0)) < 4 * se
        if term in truth:
            assert p < 1e-6
    found = {t for t in terms if fitted[t][3] < 0.05 / len(terms)}  # Bonferroni: nothing else
    assert found == set(truth)


def test_over_many_synthetic_studies_the_intervals_cover_and_nothing_is_found_where_nothing_was_built():
    """1,000 synthetic replicated 2^(5-1) studies: the 95% intervals of a true effect and of null effects cover
    the truth about 95% of the time, and with no effect at all Holm's correction keeps the chance of any
    significant effect (the family-wise error) near or below 5%."""
    names = ("a", "b", "c", "d", "e")
    design = build_design(names, 5)
    terms = [t for t, _ in fa._terms(design.chains)]
    rng = np.random.default_rng(1)
    covered, any_null_hit, null_hits, n = 0, 0, 0, 1000
    truth = {"a": 0.003, "b:c": -0.002}
    null_covered = 0
    model = fa.Model(_frame(design.matrix, names, 2, {}, rng, 0.002), list(names), terms)  # the same runs each time
    for i in range(n):
        built = truth if i % 2 == 0 else {}
        fitted = model.fit(_frame(design.matrix, names, 2, built, rng, 0.002)["y"])
        estimate, se, df, p = fitted["a"]
        half = float(scipy_stats.t.ppf(0.975, df)) * se
        if built:
            covered += abs(estimate - truth["a"]) <= half
        else:
            null_covered += abs(estimate) <= half
            p_values = np.array([fitted[t][3] for t in terms])
            null_hits += int((p_values < 0.05).sum())
            # Holm rejects anything iff its first step does: the smallest p below alpha / m (statsmodels'
            # multipletests gives the same, at a gc.collect() a call: checked once below)
            any_null_hit += bool(p_values.min() < 0.05 / len(p_values))
            if i == 1:
                assert multipletests(p_values, method="holm")[0].any() == (p_values.min() < 0.05 / len(p_values))
    assert 0.93 <= covered / (n / 2) <= 0.97
    assert 0.93 <= null_covered / (n / 2) <= 0.97
    assert 0.03 <= null_hits / (n / 2 * len(terms)) <= 0.07  # per effect, about the 5% the test allows
    assert any_null_hit / (n / 2) <= 0.065  # family-wise, with Holm's correction


def test_lenths_pseudo_standard_error_on_saturated_unreplicated_designs():
    """One replicate of a 2^(7-4) resolution III design estimates 7 main effects from 8 runs: no residual df,
    so the effects are judged against Lenth's PSE. Over 1,000 synthetic studies of pure noise, each null effect
    is called significant at most about 5% of the time; a large effect is found."""
    names = tuple("abcdefg")
    design = build_design(names, 3)
    assert design.runs == 8
    terms = [t for t, _ in fa._terms(design.chains)]
    rng = np.random.default_rng(2)
    hits, n = 0, 1000
    model = fa.Model(_frame(design.matrix, names, 1, {}, rng, 0.002), list(names), terms)
    for _ in range(n):
        fitted = model.fit(_frame(design.matrix, names, 1, {}, rng, 0.002)["y"])
        assert fitted["method"] == "Lenth PSE t"
        hits += sum(fitted[t][3] < 0.05 for t in terms)
    assert 0.01 <= hits / (n * len(terms)) <= 0.06
    frame = _frame(design.matrix, names, 1, {"c": 0.02}, rng, 0.001)
    fitted = fa.fit(frame, list(names), terms, "y")
    assert fitted["c"][3] < 0.01 and abs(fitted["c"][0] - 0.02) < 0.004
    # the PSE of pure noise effects estimates their spread: effects ~ N(0, 1)
    pses = [lenth_pse(rng.normal(0, 1, 31))[0] for _ in range(500)]
    assert 0.85 <= float(np.median(pses)) <= 1.15


# --------------------------------------------------------------------------- the report, on a synthetic store

NAMES4 = ("activation", "pooling", "batch_norm", "augment")  # a 2^(4-1) design of resolution IV, 2 replicates
TRUE = {"activation": 0.004, "pooling": 0.0, "batch_norm": -0.006, "augment": 0.0}
INTERACTION = 0.003  # activation:batch_norm (aliased with pooling:augment in this design)
TIME = {"augment": 3.0}  # augment costs 3 s a run


@pytest.fixture(scope="module")
def factorial_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("factorial-store")
    store = Store(uri=f"sqlite:///{root}/mlflow.db", root=root)
    client = MlflowClient(tracking_uri=store.uri)
    exp = client.create_experiment("fact", artifact_location=(root / "artifacts").as_uri())
    parent = _parent(client, exp, "fact", start=0, end=9000)
    client.log_batch(parent, params=[Param("kind", "factorial"), Param("seeds", "2"), Param("resolution", "4"),
                                     Param("equivalence_margin", "0.2")])
    design = build_design(NAMES4, 4)
    levels = {"activation": ("tanh", "relu"), "pooling": ("avg", "max"), "batch_norm": (False, True),
              "augment": ("none", "shift")}
    rng = np.random.default_rng(3)
    start, trial = 0, 0
    for replicate in range(2):
        for row in rng.permutation(design.runs):
            codes = {n: int(c) for n, c in zip(NAMES4, design.matrix[row])}
            knobs = {n: levels[n][(c + 1) // 2] for n, c in codes.items()}
            name = run_name(replicate, int(row), codes, replicate, knobs)
            config = resolve_config({schema.FACTORIAL: name})
            acc = (0.985 + sum(TRUE[n] / 2 * c for n, c in codes.items())
                   + INTERACTION / 2 * codes["activation"] * codes["batch_norm"] + rng.normal(0, 0.0005))
            wall = 20.0 + sum(TIME.get(n, 0) / 2 * c for n, c in codes.items()) + rng.normal(0, 0.2)
            run = _trial(client, exp, parent, str(trial), config, start=start, end=start + wall, acc=acc + 0.001,
                         test=acc, param_count=56930)
            client.log_batch(run, params=[Param(k, v) for k, v in run_params(name).items()])
            start, trial = start + 100, trial + 1
    return report.load_study("fact", store.uri)


def test_the_recorded_design_is_balanced_and_orthogonal(factorial_runs):
    runs = factorial_runs
    assert fa.is_factorial(runs) and not runs.has_search
    assert fa.factor_names(runs) == list(NAMES4)
    checks = fa.design_checks(runs)
    assert checks["balanced"] and checks["orthogonal"]
    assert checks["resolution"] == 4 and checks["runs"] == 8 and checks["replicates"] == 2 and checks["left_out"] == 0
    assert {c for c in checks["chains"] if len(c) > 1} == {("activation:pooling", "batch_norm:augment"),
                                                           ("activation:batch_norm", "pooling:augment"),
                                                           ("activation:augment", "pooling:batch_norm")}


def test_the_effects_table_recovers_the_built_effects_with_aliases_named(factorial_runs):
    table = fa.factorial_effects(factorial_runs)
    test = table[table["metric"] == schema.TEST_ACCURACY].set_index("terms")
    assert list(test.index[:4]) == list(NAMES4) and len(test) == 7
    assert test.loc["activation", "difference"] == pytest.approx(0.004, abs=0.001)
    assert test.loc["batch_norm", "difference"] == pytest.approx(-0.006, abs=0.001)
    assert test.loc["activation", "outcome"] == "better" and test.loc["batch_norm", "outcome"] == "worse"
    assert test.loc["pooling", "outcome"] in ("equivalent", "inconclusive") and test.loc["pooling", "margin"] == 0.002
    assert test.loc["activation:pooling", "effect"] == "activation:pooling = batch_norm:augment"
    assert test.loc["activation:batch_norm", "effect"] == "activation:batch_norm = pooling:augment"
    assert test.loc["activation:batch_norm", "difference"] == pytest.approx(INTERACTION, abs=0.001)
    assert test.loc["activation:batch_norm", "outcome"] == "better"
    assert (test["mde"] > 0).all() and (test["p_holm"] >= test["p_value"]).all()
    time = table[table["metric"] == "wall_time_s"].set_index("terms")
    assert time.loc["augment", "difference"] == pytest.approx(3.0, abs=0.5)
    assert time.loc["augment", "outcome"] == "worse"  # slower is worse


def test_an_incomplete_replicate_is_left_out_of_the_fit(factorial_runs):
    runs = factorial_runs
    done = runs.trials
    drop = done[(pd.to_numeric(done[schema.FACTORIAL_REPLICATE]) == 1)].index[:3]
    runs2 = dataclasses.replace(runs, trials=done.drop(index=drop).reset_index(drop=True))
    frame, count = fa.design_frame(runs2)
    assert count == {"runs": 8, "replicates": 1, "left_out": 5}
    assert set(frame[fa.REPLICATE]) == {0}


def test_findings_figures_and_report_of_a_factorial_study(factorial_runs):
    runs = factorial_runs
    texts = [f.text for f in findings(runs)]
    assert texts[0].startswith("Design: a 2^(4-1) design of resolution IV: 4 factors in 8 runs, 2 complete")
    assert "activation:pooling = batch_norm:augment" in texts[0]
    assert any(t.startswith("**batch_norm**") and "lowers test accuracy by 0.6" in t for t in texts)
    assert any(t.startswith("**activation**") and "raises test accuracy by 0.3" in t for t in texts), texts
    assert any("remain significant after Holm's correction" in t for t in texts)
    assert any(t.startswith("**activation:batch_norm** interaction (aliased with pooling:augment)") for t in texts)
    assert fa.interaction_items(runs) == ["activation_batch_norm"]
    drawn = figures(runs)
    assert {"halfnormal.png", "main_effects.png", "interaction_activation_batch_norm.png"} <= set(drawn)
    assert not any(name.startswith("knob_") for name in drawn)  # no unpaired knob plots for a design
    md = render_markdown(runs, list(drawn))
    assert "## Factorial screening" in md and "balanced" in md and "orthogonal" in md
    assert "| effect (high − low) | estimate | 95% CI | p | p (Holm) | MDE | verdict |" in md


def test_the_shipped_screening_study():
    space = load_space(Path(__file__).resolve().parents[1] / "search_spaces" / "screening.yaml")
    f = space.factorial
    assert len(f.factors) == 8 and f.design.resolution == 5 and f.design.runs == 64 and len(f.seeds) == 2
    assert not f.design.aliased()


# --------------------------------------------------------------------------- a tiny study, run for real

TINY = """\
study:
  kind: factorial
  dataset: mnist
  epochs: 1
  resolution: 3
  seeds: 2
  train_samples: 100
  val_fraction: 0.2
baseline: {variant: small-kernel, c1_padding: same, batch_size: 64}
factors:
  activation: [tanh, relu]
  pooling: [avg, max]
  label_smoothing: [0.0, 0.1]
"""


def _children(study_runs, folder: Path):
    _, parents, children = study_runs(f"sqlite:///{folder}/mlflow.db", "tiny")
    return parents, children


@pytest.mark.slow
def test_a_tiny_factorial_study_resumes_with_whole_replicates_and_every_run_once(tmp_path, run_study, study_runs,
                                                                              monkeypatch, interrupted_at_fit):
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY)
    space = load_space(path)
    assert space.factorial.design.runs == 4 and space.settings.max_trials == 8  # 2^(3-1), 2 replicates
    # Ctrl-C while training the second replicate's second run
    restore = interrupted_at_fit(6)
    with pytest.raises(KeyboardInterrupt):
        run_study(tmp_path, path)
    _, children = _children(study_runs, tmp_path)
    finished = [c for c in children if c.info.status == "FINISHED"]
    assert len(finished) == 5 and {c.data.params[schema.FACTORIAL_REPLICATE] for c in finished[:4]} <= {"0", "1"}
    assert sorted(c.data.params[schema.FACTORIAL_ROW] for c in finished
                  if c.data.params[schema.FACTORIAL_REPLICATE] == "0") == ["0", "1", "2", "3"]  # replicate 0 whole

    restore()
    result, lines = run_study(tmp_path, path)
    assert lines[0].startswith("study 'tiny': factorial on mnist-5k")
    assert result.completed == 8
    parents, children = _children(study_runs, tmp_path)
    done = [c for c in children if c.info.status == "FINISHED"]
    assert sorted((c.data.params[schema.FACTORIAL_REPLICATE], c.data.params[schema.FACTORIAL_ROW]) for c in done) == [
        (r, w) for r in ("0", "1") for w in ("0", "1", "2", "3")]  # every run once
    assert not [c for c in children if c.info.status == "RUNNING"]
    for c in done:
        replicate, row, codes, seed, knobs = parse_run(c.data.params[schema.FACTORIAL])
        assert c.data.params["seed"] == str(replicate) and 0 <= c.data.metrics[schema.TEST_ACCURACY] <= 1
        assert {f: c.data.params[f"level.{f}"] for f in codes} == {f: str(v) for f, v in codes.items()}
        assert c.data.params["activation"] == ("relu" if codes["activation"] > 0 else "tanh")
        assert c.info.run_name.endswith(run_label(c.data.params[schema.FACTORIAL]))

    from study.report import write_report
    from study.report.cores import PROCESSES_ENV

    monkeypatch.setenv(PROCESSES_ENV, "1")
    out = write_report("tiny", tmp_path / "reports", f"sqlite:///{tmp_path}/mlflow.db", log_to_mlflow=False)
    text = (out / "report.md").read_text()
    assert "## Factorial screening" in text and (out / "halfnormal.png").exists() and (out / "main_effects.png").exists()
    assert "resolution III: 3 factors in 4 runs, 2 complete replicates" in text
    assert "activation = pooling:label_smoothing" in text  # the aliases, named


@pytest.mark.slow
def test_a_tiny_factorial_study_with_two_workers(tmp_path, study_runs):
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY)
    env = {k: v for k, v in os.environ.items()
           if k not in ("MLFLOW_TRACKING_URI", "LENET_DATA_DIR") and not k.startswith("KERASTUNER_")}
    env.update(PYTHONUNBUFFERED="1", TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    proc = subprocess.run([sys.executable, "-m", "study.cli", "search", str(path), "--workers", "2"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    parents, children = _children(study_runs, tmp_path)
    assert len(parents) == 1 and parents[0].data.params["workers"] == "2"
    assert sorted((c.data.params[schema.FACTORIAL_REPLICATE], c.data.params[schema.FACTORIAL_ROW]) for c in children) == [
        (r, w) for r in ("0", "1") for w in ("0", "1", "2", "3")]
    assert {c.data.tags[schema.WORKER] for c in children} <= {"worker0", "worker1"}
    assert all(c.info.status == "FINISHED" and schema.TEST_ACCURACY in c.data.metrics for c in children)
