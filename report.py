"""Regenerate every figure and table of the report: python report.py [--seeds K]

Runs each experiment with the project's own scripts (in parallel, one process per run), reuses
finished runs from earlier calls (a cache keyed by the run's flags, seed, the code and the data),
and writes under `-output_dir` (default report/):

    runs/<label>/        each run's figures, record (JSON) and log
    figures/<sweep>.*    one comparison figure per sweep: dev accuracy and training loss per epoch
                         (with --seeds K > 1: each configuration's mean over the seeds, and a
                         band from their min to their max)
    results.md           one table per question, the course's numbers beside ours, the best runs
    results.tex          the same tables as LaTeX tabulars (booktabs), to \\input in a report

--seeds K runs every run with the seeds 42 (the course's), 1, 2, ..., K-1; the tables then add
each configuration's mean ± sd (min-max) over the seeds, and the best of a sweep is chosen on
the mean dev accuracy.

Ctrl-C stops the running runs and exits with 130; finished runs are kept, so the same command
resumes.
"""
import argparse
import ast
import hashlib
import io
import json
import math
import os
import shlex
import signal
import statistics
import subprocess
import sys
import threading
import time
import traceback
import warnings
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import utils
from runkit import errors, figures, files, flags, records

ROOT = Path(__file__).resolve().parent
# Linux: runs are forked from this process (fast start, see Runner._fork); elsewhere, where
# forking a process that has loaded torch is not safe, each run is a fresh interpreter.
FORK = sys.platform.startswith("linux")

COURSE_EPOCHS = 20
COURSE_SEED = 42  # the scripts' default: a run at this seed needs no -seed flag
DEFAULT_OUTPUT_DIR = Path("report")
# After Ctrl-C, how long a run gets to stop on its own (and clean up) before it is killed.
STOP_GRACE_SECONDS = 10
EXIT_INTERRUPTED = errors.EXIT_INTERRUPTED
KILL = getattr(signal, "SIGKILL", signal.SIGTERM)  # Windows has no SIGKILL


class NotStarted(Exception):
    """A run asked to start after Ctrl-C."""


class Interrupted(Exception):
    """Ctrl-C during the runs, once the running ones are stopped: `done` of `total` finished."""

    def __init__(self, done, total):
        super().__init__(f"{done} of {total} runs finished")
        self.done, self.total = done, total


@dataclass(frozen=True)
class Run:
    """One invocation of a script: `python SCRIPT *args` (plus the report's common flags)."""
    script: str
    args: tuple

    @property
    def model(self):
        return self.args[0]

    @property
    def flags(self):
        return dict(zip(self.args[1::2], self.args[2::2]))

    @property
    def description(self):
        flags = " ".join(f"{k} {v}" for k, v in self.flags.items())
        return f"{self.model} {flags}".strip()

    @property
    def label(self):
        tag = self.script.removeprefix("hw1-").removesuffix(".py")
        parts = [tag, self.model] + [f"{k.lstrip('-')}={v}" for k, v in self.flags.items()]
        return "-".join(parts)

    def with_flags(self, **flags):
        merged = dict(self.flags)
        merged.update({f"-{k}": str(v) for k, v in flags.items()})
        return Run(self.script, (self.model, *[x for kv in merged.items() for x in kv]))

    @property
    def seed(self):
        return int(self.flags.get("-seed", COURSE_SEED))

    def with_seed(self, seed):
        """This configuration with `seed`. The course's seed is left implicit: such a run is
        the plain run of the script (same label, same cache key)."""
        flags = {k: v for k, v in self.flags.items() if k != "-seed"}
        run = Run(self.script, (self.model, *[x for kv in flags.items() for x in kv]))
        return run if seed == COURSE_SEED else run.with_flags(seed=seed)

    @property
    def config(self):
        """The configuration, without the seed: (script, model, flags in any order)."""
        return self.script, self.model, frozenset(self.with_seed(COURSE_SEED).flags.items())


def seed_list(count):
    """The seeds of `--seeds count`: the course's 42, then 1, 2, 3, ..."""
    return [COURSE_SEED, *[s for s in range(1, count + 1) if s != COURSE_SEED][:count - 1]]


@dataclass
class Sweep:
    """A group of runs compared in one table and one figure."""
    key: str
    title: str
    runs: list = field(default_factory=list)
    pick_best: bool = True
    after: str = None        # key of the sweep whose best run this one builds on
    build: object = None     # callable(best Run of `after`) -> list of Runs
    words: str = ""          # how to state the best in results.md
    weight_norm: bool = False  # add a panel of ||W||_F per epoch to the sweep's figure


def q1(model, **flags):
    return Run("hw1-q1.py", (model,)).with_flags(**flags)


def q2(model, **flags):
    return Run("hw1-q2.py", (model,)).with_flags(**flags)


# The course's published results (final dev, test accuracy), 2022-23, after 20 epochs at seed
# 42, with the sweep each belongs to.
COURSE = [
    ("q1", q1("perceptron"), 0.7236, 0.6193),
    ("q1", q1("logistic_regression", learning_rate="0.001"), 0.8251, 0.7028),
    ("q1", q1("mlp", hidden_size=200, learning_rate="0.001"), 0.9373, 0.8610),
    ("q2.1", q2("logistic_regression", batch_size=1, learning_rate="0.001"), 0.8256, 0.7019),
    ("q2.1", q2("logistic_regression", batch_size=1, learning_rate="0.01"), 0.8033, 0.6806),
    ("q2.1", q2("logistic_regression", batch_size=1, learning_rate="0.1"), 0.7516, 0.6155),
    ("q2.2", q2("mlp", hidden_size=200), 0.9492, 0.8813),
    ("q2.3", q2("mlp", hidden_size=200, layers=2), 0.9561, 0.8939),
]


# The flags' defaults a configuration may or may not spell out, for matching it to the course's.
SCRIPT_DEFAULTS = {
    "hw1-q1.py": {"-learning_rate": "0.001", "-hidden_size": "200", "-layers": "1"},
    "hw1-q2.py": {"-learning_rate": "0.01", "-hidden_size": "100", "-layers": "1",
                  "-dropout": "0.3", "-activation": "relu", "-optimizer": "sgd"},
}


def plan(extras):
    """The report's sweeps, in order. `extras` adds the other editions' experiments."""
    ffn = q2("mlp")
    sweeps = [
        Sweep("q1", "Q1: numpy models", [q1("perceptron"), q1("logistic_regression"), q1("mlp")],
              pick_best=False),
        Sweep("q2.1", "Q2.1: logistic regression, batch 1, learning rate",
              [q2("logistic_regression", batch_size=1, learning_rate=lr)
               for lr in ("0.001", "0.01", "0.1")],
              words="learning rate"),
        Sweep("q2.2", "Q2.2: feed-forward network, one hyperparameter varied at a time",
              [ffn, ffn.with_flags(learning_rate="0.001"), ffn.with_flags(learning_rate="0.1"),
               ffn.with_flags(hidden_size=200), ffn.with_flags(dropout="0.5"),
               ffn.with_flags(activation="tanh")],
              words="configuration"),
        Sweep("q2.3", "Q2.3: deeper networks at the best Q2.2 configuration", after="q2.2",
              build=lambda best: [best, best.with_flags(layers=2), best.with_flags(layers=3)],
              words="depth"),
    ]
    if extras:
        sweeps += [
            Sweep("x-l2", "Extra (2024-25): L2 penalty on logistic regression (numpy)",
                  [q1("logistic_regression"), q1("logistic_regression", l2_penalty="0.01")],
                  words="penalty", weight_norm=True),
            Sweep("x-batch", "Extra: FFN batch size (compare the times)",
                  [ffn.with_flags(batch_size=b) for b in (16, 64, 512, 1024)],
                  words="batch size"),
            Sweep("x-momentum", "Extra (2024-25): SGD momentum",
                  [ffn, ffn.with_flags(momentum="0.9")], words="momentum"),
            Sweep("x-l2-dropout", "Extra (2024-25): L2 decay against dropout",
                  [ffn.with_flags(l2_decay="0.0001", dropout="0"), ffn.with_flags(dropout="0.2")],
                  words="regulariser"),
            Sweep("x-adam", "Extra: the adam optimizer",
                  [ffn, ffn.with_flags(optimizer="adam", learning_rate="0.001")],
                  words="optimizer"),
        ]
    return sweeps


# Rough seconds per epoch of each script's models at their defaults, only to start the long
# runs first while none of a configuration has been timed yet (a poor guess costs some idle
# time at the end, nothing else).
ROUGH_EPOCH_SECONDS = {
    ("hw1-q1.py", "perceptron"): 0.4, ("hw1-q1.py", "logistic_regression"): 0.6,
    ("hw1-q1.py", "mlp"): 3.0, ("hw1-q2.py", "logistic_regression"): 1.0,
    ("hw1-q2.py", "mlp"): 0.8,
}
DEFAULT_BATCH_SIZE = {"logistic_regression": 1, "mlp": 16}  # hw1-q2.py's


def rough_seconds(run):
    """A guess of the run's length in seconds: epochs times the model's rough epoch time,
    for a network half fixed and half in proportion to its hidden units times layers, and for
    hw1-q2 in proportion to the batches per epoch."""
    flags = {**SCRIPT_DEFAULTS.get(run.script, {}), **run.flags}
    seconds = ROUGH_EPOCH_SECONDS.get((run.script, run.model), 1.0)
    try:
        epochs = float(flags.get("-epochs", COURSE_EPOCHS))
        if run.model == "mlp":
            default = float(SCRIPT_DEFAULTS[run.script]["-hidden_size"])
            seconds *= 0.5 + 0.5 * float(flags["-hidden_size"]) * float(flags["-layers"]) / default
        if run.script == "hw1-q2.py":
            default = DEFAULT_BATCH_SIZE.get(run.model, 1)
            seconds *= default / float(flags.get("-batch_size", default))
    except (KeyError, ValueError, ZeroDivisionError):  # a flag the guess does not know
        return COURSE_EPOCHS * seconds
    return epochs * seconds


# ----------------------------------------------------------------------------- running

def file_digest(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def local_imports(path, root=None):
    """The Python files under `root` (default: beside this file) that `path` imports, directly
    or not: root/NAME.py for `import NAME`, every file of the package root/NAME/ for `from NAME
    import ...` or `import NAME.sub`."""
    root = ROOT if root is None else root
    found, todo = set(), [Path(path)]
    while todo:
        try:
            tree = ast.parse(todo.pop().read_text())
        except (SyntaxError, ValueError):  # it will fail its runs; its digest is still in the key
            continue
        names = {alias.name.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.Import) for alias in node.names}
        names |= {node.module.split(".")[0] for node in ast.walk(tree)
                  if isinstance(node, ast.ImportFrom) and node.module and not node.level}
        for name in names:
            module, package = Path(root) / f"{name}.py", Path(root) / name
            files = ([module] if module.is_file() else
                     sorted(package.rglob("*.py")) if (package / "__init__.py").is_file() else [])
            for file in files:
                if file not in found:
                    found.add(file)
                    todo.append(file)
    return sorted(found - {Path(path)})


class Runner:
    """Runs scripts in subprocesses, reusing a finished run whose cache key matches."""

    def __init__(self, output_dir, common_args, data_digest, jobs, force, warn=None,
                 datasets=None):
        self.runs_dir = Path(output_dir) / "runs"
        # {(data path, bias): split} loaded here for the forked runs to share (see _preload)
        self.datasets = dict(datasets or {})
        self.warn = warn or (lambda text: print(text, file=sys.stderr, flush=True))
        self.common_args = list(common_args)
        self.jobs = jobs
        self.force = force
        self.threads = max(1, (os.cpu_count() or 1) // jobs)
        scripts = ("hw1-q1.py", "hw1-q2.py")
        code = {name: file_digest(ROOT / name) for name in ("utils.py", *scripts)}
        self.fingerprint = {"code": code, "data": data_digest, "common": self.common_args}
        # the other local code each script runs (such as a package of its own)
        self.imports = {name: {path.relative_to(ROOT).as_posix(): file_digest(path)
                               for path in local_imports(ROOT / name)
                               if path != ROOT / "utils.py"}
                        for name in scripts}
        self._import_lock = threading.Lock()
        self._modules = None
        # the running children ({pid: Popen or None}), so that `stop` can reach them
        self._children_lock = threading.Lock()
        self._children = {}
        self._stopping = False

    def key(self, run):
        payload = dict(self.fingerprint, script=run.script, args=list(run.args),
                       code=self.fingerprint["code"][run.script],
                       utils=self.fingerprint["code"]["utils.py"])
        if self.imports.get(run.script):  # none: the key is that of the flags, code and data
            payload["imports"] = self.imports[run.script]
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()

    def cached(self, run):
        """The run's record if an earlier call finished it with the same key, else None.

        A finished run whose record does not read back whole (truncated, garbled, a key
        missing or of the wrong kind) is a miss too, with a warning: it runs again."""
        folder = self.runs_dir / run.label
        stamp = folder / "cache-key"
        try:
            if self.force or stamp.read_text().strip() != self.key(run):
                return None
        except (OSError, UnicodeDecodeError):  # no stamp (an unfinished run), or a garbled one
            return None
        record, problem = load_record(folder, run)
        if problem:
            self.warn(f"warning: {problem}; running {run.label} again")
        return record

    def execute(self, run):
        """Run in a fresh folder; returns (record or None, seconds, log path)."""
        folder = self.runs_dir / run.label
        if folder.exists():
            for old in folder.iterdir():
                old.unlink()
        folder.mkdir(parents=True, exist_ok=True)
        argv = [*run.args, *self.common_args, "-output_dir", str(folder)]
        log = folder / "log.txt"
        start = time.perf_counter()
        with open(log, "w") as out:
            out.write(f"$ python {run.script} {' '.join(argv)}\n")
            out.flush()
            try:
                if FORK:
                    code = self._fork(run.script, argv, out.fileno())
                else:
                    code = self._spawn(run.script, argv, out)
            except NotStarted:
                out.write("not started: the report was interrupted\n")
                code = EXIT_INTERRUPTED
            except Exception:  # e.g. a script that does not import: this run fails, not the report
                out.write(traceback.format_exc())
                code = 1
        seconds = time.perf_counter() - start
        if code != 0:
            return None, seconds, log
        record, problem = load_record(folder, run)
        if problem:
            with open(log, "a") as out:
                out.write(f"report.py: {problem}\n")
            return None, seconds, log
        # the stamp goes last: a run interrupted before here is re-run next time
        with files.atomic_path(folder / "cache-key") as tmp:
            tmp.write_text(self.key(run) + "\n")
        return record, seconds, log

    def _spawn(self, script, argv, out):
        """Run `script` in a fresh interpreter, in a process group of its own (see `_fork`)."""
        env = dict(os.environ, OMP_NUM_THREADS=str(self.threads),
                   OPENBLAS_NUM_THREADS=str(self.threads),
                   MKL_NUM_THREADS=str(self.threads), PYTHONUNBUFFERED="1")
        group = ({"start_new_session": True} if hasattr(os, "killpg")
                 else {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP})
        with self._children_lock:  # `stop` either comes before (no start) or sees this child
            if self._stopping:
                raise NotStarted
            process = subprocess.Popen([sys.executable, str(ROOT / script), *argv], stdout=out,
                                       stderr=subprocess.STDOUT, env=env,
                                       stdin=subprocess.DEVNULL, cwd=ROOT, **group)
            self._children[process.pid] = process
        try:
            return process.wait()
        finally:
            with self._children_lock:
                del self._children[process.pid]

    def _script(self, script):
        """The imported script (and torch, matplotlib), loaded once in this process."""
        with self._import_lock:
            if self._modules is None:
                import matplotlib
                matplotlib.use("Agg")
                import matplotlib.pyplot as plt
                import torch._dynamo  # noqa: F401
                # one figure drawn in both formats here loads the fonts and renderers once,
                # for every forked run, instead of in each run's first figure
                fig = plt.figure(figsize=(1, 1))
                fig.gca().plot([0, 1], label="warm-up")
                for fmt in ("pdf", "png"):
                    fig.savefig(io.BytesIO(), format=fmt)
                plt.close(fig)
                self._modules = {}
                self._preload()
            if script not in self._modules:
                try:
                    self._modules[script] = utils.load_script(script)
                except Exception as err:
                    # keep the error: a second load_script would return the half-made module
                    self._modules[script] = err
            module = self._modules[script]
        if isinstance(module, BaseException):
            raise module
        return module

    def _preload(self):
        """Load the split here, both ways the scripts ask for it (with and without the bias
        column), once for all forked runs, which would each load and scale it otherwise."""
        path = dict(zip(self.common_args[::2], self.common_args[1::2])).get("-data_path")
        if path is None:
            return
        plain, with_bias = (str(Path(path).resolve()), False), (str(Path(path).resolve()), True)
        if plain not in self.datasets:
            try:
                self.datasets[plain] = utils.load_dataset(path)
            except utils.DataError:
                return  # each run says so in its log
        if with_bias not in self.datasets:  # what load_dataset(path, bias=True) gives
            self.datasets[with_bias] = {split: (utils.with_bias_column(X), y)
                                        for split, (X, y) in self.datasets[plain].items()}

    def _share_datasets(self):
        """In a forked run: utils' loader returns the preloaded split for the same file (the
        run's own copy-on-write copy: what it changes in it, it changes for itself only)."""
        load = utils.load_dataset

        def preloaded(path=utils.DEFAULT_DATA_PATH, bias=False, **options):
            split = None if options else self.datasets.get((str(Path(path).resolve()), bias))
            return load(path, bias=bias, **options) if split is None else dict(split)
        for name in ("load_dataset", "load_classification_data"):  # the course's alias too
            if getattr(utils, name, None) is load:
                setattr(utils, name, preloaded)

    def _fork(self, script, argv, log_fd):
        """Run `script`'s main(argv) in a forked child of this process; returns its exit code.

        The parent imports the scripts once (torch, matplotlib, and the torch._dynamo that
        torch.optim imports on first use: ~6 s that a fresh interpreter pays for every run), so
        a child starts in milliseconds. Each child is a fresh copy of the parent: no state
        passes from one run to the next. The scripts set their own thread counts.

        The child gets a process group of its own, so a Ctrl-C at the terminal reaches only
        this process, which then stops each run once (`stop`), with its own helper processes.
        """
        module = self._script(script)
        with self._children_lock:  # `stop` either comes before (no start) or sees this child
            if self._stopping:
                raise NotStarted
            # SIGINT is held back until the child has its handler: Python's after-fork clean-up
            # would drop one that came earlier, and the run would go on
            mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
            try:
                pid = os.fork()
                if pid == 0:
                    self._child(module, argv, log_fd, mask)  # never returns
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

    def _child(self, module, argv, log_fd, mask):
        """The forked child of `_fork`: run module.main(argv), log to `log_fd`, exit."""
        code = 1
        try:
            os.setpgid(0, 0)
            os.dup2(log_fd, 1)
            os.dup2(log_fd, 2)
            sys.stdout = open(1, "w", buffering=1, closefd=False)
            sys.stderr = open(2, "w", buffering=1, closefd=False)
            # Ctrl-C from here on, once whatever it prints goes to the log
            signal.signal(signal.SIGINT, signal.default_int_handler)
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            sys.modules["torch"].set_num_threads(self.threads)  # cores // jobs
            if self.datasets:
                self._share_datasets()
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
            sys.stdout.flush()
            sys.stderr.flush()
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


def load_record(folder, run):
    """(record, None) if `folder` holds one whole record of `run`, else (None, what is wrong)."""
    paths = list(Path(folder).glob("*.json"))
    if len(paths) != 1:
        return None, f"{folder}: {len(paths)} records (*.json), not 1"
    try:
        record = records.read_record(paths[0])
    except (OSError, ValueError) as err:  # JSONDecodeError and UnicodeDecodeError included
        return None, f"{paths[0]}: unreadable ({type(err).__name__}: {' '.join(str(err).split())})"
    problem = record_problem(record, run)
    return (None, f"{paths[0]}: {problem}") if problem else (record, None)


def _number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _curve(value):
    return isinstance(value, list) and all(v is None or _number(v) for v in value)


def record_problem(record, run):
    """What makes `record` unfit for the report as `run`'s record, or None."""
    if not isinstance(record, dict):
        return f"a JSON {type(record).__name__}, not a record"
    for key in ("model", "config", "epochs", "valid_acc", "test_acc"):
        if key not in record:
            return f"no '{key}'"
    if record["model"] != run.model:
        return f"a record of {record['model']!r}, not {run.model!r}"
    if not isinstance(record["config"], dict) or record["config"].get("seed") != run.seed:
        return f"not a record of seed {run.seed}"
    epochs = record["epochs"]
    if not (isinstance(epochs, list) and epochs and all(_number(e) for e in epochs)):
        return "'epochs' is not a list of epochs"
    if not _curve(record["valid_acc"]) or len(record["valid_acc"]) != len(epochs):
        return f"'valid_acc' is not {len(epochs)} numbers"
    for key in ("train_acc", "train_loss", "valid_loss", "weight_norm", "epoch_seconds"):
        if record.get(key) is not None and not _curve(record[key]):
            return f"'{key}' is not a list of numbers"
    for key in ("test_acc", "final_train_acc", "train_seconds"):
        if record.get(key) is not None and not _number(record[key]):
            return f"'{key}' is not a number"
    if not isinstance(record.get("diverged", False), bool):
        return "'diverged' is not true or false"
    return None


def seed_values(run, records, seeds, measure):
    """`measure(record)` of each seed of `run`'s configuration that has a record (not None)."""
    values = []
    for seed in seeds:
        record = records.get(run.with_seed(seed))
        if record is not None and (value := measure(record)) is not None:
            values.append(value)
    return values


def dev_accuracy(record):
    return final(record, "valid_acc")


def best_run(runs, records, seeds=(COURSE_SEED,)):
    """The configuration with the highest final dev accuracy, averaged over `seeds` (those
    that finished); the first one on ties."""
    scored = []
    for i, run in enumerate(runs):
        values = seed_values(run, records, seeds, dev_accuracy)
        if values:
            scored.append((statistics.fmean(values), -i, run))
    return max(scored)[2] if scored else None


def final(record, key):
    values = record.get(key)
    if isinstance(values, list):
        return values[-1] if values else None
    return values


def log_line(text):
    """Print a progress line at once, also when stdout is a pipe or a file."""
    print(text, flush=True)


def ignore_ctrl_c():
    """From here on Ctrl-C does nothing: the report is already stopping, and a second one must
    not cut its clean-up short (only the main thread can set a handler)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def run_all(sweeps, runner, log=log_line, seeds=(COURSE_SEED,)):
    """Run every sweep's configurations with each of `seeds` (deduplicated, in parallel).

    Logs `start` when a run starts and `[done/total]` when it ends. The total is known before
    the first start: a sweep built on another's best run (Q2.3) counts the runs it will add,
    which depend on that best but not their number. The best is chosen once every seed of
    every configuration it is chosen from has ended.

    Returns ({Run: record}, {Run: log path or None} of the failed runs, number of runs executed).
    On Ctrl-C, stops the running runs (their folders get no cache key, so they run again next
    time; a second Ctrl-C kills them at once) and raises Interrupted, leaving Ctrl-C ignored
    for the caller's exit.
    """
    records, seconds, failures = {}, {}, {}
    pending_sweeps = {s.key: s for s in sweeps if s.build is not None}
    by_key = {s.key: s for s in sweeps}
    queue, seen = [], set()
    announced = False  # whether the header line is out (a later reuse gets a line of its own)
    estimates = {}  # {configuration: seconds of one of its runs}, to start the long ones first

    def expand(runs):
        # seed by seed: the course's seed of every configuration first
        return [run.with_seed(seed) for seed in seeds for run in runs]

    def enqueue(runs):
        for run in runs:
            if run not in seen:
                seen.add(run)
                queue.append(run)

    def reuse(runs):
        for run in runs:
            record = runner.cached(run)
            if record is not None:
                records[run] = record
                queue.remove(run)
                if _number(record.get("train_seconds")):
                    estimates.setdefault(run.config, record["train_seconds"])
                if announced:
                    log(f"[{len(records) + len(failures)}/{total}] reused {run.script} "
                        f"{run.description} (dev acc {fmt(final(record, 'valid_acc'))}), "
                        f"finished earlier")

    for sweep in sweeps:
        if sweep.build is None:
            enqueue(expand(sweep.runs))
    # runs of a sweep that others build on go first, so the dependants can start early
    needed = {run.config for s in sweeps if s.key in {p.after for p in pending_sweeps.values()}
              for run in s.runs}
    reuse(list(queue))

    def next_run():
        """The needed runs first; then the longest (a long run started last would run on
        alone): as timed in this call or an earlier one, else as `rough_seconds` guesses."""
        def priority(item):
            i, run = item
            return run.config not in needed, -estimates.get(run.config, rough_seconds(run)), i
        return queue.pop(min(enumerate(queue), key=priority)[0])

    expected = {key: max((len({r for r in expand(sweep.build(base)) if r not in seen})
                          for base in by_key[sweep.after].runs), default=0)
                for key, sweep in pending_sweeps.items()}
    total = len(seen) + sum(expected.values())

    def resolve_dependants():
        nonlocal total
        for key, sweep in list(pending_sweeps.items()):
            base = by_key[sweep.after]
            if not all(r in records or r in failures for r in expand(base.runs)):
                continue
            best = best_run(base.runs, records, seeds)
            sweep.runs = sweep.build(best) if best is not None else []
            del pending_sweeps[key]
            fresh = [r for r in expand(sweep.runs) if r not in seen]
            enqueue(fresh)
            if len(fresh) != expected[key]:
                total += len(fresh) - expected[key]
                why = f" (no run of {base.title} finished)" if best is None else ""
                log(f"{sweep.title}: {len(fresh)} run(s), not {expected[key]}{why}; "
                    f"{total} run(s) in all now")
            reuse(fresh)

    resolve_dependants()  # now, if every run it builds on was reused
    reused = len(records)
    counts = f"{total} runs to do"
    if reused:
        counts = (f"{total} runs: {reused} finished earlier, reused from {runner.runs_dir}; "
                  f"{total - reused} to do")
    log(counts + (f", {runner.jobs} at a time" if total > reused else ""))
    announced = True

    start = time.perf_counter()
    running = {}

    def collect(future):
        run = running.pop(future)
        error = future.exception()
        record, secs, logfile = (None, 0.0, None) if error else future.result()
        seconds[run] = secs
        estimates[run.config] = secs
        done = len(records) + len(failures) + 1
        remaining = total - done
        eta = math.ceil(remaining / runner.jobs) * sum(seconds.values()) / len(seconds)
        progress = (f"; {remaining} to go, ETA {format_seconds(eta)}, "
                    f"elapsed {format_seconds(time.perf_counter() - start)}")
        if record is not None:
            records[run] = record
            log(f"[{done}/{total}] done {run.script} {run.description} in {secs:.1f} s "
                f"(dev acc {fmt(final(record, 'valid_acc'))})" + progress)
            return
        failures[run] = logfile
        if error is not None:
            detail = f": {error}"
        else:
            tail = logfile.read_text(errors="replace").splitlines()[-5:]
            detail = f"; see {logfile}:\n  " + "\n  ".join(tail)
        log(f"[{done}/{total}] FAILED {run.script} {run.description} after {secs:.1f} s"
            + progress + detail)

    with ThreadPoolExecutor(max_workers=runner.jobs) as pool:
        try:
            while True:
                resolve_dependants()
                while queue and len(running) < runner.jobs:
                    run = next_run()
                    running[pool.submit(runner.execute, run)] = run
                    log(f"start {run.script} {run.description}")
                if not running:
                    break
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    collect(future)
        except KeyboardInterrupt:
            try:
                if running:
                    log(f"stopping {len(running)} running run(s) (Ctrl-C again kills them)")
                runner.stop()
                _, late = wait(running, timeout=STOP_GRACE_SECONDS)
            except KeyboardInterrupt:  # a second Ctrl-C: no more waiting
                late = True
            ignore_ctrl_c()
            if late:
                runner.stop(kill=True)
                wait(running)
            # a run that ended whole before its stop is kept (and stamped) like any other
            for future, run in running.items():
                if future.exception() is None and future.result()[0] is not None:
                    records[run] = future.result()[0]
            raise Interrupted(len(records), total) from None
    return records, failures, len(seconds)


def format_seconds(seconds):
    seconds = int(round(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


# ----------------------------------------------------------------------------- writing

def train_accuracy(record):
    """Final training accuracy: q1 records it per epoch, q2 once at the end."""
    value = final(record, "train_acc")
    return value if value is not None else record.get("final_train_acc")


def accuracy_on_test(record):
    return record.get("test_acc")


def fmt(value, digits=4):
    return "—" if value is None else f"{value:.{digits}f}"


TEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
               "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
               "^": r"\textasciicircum{}", "—": "---", "–": "--", "±": r"$\pm$"}


def tex_escape(text):
    return "".join(TEX_SPECIAL.get(c, c) for c in text)


def cell(text):
    """A table cell: (Markdown, LaTeX)."""
    return text, tex_escape(text)


def spread(values, count):
    """The cell of `values` (one per seed that finished, of `count`): mean ± sd (min–max)."""
    if not values:
        return cell("—")
    mean = statistics.fmean(values)
    if len(values) == 1:
        return cell(f"{mean:.4f} (1 of {count} seeds)")
    extent = f"{min(values):.4f}–{max(values):.4f}"
    if len(values) < count:
        extent += f"; {len(values)} of {count} seeds"
    sd = statistics.stdev(values)
    return (f"{mean:.4f} ± {sd:.4f} ({extent})",
            f"${mean:.4f} \\pm {sd:.4f}$ ({tex_escape(extent)})")


def placement(value, values):
    """Where the course's `value` falls among our seeds' `values`: a cell's (Markdown, LaTeX)."""
    if len(values) < 2:
        return cell("one seed: no spread")
    low, high = min(values), max(values)
    if low <= value <= high:
        return cell(f"inside [{low:.4f}, {high:.4f}]")
    mean, sd = statistics.fmean(values), statistics.stdev(values)
    side = "above" if value > mean else "below"
    if sd == 0:
        return cell(f"{side} all {len(values)} seeds, which agree")
    z = (value - mean) / sd
    return f"{z:+.1f} sd {side} the mean", f"${z:+.1f}$ sd {side} the mean"


def course_entry(run):
    """The COURSE entry of `run`'s configuration, or None."""
    defaults = SCRIPT_DEFAULTS.get(run.script, {})

    def canonical(r):  # a flag spelled out at its default is the same configuration
        script, model, flags = r.config
        return script, model, frozenset((k, v) for k, v in flags if defaults.get(k) != v)
    return next((entry for entry in COURSE if canonical(entry[1]) == canonical(run)), None)


def course_numbers(run):
    """The course's (dev, test) for `run`'s configuration, or None."""
    entry = course_entry(run)
    return None if entry is None else entry[2:]


def sweep_table(sweep, records, failures, seeds=(COURSE_SEED,)):
    """The sweep's table: (header, rows of cells, notes for under it, best configuration).

    Each row is a configuration: its seed-42 run's accuracies and seconds; with several
    seeds, the mean ± sd (min–max) of each accuracy over them; the course's numbers, if
    any, placed among our seeds'."""
    count = len(seeds)
    best = best_run(sweep.runs, records, seeds) if sweep.pick_best else None
    entries = {run: course_entry(run) for run in sweep.runs}
    with_course = any(entries.values())
    measures = (train_accuracy, dev_accuracy, accuracy_on_test)
    header = ["run", "train acc", "dev acc", "test acc", "seconds"]
    if count > 1:
        header += [f"{name} acc over {count} seeds" for name in ("train", "dev", "test")]
    if with_course:
        header += ["course dev", "course test"]
    rows = []
    for run in sweep.runs:
        record = records.get(run)
        md, tex = f"`{run.description}`", f"\\texttt{{{tex_escape(run.description)}}}"
        if run == best:
            md, tex = f"**{md}** (best)", f"\\textbf{{{tex}}} (best)"
        if record is not None and record.get("diverged"):
            md, tex = md + " (diverged)", tex + " (diverged)"
        row = [(md, tex)]
        if record is None:
            row += [cell("failed" if run in failures else "not run")] + [cell("")] * 3
        else:
            row += [cell(fmt(measure(record))) for measure in measures]
            row.append(cell(fmt(record.get("train_seconds"), 1)))
        values = [seed_values(run, records, seeds, measure) for measure in measures]
        if count > 1:
            row += [spread(v, count) for v in values]
        if with_course:
            if entries[run] is None:
                row += [cell("—")] * 2
            for course, ours in zip(entries[run][2:] if entries[run] else (), values[1:]):
                where = placement(course, ours) if count > 1 else ("", "")
                row.append(tuple(f"{course:.4f}" + (f" ({w})" if w else "") for w in where))
        rows.append(row)

    notes = []
    if count > 1:
        notes.append(f"The first accuracies are seed {COURSE_SEED}'s; the columns over "
                     f"{count} seeds give the mean ± sd (sample sd) and the min–max of the "
                     f"final accuracies of the seeds {', '.join(map(str, seeds))}.")
        if sweep.pick_best:
            notes.append(f"The best configuration is chosen on the mean final dev accuracy "
                         f"over the {count} seeds.")
    if with_course:
        notes.append("The course's numbers against ours: one seed: no spread to place them "
                     "in (`--seeds K` runs K seeds and places each number among them)."
                     if count == 1 else
                     "The course's numbers are placed among our seeds' final accuracies: "
                     "inside their min–max, or how many sd from their mean.")
    shown = set(entries.values())
    for key, run, dev, test in COURSE:
        if key == sweep.key and (key, run, dev, test) not in shown:
            notes.append(f"The course's configuration `{run.description}` (dev {dev:.4f}, test "
                         f"{test:.4f}) is not among these runs.")
    return header, rows, notes, best


def markdown_table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(md for md, _ in row) + " |" for row in rows]


def latex_table(title, header, rows):
    """A booktabs tabular of the table, under a comment with its title."""
    lines = [f"% {title}", "\\begin{tabular}{l" + "r" * (len(header) - 1) + "}", "\\toprule",
             " & ".join(tex_escape(h) for h in header) + " \\\\", "\\midrule"]
    lines += [" & ".join(tex for _, tex in row) + " \\\\" for row in rows]
    return lines + ["\\bottomrule", "\\end{tabular}"]


def sweep_figure(sweep, records, seeds=(COURSE_SEED,)):
    """The sweep's figure (a matplotlib Figure; None if no run has a record): one panel per
    measure, one line per configuration, in the same colour in every panel. With several
    seeds, the line is their mean, over a band from their min to their max."""
    runs = [r for r in sweep.runs if any(r.with_seed(s) in records for s in seeds)]
    if not runs:
        return None
    measures = [("valid_acc", "Dev accuracy"), ("train_loss", "Training loss")]
    if sweep.weight_norm:
        measures.append(("weight_norm", "Weight norm ||W||_F"))
    panels, bands = [], []
    for key, ylabel in measures:
        curves, band = {}, {}
        for run in runs:
            seeded = [records[r][key] for s in seeds
                      if (r := run.with_seed(s)) in records and records[r].get(key)]
            if len(seeded) == 1 and len(seeds) == 1:
                curves[run.description] = seeded[0]
            elif seeded:
                table = np.full((len(seeded), max(map(len, seeded))), np.nan)
                for i, values in enumerate(seeded):
                    table[i, :len(values)] = [np.nan if v is None else v for v in values]
                with warnings.catch_warnings():  # an epoch where every seed diverged
                    warnings.simplefilter("ignore", RuntimeWarning)
                    mean = np.nanmean(table, axis=0)
                    band[run.description] = (np.nanmin(table, axis=0), np.nanmax(table, axis=0))
                curves[run.description] = [None if np.isnan(v) else float(v) for v in mean]
        if curves:
            panels.append((ylabel, curves))
            bands.append(band)
    # by position in the sweep, not in the panel: a panel may lack a run (the perceptron has
    # no loss), which would shift the colours of the next ones
    colours = {run.description: f"C{i % 10}" for i, run in enumerate(sweep.runs)}
    n_epochs = max(len(records[r]["epochs"]) for run in runs for s in seeds
                   if (r := run.with_seed(s)) in records)
    title = sweep.title
    if len(seeds) > 1:
        title += f"\n(mean of {len(seeds)} seeds; band: their min to max)"
    fig = figures.panels_figure(range(1, n_epochs + 1), panels, title=title, colors=colours)
    for ax, band in zip(fig.axes, bands):
        for line in ax.get_lines():
            if line.get_label() in band:
                low, high = band[line.get_label()]
                ax.fill_between(line.get_xdata(), low, high, where=~np.isnan(low),
                                color=line.get_color(), alpha=0.2, linewidth=0)
    return fig


def comparison_figure(sweep, records, figures_dir, seeds=(COURSE_SEED,)):
    """Save `sweep_figure` as figures_dir/KEY.pdf and .png, both or neither; returns the paths."""
    fig = sweep_figure(sweep, records, seeds)
    return [] if fig is None else figures.save_figure(fig, Path(figures_dir) / sweep.key)


def short_note(epochs):
    """The warning results.md opens with when the runs did not train the course's epochs."""
    if epochs is None or epochs == COURSE_EPOCHS:
        return None
    return (f"**Not the full report: every run trained for {epochs} epoch"
            f"{'s' if epochs != 1 else ''}, not the course's {COURSE_EPOCHS}, so these numbers "
            f"are not comparable with the course's published ones (the course columns).**")


def write_report(sweeps, records, failures, output_dir, total_seconds, executed=None,
                 command="python report.py", epochs=None, seeds=(COURSE_SEED,)):
    """Write the figures, results.md and results.tex (the same tables); `command` is how they
    were made, `epochs` the override of the runs' epochs, if any, `seeds` those each
    configuration ran with. Returns the path of results.md."""
    output_dir = Path(output_dir)
    seeds = list(seeds)
    if len(seeds) == 1:
        intro = (f"Regenerated by `{command}`. Accuracies are final (last epoch); the best "
                 f"run of each sweep is the one with the highest final dev accuracy.")
    else:
        intro = (f"Regenerated by `{command}`: every configuration ran with each of the "
                 f"{len(seeds)} seeds {', '.join(map(str, seeds))} (a run's seed drives its "
                 f"shuffle order, initial weights and dropout masks). Accuracies are final "
                 f"(last epoch); the best configuration of each sweep is the one with the "
                 f"highest mean final dev accuracy over the seeds.")
    lines = ["# Homework 1: results", "", intro, ""]
    tex = [f"% {command}: the tables of results.md, one tabular each; they need "
           f"\\usepackage{{booktabs}}.", ""]
    note = short_note(epochs)
    if note:
        lines += [note, ""]
        tex += [f"% {note.strip('*')}", ""]
    for sweep in sweeps:
        lines += [f"## {sweep.title}", ""]
        header, rows, notes, best = sweep_table(sweep, records, failures, seeds)
        lines += markdown_table(header, rows) + [""]
        tex += latex_table(sweep.title, header, rows) + [""]
        if note and "course dev" in header:
            notes.append(f"The course's columns are after {COURSE_EPOCHS} epochs, ours after "
                         f"{epochs}.")
        if best is not None:
            ours = records.get(best)
            text = f"Best {sweep.words}: `{best.description}`, "
            if len(seeds) == 1:
                text += (f"final dev accuracy {fmt(dev_accuracy(ours))}, test accuracy "
                         f"{fmt(accuracy_on_test(ours))}.")
            else:
                dev, test = (spread(seed_values(best, records, seeds, m), len(seeds))[0]
                             for m in (dev_accuracy, accuracy_on_test))
                text += (f"final dev accuracy {dev}, test accuracy {test} over the seeds "
                         f"(seed {COURSE_SEED}: dev {fmt(ours and dev_accuracy(ours))}, test "
                         f"{fmt(ours and accuracy_on_test(ours))}).")
            notes.append(text)
        for text in notes:
            lines += [text, ""]
        paths = comparison_figure(sweep, records, output_dir / "figures", seeds)
        if paths:
            lines += [f"![{sweep.title}](figures/{paths[1].name})", ""]
    trained = sum(r.get("train_seconds") or 0 for r in records.values())
    lines.append(f"Report time: {format_seconds(total_seconds)}"
                 + ("" if executed is None else f" ({executed} runs executed, "
                    f"{len(records) + len(failures) - executed} reused)")
                 + f"; the runs' training time adds up to {format_seconds(trained)}.")
    output_dir.mkdir(parents=True, exist_ok=True)
    with files.staged_files() as stage:  # both files or neither
        stage(output_dir / "results.md").write_text("\n".join(lines) + "\n")
        stage(output_dir / "results.tex").write_text("\n".join(tex))
    return output_dir / "results.md"


def command_line(args):
    """The command that makes this report, with the options that differ from the defaults and
    change what it holds (not --jobs or --force)."""
    words = ["python", "report.py"]
    if args.data_path != utils.DEFAULT_DATA_PATH:
        words += ["--data-path", str(args.data_path)]
    if args.output_dir != DEFAULT_OUTPUT_DIR:
        words += ["--output-dir", str(args.output_dir)]
    if args.epochs is not None:
        words += ["--epochs", str(args.epochs)]
    if args.seeds != 1:
        words += ["--seeds", str(args.seeds)]
    if args.extras:
        words.append("--extras")
    return shlex.join(words)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description="Re-run every experiment of the homework and write the report's figures "
                    "and tables. Ctrl-C stops it; the same command then resumes, reusing the "
                    "finished runs.")
    # the course's single-dash names, as in hw1-q1.py / hw1-q2.py, with double-dash aliases
    flags.add_flag(parser, "data_path", default=utils.DEFAULT_DATA_PATH,
                   help="the split built by download_kuzushiji_mnist.py (default: %(default)s)")
    flags.add_flag(parser, "output_dir", type=Path, default=DEFAULT_OUTPUT_DIR,
                   help="where the runs, figures and results.md go (default: %(default)s)")
    parser.add_argument("--jobs", type=flags.positive_int, default=os.cpu_count() or 1,
                        help="runs in parallel, one process each (default: %(default)s, the "
                             "number of CPUs)")
    parser.add_argument("--extras", action="store_true",
                        help="also run the other editions' experiments (L2, batch size, momentum, "
                             "L2 against dropout, adam)")
    flags.add_flag(parser, "epochs", type=flags.positive_int, default=None,
                   help=f"override every run's epochs, for a quick look; results.md then says "
                        f"its numbers are not comparable with the course's (default: the "
                        f"scripts' own, {COURSE_EPOCHS})")
    parser.add_argument("--seeds", type=flags.positive_int, default=1, metavar="K",
                        help=f"run every run with K seeds: {COURSE_SEED} (the course's), then 1, "
                             f"2, ..., K-1; the tables add the mean ± sd (min-max) over them "
                             f"and the figures a band (default: %(default)s)")
    parser.add_argument("--force", action="store_true",
                        help="re-run everything, ignoring the cache")
    return parser.parse_args(argv)


def interrupted(what):
    print(f"interrupted: {what}; run the same command again to resume", file=sys.stderr)
    return EXIT_INTERRUPTED


def main(argv=None):
    start = time.perf_counter()
    args = parse_args(argv)
    records = None  # every run's, once they have all ended
    try:
        data_path = Path(args.data_path)
        if not data_path.exists() and data_path.name == utils.DEFAULT_DATA_PATH:
            print(f"{data_path} not found: fetching and building it with "
                  f"download_kuzushiji_mnist.py", flush=True)
            utils.load_script("download_kuzushiji_mnist.py").main(["--output", str(data_path)])
        try:
            # fail now, with the loader's message, not in every run
            split = utils.load_dataset(args.data_path)
        except utils.DataError as err:
            errors.fail(str(err))
        try:  # before the first run, not in each
            for folder in (args.output_dir, args.output_dir / "runs", args.output_dir / "figures"):
                files.writable_dir(folder)
        except errors.OutputError as err:
            errors.fail(str(err))
        common = ["-data_path", str(Path(args.data_path).resolve())]
        if args.epochs is not None:
            common += ["-epochs", str(args.epochs)]
        runner = Runner(args.output_dir, common, file_digest(args.data_path), args.jobs,
                        args.force, datasets={(common[1], False): split})
        sweeps = plan(args.extras)
        seeds = seed_list(args.seeds)

        records, failures, executed = run_all(sweeps, runner, seeds=seeds)
        try:
            path = write_report(sweeps, records, failures, args.output_dir,
                                time.perf_counter() - start, executed,
                                command=command_line(args), epochs=args.epochs, seeds=seeds)
        except OSError as err:
            errors.fail(f"cannot write the report in {args.output_dir}: {err}")
    except Interrupted as stop:
        return interrupted(f"{stop.done} of {stop.total} runs finished and are kept")
    except KeyboardInterrupt:
        ignore_ctrl_c()
        if records is None:
            return interrupted("no run was started")
        return interrupted(f"all {len(records)} finished runs are kept, but results.md was not "
                           f"written")
    total = time.perf_counter() - start
    print(f"Wrote {path} and {path.with_suffix('.tex').name} ({len(records)} runs, "
          f"{len(failures)} failed); total: {format_seconds(total)} ({total:.1f} s)")
    if failures:
        errors.fail(f"{len(failures)} run(s) failed: " + ", ".join(r.label for r in failures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
