"""Trials in parallel: keras-tuner's chief/worker mode, every trial tracked once under one parent run.

The rooms, cut the way keras-tuner keeps its own `keras_tuner/distribute/`:

- `chief.py`: the chief: serves the oracle over gRPC, launches the local workers,
  prints progress and finishes the study (`launch`);
- `worker.py`: a worker process, and `lenet-study worker` on another machine (`run_worker`);
- `supervise.py`: starting, watching and restarting worker processes: one command
  line, one pool, one restart policy;
- `server.py`: the temporary `mlflow server` in front of a local SQLite store;
- `net.py`: addresses, free ports and readiness polls.

keras-tuner's private API used here lives in `study/kt_compat.py`; every MLflow
query in `study/tracking.py`. Nothing is imported here: `python -m
study.parallel.supervise` (the server's guard) stays a plain module run.
"""
