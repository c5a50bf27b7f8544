"""The scheduler: every sweep's runs with each seed, a few at a time, reusing finished ones, the
runs a later sweep builds on first and then the longest, with a progress line per run, and a
clean stop on Ctrl-C, TERM or HUP."""
import contextlib
import math
import signal
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass

from reporting.plan import COURSE_SEED, best_run, final, rough_seconds

# After a stop, how long a run gets to end on its own (and clean up) before it is killed.
STOP_GRACE_SECONDS = 10
# How often the waiting main thread looks for a stop signal (its handler only takes note: an
# exception raised at any point of the main thread could leave a future's lock held).
POLL_SECONDS = 0.2
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP")
                     if hasattr(signal, name))


class Interrupted(Exception):
    """The runs were stopped by a signal (`signum`), once the running ones had ended: `done`
    of `total` finished."""

    def __init__(self, done, total, signum=signal.SIGINT):
        super().__init__(f"{done} of {total} runs finished")
        self.done, self.total, self.signum = done, total, signum


@dataclass
class Outcome:
    """What the runs gave: {Run: record}, {Run: log path or None} of the failed runs, and how
    many ran (the others were reused)."""
    records: dict
    failures: dict
    executed: int


def format_seconds(seconds):
    seconds = int(round(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def ignore_stops():
    """From here on Ctrl-C, TERM and HUP do nothing: the report is already stopping, and a
    second signal must not cut its clean-up short (only the main thread can set handlers)."""
    if threading.current_thread() is threading.main_thread():
        for signum in STOP_SIGNALS:
            signal.signal(signum, signal.SIG_IGN)


class Scheduler:
    """Runs `sweeps` with each of `seeds` on `runner`, `jobs` at a time.

    runner: cached(run) -> record or None; execute(run) -> a Result (record, seconds, log,
    problem); stop(kill=False); runs_dir, where the runs are kept (for the messages). log: called with each progress line. estimate(run): a guess of
    a run's seconds while none of its configuration has been timed.

    The total is known before the first start: a sweep built on another's best run (Q2.3)
    counts the runs it will add, which depend on that best but not their number. The best is
    chosen once every seed of every configuration it is chosen from has ended.
    """

    def __init__(self, sweeps, runner, jobs, seeds=(COURSE_SEED,), log=print,
                 estimate=rough_seconds, grace=STOP_GRACE_SECONDS):
        self.sweeps, self.runner, self.jobs = sweeps, runner, jobs
        self.seeds, self.log, self.estimate, self.grace = list(seeds), log, estimate, grace
        self.records, self.failures, self.seconds = {}, {}, {}
        self.queue, self.seen = [], set()
        self.estimates = {}  # {configuration: seconds of one of its runs}
        self.running = {}    # {future: Run}
        self.pending = {s.key: s for s in sweeps if s.build is not None}
        self.by_key = {s.key: s for s in sweeps}
        # runs of a sweep that others build on go first, so the dependants can start early
        bases = {s.after for s in self.pending.values()}
        self.needed = {run.config for s in sweeps if s.key in bases for run in s.runs}
        self.expected, self.total = {}, 0
        self.announced = False  # whether the header line is out
        self.started = None
        self.signals = []  # the stop signals received while running, in order
        self.stopping = False

    def expand(self, runs):
        """Each of `runs` with each seed: the course's seed of every configuration first."""
        return [run.with_seed(seed) for seed in self.seeds for run in runs]

    @property
    def ended(self):
        return len(self.records) + len(self.failures)

    def run(self):
        """Run everything; an Outcome. On Ctrl-C, TERM or HUP (or a KeyboardInterrupt), stops
        the running runs (their folders get no key, so they run again next time; a second
        signal kills them at once) and raises Interrupted, leaving those signals ignored for
        the caller's exit."""
        for sweep in self.sweeps:
            if sweep.build is None:
                self._enqueue(self.expand(sweep.runs))
        self._reuse(list(self.queue))
        self.expected = {key: self._expected_runs(sweep) for key, sweep in self.pending.items()}
        self.total = len(self.seen) + sum(self.expected.values())
        self._resolve_dependants()  # now, if every run it builds on was reused
        self._announce()
        self.started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=self.jobs) as pool, self._noting_signals():
            try:
                self._loop(pool)
            except KeyboardInterrupt as stop:
                self._stop(getattr(stop, "signum", signal.SIGINT))
        return Outcome(self.records, self.failures, len(self.seconds))

    @contextlib.contextmanager
    def _noting_signals(self):
        """While inside, a stop signal is noted in `signals` (in the main thread; elsewhere,
        nothing changes). After, the handlers from before, or none once stopping."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        before = {signum: signal.signal(signum, lambda signum, _: self.signals.append(signum))
                  for signum in STOP_SIGNALS}
        try:
            yield
        finally:
            for signum, handler in before.items():
                signal.signal(signum, signal.SIG_IGN if self.stopping else handler)

    def _loop(self, pool):
        while True:
            if self.signals:
                self._stop(self.signals[0])
            self._resolve_dependants()
            while self.queue and len(self.running) < self.jobs:
                run = self._next()
                self.running[pool.submit(self.runner.execute, run)] = run
                self.log(f"start {run.script} {run.description}")
            if not self.running:
                return
            finished, _ = wait(self.running, timeout=POLL_SECONDS, return_when=FIRST_COMPLETED)
            for future in finished:
                self._collect(future)

    def _enqueue(self, runs):
        fresh = [run for run in dict.fromkeys(runs) if run not in self.seen]
        self.seen.update(fresh)
        self.queue += fresh
        return fresh

    def _reuse(self, runs):
        for run in runs:
            record = self.runner.cached(run)
            if record is None:
                continue
            self.records[run] = record
            self.queue.remove(run)
            if isinstance(record.get("train_seconds"), (int, float)):
                self.estimates.setdefault(run.config, record["train_seconds"])
            if self.announced:
                self.log(f"[{self.ended}/{self.total}] reused {run.script} {run.description} "
                         f"(dev acc {_fmt(final(record, 'valid_acc'))}), finished earlier")

    def _expected_runs(self, sweep):
        """The most runs `sweep` can add, whichever of its base's configurations is best."""
        return max((len({r for r in self.expand(sweep.build(base)) if r not in self.seen})
                    for base in self.by_key[sweep.after].runs), default=0)

    def _announce(self):
        reused = len(self.records)
        counts = f"{self.total} runs to do"
        if reused:
            counts = (f"{self.total} runs: {reused} finished earlier, reused from "
                      f"{self.runner.runs_dir}; {self.total - reused} to do")
        self.log(counts + (f", {self.jobs} at a time" if self.total > reused else ""))
        self.announced = True

    def _next(self):
        """The needed runs first; then the longest (a long run started last would run on
        alone): as timed in this call or an earlier one, else as `estimate` guesses."""
        def priority(item):
            i, run = item
            seconds = self.estimates.get(run.config)
            return (run.config not in self.needed,
                    -(seconds if seconds is not None else self.estimate(run)), i)
        return self.queue.pop(min(enumerate(self.queue), key=priority)[0])

    def _resolve_dependants(self):
        """Build each pending sweep whose base sweep's runs have all ended."""
        for key, sweep in list(self.pending.items()):
            base = self.by_key[sweep.after]
            if not all(r in self.records or r in self.failures for r in self.expand(base.runs)):
                continue
            best = best_run(base.runs, self.records, self.seeds)
            sweep.runs = sweep.build(best) if best is not None else []
            del self.pending[key]
            fresh = self._enqueue(self.expand(sweep.runs))
            if len(fresh) != self.expected[key]:
                self.total += len(fresh) - self.expected[key]
                why = f" (no run of {base.title} finished)" if best is None else ""
                self.log(f"{sweep.title}: {len(fresh)} run(s), not {self.expected[key]}{why}; "
                         f"{self.total} run(s) in all now")
            self._reuse(fresh)

    def _collect(self, future):
        run = self.running.pop(future)
        error = future.exception()
        result = None if error else future.result()
        secs = 0.0 if result is None else result.seconds
        self.seconds[run] = self.estimates[run.config] = secs
        done = self.ended + 1
        remaining = self.total - done
        eta = (math.ceil(remaining / self.jobs) * sum(self.seconds.values())
               / len(self.seconds))
        progress = (f"; {remaining} to go, ETA {format_seconds(eta)}, "
                    f"elapsed {format_seconds(time.perf_counter() - self.started)}")
        if result is not None and result.record is not None:
            self.records[run] = result.record
            self.log(f"[{done}/{self.total}] done {run.script} {run.description} in "
                     f"{secs:.1f} s (dev acc {_fmt(final(result.record, 'valid_acc'))})"
                     + progress)
            return
        self.failures[run] = None if result is None else result.log
        if error is not None:
            detail = f": {error}"
        elif result.problem is not None:
            detail = f": {result.problem}"
        else:
            tail = result.log.read_text(errors="replace").splitlines()[-5:]
            detail = f"; see {result.log}:\n  " + "\n  ".join(tail)
        self.log(f"[{done}/{self.total}] FAILED {run.script} {run.description} after "
                 f"{secs:.1f} s" + progress + detail)

    def _stop(self, signum):
        self.stopping = True
        noted = len(self.signals)
        try:
            if self.running:
                self.log(f"stopping {len(self.running)} running run(s) (Ctrl-C again kills "
                         f"them)")
            self.runner.stop()
            deadline = time.monotonic() + self.grace
            late = True
            # until the runs have ended, the grace is over, or a second signal says not to wait
            while late and time.monotonic() < deadline and len(self.signals) <= noted:
                late = wait(self.running, timeout=POLL_SECONDS)[1]
        except KeyboardInterrupt:  # a second signal, raised: no more waiting
            late = True
        ignore_stops()
        if late:
            self.runner.stop(kill=True)
            wait(self.running)
        # a run that ended whole before its stop is kept (and its key written) like any other
        for future, run in self.running.items():
            if future.exception() is None and future.result().record is not None:
                self.records[run] = future.result().record
        raise Interrupted(len(self.records), self.total, signum) from None


def _fmt(value):
    return "—" if value is None else f"{value:.4f}"
