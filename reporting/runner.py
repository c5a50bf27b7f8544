"""A run from start to end: its folder made ready (the cache), the script launched with the
report's common flags and its output in the folder's log (the launcher), its record read back
and its key written (the cache)."""
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from reporting.cache import LOG_FILE, InTheWay
from reporting.launcher import EXIT_INTERRUPTED, NotStarted


@dataclass
class Result:
    """How a run ended: its record (None if it failed), its seconds, its log (None if it had
    none), and why it failed when the log cannot say (something in the way)."""
    record: object
    seconds: float
    log: Path = None
    problem: str = None


class Runner:
    """Runs `Run`s through `cache` (a reporting.cache.Cache) and `launcher` (a
    reporting.launcher.Launcher); what the Scheduler drives."""

    def __init__(self, cache, launcher):
        self.cache, self.launcher = cache, launcher
        self.runs_dir = cache.runs_dir

    def cached(self, run):
        return self.cache.lookup(run)

    def stop(self, kill=False):
        self.launcher.stop(kill)

    def execute(self, run):
        """Run `run` in its folder, cleared of the report's old files first; a Result."""
        start = time.perf_counter()
        try:
            folder = self.cache.clear(run)
        except (InTheWay, OSError) as err:
            return Result(None, time.perf_counter() - start, problem=str(err))
        argv = [*run.args, *self.cache.common_args, "-output_dir", str(folder)]
        log = folder / LOG_FILE
        with open(log, "w") as out:
            out.write(f"$ python {run.script} {' '.join(argv)}\n")
            out.flush()
            try:
                code = self.launcher.launch(run.script, argv, out)
            except NotStarted:
                out.write("not started: the report was interrupted\n")
                code = EXIT_INTERRUPTED
            except Exception:  # e.g. a script that does not import: this run fails, not the report
                out.write(traceback.format_exc())
                code = 1
        seconds = time.perf_counter() - start
        if code != 0:
            return Result(None, seconds, log)
        record, problem = self.cache.complete(run)
        if problem:
            with open(log, "a") as out:
                out.write(f"report.py: {problem}\n")
        return Result(record, seconds, log)
