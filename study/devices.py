"""The devices training runs on: what TensorFlow sees in this process, and which GPU each worker gets.

`describe_devices()` is the study's "devices: ..." (its first line and the parent run's tag):
"CPU" when TensorFlow sees no accelerator, else e.g. "GPU:0 (NVIDIA A100-SXM4-40GB), GPU:1".
`visible_gpu_ids()` counts GPUs without importing TensorFlow (a chief starts its workers
first), and `gpu_assignment()` hands them out to worker processes, one each, round-robin.
`cpu_cores()` is the CPUs this process may run on.
"""

from __future__ import annotations

import os
import shutil
import subprocess

from .lazy import lazy

tensorflow = lazy("tensorflow")  # describe_devices only: the others count GPUs without it


def cpu_cores() -> int:
    """The CPUs the scheduler lets this process use (os.sched_getaffinity; os.cpu_count where there is none)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def describe_devices(devices=None, details=None) -> str:
    """TensorFlow's visible physical devices other than the CPU, with a GPU's name where known; "CPU" if none.

    `devices` defaults to tf.config.list_physical_devices(), `details` to
    tf.config.experimental.get_device_details (both injectable for tests)."""
    if devices is None or details is None:
        devices = tensorflow.config.list_physical_devices() if devices is None else devices
        details = tensorflow.config.experimental.get_device_details if details is None else details
    out = []
    for device in devices:
        if device.device_type == "CPU":
            continue
        label = device.name.removeprefix("/physical_device:")
        try:
            name = details(device).get("device_name")
        except Exception:  # details are optional: not every device type or build has them
            name = None
        out.append(f"{label} ({name})" if name else label)
    return ", ".join(out) or "CPU"


def visible_gpu_ids(env=None, nvidia_smi: str | None = "nvidia-smi") -> list[str]:
    """The GPUs worker processes may use, as CUDA_VISIBLE_DEVICES entries, without importing TensorFlow.

    A user's own CUDA_VISIBLE_DEVICES is the set to hand out (CUDA stops at the first invalid
    entry, so "-1" or "" means none); else one id per line of `nvidia-smi -L`; else none."""
    env = os.environ if env is None else env
    if "CUDA_VISIBLE_DEVICES" in env:
        ids = []
        for entry in env["CUDA_VISIBLE_DEVICES"].split(","):
            entry = entry.strip()
            if not entry or entry.startswith("-"):
                break
            ids.append(entry)
        return ids
    if not nvidia_smi or shutil.which(nvidia_smi) is None:
        return []
    try:
        out = subprocess.run([nvidia_smi, "-L"], capture_output=True, text=True, timeout=20, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(i) for i, line in enumerate(line for line in out.splitlines() if line.startswith("GPU "))]


def gpu_assignment(n_workers: int, gpu_ids: list[str]) -> list[str | None]:
    """One GPU id per worker, round-robin over gpu_ids (workers share GPUs when there are fewer GPUs
    than workers); None for every worker when there is no GPU."""
    if not gpu_ids:
        return [None] * n_workers
    return [gpu_ids[i % len(gpu_ids)] for i in range(n_workers)]
