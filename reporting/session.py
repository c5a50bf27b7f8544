"""What one report.py process holds while it works: its output (a Console, which survives a
closed or full stdout), the lock on its output folder (one report per folder at a time), and
its handling of TERM and HUP (as Ctrl-C)."""
import contextlib
import errno
import io
import os
import signal
import sys

try:
    import fcntl
except ImportError:  # Windows: no flock, no lock
    fcntl = None


class Console:
    """Progress lines on stdout and warnings on stderr. A write that fails (a closed pipe, a
    full disk) does not stop the work: that stream is written no more, and `failed` keeps the
    first failure on stdout."""

    def __init__(self):
        self.failed = None
        self._quiet = set()

    def say(self, text):
        """Print a line at once, also when stdout is a pipe or a file."""
        error = self._write("stdout", text)
        if error is not None and self.failed is None:
            self.failed = error

    def warn(self, text):
        self._write("stderr", text)

    @property
    def pipe_closed(self):
        return isinstance(self.failed, BrokenPipeError)

    def _write(self, name, text):
        if name in self._quiet:
            return None
        stream = getattr(sys, name)
        try:
            print(text, file=stream, flush=True)
            return None
        except OSError as err:
            self._quiet.add(name)
            _discard(stream)
            return err


def _discard(stream):
    """Point `stream`'s file descriptor at the null device, so that what is still buffered,
    flushed at exit, goes nowhere instead of failing again."""
    with contextlib.suppress(OSError, ValueError, AttributeError, io.UnsupportedOperation):
        null = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(null, stream.fileno())
        finally:
            os.close(null)


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
