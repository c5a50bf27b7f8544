"""What one report.py process holds while it works: its output (a Console, which survives a
closed or full stdout), the lock on its output folder (one report per folder at a time), and
its handling of TERM and HUP (as Ctrl-C)."""
import contextlib
import errno
import os
import signal
import sys

from runkit.errors import ForgivingStream

try:
    import fcntl
except ImportError:  # Windows: no flock, no lock
    fcntl = None


class Console:
    """Progress lines on stdout and warnings on stderr, each through a runkit ForgivingStream:
    a write that fails (a closed pipe, a full disk) does not stop the work; that stream is
    written no more, and `stdout.error` keeps the failure."""

    def __init__(self):
        self.stdout = ForgivingStream(sys.stdout)
        self.stderr = ForgivingStream(sys.stderr)

    def say(self, text):
        """Print a line at once, also when stdout is a pipe or a file."""
        print(text, file=self.stdout, flush=True)

    def warn(self, text):
        print(text, file=self.stderr, flush=True)


class Busy(Exception):
    """Another process holds the output folder's lock."""


@contextlib.contextmanager
def folder_lock(folder):
    """Hold an exclusive lock on `folder` (flock on the folder itself, which the kernel
    releases when the process ends, however it ends); raise Busy at once if another process
    holds it. Where there is no flock (Windows, some network file systems), no lock."""
    if fcntl is None:
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise Busy(str(folder)) from None
            # a file system without flock (ENOLCK, EOPNOTSUPP): better unlocked than no report
        yield
    finally:
        os.close(fd)


class Terminated(KeyboardInterrupt):
    """TERM or HUP, handled as Ctrl-C is (`signum` says which)."""

    def __init__(self, signum):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP")
                     if hasattr(signal, name))


def _raise_terminated(signum, frame):
    raise Terminated(signum)


@contextlib.contextmanager
def stop_signals():
    """TERM and HUP raise Terminated (a KeyboardInterrupt) in the main thread while inside;
    the handlers before are restored after. Elsewhere than in the main thread, nothing."""
    import threading
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = {signum: signal.signal(signum, _raise_terminated) for signum in STOP_SIGNALS}
    try:
        yield
    finally:
        for signum, handler in before.items():
            signal.signal(signum, handler)


def exit_code(stop):
    """The exit code of a process stopped by the KeyboardInterrupt `stop`: 128 + the signal."""
    return 128 + int(getattr(stop, "signum", signal.SIGINT))
