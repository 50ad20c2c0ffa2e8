"""Quiet start (study/quiet.py): TensorFlow's start-up lines are left out of the CLI's stderr, everything else
passes through unchanged, live, and in full, including what a crash writes and the exit code."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from study.quiet import LineFilter, is_startup_line

ROOT = Path(__file__).resolve().parents[1]

# As TensorFlow 2.21 printed them here (tensorflow-cpu, and the `tensorflow` wheel without NVIDIA's driver).
ABSL_WARNING = b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
ONEDNN = (b"I0000 00:00:1796063872.661172    5205 port.cc:153] oneDNN custom operations are on. You may see "
          b"slightly different numerical results due to floating-point round-off errors from different computation "
          b"orders. To turn them off, set the environment variable `TF_ENABLE_ONEDNN_OPTS=0`.")
STARTUP = [
    ABSL_WARNING,
    ONEDNN,
    b"I0000 00:00:1796064201.633364    8470 cpu_feature_guard.cc:227] This TensorFlow binary is optimized to use "
    b"available CPU instructions in performance-critical operations.",
    b"To enable the following instructions: AVX2 AVX512F AVX512_VNNI AVX512_BF16 AVX512_FP16 AVX_VNNI FMA, in other "
    b"operations, rebuild TensorFlow with the appropriate compiler flags.",
    b"I0000 00:00:1796064201.571946    8470 cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will "
    b"not be used.",
    b"E0000 00:00:1796064203.585059    8470 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: Failed "
    b"call to cuInit: UNKNOWN ERROR (303)",
    b"E0000 00:00:1721234567.123456   12345 cuda_dnn.cc:8310] Unable to register cuDNN factory: Attempting to "
    b"register factory for plugin cuDNN when one has already been registered",
    b"E0000 00:00:1721234567.123456   12345 computation_placer.cc:177] computation placer already registered. "
    b"Please check linkage and avoid linking the same target more than once.",
]
KEPT = [
    b"lenet-study: error: nope.yaml: cannot read the space file",
    b"E0000 00:00:1796064203.585059    8470 cuda_platform.cc:52] failed call to cuInit: CUDA_ERROR_NO_DEVICE",
    b"W0000 00:00:1796064203.585059    8470 gpu_device.cc:2344] Cannot dlopen some GPU libraries.",
    b"F0000 00:00:1796064203.585059    8470 op_kernel.cc:1] Check failed: something",
    b"note: " + ONEDNN,  # not at the start of the line: not TensorFlow's line
    b"  File \"study/cli.py\", line 245, in main",
]


def test_known_start_up_lines_are_recognised_and_others_are_not():
    assert [line for line in STARTUP if not is_startup_line(line)] == []
    assert [line for line in KEPT if is_startup_line(line)] == []
    assert is_startup_line(ONEDNN + b"\r")  # written through a terminal's line discipline


def test_the_filter_drops_known_lines_and_keeps_the_rest_in_order():
    lines = LineFilter()
    assert lines.feed(ABSL_WARNING + b"\nepoch 1\n" + ONEDNN + b"\nprogress 3/9") == b"epoch 1\n"
    assert lines.holding
    assert lines.flush() == b"progress 3/9"  # a partial last line is kept (written after HOLD_S)
    # The rest of a line already partly written passes through, even if it looks like a start-up line.
    assert lines.feed(b"\r" + ABSL_WARNING + b"\n" + ABSL_WARNING + b"\n") == b"\r" + ABSL_WARNING + b"\n"
    # A start-up line that arrives in pieces is still dropped.
    assert lines.feed(ONEDNN[:40]) == b"" and lines.feed(ONEDNN[40:] + b"\nlast") == b""
    assert lines.flush() == b"last" and lines.flush() == b""


def _python(code: str, *args, timeout=60, **kwargs):
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    return subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, env=env, capture_output=True,
                          timeout=timeout, **kwargs)


def _cli(*args, timeout=180):
    return _python("import sys; from study.cli import main; sys.exit(main(sys.argv[1:]))", *args, timeout=timeout)


@pytest.mark.slow
def test_a_command_that_builds_a_model_prints_no_start_up_lines():
    result = _cli("variants", "small-kernel")
    assert result.returncode == 0, result.stderr.decode()
    assert b"small-kernel: " in result.stdout and b"Total params: 56,930" in result.stdout
    err = result.stderr.decode()
    assert "absl::InitializeLog" not in err and "oneDNN" not in err and "port.cc" not in err, err


def test_verbose_shows_them():
    """-v passes TensorFlow's start-up lines through. Which lines TensorFlow prints depends on the CPU (the oneDNN
    notice only where oneDNN is on by default, e.g. with AVX-512), so the command writes them itself, as
    TensorFlow would, and the test holds on any machine."""
    startup = b"\n".join(STARTUP) + b"\n"
    code = ("import os, sys, study.cli as c\n"
            f"def loud(args):\n    os.write(2, {startup!r})\n    print('ran')\n    return 0\n"
            "c.cmd_space = loud\nsys.exit(c.main(sys.argv[1:]))")
    verbose = _python(code, "-v", "space", "x")
    assert verbose.returncode == 0 and verbose.stdout == b"ran\n", verbose.stderr.decode()
    assert all(line in verbose.stderr.splitlines() for line in STARTUP), verbose.stderr.decode()
    quiet = _python(code, "space", "x")
    assert quiet.returncode == 0 and quiet.stdout == b"ran\n"
    assert not any(line in quiet.stderr.splitlines() for line in STARTUP), quiet.stderr.decode()


def test_a_user_error_and_a_traceback_get_through_with_their_exit_codes():
    result = _cli("space", "nope.yaml")
    assert result.returncode == 2
    assert result.stderr.decode().splitlines() == [
        "lenet-study: error: nope.yaml: cannot read the space file (No such file or directory)"]
    crash = _python("import sys, study.cli as c\n"
                    "def boom(args):\n    import tensorflow\n    raise RuntimeError('boom from inside')\n"
                    "c.cmd_space = boom\nsys.exit(c.main(['space', 'x']))")
    err = crash.stderr.decode()
    assert crash.returncode == 1 and err.startswith("Traceback")
    assert err.rstrip().endswith("RuntimeError: boom from inside")
    assert "oneDNN" not in err


def test_what_a_dying_process_writes_last_still_gets_out():
    """A fatal error from C++ is written, then the process ends at once: no thread of its own could pass it on."""
    onednn = ONEDNN + b"\n"
    result = _python("import os\nfrom study.quiet import QuietStartup\nQuietStartup().start()\n"
                     f"os.write(2, {onednn!r})\n"
                     "os.write(2, b'F0000 00:00:1.5 1 op_kernel.cc:1] Check failed: x\\n')\nos._exit(3)")
    assert result.returncode == 3
    assert result.stderr == b"F0000 00:00:1.5 1 op_kernel.cc:1] Check failed: x\n"


@pytest.mark.slow
def test_a_partial_line_shows_up_before_its_end():
    """Progress written without a newline appears while the process still runs."""
    code = ("import os, sys, time\nfrom study.quiet import QuietStartup\nQuietStartup().start()\n"
            "os.write(2, b'progress 1/3')\ntime.sleep(5)\nos.write(2, b' done\\n')")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stderr=subprocess.PIPE)
    try:
        start = time.monotonic()
        first = os.read(proc.stderr.fileno(), 100)
        assert first == b"progress 1/3" and time.monotonic() - start < 4
        assert proc.stderr.read() == b" done\n"
    finally:
        proc.kill()
        proc.wait()
