"""Regenerate every figure and table of the report: python report.py

Runs each experiment with the project's own scripts (in parallel, one process per run), reuses
finished runs from earlier calls (a cache keyed by the run's flags, the code and the data), and
writes under `--output-dir` (default report/):

    runs/<label>/        each run's figures, record (JSON) and log
    figures/<sweep>.*    one comparison figure per sweep: dev accuracy and training loss per epoch
    results.md           one table per question, the course's numbers beside ours, the best runs
"""
import argparse
import hashlib
import json
import math
import os
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

# The course's published Q1 results (final dev, test accuracy), 2022-23.
COURSE_Q1 = {"perceptron": (0.7236, 0.6193), "logistic_regression": (0.8251, 0.7028)}


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
                  words="penalty"),
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
            if FORK:
                code = self._fork(run.script, argv, out.fileno())
            else:
                env = dict(os.environ, OMP_NUM_THREADS=str(self.threads),
                           OPENBLAS_NUM_THREADS=str(self.threads),
                           MKL_NUM_THREADS=str(self.threads), PYTHONUNBUFFERED="1")
                code = subprocess.run([sys.executable, str(ROOT / run.script), *argv],
                                      stdout=out, stderr=subprocess.STDOUT, env=env,
                                      stdin=subprocess.DEVNULL, cwd=ROOT).returncode
        seconds = time.perf_counter() - start
        records = list(folder.glob("*.json"))
        if code != 0 or len(records) != 1:
            return None, seconds, log
        # the stamp goes last: a run interrupted before here is re-run next time
        with utils.atomic_path(folder / "cache-key") as tmp:
            tmp.write_text(self.key(run) + "\n")
        return utils.read_record(records[0]), seconds, log

    def _fork(self, script, argv, log_fd):
        """Run `script`'s main(argv) in a forked child of this process; returns its exit code.

        The parent imports the scripts once (torch, matplotlib, and the torch._dynamo that
        torch.optim imports on first use: ~6 s that a fresh interpreter pays for every run), so
        a child starts in milliseconds. Each child is a fresh copy of the parent: no state
        passes from one run to the next. The scripts set their own thread counts.
        """
        with self._import_lock:
            modules = self._modules
            if modules is None:
                import matplotlib
                matplotlib.use("Agg")
                import matplotlib.pyplot  # noqa: F401
                import torch._dynamo  # noqa: F401
                modules = self._modules = {name: utils.load_script(name)
                                           for name in ("hw1-q1.py", "hw1-q2.py")}
        pid = os.fork()
        if pid == 0:  # the child: never returns
            code = 1
            try:
                os.dup2(log_fd, 1)
                os.dup2(log_fd, 2)
                sys.stdout = open(1, "w", buffering=1, closefd=False)
                sys.stderr = open(2, "w", buffering=1, closefd=False)
                sys.modules["torch"].set_num_threads(self.threads)  # cores // jobs
                modules[script].main(argv)
                code = 0
            except SystemExit as exit_:
                code = exit_.code if isinstance(exit_.code, int) else (exit_.code is not None)
                if isinstance(exit_.code, str):
                    print(exit_.code, file=sys.stderr)
            except BaseException:
                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        return os.waitstatus_to_exitcode(status)


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


def run_all(sweeps, runner, log=print):
    """Run every sweep's runs (deduplicated, in parallel).

    Returns ({Run: record}, {Run: log path} of the failed runs, number of runs executed).
    """
    records, seconds, failures = {}, {}, {}
    pending_sweeps = {s.key: s for s in sweeps if s.build is not None}
    queue, seen = [], set()

    def enqueue(runs):
        for run in runs:
            if run not in seen:
                seen.add(run)
                queue.append(run)

    for sweep in sweeps:
        if sweep.build is None:
            enqueue(sweep.runs)
    # runs of a sweep that others build on go first, so the dependants can start early
    needed = {s.after for s in pending_sweeps.values()}
    queue.sort(key=lambda r: not any(r in s.runs for s in sweeps if s.key in needed))

    for run in list(queue):
        record = runner.cached(run)
        if record is not None:
            records[run] = record
            queue.remove(run)
    if records:
        log(f"reusing {len(records)} finished run(s) from {runner.runs_dir}")

    by_key = {s.key: s for s in sweeps}
    total = len(records) + len(queue)
    start = time.perf_counter()
    running = {}

    def resolve_dependants():
        for key, sweep in list(pending_sweeps.items()):
            base = by_key[sweep.after]
            if all(r in records or r in failures for r in base.runs):
                best = best_run(base.runs, records)
                sweep.runs = sweep.build(best) if best is not None else []
                del pending_sweeps[key]
                fresh = [r for r in sweep.runs if r not in seen]
                enqueue(fresh)
                for run in fresh:
                    record = runner.cached(run)
                    if record is not None:
                        records[run] = record
                        queue.remove(run)
                nonlocal total
                total += len(fresh)

    with ThreadPoolExecutor(max_workers=runner.jobs) as pool:
        while True:
            resolve_dependants()
            while queue and len(running) < runner.jobs:
                run = queue.pop(0)
                running[pool.submit(runner.execute, run)] = run
                log(f"[{len(records) + len(failures) + len(running)}/{total}] start "
                    f"{run.script} {run.description}")
            if not running:
                break
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                run = running.pop(future)
                record, secs, logfile = future.result()
                seconds[run] = secs
                if record is None:
                    failures[run] = logfile
                    tail = logfile.read_text().splitlines()[-5:]
                    log(f"FAILED {run.script} {run.description} ({secs:.1f} s); see {logfile}:\n  "
                        + "\n  ".join(tail))
                else:
                    records[run] = record
                finished = len(records) + len(failures)
                remaining = total - finished
                mean = sum(seconds.values()) / len(seconds)
                eta = math.ceil(remaining / runner.jobs) * mean
                log(f"[{finished}/{total}] done  {run.script} {run.description} in {secs:.1f} s"
                    + (f" (dev acc {final(record, 'valid_acc'):.4f})" if record else "")
                    + f"; {remaining} remaining, ETA {format_seconds(eta)}"
                    + f", elapsed {format_seconds(time.perf_counter() - start)}")
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


def comparison_figure(sweep, records, figures_dir):
    runs = [r for r in sweep.runs if r in records]
    if not runs:
        return []
    n_epochs = max(len(records[r]["epochs"]) for r in runs)
    dev = {r.description: records[r]["valid_acc"] for r in runs}
    loss = {r.description: records[r]["train_loss"] for r in runs
            if records[r].get("train_loss")}
    panels = [("Dev accuracy", dev)] + ([("Training loss", loss)] if loss else [])
    return utils.plot_panels(figures_dir / sweep.key, range(1, n_epochs + 1), panels,
                             title=sweep.title)


def write_report(sweeps, records, failures, output_dir, total_seconds, executed=None):
    output_dir = Path(output_dir)
    lines = ["# Homework 1: results", "",
             "Regenerated by `python report.py`. Accuracies are final (last epoch); the best run "
             "of each sweep is the one with the highest final dev accuracy.", ""]
    for sweep in sweeps:
        lines += [f"## {sweep.title}", ""]
        table, best = sweep_table(sweep, records, failures, course=sweep.key == "q1")
        lines += table + [""]
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


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Re-run every experiment of the homework and write the report's figures "
                    "and tables.")
    parser.add_argument("--data-path", default=utils.DEFAULT_DATA_PATH,
                        help="the split built by download_kuzushiji_mnist.py")
    parser.add_argument("--output-dir", type=Path, default=Path("report"),
                        help="where the runs, figures and results.md go")
    parser.add_argument("--jobs", type=utils.positive_int, default=os.cpu_count() or 1,
                        help="runs in parallel (one process each)")
    parser.add_argument("--extras", action="store_true",
                        help="also run the other editions' experiments (L2, batch size, momentum, "
                             "L2 against dropout, adam)")
    parser.add_argument("--epochs", type=utils.positive_int, default=None,
                        help="override every run's epochs (for a quick look; the report uses the "
                             "scripts' default, 20)")
    parser.add_argument("--force", action="store_true", help="re-run everything, ignoring the cache")
    args = parser.parse_args(argv)

    try:
        utils.load_dataset(args.data_path)  # fail now, with the loader's message, not in every run
    except utils.DataError as err:
        utils.fail(str(err))
    common = ["-data_path", str(Path(args.data_path).resolve())]
    if args.epochs is not None:
        common += ["-epochs", str(args.epochs)]
    runner = Runner(args.output_dir, common, file_digest(args.data_path), args.jobs, args.force)
    sweeps = plan(args.extras)

    start = time.perf_counter()
    records, failures, executed = run_all(sweeps, runner)
    total = time.perf_counter() - start
    path = write_report(sweeps, records, failures, args.output_dir, total, executed)
    print(f"Wrote {path} ({len(records)} runs, {len(failures)} failed) in {format_seconds(total)} "
          f"total ({total:.1f} s)")
    if failures:
        utils.fail(f"{len(failures)} run(s) failed: " + ", ".join(r.label for r in failures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
