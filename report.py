"""Regenerate every figure and table of the report: python report.py

Runs each experiment with the project's own scripts (in parallel, one process per run), reuses
finished runs from earlier calls (a cache keyed by the run's flags, the code and the data), and
writes under `-output_dir` (default report/):

    runs/<label>/        each run's figures, record (JSON) and log
    figures/<sweep>.*    one comparison figure per sweep: dev accuracy and training loss per epoch
    results.md           one table per question, the course's numbers beside ours, the best runs

Ctrl-C stops the running runs and exits with 130; finished runs are kept, so the same command
resumes.
"""
import argparse
import hashlib
import json
import math
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
import traceback
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

import utils

ROOT = Path(__file__).resolve().parent
# Linux: runs are forked from this process (fast start, see Runner._fork); elsewhere, where
# forking a process that has loaded torch is not safe, each run is a fresh interpreter.
FORK = sys.platform.startswith("linux")

# The course's published Q1 results (final dev, test accuracy), 2022-23, after the scripts'
# default number of epochs.
COURSE_Q1 = {"perceptron": (0.7236, 0.6193), "logistic_regression": (0.8251, 0.7028)}
COURSE_EPOCHS = 20
DEFAULT_OUTPUT_DIR = Path("report")
# After Ctrl-C, how long a run gets to stop on its own (and clean up) before it is killed.
STOP_GRACE_SECONDS = 10
EXIT_INTERRUPTED = utils.EXIT_INTERRUPTED
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


# ----------------------------------------------------------------------------- running

def file_digest(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


class Runner:
    """Runs scripts in subprocesses, reusing a finished run whose cache key matches."""

    def __init__(self, output_dir, common_args, data_digest, jobs, force):
        self.runs_dir = Path(output_dir) / "runs"
        self.common_args = list(common_args)
        self.jobs = jobs
        self.force = force
        self.threads = max(1, (os.cpu_count() or 1) // jobs)
        code = {name: file_digest(ROOT / name) for name in ("utils.py", "hw1-q1.py", "hw1-q2.py")}
        self.fingerprint = {"code": code, "data": data_digest, "common": self.common_args}
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
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()

    def cached(self, run):
        """The run's record if an earlier call finished it with the same key, else None."""
        folder = self.runs_dir / run.label
        stamp = folder / "cache-key"
        if self.force or not stamp.is_file() or stamp.read_text().strip() != self.key(run):
            return None
        records = [p for p in folder.glob("*.json")]
        return utils.read_record(records[0]) if len(records) == 1 else None

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
        records = list(folder.glob("*.json"))
        if code != 0 or len(records) != 1:
            return None, seconds, log
        # the stamp goes last: a run interrupted before here is re-run next time
        with utils.atomic_path(folder / "cache-key") as tmp:
            tmp.write_text(self.key(run) + "\n")
        return utils.read_record(records[0]), seconds, log

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
                import matplotlib.pyplot  # noqa: F401
                import torch._dynamo  # noqa: F401
                self._modules = {}
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


def best_run(runs, records):
    """The run with the highest final dev accuracy (the first one on ties)."""
    scored = [(final(records[r], "valid_acc"), -i, r) for i, r in enumerate(runs)
              if records.get(r) is not None]
    scored = [s for s in scored if s[0] is not None]
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


def run_all(sweeps, runner, log=log_line):
    """Run every sweep's runs (deduplicated, in parallel).

    Logs `start` when a run starts and `[done/total]` when it ends. The total is known before
    the first start: a sweep built on another's best run (Q2.3) counts the runs it will add,
    which depend on that best but not their number.

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
                if announced:
                    log(f"[{len(records) + len(failures)}/{total}] reused {run.script} "
                        f"{run.description} (dev acc {fmt(final(record, 'valid_acc'))}), "
                        f"finished earlier")

    for sweep in sweeps:
        if sweep.build is None:
            enqueue(sweep.runs)
    # runs of a sweep that others build on go first, so the dependants can start early
    needed = {s.after for s in pending_sweeps.values()}
    queue.sort(key=lambda r: not any(r in s.runs for s in sweeps if s.key in needed))
    reuse(list(queue))

    expected = {key: max((len({r for r in sweep.build(base) if r not in seen})
                          for base in by_key[sweep.after].runs), default=0)
                for key, sweep in pending_sweeps.items()}
    total = len(seen) + sum(expected.values())

    def resolve_dependants():
        nonlocal total
        for key, sweep in list(pending_sweeps.items()):
            base = by_key[sweep.after]
            if not all(r in records or r in failures for r in base.runs):
                continue
            best = best_run(base.runs, records)
            sweep.runs = sweep.build(best) if best is not None else []
            del pending_sweeps[key]
            fresh = [r for r in sweep.runs if r not in seen]
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
                    run = queue.pop(0)
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


def fmt(value, digits=4):
    return "—" if value is None else f"{value:.{digits}f}"


def sweep_table(sweep, records, failures, course=False):
    best = best_run(sweep.runs, records) if sweep.pick_best else None
    head = "| run | train acc | dev acc | test acc | seconds |"
    rule = "|---|---|---|---|---|"
    if course:
        head += " course dev | course test |"
        rule += "---|---|"
    lines = [head, rule]
    for run in sweep.runs:
        record = records.get(run)
        name = f"`{run.description}`"
        if run == best:
            name = f"**{name}** (best)"
        if record is None:
            status = "failed" if run in failures else "not run"
            lines.append(f"| {name} | {status} | | | |" + (" | |" if course else ""))
            continue
        diverged = " (diverged)" if record.get("diverged") else ""
        row = (f"| {name}{diverged} | {fmt(train_accuracy(record))} | "
               f"{fmt(final(record, 'valid_acc'))} | {fmt(record.get('test_acc'))} | "
               f"{fmt(record.get('train_seconds'), 1)} |")
        if course:
            dev, test = COURSE_Q1.get(run.model, (None, None))
            row += f" {fmt(dev)} | {fmt(test)} |"
        lines.append(row)
    return lines, best


def sweep_figure(sweep, records):
    """The sweep's figure (a matplotlib Figure; None if no run has a record): one panel per
    measure, one line per run, a run in the same colour in every panel."""
    runs = [r for r in sweep.runs if r in records]
    if not runs:
        return None
    measures = [("valid_acc", "Dev accuracy"), ("train_loss", "Training loss")]
    if sweep.weight_norm:
        measures.append(("weight_norm", "Weight norm ||W||_F"))
    panels = [(ylabel, curves) for key, ylabel in measures
              if (curves := {r.description: records[r][key] for r in runs
                             if records[r].get(key)})]
    # by position in the sweep, not in the panel: a panel may lack a run (the perceptron has
    # no loss), which would shift the colours of the next ones
    colours = {run.description: f"C{i % 10}" for i, run in enumerate(sweep.runs)}
    n_epochs = max(len(records[r]["epochs"]) for r in runs)
    return utils.panels_figure(range(1, n_epochs + 1), panels, title=sweep.title,
                               colors=colours)


def comparison_figure(sweep, records, figures_dir):
    """Save `sweep_figure` as figures_dir/KEY.pdf and .png, both or neither; returns the paths."""
    fig = sweep_figure(sweep, records)
    return [] if fig is None else utils.save_figure(fig, Path(figures_dir) / sweep.key)


def short_note(epochs):
    """The warning results.md opens with when the runs did not train the course's epochs."""
    if epochs is None or epochs == COURSE_EPOCHS:
        return None
    return (f"**Not the full report: every run trained for {epochs} epoch"
            f"{'s' if epochs != 1 else ''}, not the course's {COURSE_EPOCHS}, so these numbers "
            f"are not comparable with the course's published ones (the course columns of the "
            f"Q1 table).**")


def write_report(sweeps, records, failures, output_dir, total_seconds, executed=None,
                 command="python report.py", epochs=None):
    """Write the figures and results.md; `command` is how they were made, `epochs` the
    override of the runs' epochs, if any."""
    output_dir = Path(output_dir)
    lines = ["# Homework 1: results", "",
             f"Regenerated by `{command}`. Accuracies are final (last epoch); the best run "
             "of each sweep is the one with the highest final dev accuracy.", ""]
    note = short_note(epochs)
    if note:
        lines += [note, ""]
    for sweep in sweeps:
        lines += [f"## {sweep.title}", ""]
        course = sweep.key == "q1"
        table, best = sweep_table(sweep, records, failures, course=course)
        lines += table + [""]
        if course and note:
            lines += [f"The course's columns are after {COURSE_EPOCHS} epochs, ours after "
                      f"{epochs}.", ""]
        if best is not None:
            lines.append(f"Best {sweep.words}: `{best.description}`, final dev accuracy "
                         f"{fmt(final(records[best], 'valid_acc'))}, test accuracy "
                         f"{fmt(records[best].get('test_acc'))}.")
            lines.append("")
        paths = comparison_figure(sweep, records, output_dir / "figures")
        if paths:
            lines += [f"![{sweep.title}](figures/{paths[1].name})", ""]
    trained = sum(r.get("train_seconds") or 0 for r in records.values())
    lines.append(f"Report time: {format_seconds(total_seconds)}"
                 + ("" if executed is None else f" ({executed} runs executed, "
                    f"{len(records) + len(failures) - executed} reused)")
                 + f"; the runs' training time adds up to {format_seconds(trained)}.")
    with utils.atomic_path(output_dir / "results.md") as tmp:
        tmp.write_text("\n".join(lines) + "\n")
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
    if args.extras:
        words.append("--extras")
    return shlex.join(words)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description="Re-run every experiment of the homework and write the report's figures "
                    "and tables. Ctrl-C stops it; the same command then resumes, reusing the "
                    "finished runs.")
    # the course's single-dash names, as in hw1-q1.py / hw1-q2.py, with double-dash aliases
    utils.add_flag(parser, "data_path", default=utils.DEFAULT_DATA_PATH,
                   help="the split built by download_kuzushiji_mnist.py (default: %(default)s)")
    utils.add_flag(parser, "output_dir", type=Path, default=DEFAULT_OUTPUT_DIR,
                   help="where the runs, figures and results.md go (default: %(default)s)")
    parser.add_argument("--jobs", type=utils.positive_int, default=os.cpu_count() or 1,
                        help="runs in parallel, one process each (default: %(default)s, the "
                             "number of CPUs)")
    parser.add_argument("--extras", action="store_true",
                        help="also run the other editions' experiments (L2, batch size, momentum, "
                             "L2 against dropout, adam)")
    utils.add_flag(parser, "epochs", type=utils.positive_int, default=None,
                   help=f"override every run's epochs, for a quick look; results.md then says "
                        f"its numbers are not comparable with the course's (default: the "
                        f"scripts' own, {COURSE_EPOCHS})")
    parser.add_argument("--force", action="store_true",
                        help="re-run everything, ignoring the cache")
    return parser.parse_args(argv)


def interrupted(what):
    print(f"interrupted: {what}; run the same command again to resume", file=sys.stderr)
    return EXIT_INTERRUPTED


def main(argv=None):
    args = parse_args(argv)
    records = None  # every run's, once they have all ended
    try:
        try:
            # fail now, with the loader's message, not in every run
            utils.load_dataset(args.data_path)
        except utils.DataError as err:
            utils.fail(str(err))
        try:  # before the first run, not in each
            for folder in (args.output_dir, args.output_dir / "runs", args.output_dir / "figures"):
                utils.writable_dir(folder)
        except utils.OutputError as err:
            utils.fail(str(err))
        common = ["-data_path", str(Path(args.data_path).resolve())]
        if args.epochs is not None:
            common += ["-epochs", str(args.epochs)]
        runner = Runner(args.output_dir, common, file_digest(args.data_path), args.jobs,
                        args.force)
        sweeps = plan(args.extras)

        start = time.perf_counter()
        records, failures, executed = run_all(sweeps, runner)
        total = time.perf_counter() - start
        try:
            path = write_report(sweeps, records, failures, args.output_dir, total, executed,
                                command=command_line(args), epochs=args.epochs)
        except OSError as err:
            utils.fail(f"cannot write the report in {args.output_dir}: {err}")
    except Interrupted as stop:
        return interrupted(f"{stop.done} of {stop.total} runs finished and are kept")
    except KeyboardInterrupt:
        ignore_ctrl_c()
        if records is None:
            return interrupted("no run was started")
        return interrupted(f"all {len(records)} finished runs are kept, but results.md was not "
                           f"written")
    print(f"Wrote {path} ({len(records)} runs, {len(failures)} failed) in "
          f"{format_seconds(total)} total ({total:.1f} s)")
    if failures:
        utils.fail(f"{len(failures)} run(s) failed: " + ", ".join(r.label for r in failures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
