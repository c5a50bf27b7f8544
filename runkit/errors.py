"""Errors and exit: what ends a run before or after training, and how a script ends.

Each error's message is one line that says why and what to do; `fail` prints it as `error: ...`
and exits non-zero, without a traceback.
"""
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



def run_command(main):
    """A script's entry point: exit with main()'s return value; Ctrl-C ends the script with
    `interrupted` and exit code 130 instead of a traceback (the scripts' clean-up, such as
    removing temporary files and stopping helper processes, has run on the way out)."""
    try:
        code = main()
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        code = EXIT_INTERRUPTED
    sys.exit(code if isinstance(code, int) else 0)



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
