"""`make bench` at toy size: both sides run in every round and the figures printed are the ones returned.

The figures themselves are never asserted: they belong to `make bench` on a quiet machine.
"""

from __future__ import annotations

from argparse import Namespace

import pytest

from study import tuner
from study.bench import bench_tracking, run_bench


def test_tracking_benchmark_alternates_bare_and_tracked_and_prints_their_ratio():
    args = Namespace(data_dir=None, dataset="mnist-5k", trials=2, epochs=1, train_samples=300, rounds=2,
                     only="tracking")
    lines: list[str] = []
    fit_model = tuner.fit_model
    figures = bench_tracking(args, echo=lines.append)
    rounds = [line for line in lines if line.startswith("round ")]
    assert [line.split(":")[0] for line in rounds] == ["round 1", "round 2"]
    # Both sides trained: their model.fit time is part of, and smaller than, their wall time.
    assert 0 < figures["bare_fit_s"] < figures["bare_s"] and 0 < figures["tracked_fit_s"] < figures["tracked_s"]
    assert tuner.fit_model is fit_model  # the timing wrapper is gone afterwards
    assert any(line.startswith("around model.fit: ") for line in lines)
    assert figures["ratio"] == pytest.approx(figures["tracked_s"] / figures["bare_s"])
    assert f"{figures['ratio']:.3f}x bare" in lines[-1]


def test_benchmark_refuses_bad_sizes_in_one_line():
    base = dict(data_dir=None, dataset="mnist-5k", epochs=1, train_samples=300, only="tracking")
    with pytest.raises(SystemExit, match=r"^bench: --rounds 0: give at least 1$"):
        run_bench(Namespace(**base, trials=2, rounds=0))
    with pytest.raises(SystemExit, match=r"^bench: at most 3 trials"):
        run_bench(Namespace(**base, trials=4, rounds=1))
