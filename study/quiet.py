"""Keep TensorFlow's start-up lines out of the CLI's output; every other byte passes through unchanged.

TensorFlow's C++ libraries log a few lines through absl before absl is initialised,
which ignores TF_CPP_MIN_LOG_LEVEL (measured with TensorFlow 2.21: the oneDNN notice
and absl's "before InitializeLog" warning, each printed twice, once per library that
loads; the `tensorflow` wheel adds two CUDA lines on a machine without NVIDIA's driver).
TF_ENABLE_ONEDNN_OPTS=0 would silence the first by changing the numerics, so instead
`quiet_startup()` (cli.main, unless -v) routes file descriptor 2 through a pipe to a
small helper process that drops the complete lines matching STARTUP_LINES and writes
everything else at once. A partial line waits at most HOLD_S; the rest of that line then
passes through as it comes, so progress bars stay live. At exit the descriptor is
restored and the helper, at end-of-file, writes what it holds and exits.

A process rather than a thread: what a crash writes just before the process dies (a
fatal "Check failed", an abort, os._exit) still reaches the terminal, and a C library
writing while it holds the GIL can never wait on the filter.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import signal
import sys

HOLD_S = 0.05  # how long a partial line waits for its end before it is written as it is
JOIN_S = 2.0  # at exit, how long to wait for writers that still hold the pipe (child processes)

# absl's prefix: severity, MMDD (0000 before absl is initialised), time, thread id, file:line].
_ABSL = rb"[IWEF]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ "
STARTUP_LINES = tuple(re.compile(pattern) for pattern in (
    rb"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR",
    _ABSL + rb"port\.cc:\d+\] oneDNN custom operations are on\. .*",
    _ABSL + rb"cpu_feature_guard\.cc:\d+\] This TensorFlow binary is optimized to use available CPU instructions.*",
    rb"To enable the following instructions: .*rebuild TensorFlow with the appropriate compiler flags\.",
    # The `tensorflow` wheel on a machine without NVIDIA's driver (the study's first line says "devices: CPU").
    _ABSL + rb"cudart_stub\.cc:\d+\] Could not find cuda drivers on your machine, GPU will not be used\.",
    _ABSL + rb"cuda_platform\.cc:\d+\] failed call to cuInit: .*\(303\)",
    # CUDA builds register their plugins twice.
    _ABSL + rb"cuda_(dnn|fft|blas)\.cc:\d+\] Unable to register cu\w+ factory: Attempting to register factory "
            rb"for plugin cu\w+ when one has already been registered",
    _ABSL + rb"computation_placer\.cc:\d+\] computation placer already registered\. .*",
))


# Ray prints what its actors write after their name and pid, "(worker0 pid=4242)" or "(worker0 pid=4242,
# ip=10.0.0.2)", maybe in colour (`search --ray`): their TensorFlow start-up lines are the same lines.
_RAY_PREFIX = re.compile(rb"(?:\x1b\[\d+m)?\([^()]*pid=\d+(?:, ip=[^()]*)?\)(?:\x1b\[0m)? ")


def is_startup_line(line: bytes) -> bool:
    """A complete line (without its newline) that is one of TensorFlow's known start-up lines."""
    line = line.rstrip(b"\r")
    prefix = _RAY_PREFIX.match(line)
    if prefix:
        line = line[prefix.end():]
    return any(pattern.fullmatch(line) for pattern in STARTUP_LINES)


class LineFilter:
    """Bytes in, bytes out: complete start-up lines dropped, everything else kept in order.

    `feed` returns what can be written now; a partial line stays until its newline or `flush`.
    Once part of a line was flushed, the rest of that line is passed through unexamined."""

    def __init__(self):
        self.partial = b""
        self.passing = False  # the current line was already partly written: never drop its rest

    @property
    def holding(self) -> bool:
        return bool(self.partial)

    def feed(self, data: bytes) -> bytes:
        out = []
        *lines, self.partial = (self.partial + data).split(b"\n")
        for line in lines:
            if self.passing or not is_startup_line(line):
                out.append(line + b"\n")
            self.passing = False
        if self.passing and self.partial:
            out.append(self.partial)
            self.partial = b""
        return b"".join(out)

    def flush(self) -> bytes:
        """The held partial line, to be written now; the rest of its line will pass through."""
        out, self.partial = self.partial, b""
        if out:
            self.passing = True
        return out


def _write_all(fd: int, data: bytes) -> None:
    while data:
        try:
            data = data[os.write(fd, data):]
        except InterruptedError:
            continue
        except OSError:  # the reader went away (a closed pipe): drop it, as writing would have failed anyway
            return


def pump(read_fd: int = 0, out_fd: int = 1) -> None:
    """Copy read_fd to out_fd through LineFilter until end-of-file (the helper process's loop)."""
    lines = LineFilter()
    try:
        while True:
            ready, _, _ = select.select([read_fd], [], [], HOLD_S if lines.holding else None)
            if not ready:
                _write_all(out_fd, lines.flush())
                continue
            data = os.read(read_fd, 65536)
            if not data:
                break
            _write_all(out_fd, lines.feed(data))
    finally:
        _write_all(out_fd, lines.flush())
        # Whatever went wrong, never lose output or leave writers blocked on a full pipe.
        with contextlib.suppress(OSError):
            while data := os.read(read_fd, 65536):
                _write_all(out_fd, data)


class QuietStartup:
    """File descriptor 2 through the helper process (`pump`) until `stop()`; see the module's docstring."""

    def __init__(self, fd: int = 2):
        self.fd = fd
        self.saved: int | None = None
        self.helper = None

    def start(self) -> "QuietStartup":
        import subprocess

        if os.name != "posix":
            return self
        try:
            saved = os.dup(self.fd)
        except OSError:  # no stderr at all: nothing to filter
            return self
        read_fd, write_fd = os.pipe()
        try:
            # -I -S: no environment, no site-packages; this file needs the standard library only.
            self.helper = subprocess.Popen([sys.executable, "-I", "-S", os.path.abspath(__file__)],
                                           stdin=read_fd, stdout=saved, stderr=saved)
        except OSError:
            for fd in (read_fd, write_fd, saved):
                os.close(fd)
            return self
        os.close(read_fd)
        with contextlib.suppress(AttributeError, OSError):  # room for bursts: 1 MiB instead of 64 KiB
            import fcntl

            fcntl.fcntl(write_fd, fcntl.F_SETPIPE_SZ, 1 << 20)
        self._flush_python()
        os.dup2(write_fd, self.fd)
        os.close(write_fd)
        self.saved = saved
        return self

    def stop(self) -> None:
        """Restore the descriptor; the helper writes what it still holds and exits."""
        if self.saved is None:
            return
        import subprocess

        self._flush_python()
        os.dup2(self.saved, self.fd)  # closes this process's write end: the helper sees end-of-file
        os.close(self.saved)
        self.saved = None
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.helper.wait(JOIN_S)  # longer only while a child process of ours still holds the pipe

    @staticmethod
    def _flush_python() -> None:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()


@contextlib.contextmanager
def quiet_startup(enabled: bool = True):
    """TensorFlow's start-up lines left out of stderr for the length of the block (nothing when not enabled)."""
    quiet = QuietStartup().start() if enabled else None
    try:
        yield
    finally:
        if quiet is not None:
            quiet.stop()


if __name__ == "__main__":  # the helper: stdin is the pipe, stdout the original stderr
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: keep writing until the CLI ends
    pump()
