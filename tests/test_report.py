"""report.py end to end on a tiny synthetic dataset: every file written, runs reused on the second
call, progress lines, bad output folders, Ctrl-C, the figures and the command line, several
seeds (spreads, bands, results.tex, the cache), corrupted records."""
import contextlib
import io
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import report
import utils
from runkit import records

ROOT = Path(report.__file__).resolve().parent


@pytest.fixture(scope="module")
def tiny_report(tmp_path_factory):
    from conftest import make_tiny_dataset
    folder = tmp_path_factory.mktemp("report")
    data = make_tiny_dataset(folder / "tiny.npz", n_train=48, n_dev=16, n_test=16)
    out = folder / "report"
    argv = ["--data-path", str(data), "--output-dir", str(out), "--epochs", "2"]
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        assert report.main(argv) == 0
    return argv, out, stdout.getvalue()


def test_report_writes_every_file(tiny_report):
    _, out, _ = tiny_report
    sweeps = report.plan(extras=False)
    for sweep in sweeps:
        for suffix in (".pdf", ".png"):
            path = out / "figures" / f"{sweep.key}{suffix}"
            assert path.is_file() and path.stat().st_size > 0, path
    labels = sorted(p.name for p in (out / "runs").iterdir())
    # Q1: 3 runs, Q2.1: 3, Q2.2: 6, Q2.3: 2 built on the best of Q2.2
    assert len(labels) == 14, labels
    for label in labels:
        folder = out / "runs" / label
        records = list(folder.glob("*.json"))
        assert len(records) == 1 and (folder / "cache-key").is_file()
        record = records.read_record(records[0])
        assert len(record["valid_acc"]) == 2 and record["test_acc"] is not None
        assert list(folder.glob("*.png")), f"{label} has no figures"
    text = (out / "results.md").read_text()
    for sweep in sweeps:
        assert f"## {sweep.title}" in text
    assert "| 0.7236 | 0.6193 |" in text and "| 0.8251 | 0.7028 |" in text  # the course's Q1
    assert text.count("(best)") == 3  # Q2.1, Q2.2, Q2.3
    assert "Best learning rate: `logistic_regression -batch_size 1 -learning_rate" in text
    assert "failed" not in text


def test_q23_builds_on_the_best_q22_run(tiny_report):
    _, out, _ = tiny_report
    records = {}
    for folder in (out / "runs").iterdir():
        records[folder.name] = records.read_record(next(folder.glob("*.json")))
    q22 = report.plan(extras=False)[2].runs
    best = max(q22, key=lambda r: (records[r.label]["valid_acc"][-1], -q22.index(r)))
    assert best.with_flags(layers=2).label in records
    assert best.with_flags(layers=3).label in records
    q23 = [line for line in (out / "results.md").read_text().split("## Q2.3")[1].splitlines()
           if line.startswith("| ") and "`" in line]
    assert [line.split("`")[1] for line in q23] == [
        best.description, best.with_flags(layers=2).description,
        best.with_flags(layers=3).description]


def test_second_call_reuses_every_run(tiny_report, monkeypatch, capsys):
    argv, out, _ = tiny_report
    before = (out / "results.md").read_text()

    def no_runs(self, run):
        raise AssertionError(f"{run.label} was run again")
    monkeypatch.setattr(report.Runner, "execute", no_runs)
    assert report.main(argv) == 0
    # the 2 Q2.3 runs are found too: every run Q2.3 builds on is reused, so its best is known
    assert f"14 runs: 14 finished earlier, reused from {out / 'runs'}; 0 to do\n" in \
        capsys.readouterr().out
    after = (out / "results.md").read_text()
    strip = lambda text: [l for l in text.splitlines() if not l.startswith("Report time")]
    assert strip(after) == strip(before)
    assert "(0 runs executed, 14 reused)" in after and "(14 runs executed, 0 reused)" in before


def test_cache_key_follows_flags_code_and_data(tmp_path):
    runner = report.Runner(tmp_path, ["-epochs", "2"], "data-a", jobs=1, force=False)
    run = report.q1("mlp")
    key = runner.key(run)
    assert runner.key(report.q1("mlp", learning_rate="0.1")) != key
    assert report.Runner(tmp_path, ["-epochs", "3"], "data-a", 1, False).key(run) != key
    assert report.Runner(tmp_path, ["-epochs", "2"], "data-b", 1, False).key(run) != key
    runner.fingerprint["code"]["hw1-q1.py"] = "edited"
    assert runner.key(run) != key


def test_a_failing_run_is_reported_and_not_cached(tmp_path, tiny_data):
    runner = report.Runner(tmp_path, ["-data_path", str(tiny_data), "-epochs", "1"], "d", 1, False)
    bad = report.Run("hw1-q1.py", ("mlp", "-learning_rate", "-1"))
    record, _, log = runner.execute(bad)
    assert record is None
    assert "-learning_rate" in log.read_text()
    assert runner.cached(bad) is None
    sweeps = [report.Sweep("s", "S", [bad])]
    records, failures, executed = report.run_all(sweeps, runner, log=lambda *a: None)
    assert records == {} and list(failures) == [bad] and executed == 1
    path = report.write_report(sweeps, records, failures, tmp_path, 1.0)
    assert "| `mlp -learning_rate -1` | failed |" in path.read_text()


def test_missing_data_is_a_clean_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        report.main(["--data-path", str(tmp_path / "none.npz"), "--output-dir", str(tmp_path)])
    assert exc.value.code == 1
    assert "download_kuzushiji_mnist.py" in capsys.readouterr().err
    assert not (tmp_path / "results.md").exists()


def test_extras_run_on_tiny_data(tmp_path, tiny_data):
    out = tmp_path / "report"
    assert report.main(["--data-path", str(tiny_data), "--output-dir", str(out), "--epochs", "1",
                        "--extras"]) == 0
    sweeps = report.plan(extras=True)
    for sweep in sweeps:
        assert (out / "figures" / f"{sweep.key}.png").is_file(), sweep.key
    # 14 runs of the 2022-23 plan + 9 extra ones (the default FFN is shared, not re-run)
    assert len(list((out / "runs").iterdir())) == 23
    text = (out / "results.md").read_text()
    assert "Best batch size: `mlp -batch_size" in text and "failed" not in text
    records = [records.read_record(next(d.glob("*.json"))) for d in (out / "runs").iterdir()]
    assert any(r["model"] == "logistic_regression" and r["config"].get("l2_penalty") == 0.01
               and r["weight_norm"] for r in records)


# ----------------------------------------------------------------------------- progress lines

DONE = re.compile(r"\[(\d+)/(\d+)\] (done|reused) (.+?) (?:in [\d.]+ s )?\(dev acc ")


def test_progress_counts_completions_against_a_total_known_up_front(tiny_report):
    _, _, log = tiny_report
    lines = log.splitlines()
    assert lines[0] == f"14 runs to do, {report.parse_args([]).jobs} at a time"
    started = [line.removeprefix("start ") for line in lines if line.startswith("start ")]
    assert len(set(started)) == len(started) == 14
    counted = [(i, DONE.match(line)) for i, line in enumerate(lines) if line.startswith("[")]
    assert all(match for _, match in counted), log
    # one line per run that ends, numbered in order against the same total
    assert [int(m[1]) for _, m in counted] == list(range(1, 15))
    assert {m[2] for _, m in counted} == {"14"}
    for i, match in counted:
        assert match[3] == "done" and f"start {match[4]}" in lines[:i], lines[i]
    assert sorted(m[4] for _, m in counted) == sorted(started)


def test_runs_reused_once_their_sweep_resolves_are_counted_too(tiny_report, tmp_path):
    argv, out, _ = tiny_report
    copy = tmp_path / "report"
    shutil.copytree(out, copy)
    redo = report.plan(extras=False)[2].runs[1]  # a Q2.2 run: Q2.3 waits for it
    (copy / "runs" / redo.label / "cache-key").unlink()
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        assert report.main([*argv, "--output-dir", str(copy)]) == 0
    lines = stdout.getvalue().splitlines()
    assert lines[0].startswith(f"14 runs: 11 finished earlier, reused from {copy / 'runs'}; "
                               f"3 to do")
    assert lines[1] == f"start {redo.script} {redo.description}"
    assert lines[2].startswith(f"[12/14] done {redo.script} {redo.description} in ")
    assert [m.groups()[:3] for m in map(DONE.match, lines[3:5])] == [("13", "14", "reused"),
                                                            ("14", "14", "reused")]
    assert lines[5].startswith("Wrote ")


def test_the_total_drops_when_a_sweep_has_nothing_to_build_on(tmp_path, tiny_data):
    runner = report.Runner(tmp_path, ["-data_path", str(tiny_data), "-epochs", "1"], "d", 1, False)
    bad = report.Run("hw1-q1.py", ("mlp", "-learning_rate", "-1"))
    sweeps = [report.Sweep("a", "A", [bad]),
              report.Sweep("b", "B", after="a",
                           build=lambda best: [best, best.with_flags(layers=2)])]
    lines = []
    records, failures, _ = report.run_all(sweeps, runner, log=lines.append)
    assert records == {} and list(failures) == [bad]
    assert lines[:2] == ["2 runs to do, 1 at a time", "start hw1-q1.py mlp -learning_rate -1"]
    assert lines[2].startswith("[1/2] FAILED hw1-q1.py mlp -learning_rate -1 after ")
    assert lines[3:] == ["B: 0 run(s), not 1 (no run of A finished); 1 run(s) in all now"]


def test_runs_start_longest_first_before_any_is_timed():
    """With nothing timed, the runs a later sweep builds on go first, then the others longest
    first as rough_seconds guesses: the numpy MLP's per-example SGD, then the deeper network,
    the batch-1 logistic regression, Table 1's network, the numpy linear models. Once a
    configuration has been timed, its time orders it instead."""
    started = []

    class InstantRunner:
        jobs, runs_dir = 1, Path("unused")

        def cached(self, run):
            return None

        def execute(self, run):
            started.append(run)
            seconds = 100.0 if run == report.q1("logistic_regression") else 1.0
            return {"valid_acc": [0.5], "train_seconds": seconds}, seconds, None

    numpy_runs = [report.q1("perceptron"), report.q1("logistic_regression"), report.q1("mlp")]
    torch_runs = [report.q2("logistic_regression", batch_size=1), report.q2("mlp"),
                  report.q2("mlp", layers=2)]
    base = [report.q2("mlp", dropout=0.5)]
    sweeps = [report.Sweep("n", "N", numpy_runs), report.Sweep("t", "T", torch_runs),
              report.Sweep("b", "B", base),
              report.Sweep("d", "D", after="b", build=lambda best: [best])]
    report.run_all(sweeps, InstantRunner(), log=lambda *a: None)
    assert started == [base[0], numpy_runs[2], torch_runs[2], torch_runs[0], torch_runs[1],
                       numpy_runs[1], numpy_runs[0]]
    assert report.rough_seconds(report.q1("mlp", epochs=40)) == \
        2 * report.rough_seconds(report.q1("mlp"))

    assert report.DEFAULT_BATCH_SIZE == utils.load_script("hw1-q2.py").DEFAULT_BATCH_SIZE

    started.clear()  # two seeds: a configuration's first time orders its other seed's run
    report.run_all(sweeps[:1], InstantRunner(), log=lambda *a: None, seeds=(42, 1))
    perceptron, logistic, mlp = numpy_runs
    assert started == [mlp, logistic, logistic.with_seed(1), perceptron,
                       perceptron.with_seed(1), mlp.with_seed(1)]


@pytest.mark.skipif(not report.FORK, reason="the scripts are imported here only to fork runs")
def test_a_script_that_does_not_import_fails_its_runs_not_the_report(tmp_path, tiny_data,
                                                                     monkeypatch):
    def broken(name):
        raise AttributeError(f"{name}: module 'utils' has no attribute 'checked'")
    monkeypatch.setattr(report.utils, "load_script", broken)
    runner = report.Runner(tmp_path, ["-data_path", str(tiny_data), "-epochs", "1"], "d", 1, False)
    sweeps = [report.Sweep("s", "S", [report.q2("mlp"), report.q2("mlp", layers=2)])]
    records, failures, executed = report.run_all(sweeps, runner, log=lambda *a: None)
    assert records == {} and set(failures) == set(sweeps[0].runs) and executed == 2
    for log in failures.values():
        assert "hw1-q2.py: module 'utils' has no attribute 'checked'" in log.read_text()


# ----------------------------------------------------------------------------- output folder

def _file(path, text="not a folder"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.mark.parametrize("make", [
    lambda tmp: _file(tmp / "afile"),                 # the output folder is a file
    lambda tmp: _file(tmp / "afile") / "sub",         # a file in its path
    lambda tmp: _file(tmp / "out" / "runs").parent,   # a file where runs/ goes
], ids=["a-file", "under-a-file", "runs-is-a-file"])
def test_an_unusable_output_dir_fails_before_any_run(tmp_path, tiny_data, make, monkeypatch,
                                                      capsys):
    out = make(tmp_path)
    started = []
    monkeypatch.setattr(report.Runner, "execute", lambda self, run: started.append(run))
    with pytest.raises(SystemExit) as exc:
        report.main(["--data-path", str(tiny_data), "--output-dir", str(out), "--epochs", "1"])
    assert exc.value.code == 1 and started == []
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {out}"), captured.err
    assert [p.read_text() for p in tmp_path.rglob("*") if p.is_file() and p != tiny_data] == \
        ["not a folder"]  # nothing else written, the file in the way untouched


@pytest.mark.parametrize("where", ["a-file", "sys"])
def test_an_unusable_output_dir_from_the_command_line(tmp_path, tiny_data, where):
    if where == "sys":
        out = Path("/sys/kernel")  # a folder even root cannot write in
        if not out.is_dir():
            pytest.skip("no /sys/kernel here")
    else:
        out = _file(tmp_path / "afile")
    result = subprocess.run([sys.executable, str(ROOT / "report.py"), "-data_path",
                             str(tiny_data), "-output_dir", str(out), "-epochs", "1"],
                            capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert result.returncode == 1
    assert result.stdout == "" and "Traceback" not in result.stderr
    assert result.stderr.startswith(f"error: {out}") and result.stderr.count("\n") == 1


# ----------------------------------------------------------------------------- Ctrl-C

def _processes_with(text):
    """Pids of the processes whose command line contains `text` (Linux /proc)."""
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        with contextlib.suppress(OSError):
            if text.encode() in cmdline.read_bytes():
                pids.append(int(cmdline.parent.name))
    return pids


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists() or not hasattr(os, "killpg"),
                    reason="needs process groups and /proc")
def test_ctrl_c_stops_the_runs_keeps_the_finished_ones_and_resumes(tmp_path, monkeypatch,
                                                                     capsys):
    from conftest import make_tiny_dataset
    data = make_tiny_dataset(tmp_path / "tiny.npz", n_train=48, n_dev=16, n_test=16)
    out = tmp_path / "report"
    # enough epochs that a run takes a few seconds
    argv = ["-data_path", str(data), "-output_dir", str(out), "-epochs", "150", "--jobs", "2"]
    # in a session of its own, like a shell's foreground job: Ctrl-C signals the whole group
    proc = subprocess.Popen([sys.executable, str(ROOT / "report.py"), *argv], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    lines, restarted = [], threading.Event()

    def read():
        for line in proc.stdout:
            lines.append(line)
            # a start after a done: one run has finished and another is under way
            if line.startswith("start ") and any("] done " in seen for seen in lines):
                restarted.set()
    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert restarted.wait(timeout=180), "".join(lines)
        os.killpg(proc.pid, signal.SIGINT)
        code = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    reader.join(timeout=10)
    err = proc.stderr.read()
    output = "".join(lines) + err
    assert code == report.EXIT_INTERRUPTED, output
    assert "Traceback" not in output
    match = re.fullmatch(r"interrupted: (\d+) of 14 runs finished and are kept; run the same "
                         r"command again to resume\n", err)
    assert match, err
    kept = int(match[1])

    folders = list((out / "runs").iterdir())
    stamped = [f for f in folders if (f / "cache-key").is_file()]
    assert 1 <= len(stamped) == kept < len(folders)
    for folder in stamped:  # whole: the record, with every epoch, and the figures
        records = list(folder.glob("*.json"))
        assert len(records) == 1
        assert len(records.read_record(records[0])["valid_acc"]) == 150
        assert list(folder.glob("*.png"))
    for folder in set(folders) - set(stamped):  # stopped: told so, not killed
        log = (folder / "log.txt").read_text()
        assert "interrupted (the report was stopped)" in log or "not started" in log, log
        for record in folder.glob("*.json"):
            records.read_record(record)  # a record there is whole
    assert [p for p in out.rglob(".*")] == []  # no temporary file left
    assert not (out / "results.md").exists()
    time.sleep(0.5)  # forked runs carry the report's command line, and with it `out`
    assert _processes_with(str(out)) == []

    # the same command again reuses the kept runs and runs the others
    started = []

    def stub(self, run):
        started.append(run)
        raise RuntimeError("not run in this test")
    monkeypatch.setattr(report.Runner, "execute", stub)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit):
        report.main(argv)
    assert capsys.readouterr().out.startswith(f"14 runs: {kept} finished earlier")
    assert started and {r.label for r in started}.isdisjoint(f.name for f in stamped)


# ----------------------------------------------------------------------------- results.md

def test_results_name_the_command_and_warn_when_short(tiny_report):
    argv, out, _ = tiny_report
    text = (out / "results.md").read_text()
    assert f"Regenerated by `python report.py --data-path {argv[1]} --output-dir {out} " \
           f"--epochs 2`." in text
    assert "every run trained for 2 epochs, not the course's 20, so these numbers are not " \
           "comparable with the course's published ones" in text
    assert "The course's columns are after 20 epochs, ours after 2." in text


@pytest.mark.parametrize("argv, command", [
    ([], "python report.py"),
    (["-epochs", "1"], "python report.py --epochs 1"),
    (["--extras", "-data_path", "my data.npz", "--jobs", "3", "--force", "-output_dir", "r2"],
     "python report.py --data-path 'my data.npz' --output-dir r2 --extras"),
    (["--seeds", "1"], "python report.py"),
    (["--seeds", "5", "-epochs", "2"], "python report.py --epochs 2 --seeds 5"),
])
def test_command_line_has_the_options_that_shape_the_report(argv, command):
    assert report.command_line(report.parse_args(argv)) == command


@pytest.mark.parametrize("epochs", [None, 20, 1, 5])
def test_only_a_report_with_other_epochs_is_marked_short(tmp_path, epochs):
    run = report.q1("perceptron")
    sweeps = [report.Sweep("q1", "Q1: numpy models", [run], pick_best=False)]
    record = {"epochs": [1], "valid_acc": [0.5], "train_acc": [0.5], "test_acc": 0.4}
    text = report.write_report(sweeps, {run: record}, {}, tmp_path, 1.0, command="python x",
                               epochs=epochs).read_text()
    assert "Regenerated by `python x`." in text
    short = epochs not in (None, report.COURSE_EPOCHS)
    assert ("not comparable with the course's published ones" in text) == short
    assert (f"ours after {epochs}." in text) == short


# ----------------------------------------------------------------------------- figures

def _fixture_records(out):
    return {folder.name: records.read_record(next(folder.glob("*.json")))
            for folder in (out / "runs").iterdir()}


@pytest.mark.parametrize("epochs", [1, 2])
def test_a_run_keeps_its_colour_across_panels_and_epochs_are_whole(tiny_report, epochs):
    import matplotlib.pyplot as plt
    from matplotlib.colors import to_hex
    _, out, _ = tiny_report
    saved = _fixture_records(out)
    sweep = report.plan(extras=False)[0]  # Q1: the perceptron has no loss curve
    records = {run: {k: v[:epochs] if isinstance(v, list) else v
                     for k, v in saved[run.label].items()} for run in sweep.runs}
    fig = report.sweep_figure(sweep, records)
    try:
        colours, labels = {}, []
        for ax in fig.axes:
            labels.append([line.get_label() for line in ax.get_lines()])
            for line in ax.get_lines():
                colours.setdefault(line.get_label(), set()).add(to_hex(line.get_color()))
            low, high = ax.get_xlim()
            ticks = [t for t in ax.get_xticks() if low <= t <= high]
            assert ticks == list(range(1, epochs + 1)), ticks
        assert labels == [["perceptron", "logistic_regression", "mlp"],
                          ["logistic_regression", "mlp"]]
        assert all(len(c) == 1 for c in colours.values()), colours
        assert len(set().union(*colours.values())) == 3
    finally:
        plt.close(fig)


def test_the_l2_extra_plots_the_weight_norm(tiny_report):
    import matplotlib.pyplot as plt
    _, out, _ = tiny_report
    saved = _fixture_records(out)
    sweep = next(s for s in report.plan(extras=True) if s.key == "x-l2")
    records = {run: saved[run.label] for run in sweep.runs if run.label in saved}
    assert records  # the default logistic regression, also a Q1 run
    fig = report.sweep_figure(sweep, records)
    try:
        panel = fig.axes[-1]
        assert panel.get_ylabel() == "Weight norm ||W||_F"
        [line] = panel.get_lines()
        [run] = records
        assert list(line.get_ydata()) == records[run]["weight_norm"]
    finally:
        plt.close(fig)


# ----------------------------------------------------------------------------- flags

def test_help_shows_the_defaults(capsys):
    with pytest.raises(SystemExit) as exc:
        report.main(["--help"])
    assert exc.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps its lines
    for flag, default in (("-data_path", utils.DEFAULT_DATA_PATH), ("-output_dir", "report"),
                          ("--jobs", str(os.cpu_count() or 1)), ("--seeds", "1")):
        assert re.search(rf"{flag} \S+.*?\(default: {re.escape(default)}[,)]", text), flag


def test_course_flag_names_are_aliases_of_the_double_dash_ones():
    course = report.parse_args(["-data_path", "d.npz", "-output_dir", "out", "-epochs", "3"])
    dashes = report.parse_args(["--data-path", "d.npz", "--output-dir", "out", "--epochs", "3"])
    assert vars(course) == vars(dashes)
    assert (course.data_path, course.output_dir, course.epochs) == ("d.npz", Path("out"), 3)


def test_a_bad_flag_value_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as exc:
        report.parse_args(["-epochs", "0"])
    assert exc.value.code == 2 and "-epochs" in capsys.readouterr().err


# ----------------------------------------------------------------------------- seeds

SEEDS = [42, 1, 2]  # --seeds 3: the course's 42, then the stated list 1, 2, ...


def _records_by_label(out):
    """{label: record} of every finished run (one with a cache key) under out/runs."""
    return {folder.name: json.loads(next(folder.glob("*.json")).read_text())
            for folder in (out / "runs").iterdir() if (folder / "cache-key").is_file()}


def _final_train(record):
    return record["train_acc"][-1] if record.get("train_acc") else record["final_train_acc"]


MEASURES = {"train": _final_train, "dev": lambda r: r["valid_acc"][-1],
            "test": lambda r: r["test_acc"]}


def _best_by_mean_dev(configs, records, seeds):
    """The configuration with the highest mean final dev accuracy over `seeds` (the first on
    ties), computed here from the records."""
    means = [np.mean([records[c.with_seed(s).label]["valid_acc"][-1] for s in seeds])
             for c in configs]
    return configs[int(np.argmax(means))]


def _configurations(records, seeds):
    """Each sweep's configurations in the 2022-23 plan, Q2.3 built on the Q2.2 configuration
    with the best mean dev accuracy over the seeds."""
    sweeps = report.plan(extras=False)
    best = _best_by_mean_dev(sweeps[2].runs, records, seeds)
    return [s.runs for s in sweeps[:3]] + [[best, best.with_flags(layers=2),
                                            best.with_flags(layers=3)]]


def _expected_runs(records, seeds):
    """Every run of the 2022-23 plan with each seed."""
    return {c.with_seed(s) for configs in _configurations(records, seeds) for c in configs
            for s in seeds}


def _table_rows(text, title):
    """(header, {description: cells}) of the Markdown table under `## title`."""
    section = text.split(f"## {title}\n")[1].split("\n## ")[0]
    rows = [line for line in section.splitlines() if line.startswith("|")]
    split = lambda line: [c.strip() for c in line.strip().strip("|").split("|")]
    return split(rows[0]), {split(line)[0].split("`")[1]: split(line) for line in rows[2:]}


def _started(log):
    return {line.removeprefix("start ") for line in log.splitlines() if line.startswith("start ")}


@pytest.fixture(scope="module")
def seeded_report(tiny_report, tmp_path_factory):
    """The tiny report run again with --seeds 3, in a copy of its folder."""
    argv, out, _ = tiny_report
    copy = tmp_path_factory.mktemp("seeded") / "report"
    shutil.copytree(out, copy)
    before = set(_records_by_label(copy))
    argv = [*argv, "--output-dir", str(copy), "--seeds", "3"]
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        assert report.main(argv) == 0
    assert stderr.getvalue() == ""
    return argv, copy, stdout.getvalue(), before


def test_seeds_are_42_then_a_fixed_list_and_a_seed_42_run_keeps_its_name(tmp_path):
    assert report.seed_list(1) == [42]
    assert report.seed_list(5) == [42, 1, 2, 3, 4]
    assert report.seed_list(50) == [42, *range(1, 42), *range(43, 51)]
    run = report.q2("mlp", hidden_size=200)
    assert run.with_seed(42) == run and run.label == "q2-mlp-hidden_size=200"
    seeded = run.with_seed(7)
    assert seeded.args == ("mlp", "-hidden_size", "200", "-seed", "7") and seeded.seed == 7
    assert seeded.label == "q2-mlp-hidden_size=200-seed=7"
    assert seeded.with_seed(42) == run
    runner = report.Runner(tmp_path, ["-epochs", "2"], "data", jobs=1, force=False)
    assert runner.key(seeded) != runner.key(run)


def test_seeds_run_every_configuration_with_each_seed_reusing_seed_42s(seeded_report):
    _, out, log, before = seeded_report
    lines = log.splitlines()
    # the single-seed report's 12 runs of Q1, Q2.1 and Q2.2 are reused; Q2.3's best is known
    # only once every seed of Q2.2 has ended
    assert lines[0] == (f"42 runs: 12 finished earlier, reused from {out / 'runs'}; 30 to do, "
                        f"{report.parse_args([]).jobs} at a time")
    records = _records_by_label(out)
    expected = _expected_runs(records, SEEDS)
    assert {r.label for r in expected} <= set(records)
    # anything else is the single-seed report's Q2.3, if three seeds moved the best
    assert set(records) - {r.label for r in expected} <= before
    for run in expected:
        assert records[run.label]["config"]["seed"] == run.seed
    assert _started(log) == {f"{r.script} {r.description}" for r in expected
                             if r.label not in before}
    assert re.fullmatch(r"Wrote \S+results\.md and results\.tex \(42 runs, 0 failed\); "
                        r"total: (\d+m\d\ds|\d+s) \(\d+\.\d s\)", lines[-1]), lines[-1]


def test_seeded_tables_give_each_configuration_s_mean_sd_and_range(seeded_report):
    _, out, _, _ = seeded_report
    text = (out / "results.md").read_text()
    records = _records_by_label(out)
    spread = re.compile(r"(\d\.\d{4}) ± (\d\.\d{4}) \((\d\.\d{4})–(\d\.\d{4})\)")
    sweeps = report.plan(extras=False)
    for sweep, runs in zip(sweeps, _configurations(records, SEEDS)):
        configs = {run.description: run for run in runs}
        header, table = _table_rows(text, sweep.title)
        assert header[:8] == ["run", "train acc", "dev acc", "test acc", "seconds",
                              "train acc over 3 seeds", "dev acc over 3 seeds",
                              "test acc over 3 seeds"]
        assert list(table) == list(configs)
        for description, cells in table.items():
            config = configs[description]
            for i, measure in enumerate(MEASURES.values()):
                assert cells[1 + i] == f"{measure(records[config.label]):.4f}"  # seed 42's
                values = [measure(records[config.with_seed(s).label]) for s in SEEDS]
                match = spread.fullmatch(cells[5 + i])
                assert match, cells[5 + i]
                assert [float(x) for x in match.groups()] == pytest.approx(
                    [np.mean(values), np.std(values, ddof=1), min(values), max(values)],
                    abs=5.1e-5)
        if sweep.pick_best:
            means = {d: np.mean([records[configs[d].with_seed(s).label]["valid_acc"][-1]
                                 for s in SEEDS]) for d in table}
            best = max(table, key=lambda d: (means[d], -list(table).index(d)))
            assert [d for d, cells in table.items() if "(best)" in cells[0]] == [best]
            section = text.split(f"## {sweep.title}\n")[1].split("\n## ")[0]
            assert "The best configuration is chosen on the mean final dev accuracy over the " \
                   "3 seeds." in section


# the course's published numbers (the table), by sweep and configuration
COURSE = [(0, "perceptron", 0.7236, 0.6193), (0, "logistic_regression", 0.8251, 0.7028),
          (0, "mlp", 0.9373, 0.8610),
          (1, "logistic_regression -batch_size 1 -learning_rate 0.001", 0.8256, 0.7019),
          (1, "logistic_regression -batch_size 1 -learning_rate 0.01", 0.8033, 0.6806),
          (1, "logistic_regression -batch_size 1 -learning_rate 0.1", 0.7516, 0.6155),
          (2, "mlp -hidden_size 200", 0.9492, 0.8813),
          (3, "mlp -hidden_size 200 -layers 2", 0.9561, 0.8939)]


def test_every_course_number_stands_beside_its_configuration(tiny_report):
    _, out, _ = tiny_report
    text = (out / "results.md").read_text()
    sweeps = report.plan(extras=False)
    for index, description, dev, test in COURSE:
        header, table = _table_rows(text, sweeps[index].title)
        if description in table:
            assert header[-2:] == ["course dev", "course test"]
            assert table[description][-2:] == [f"{dev:.4f}", f"{test:.4f}"]
        else:  # Q2.3, when our best Q2.2 configuration is not the course's
            assert index == 3
            assert (f"The course's configuration `{description}` (dev {dev:.4f}, test "
                    f"{test:.4f}) is not among these runs.") in text
    assert "one seed: no spread" in text


def _record(model, seed, dev, test):
    return {"model": model, "config": {"seed": seed}, "epochs": [1, 2],
            "valid_acc": [dev / 2, dev], "train_acc": [0.5, 0.9], "test_acc": test,
            "train_seconds": 1.0}


def test_the_course_numbers_are_placed_among_the_seeds(tmp_path):
    sweep = report.Sweep("q1", "Q1: numpy models",
                         [report.q1("perceptron"), report.q1("logistic_regression"),
                          report.q1("mlp")], pick_best=False)
    dev = {"perceptron": [0.70, 0.72, 0.74], "logistic_regression": [0.83, 0.84, 0.85],
           "mlp": [0.93, 0.93, 0.93]}
    test = {"perceptron": [0.60, 0.605, 0.61], "logistic_regression": [0.70, 0.702, 0.704],
            "mlp": [0.80, 0.81, 0.90]}
    records = {run.with_seed(seed): _record(run.model, seed, dev[run.model][i],
                                            test[run.model][i])
               for run in sweep.runs for i, seed in enumerate(SEEDS)}
    text = report.write_report([sweep], records, {}, tmp_path, 1.0, seeds=SEEDS).read_text()
    _, table = _table_rows(text, sweep.title)
    # by hand: perceptron test mean 0.605, sd 0.005, (0.6193 - 0.605) / 0.005 = +2.86 sd;
    # logistic regression dev mean 0.84, sd 0.01, (0.8251 - 0.84) / 0.01 = -1.49 sd
    assert table["perceptron"][-2:] == ["0.7236 (inside [0.7000, 0.7400])",
                                        "0.6193 (+2.9 sd above the mean)"]
    assert table["logistic_regression"][-2:] == ["0.8251 (-1.5 sd below the mean)",
                                                 "0.7028 (inside [0.7000, 0.7040])"]
    assert table["mlp"][-2:] == ["0.9373 (above all 3 seeds, which agree)",
                                 "0.8610 (inside [0.8000, 0.9000])"]

    one = {run: records[run] for run in sweep.runs}
    text = report.write_report([sweep], one, {}, tmp_path, 1.0, seeds=[42]).read_text()
    _, table = _table_rows(text, sweep.title)
    assert table["perceptron"][-2:] == ["0.7236", "0.6193"]
    assert "one seed: no spread" in text


def test_seeded_figures_draw_each_configuration_s_mean_over_a_min_max_band(seeded_report):
    import matplotlib.pyplot as plt
    from matplotlib.colors import to_rgb
    _, out, _, _ = seeded_report
    records = _records_by_label(out)
    sweep = report.plan(extras=False)[2]  # Q2.2: six configurations
    by_run = {run.with_seed(s): records[run.with_seed(s).label]
              for run in sweep.runs for s in SEEDS}
    assert (out / "figures" / "q2.2.png").is_file()
    fig = report.sweep_figure(sweep, by_run, seeds=SEEDS)
    try:
        assert "3 seeds" in fig._suptitle.get_text()
        assert len(fig.axes) == 2
        for ax, key in zip(fig.axes, ("valid_acc", "train_loss")):
            lines, bands = ax.get_lines(), ax.collections
            assert [line.get_label() for line in lines] == [r.description for r in sweep.runs]
            assert len(bands) == len(lines)
            for line, band, run in zip(lines, bands, sweep.runs):
                curves = np.array([records[run.with_seed(s).label][key] for s in SEEDS])
                assert np.allclose(line.get_ydata(), curves.mean(axis=0), rtol=0, atol=1e-12)
                assert np.allclose(band.get_facecolor()[0][:3], to_rgb(line.get_color()))
                xy = np.concatenate([path.vertices for path in band.get_paths()])
                for epoch, low, high in zip(line.get_xdata(), curves.min(axis=0),
                                            curves.max(axis=0)):
                    ys = xy[np.isclose(xy[:, 0], epoch), 1]
                    assert np.isclose(ys.min(), low) and np.isclose(ys.max(), high)
    finally:
        plt.close(fig)


def test_results_tex_holds_every_table_of_results_md(seeded_report):
    _, out, _, _ = seeded_report
    md = (out / "results.md").read_text()
    tex = (out / "results.tex").read_text()
    tabulars = re.findall(r"\\begin\{tabular\}\{(lr*)\}\n(.*?)\n\\end\{tabular\}", tex, re.S)
    sweeps = report.plan(extras=False)
    assert len(tabulars) == len(sweeps) == tex.count(r"\begin{tabular}")
    for sweep, (columns, body) in zip(sweeps, tabulars):
        header, table = _table_rows(md, sweep.title)
        lines = body.splitlines()
        assert (lines[0], lines[2], lines[-1]) == (r"\toprule", r"\midrule", r"\bottomrule")
        assert len(columns) == len(lines[1].split(" & ")) == len(header)
        rows = lines[3:-1]
        assert len(rows) == len(table)
        for row, cells in zip(rows, table.values()):
            assert row.endswith(r" \\")
            tex_cells = row.removesuffix(r" \\").split(" & ")
            assert len(tex_cells) == len(header)
            assert re.findall(r"\d+\.\d+", row) == re.findall(r"\d+\.\d+", " | ".join(cells))
            assert all(re.fullmatch(r"\d\.\d{4}", c) for c in tex_cells[1:4]), row
            for spread in tex_cells[5:8]:
                assert re.fullmatch(r"\$\d\.\d{4} \\pm \d\.\d{4}\$ \(\d\.\d{4}--\d\.\d{4}\)",
                                    spread), spread
            assert "_" not in row.replace(r"\_", "") and "`" not in row


def test_a_seeded_rerun_reuses_every_run(seeded_report, monkeypatch, capsys):
    argv, out, _, _ = seeded_report

    def no_runs(self, run):
        raise AssertionError(f"{run.label} was run again")
    monkeypatch.setattr(report.Runner, "execute", no_runs)
    assert report.main(argv) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith(f"42 runs: 42 finished earlier, reused from "
                                   f"{out / 'runs'}; 0 to do\n")
    assert captured.err == ""


def test_one_more_seed_runs_only_that_seed_s_runs(seeded_report, tmp_path):
    argv, out, _, _ = seeded_report
    copy = tmp_path / "report"
    shutil.copytree(out, copy)
    before = set(_records_by_label(copy))
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        assert report.main([*argv, "--output-dir", str(copy), "--seeds", "4"]) == 0
    records = _records_by_label(copy)
    expected = _expected_runs(records, [*SEEDS, 3])
    started = _started(stdout.getvalue())
    assert started == {f"{r.script} {r.description}" for r in expected if r.label not in before}
    q22 = report.plan(extras=False)[2].runs
    if _best_by_mean_dev(q22, records, SEEDS) == _best_by_mean_dev(q22, records, [*SEEDS, 3]):
        # 12 configurations of Q1, Q2.1 and Q2.2, and the 2 new ones of Q2.3
        assert len(started) == 14 and all(s.endswith(" -seed 3") for s in started)


@pytest.mark.parametrize("run, seed", [(report.q1("logistic_regression"), 2),
                                       (report.q2("mlp"), 1)], ids=["q1", "q2"])
def test_a_seeded_run_is_the_script_run_alone_with_that_seed(seeded_report, tmp_path, run, seed):
    argv, out, _, _ = seeded_report
    data = argv[argv.index("--data-path") + 1]
    result = subprocess.run([sys.executable, str(ROOT / run.script), *run.args, "-seed", str(seed),
                             "-data_path", data, "-epochs", "2", "-output_dir", str(tmp_path)],
                            capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr
    [alone] = [json.loads(path.read_text()) for path in tmp_path.glob("*.json")]
    records = _records_by_label(out)
    ours = records[run.with_seed(seed).label]
    for key in ("train_acc", "valid_acc", "train_loss", "valid_loss", "weight_norm",
                "final_train_acc", "test_acc"):
        assert ours.get(key) == alone.get(key), key
    assert ours["config"]["seed"] == alone["config"]["seed"] == seed
    assert ours["train_loss"] != records[run.label]["train_loss"]  # the seed changed the run


# ----------------------------------------------------------------------------- cache

CORRUPTIONS = {
    "truncated": lambda text: text[:len(text) // 2],
    "empty": lambda text: b"",
    "garbled": lambda text: text[:20] + bytes(range(128, 256)) + text[20:],
    "valid_acc-not-numbers": lambda text: json.dumps(dict(json.loads(text),
                                                          valid_acc=["x"])).encode(),
    "no-epochs": lambda text: json.dumps({k: v for k, v in json.loads(text).items()
                                          if k != "epochs"}).encode(),
}


@pytest.mark.parametrize("corrupt", CORRUPTIONS.values(), ids=CORRUPTIONS)
def test_a_corrupted_record_is_a_cache_miss_redone_with_a_warning(tiny_report, tmp_path,
                                                                   corrupt, capsys):
    argv, out, _ = tiny_report
    copy = tmp_path / "report"
    shutil.copytree(out, copy)
    run = report.q1("perceptron")
    folder = copy / "runs" / run.label
    [path] = folder.glob("*.json")
    original = json.loads(path.read_text())

    def others():
        return {p: p.read_bytes() for p in (copy / "runs").rglob("*")
                if p.is_file() and folder not in p.parents}
    untouched = others()
    rows = _table_rows((copy / "results.md").read_text(), "Q1: numpy models")[1]
    path.write_bytes(corrupt(path.read_bytes()))

    assert report.main([*argv, "--output-dir", str(copy)]) == 0
    captured = capsys.readouterr()
    [warning] = captured.err.splitlines()
    assert warning.startswith(f"warning: {path}: ") and \
        warning.endswith(f"; running {run.label} again"), warning
    lines = captured.out.splitlines()
    assert lines[0].startswith(f"14 runs: 13 finished earlier, reused from {copy / 'runs'}; "
                               f"1 to do")
    assert lines[1] == f"start {run.script} {run.description}"
    assert lines[2].startswith(f"[14/14] done {run.script} {run.description} in ")
    [path] = folder.glob("*.json")
    redone = json.loads(path.read_text())
    for key in ("epochs", "train_acc", "valid_acc", "weight_norm", "test_acc"):
        assert redone[key] == original[key], key
    assert others() == untouched
    after = _table_rows((copy / "results.md").read_text(), "Q1: numpy models")[1]
    assert {d: c[:4] for d, c in after.items()} == {d: c[:4] for d, c in rows.items()}


def test_the_cache_key_follows_the_local_code_a_script_imports(tmp_path, monkeypatch):
    files = {"utils.py": "import os\n",
             "hw1-q1.py": "import numpy as np\nimport utils\nfrom pkg import part\n",
             "hw1-q2.py": "import utils\n",
             "helper.py": "x = 1\n", "pkg/__init__.py": "", "pkg/part.py": "from . import other\n",
             "pkg/other.py": "import helper\n", "unused.py": ""}
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(text)
    assert report.local_imports(tmp_path / "hw1-q1.py", root=tmp_path) == sorted(
        tmp_path / name for name in ("utils.py", "helper.py", "pkg/__init__.py", "pkg/part.py",
                                     "pkg/other.py"))
    monkeypatch.setattr(report, "ROOT", tmp_path)

    def keys():
        runner = report.Runner(tmp_path, [], "data", jobs=1, force=False)
        return runner.key(report.q1("mlp")), runner.key(report.q2("mlp"))
    q1_key, q2_key = keys()
    (tmp_path / "pkg" / "other.py").write_text("import helper  # edited\n")
    edited, same = keys()
    assert edited != q1_key and same == q2_key
    (tmp_path / "unused.py").write_text("x = 2\n")
    assert keys() == (edited, q2_key)


@pytest.mark.skipif(not report.FORK, reason="only forked runs share the report's split")
def test_forked_runs_use_the_split_the_report_loaded_once(tmp_path):
    from conftest import make_tiny_dataset
    a = make_tiny_dataset(tmp_path / "a.npz", seed=0).resolve()
    b = make_tiny_dataset(tmp_path / "b.npz", seed=1).resolve()
    run = report.q1("perceptron")  # loads the split with the bias column

    def record(data, name, datasets=None):
        runner = report.Runner(tmp_path / name, ["-data_path", str(data), "-epochs", "1"], "d",
                               1, False, datasets=datasets)
        result, _, log = runner.execute(run)
        assert result is not None, log.read_text()
        return result["weight_norm"]
    # a split preloaded for a's path stands in for the file: the run trains on b's
    swapped = record(a, "swapped", {(str(a), True): utils.load_dataset(b, bias=True)})
    assert swapped == record(b, "b") != record(a, "a")


def test_a_missing_default_dataset_is_fetched_first(tmp_path, monkeypatch, capsys):
    """Without Kuzushiji-MNIST.npz, the report runs the download script to build it before
    anything else; a missing file of another name is a one-line error, with nothing fetched."""
    from conftest import make_tiny_dataset
    downloader = utils.load_script("download_kuzushiji_mnist.py")
    calls = []

    def fake_download(argv):
        calls.append(argv)
        make_tiny_dataset(Path(argv[argv.index("--output") + 1]))
        return 0

    monkeypatch.setattr(downloader, "main", fake_download)
    monkeypatch.chdir(tmp_path)
    blocker = tmp_path / "afile"
    blocker.write_text("in the way")
    with pytest.raises(SystemExit) as stop:  # stops at the output folder, after the fetch
        report.main(["-output_dir", str(blocker / "report")])
    assert stop.value.code == 1
    assert calls == [["--output", utils.DEFAULT_DATA_PATH]]
    assert utils.load_dataset(tmp_path / utils.DEFAULT_DATA_PATH)["train"][0].shape[0] == 60
    assert "fetching and building it" in capsys.readouterr().out

    calls.clear()
    with pytest.raises(SystemExit) as stop:
        report.main(["-data_path", "other.npz", "-output_dir", str(tmp_path / "report")])
    assert stop.value.code == 1 and calls == []
    assert capsys.readouterr().err.startswith("error: other.npz: no such file")
