"""The scheduler, without forking: a fake runner stands in for the processes. Progress lines
against a total known up front, reused runs, a sweep built on another's best, which runs go
first, failures, and a stop (Ctrl-C, TERM) that keeps what finished."""
import os
import re
import signal
import threading
from pathlib import Path

import pytest

from reporting.plan import Run, Sweep, q1, q2
from reporting.runner import Result
from reporting.scheduler import Interrupted, Scheduler
from reporting.session import Terminated
from conftest import report_record


class FakeRunner:
    """Ends each run at once with a record (dev accuracy from `dev`, default 0.5), or a failure
    for the runs in `fail`; `block`: runs wait for `stop`."""
    runs_dir = Path("runs")

    def __init__(self, cached=None, fail=(), dev=None, seconds=None, block=False):
        self.cache, self.fail, self.dev = dict(cached or {}), set(fail), dev or {}
        self.secs = seconds or {}
        self.block, self.stopped = block, threading.Event()
        self.started, self.stops = [], []
        self.lock = threading.Lock()

    def cached(self, run):
        return self.cache.get(run)

    def execute(self, run):
        with self.lock:
            self.started.append(run)
        if self.block:
            self.stopped.wait(30)
            return Result(None, 0.1, Path("log"), problem="stopped")
        if run in self.fail:
            return Result(None, 0.1, problem="in the way")
        return Result(report_record(run.model, run.seed, dev=self.dev.get(run, 0.5)),
                      self.secs.get(run, 1.0), Path("log"))

    def stop(self, kill=False):
        self.stops.append(kill)
        self.stopped.set()


DONE = re.compile(r"\[(\d+)/(\d+)\] (done|reused|FAILED) (\S+ .+?)(?: in [\d.]+ s| after "
                  r"[\d.]+ s|, finished earlier| \(dev acc)")


def schedule(sweeps, runner, jobs=2, **options):
    lines = []
    outcome = Scheduler(sweeps, runner, jobs, log=lines.append, **options).run()
    return outcome, lines


def three_sweeps():
    base = Sweep("b", "B", [q2("mlp"), q2("mlp", dropout="0.5")])
    return [Sweep("a", "A", [q1("perceptron"), q1("mlp")], pick_best=False), base,
            Sweep("d", "D", after="b", build=lambda best: [best, best.with_flags(layers=2)])]


def test_progress_counts_completions_against_a_total_known_up_front():
    runner = FakeRunner(dev={q2("mlp", dropout="0.5"): 0.9})
    outcome, lines = schedule(three_sweeps(), runner)
    # 2 + 2 runs, and D's 1 new run whichever of B is best (its best is already run)
    assert lines[0] == "5 runs to do, 2 at a time"
    ends = [DONE.match(line) for line in lines if line.startswith("[")]
    assert [int(m[1]) for m in ends] == [1, 2, 3, 4, 5] and {m[2] for m in ends} == {"5"}
    for i, line in enumerate(lines):  # each run ends after its start
        if (match := DONE.match(line)):
            assert match[3] == "done" and f"start {match[4]}" in lines[:i], line
    assert len(outcome.records) == outcome.executed == 5 and outcome.failures == {}
    assert q2("mlp", dropout="0.5", layers=2) in outcome.records  # built on B's best


def test_a_dependent_sweep_waits_for_every_seed_of_its_base():
    a, b = q2("mlp"), q2("mlp", dropout="0.5")
    runner = FakeRunner(dev={a: 0.9, a.with_seed(1): 0.1, b: 0.6, b.with_seed(1): 0.6})
    sweeps = three_sweeps()
    outcome, _ = schedule(sweeps, runner, seeds=[42, 1])
    base = {a, b, a.with_seed(1), b.with_seed(1)}
    built = [r for r in runner.started if "-layers" in r.description]
    assert {r.with_seed(42) for r in built} == {b.with_flags(layers=2)}  # the mean's best
    assert max(runner.started.index(r) for r in base) < min(runner.started.index(r)
                                                            for r in built)
    assert sweeps[2].runs == [b, b.with_flags(layers=2)]


def test_finished_runs_are_reused_and_counted():
    a = q1("perceptron")
    runner = FakeRunner(cached={a: report_record("perceptron")})
    outcome, lines = schedule(three_sweeps()[:1], runner, jobs=1)
    assert lines[0] == "2 runs: 1 finished earlier, reused from runs; 1 to do, 1 at a time"
    assert runner.started == [q1("mlp")] and outcome.executed == 1
    assert lines[-1].startswith("[2/2] done hw1-q1.py mlp in 1.0 s (dev acc 0.5000); 0 to go")
    _, lines = schedule(three_sweeps()[:1], FakeRunner(cached={
        a: report_record("perceptron"), q1("mlp"): report_record("mlp")}))
    assert lines == ["2 runs: 2 finished earlier, reused from runs; 0 to do"]


def test_runs_found_once_their_sweep_resolves_are_counted_as_reused():
    b = q2("mlp", dropout="0.5")
    cached = {r: report_record(r.model, r.seed) for r in (q2("mlp"), b.with_flags(layers=2))}
    runner = FakeRunner(cached=cached, dev={b: 0.9})
    _, lines = schedule(three_sweeps()[1:], runner, jobs=1)
    assert lines[0].startswith("3 runs: 1 finished earlier, reused from runs; 2 to do")
    assert [DONE.match(l).groups()[:3] for l in lines if l.startswith("[")] == [
        ("2", "3", "done"), ("3", "3", "reused")]


def test_the_total_drops_when_a_sweep_has_nothing_to_build_on():
    bad = Run("hw1-q1.py", ("mlp", "-learning_rate", "-1"))
    sweeps = [Sweep("a", "A", [bad]),
              Sweep("b", "B", after="a", build=lambda best: [best, best.with_flags(layers=2)])]
    outcome, lines = schedule(sweeps, FakeRunner(fail={bad}), jobs=1)
    assert outcome.records == {} and list(outcome.failures) == [bad]
    assert lines[:2] == ["2 runs to do, 1 at a time", "start hw1-q1.py mlp -learning_rate -1"]
    assert lines[2].startswith("[1/2] FAILED hw1-q1.py mlp -learning_rate -1 after 0.1 s; 1 to "
                               "go") and lines[2].endswith(": in the way")
    assert lines[3:] == ["B: 0 run(s), not 1 (no run of A finished); 1 run(s) in all now"]


def test_a_runner_error_fails_that_run_only():
    class Broken(FakeRunner):
        def execute(self, run):
            if run == q1("mlp"):
                raise RuntimeError("no such script")
            return super().execute(run)
    outcome, lines = schedule(three_sweeps()[:1], Broken(), jobs=1)
    assert list(outcome.failures) == [q1("mlp")] and list(outcome.records) == [q1("perceptron")]
    assert any(l.startswith("[") and "FAILED hw1-q1.py mlp" in l and l.endswith(
        ": no such script") for l in lines)


def test_runs_others_build_on_go_first_then_the_longest():
    """The contract, not the guesses: the base sweep's runs start first; then the runs in
    decreasing order of their expected seconds (as timed earlier, else as `estimate` says)."""
    a = Sweep("a", "A", [q1("perceptron"), q1("logistic_regression"), q1("mlp")],
              pick_best=False)
    base = Sweep("b", "B", [q2("mlp")])
    dependant = Sweep("d", "D", after="b", build=lambda best: [best.with_flags(layers=2)])
    guesses = {q1("perceptron"): 1, q1("logistic_regression"): 3, q1("mlp"): 2, q2("mlp"): 0.5,
               q2("mlp", layers=2): 10}
    estimate = lambda run: guesses[run.with_seed(42)]
    runner = FakeRunner()
    schedule([a, base, dependant], runner, jobs=1, estimate=estimate)
    assert runner.started == [q2("mlp"), q2("mlp", layers=2), q1("logistic_regression"),
                              q1("mlp"), q1("perceptron")]

    # a configuration timed earlier (a reused seed) orders its other seeds by that time
    timed = {q1("perceptron"): report_record("perceptron", train_seconds=100.0)}
    runner = FakeRunner(cached=timed)
    schedule([a], runner, jobs=1, seeds=[42, 1], estimate=estimate)
    assert runner.started[0] == q1("perceptron").with_seed(1)


@pytest.fixture
def restore_signals():
    before = {signum: signal.getsignal(signum)
              for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    yield
    for signum, handler in before.items():
        signal.signal(signum, handler)


@pytest.mark.parametrize("how", ["signal", "raised"])
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP],
                         ids=["ctrl-c", "term", "hup"])
def test_a_stop_stops_the_running_runs_and_keeps_the_finished_ones(signum, how,
                                                                  restore_signals):
    a = Sweep("a", "A", [q1("perceptron"), q1("mlp"), q1("logistic_regression")],
              pick_best=False)
    runner = FakeRunner(block=True)
    lines = []

    def log(line):
        lines.append(line)
        if line.startswith("start ") and sum(l.startswith("start ") for l in lines) == 2:
            if how == "signal":
                os.kill(os.getpid(), signum)
            else:  # as report.py's handler of TERM and HUP raises it before the scheduler
                raise Terminated(signum) if signum != signal.SIGINT else KeyboardInterrupt()
    with pytest.raises(Interrupted) as err:
        Scheduler([a], runner, 2, log=log, grace=30).run()
    assert (err.value.done, err.value.total, err.value.signum) == (0, 3, signum)
    assert runner.stops == [False] and len(runner.started) == 2  # no start after the stop
    assert lines[-1] == "stopping 2 running run(s) (Ctrl-C again kills them)"
    for other in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # ignored for the exit
        assert signal.getsignal(other) == signal.SIG_IGN


def test_a_second_signal_kills_the_runs_at_once(restore_signals):
    a = Sweep("a", "A", [q1("perceptron")])

    class Stubborn(FakeRunner):
        def stop(self, kill=False):
            self.stops.append(kill)
            if not kill:
                os.kill(os.getpid(), signal.SIGINT)  # the user presses Ctrl-C again
            else:
                self.stopped.set()
    runner = Stubborn(block=True)
    log = lambda line: line.startswith("start ") and os.kill(os.getpid(), signal.SIGTERM)
    with pytest.raises(Interrupted) as err:
        Scheduler([a], runner, 1, log=log, grace=600).run()
    assert runner.stops == [False, True] and err.value.signum == signal.SIGTERM


def test_without_a_stop_the_signal_handlers_are_restored(restore_signals):
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    schedule(three_sweeps()[:1], FakeRunner())
    assert {s: signal.getsignal(s) for s in before} == before
