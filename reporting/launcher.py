"""Running a script as a process of its own, logging to a file: forked from the report (Linux) or
a fresh interpreter (elsewhere, where forking a process that has loaded torch is not safe).

Each run gets a process group of its own, so that a Ctrl-C at the terminal reaches only the
report, which then stops each run once (`Launcher.stop`). On Linux each run is also killed
when the report dies, even by SIGKILL (PR_SET_PDEATHSIG), so no run outlives it.

Two things make forked runs start fast, both optional and explicit:

- `Launcher.warm_up(scripts)` imports the scripts (and torch, matplotlib) and draws a figure
  here, once, instead of in every run;
- `SharedSplits`, passed as `loader`, holds the data split loaded here once; a forked run gets
  it through its script's `main(argv, loader=...)` when the script's main takes a `loader` (the
  hook: the script reads its data with `loader(path, bias=...)` where it would call
  utils.load_dataset). A script without the hook loads its own.
"""
import ctypes
import inspect
import io
import os
import signal
import subprocess
import sys
import threading
import traceback
from pathlib import Path

import utils
from runkit import errors

ROOT = Path(__file__).resolve().parent.parent
FORK = sys.platform.startswith("linux")
KILL = getattr(signal, "SIGKILL", signal.SIGTERM)  # Windows has no SIGKILL
EXIT_INTERRUPTED = errors.EXIT_INTERRUPTED
_PR_SET_PDEATHSIG = 1


class NotStarted(Exception):
    """A run asked to start after `stop`."""


def _libc_prctl():
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_PRCTL = _libc_prctl()


def die_with_parent(parent_pid):
    """In a child process: be killed when the parent dies (Linux), and exit now if it already
    has (it may have died before the request)."""
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, int(KILL), 0, 0, 0)
    if os.getppid() != parent_pid:
        os._exit(EXIT_INTERRUPTED)


class SharedSplits:
    """A loader with utils.load_dataset's signature that returns the split of `path` loaded
    here once, with and without the bias column (each call gets its own dict; the arrays are
    shared, copy-on-write in a forked run); any other file it loads as utils does."""

    def __init__(self, path, plain=None):
        """`plain`: the split of `path` without the bias column, if already loaded."""
        self.path = str(Path(path).resolve())
        plain = utils.load_dataset(path) if plain is None else plain
        self.splits = {False: plain,
                       True: {name: (utils.with_bias_column(X), y)
                              for name, (X, y) in plain.items()}}

    def __call__(self, path=utils.DEFAULT_DATA_PATH, bias=False):
        if str(Path(path).resolve()) == self.path:
            return dict(self.splits[bool(bias)])
        return utils.load_dataset(path, bias=bias)


def takes_loader(main):
    """Whether a script's `main` has the data hook: a `loader` parameter."""
    try:
        return "loader" in inspect.signature(main).parameters
    except (TypeError, ValueError):
        return False


class Launcher:
    """Starts scripts of `root` as processes and stops them.

    threads: the torch threads of each forked run; fork: fork runs from this process (Linux)
    rather than start fresh interpreters; loader: what a forked run's script reads its data
    with, if its main takes one (see SharedSplits); load_script(name): the script of `root`
    as a module, to fork.
    """

    def __init__(self, root=ROOT, threads=1, fork=FORK, loader=None,
                 load_script=utils.load_script):
        self.root, self.threads, self.fork, self.loader = Path(root), threads, fork, loader
        self.load_script = load_script
        self._import_lock = threading.Lock()
        self._modules = {}
        # the running children ({pid: Popen or None}), so that `stop` can reach them
        self._children_lock = threading.Lock()
        self._children = {}
        self._stopping = False

    def warm_up(self, scripts):
        """Import `scripts` here, with torch, torch._dynamo (which torch.optim imports on first
        use) and matplotlib, and draw one figure in both formats (which loads the fonts and
        renderers), so that each forked run finds them loaded. Only useful when forking. What
        fails here is left to the runs, which then fail and log why."""
        try:
            import matplotlib
            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
            import torch._dynamo  # noqa: F401
            fig = plt.figure(figsize=(1, 1))
            fig.gca().plot([0, 1], label="warm-up")
            for fmt in ("pdf", "png"):
                fig.savefig(io.BytesIO(), format=fmt)
            plt.close(fig)
        except Exception:
            pass
        for script in scripts:
            try:
                self._script(script)
            except Exception:
                pass

    def takes_loader(self, scripts):
        """Whether any of `scripts` (that imports) has the data hook."""
        found = False
        for script in scripts:
            try:
                found |= takes_loader(self._script(script).main)
            except Exception:  # its runs will fail and say why
                pass
        return found

    def launch(self, script, argv, log):
        """Run `python script *argv` with its output appended to the open file `log`; returns
        its exit code. Raises NotStarted after `stop`."""
        if self.fork:
            return self._fork(script, argv, log.fileno())
        return self._spawn(script, argv, log)

    def _script(self, script):
        """The imported script, loaded once in this process (a failed import is kept: a second
        load_script would return the half-made module)."""
        with self._import_lock:
            if script not in self._modules:
                try:
                    self._modules[script] = self.load_script(script)
                except Exception as err:
                    self._modules[script] = err
            module = self._modules[script]
        if isinstance(module, BaseException):
            raise module
        return module

    def _spawn(self, script, argv, out):
        env = dict(os.environ, OMP_NUM_THREADS=str(self.threads),
                   OPENBLAS_NUM_THREADS=str(self.threads),
                   MKL_NUM_THREADS=str(self.threads), PYTHONUNBUFFERED="1")
        group = ({"start_new_session": True} if hasattr(os, "killpg")
                 else {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP})
        if _PRCTL is not None:
            parent = os.getpid()
            group["preexec_fn"] = lambda: die_with_parent(parent)
        with self._children_lock:  # `stop` either comes before (no start) or sees this child
            if self._stopping:
                raise NotStarted
            process = subprocess.Popen([sys.executable, str(self.root / script), *argv],
                                       stdout=out, stderr=subprocess.STDOUT, env=env,
                                       stdin=subprocess.DEVNULL, cwd=self.root, **group)
            self._children[process.pid] = process
        try:
            return process.wait()
        finally:
            with self._children_lock:
                del self._children[process.pid]

    def _fork(self, script, argv, log_fd):
        """Run `script`'s main(argv) in a forked child of this process; returns its exit code.

        Each child is a fresh copy of the parent: no state passes from one run to the next."""
        module = self._script(script)
        parent = os.getpid()
        with self._children_lock:
            if self._stopping:
                raise NotStarted
            # signals are held back until the child has its handlers: Python's after-fork
            # clean-up would drop a SIGINT that came earlier, and the run would go on
            mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM,
                                                             signal.SIGHUP})
            try:
                pid = os.fork()
                if pid == 0:
                    self._child(module, argv, log_fd, mask, parent)  # never returns
            finally:
                signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            try:
                os.setpgid(pid, pid)  # as in the child: whichever runs first makes the group
            except OSError:
                pass  # the child already made it, or has already exited
            self._children[pid] = None
        try:
            _, status = os.waitpid(pid, 0)
        finally:
            with self._children_lock:
                del self._children[pid]
        return os.waitstatus_to_exitcode(status)

    def _child(self, module, argv, log_fd, mask, parent):
        """The forked child of `_fork`: run module.main(argv), log to `log_fd`, exit."""
        code = 1
        try:
            os.setpgid(0, 0)
            die_with_parent(parent)
            os.dup2(log_fd, 1)
            os.dup2(log_fd, 2)
            sys.stdout = open(1, "w", buffering=1, closefd=False)
            sys.stderr = open(2, "w", buffering=1, closefd=False)
            # the report's handlers are not the run's: Ctrl-C from here on, once whatever it
            # prints goes to the log; TERM and HUP end it as they end a script
            signal.signal(signal.SIGINT, signal.default_int_handler)
            for signum in (signal.SIGTERM, signal.SIGHUP):
                signal.signal(signum, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            if "torch" in sys.modules:
                sys.modules["torch"].set_num_threads(self.threads)
            if self.loader is not None and takes_loader(module.main):
                module.main(argv, loader=self.loader)
            else:
                module.main(argv)
            code = 0
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else (exit_.code is not None)
            if isinstance(exit_.code, str):
                print(exit_.code, file=sys.stderr)
        except KeyboardInterrupt:
            print("interrupted (the report was stopped)", file=sys.stderr)
            code = EXIT_INTERRUPTED
        except BaseException:
            traceback.print_exc()
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code)

    def stop(self, kill=False):
        """Ask every running run to stop (SIGINT: it cleans up and exits), or kill it; start no
        more. Each run's process group gets the signal, so its helper processes do too."""
        with self._children_lock:
            self._stopping = True
            for pid, process in self._children.items():
                self._signal(pid, process, KILL if kill else signal.SIGINT)

    @staticmethod
    def _signal(pid, process, signum):
        try:
            if hasattr(os, "killpg"):
                os.killpg(pid, signum)
            elif process is not None:  # Windows: no process groups to signal
                process.terminate()
        except (ProcessLookupError, PermissionError):
            pass  # already gone
