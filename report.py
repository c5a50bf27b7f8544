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
each configuration's mean ± sd (min-max) over the seeds, place the course's numbers among them,
and the best of a sweep is chosen on the mean dev accuracy.

Ctrl-C, TERM or HUP stops the running runs and exits with 128 + the signal (130 for Ctrl-C);
finished runs are kept, so the same command resumes. One report at a time per output folder.

The machinery is the package reporting/: the plan, the cache, the launcher, the scheduler, the
tables, the figures and the seeds' statistics.
"""
import argparse
import os
import shlex
import sys
import time
from pathlib import Path

import utils
from reporting import plan as planning
from reporting.cache import Cache, file_digest
from reporting.launcher import FORK, Launcher, SharedSplits
from reporting.results import write_report
from reporting.runner import Runner
from reporting.scheduler import Interrupted, Scheduler, format_seconds, ignore_stops
from reporting.session import Busy, Console, exit_code, folder_lock, stop_signals
from runkit import errors, files, flags

COURSE_EPOCHS = planning.COURSE_EPOCHS
COURSE_SEED = planning.COURSE_SEED
DEFAULT_OUTPUT_DIR = Path("report")
EXIT_INTERRUPTED = errors.EXIT_INTERRUPTED


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


def load_split(args, console):
    """The split, fetched and built first when the default file is missing; fails with the
    loader's message, once, rather than in every run."""
    data_path = Path(args.data_path)
    if not data_path.exists() and data_path.name == utils.DEFAULT_DATA_PATH:
        console.say(f"{data_path} not found: fetching and building it with "
                    f"download_kuzushiji_mnist.py")
        utils.load_script("download_kuzushiji_mnist.py").main(["--output", str(data_path)])
    try:
        return utils.load_dataset(data_path)
    except utils.DataError as err:
        errors.fail(str(err))


def make_runner(args, console, split):
    """The Runner of this report: its cache under output_dir/runs and its launcher. Where
    forking is safe, the runs are forked from this process, warmed up, and share `split` when
    their scripts take it (see reporting/launcher.py)."""
    common = ["-data_path", str(Path(args.data_path).resolve())]
    if args.epochs is not None:
        common += ["-epochs", str(args.epochs)]
    cache = Cache(args.output_dir / "runs", common, file_digest(args.data_path),
                  force=args.force, warn=console.warn)
    threads = max(1, (os.cpu_count() or 1) // args.jobs)
    launcher = Launcher(threads=threads, fork=FORK)
    if FORK:
        launcher.warm_up(planning.SCRIPTS)
        if launcher.takes_loader(planning.SCRIPTS):
            launcher.loader = SharedSplits(args.data_path, plain=split)
    return Runner(cache, launcher)


def interrupted(console, what, stop):
    console.warn(f"interrupted: {what}; run the same command again to resume")
    return exit_code(stop)


def check_output_dir(output_dir):
    """Fail now, with one line, if the output folders cannot be written: not after the runs."""
    try:
        for folder in (output_dir, output_dir / "runs", output_dir / "figures"):
            files.writable_dir(folder)
    except errors.OutputError as err:
        errors.fail(str(err))


def report(args, console, start):
    """Make the report; returns the exit code."""
    outcome = None  # every run's, once they have all ended
    try:
        split = load_split(args, console)
        check_output_dir(args.output_dir)
        with folder_lock(args.output_dir):
            runner = make_runner(args, console, split)
            sweeps = planning.plan(args.extras)
            seeds = planning.seed_list(args.seeds)
            outcome = Scheduler(sweeps, runner, args.jobs, seeds=seeds, log=console.say).run()
            try:
                path = write_report(sweeps, outcome.records, outcome.failures, args.output_dir,
                                    time.perf_counter() - start, outcome.executed,
                                    command=command_line(args), epochs=args.epochs,
                                    seeds=seeds)
            except OSError as err:
                errors.fail(f"cannot write the report in {args.output_dir}: {err}")
    except Busy:
        errors.fail(f"{args.output_dir}: another report.py is writing there; wait for it to "
                    f"end, or give another --output-dir")
    except Interrupted as stop:
        return interrupted(console, f"{stop.done} of {stop.total} runs finished and are kept",
                           stop)
    except KeyboardInterrupt as stop:
        ignore_stops()
        if outcome is None:
            return interrupted(console, "no run was started", stop)
        return interrupted(console, f"all {len(outcome.records)} finished runs are kept, but "
                                    f"results.md was not written", stop)
    total = time.perf_counter() - start
    console.say(f"Wrote {path} and {path.with_suffix('.tex').name} ({len(outcome.records)} "
                f"runs, {len(outcome.failures)} failed); total: {format_seconds(total)} "
                f"({total:.1f} s)")
    if outcome.failures:
        errors.fail(f"{len(outcome.failures)} run(s) failed: "
                    + ", ".join(r.label for r in outcome.failures))
    return 0


def main(argv=None):
    start = time.perf_counter()
    args = parse_args(argv)
    console = Console()
    with stop_signals():
        code = report(args, console, start)
    return errors.after_unwritable_stdout(console.stdout, code,
                                          "the report went on and its files are written",
                                          stderr=console.stderr)


if __name__ == "__main__":
    sys.exit(main())
