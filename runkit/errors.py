"""Errors and exit: what ends a run before or after training, and how a script ends.

Each error's message is one line that says why and what to do; `fail` prints it as `error: ...`
and exits non-zero, without a traceback.
"""
import contextlib
import os
import sys

import utils

EXIT_INTERRUPTED = 130  # the shell's code for a process stopped by Ctrl-C (SIGINT)


class RunError(Exception):
    """A run cannot go on; the message, one line, says why and what to do."""


class OutputError(RunError):
    """An output folder or file cannot be written; the message says which and why."""


class SizeError(RunError):
    """A model too large for this machine's memory."""


# What a script catches before training and turns into one `error:` line.
RUN_ERRORS = (RunError, utils.DataError)


def fail(message, code=1):
    """Print `error: message` to stderr and exit non-zero, without a traceback."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(code)


class ForgivingStream:
    """An output stream that survives its reader: a closed pipe (`| head -1`) or a full device
    (`> /dev/full`) stops the printing, not the work. The first failure is kept in `error`;
    the descriptor then points at /dev/null, so the text still buffered is not written again
    at exit."""

    def __init__(self, stream):
        self._stream, self.error = stream, None

    def write(self, text):
        if self.error is None:
            try:
                return self._stream.write(text)
            except OSError as err:
                self._failed(err)
        return len(text)

    def flush(self):
        if self.error is None:
            try:
                self._stream.flush()
            except OSError as err:
                self._failed(err)

    def _failed(self, err):
        self.error = err
        # ValueError, AttributeError: no descriptor (a test's capture)
        with contextlib.suppress(OSError, ValueError, AttributeError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(devnull, self._stream.fileno())
            finally:
                os.close(devnull)

    def __getattr__(self, name):
        return getattr(self._stream, name)


def after_unwritable_stdout(stdout, code, went_on, stderr=None):
    """The exit code of a command whose ForgivingStream `stdout` may have failed: a closed pipe
    changes nothing (it ends quietly, as command-line tools do); any other failure prints one
    `error:` line on `stderr` (default sys.stderr), ending with `went_on` when the work
    succeeded, and makes the code 1 if it was 0."""
    if stdout.error is None or isinstance(stdout.error, BrokenPipeError):
        return code
    done = f"; {went_on}" if code == 0 else ""
    print(f"error: cannot write to standard output ({stdout.error.strerror or stdout.error})"
          f"{done}", file=stderr or sys.stderr)
    return code or 1


def run_command(main):
    """A script's entry point: exit with main()'s return value. Ctrl-C ends the script with
    `interrupted` and exit code 130 instead of a traceback (the scripts' clean-up, such as
    removing temporary files, has run on the way out). A standard output that cannot be
    written does not stop the run: a closed pipe ends it quietly, any other failure with one
    `error:` line and exit code 1, after the run's files are saved."""
    stdout = sys.stdout = ForgivingStream(sys.stdout)
    try:
        code = main()
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        code = EXIT_INTERRUPTED
    code = code if isinstance(code, int) else 0
    stdout.flush()
    if code == 0:  # an interrupted run's one line is `interrupted`
        code = after_unwritable_stdout(stdout, code, "the run went on and its files are saved")
    sys.exit(code)


def check_mlp_size(data, hidden_size, layers, itemsize):
    """Raise SizeError when an MLP with `layers` hidden layers of `hidden_size` units on `data`
    cannot fit in this machine's memory (where it is known): its weights, with a gradient and
    a working copy of each, and the hidden activations of an evaluation of the training set."""
    n_examples, n_features = data["train"][0].shape
    sizes = [n_features] + [hidden_size] * layers + [utils.class_count(data)]
    n_weights = sum(a * b for a, b in zip(sizes, sizes[1:]))
    needed = itemsize * (3 * n_weights + 2 * n_examples * hidden_size)
    try:
        available = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # not on this system (Windows)
        return
    if needed > available:
        raise SizeError(f"-hidden_size {hidden_size} needs about {_readable_bytes(needed)} for "
                        f"its weights and activations; this machine has "
                        f"{_readable_bytes(available)} of memory")


def _readable_bytes(n):
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if n < 1000 or unit == "PB":
            return f"{n:.3g} {unit}"
        n /= 1000
