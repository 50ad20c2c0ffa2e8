"""Shared test set-up: quiet TensorFlow, and never touch the user's MLflow store or the network."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
