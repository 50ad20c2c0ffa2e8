"""Classify one grayscale image file with a study's best model, as the tutorials do with a saved model.

The model: an MLflow model URI (`--model models:/lenet-<study>@champion`, any
`models:/` or `runs:/` URI), a parent run's best_model.keras (`--run`), or by
default the champion of the study (`--study`, else the newest study with a
best model), falling back to its latest best model when none is registered.

The image is converted to 8-bit grayscale and resized to 28x28; the model
applies its own input scaling (its first layer), so raw 0-255 pixels go in.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from . import schema, tracking
from .errors import StudyError
from .lazy import lazy
from .model import probabilities, register_custom_objects

keras = lazy("keras")
mlflow_exceptions = lazy("mlflow.exceptions")

MODEL_FILE = schema.MODEL_FILE


class PredictError(StudyError):
    """A missing image, study or run; one line for the user."""


@dataclass
class Prediction:
    image: str
    label: int
    probabilities: np.ndarray
    source: str  # which run's model

    def text(self) -> str:
        probs = "  ".join(f"{i}:{p:.3f}" for i, p in enumerate(self.probabilities))
        return f"{self.image}: class {self.label} (p={self.probabilities[self.label]:.3f})  [{probs}]  model: {self.source}"


# The largest image `predict` decodes (a 12-megapixel photo of a digit is fine). Pillow's own guard
# against decompression bombs warns at 89 megapixels and refuses at twice that; this one comes first.
MAX_IMAGE_PIXELS = 50_000_000


def load_image(path: str | Path, invert: bool = False) -> np.ndarray:
    """A (1, 28, 28, 1) uint8 array from any image file PIL can read (a regular file, at most
    MAX_IMAGE_PIXELS pixels: a FIFO or a device would block the read, a huge image fill the memory)."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise PredictError(f"{path}: not a regular file (a folder, FIFO or device); give an image file")
        guard, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None  # opening reads the header only
        try:
            img = Image.open(path)
        finally:
            Image.MAX_IMAGE_PIXELS = guard
        with img:
            width, height = img.size
            if width * height > MAX_IMAGE_PIXELS:
                raise PredictError(f"{path}: {width}x{height} pixels is too large an image; the limit is "
                                   f"{MAX_IMAGE_PIXELS:,} pixels (a digit needs 28x28)")
            gray = img.convert("L").resize((28, 28), Image.Resampling.BILINEAR)
    except FileNotFoundError:
        raise PredictError(f"{path}: no such image file") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise PredictError(f"{path}: not a readable image ({exc})") from None
    pixels = np.asarray(gray, dtype=np.uint8)
    if invert:
        pixels = 255 - pixels
    return pixels.reshape(1, 28, 28, 1)


MODEL_URI_SCHEMES = ("models:/", "runs:/")


def find_model_run(study: str | None = None, run_id: str | None = None, tracking_uri: str | None = None) -> str:
    """The parent run whose best model to use: the given run, or the study's latest with a model."""
    c = tracking.client(tracking_uri)
    if run_id:
        try:
            run = c.get_run(run_id)
        except Exception:
            raise PredictError(f"run {run_id!r} not found in {tracking.tracking_uri(tracking_uri)}") from None
        if not tracking.has_artifact(c, run_id, MODEL_FILE):
            parent = run.data.tags.get(schema.PARENT_RUN_ID)
            hint = f"; its study's run is {parent}" if parent else ""
            raise PredictError(f"run {run_id} holds no {MODEL_FILE} (only a study's parent run does{hint})")
        return run_id
    if study:
        exp = c.get_experiment_by_name(study)
        if exp is None:
            known = [e.name for e in c.search_experiments() if e.name != "Default"]
            raise PredictError(f"no study {study!r} in the MLflow store; known: {', '.join(known) or 'none'}")
        experiment_ids = [exp.experiment_id]
    else:
        experiment_ids = [e.experiment_id for e in c.search_experiments()]
    for run in tracking.study_parents(c, experiment_ids):
        if schema.TEST_ACCURACY in run.data.metrics and tracking.has_artifact(c, run.info.run_id, MODEL_FILE):
            return run.info.run_id
    where = f"study {study!r}" if study else "the MLflow store"
    raise PredictError(f"{where} has no finished study with a best model yet; run `make search` first")


def load_best_model(run_id: str, tracking_uri: str | None = None):
    c = tracking.client(tracking_uri)
    register_custom_objects()
    path = c.download_artifacts(run_id, MODEL_FILE)
    return keras.models.load_model(path)


def load_model_uri(model_uri: str, tracking_uri: str | None = None):
    """A model by MLflow URI: models:/NAME@ALIAS, models:/NAME/VERSION or runs:/RUN_ID/best_model."""
    if not model_uri.startswith(MODEL_URI_SCHEMES) or model_uri.rstrip("/") in MODEL_URI_SCHEMES:
        raise PredictError(f"--model {model_uri!r}: give an MLflow model URI: models:/NAME@ALIAS, "
                           f"models:/NAME/VERSION or runs:/RUN_ID/{schema.MODEL_NAME}")
    register_custom_objects()
    try:
        return tracking.load_keras_model(model_uri, tracking_uri)
    except (mlflow_exceptions.MlflowException, OSError, ValueError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise PredictError(f"--model {model_uri}: cannot load it from "
                           f"{tracking.tracking_uri(tracking_uri)} ({reason[:200]})") from None


def choose_model(study: str | None = None, run_id: str | None = None, model_uri: str | None = None,
                 tracking_uri: str | None = None) -> tuple[str | None, str | None, str]:
    """(model URI, parent run id, description): what `predict` loads. A given URI or run as asked; by
    default the study's champion (the registered version its latest search chose) where one exists,
    else the best model of its latest finished search; the study is the given one or the newest with
    a best model."""
    if model_uri:
        return model_uri, None, model_uri
    if run_id:
        run_id = find_model_run(None, run_id, tracking_uri)
        return None, run_id, f"run {run_id}"
    c = tracking.client(tracking_uri)
    run = find_model_run(study, None, tracking_uri)
    study = study or c.get_run(run).data.tags.get(schema.STUDY)
    version = tracking.champion(c, study) if study else None
    if version is not None:
        uri = f"models:/{version.name}@{schema.CHAMPION_ALIAS}"
        run_of = f", run {version.run_id}" if version.run_id else ""
        return uri, None, f"{uri} (version {version.version}, trial {version.tags.get(schema.TRIAL_ID, '?')}{run_of})"
    return None, run, f"run {run}"


def predict_image(image: str, study: str | None = None, run_id: str | None = None, invert: bool = False,
                  tracking_uri: str | None = None, model_uri: str | None = None) -> Prediction:
    pixels = load_image(image, invert=invert)
    tracking.check_store(tracking_uri, must_exist=True)
    uri, run, source = choose_model(study, run_id, model_uri, tracking_uri)
    model = load_model_uri(uri, tracking_uri) if uri else load_best_model(run, tracking_uri)
    probs = probabilities(model, pixels)[0]
    return Prediction(image, int(np.argmax(probs)), probs, source)
