"""report.py as a command, end to end on a tiny synthetic dataset: every file written, runs
reused on the second call, a cached run whose record is damaged, the command line and its
flags, bad output folders and data, several seeds."""
import contextlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import report
import utils
from reporting import plan
from reporting.runner import Runner
from runkit import records
from conftest import run_report, table_rows

ROOT = Path(report.__file__).resolve().parent


@pytest.fixture(scope="module")
def tiny_report(tmp_path_factory):
    from conftest import make_tiny_dataset
    folder = tmp_path_factory.mktemp("report")
    data = make_tiny_dataset(folder / "tiny.npz", n_train=48, n_dev=16, n_test=16)
    out = folder / "report"
    argv = ["--data-path", str(data), "--output-dir", str(out), "--epochs", "2"]
    code, stdout = run_report(argv)
    assert code == 0, stdout
    return argv, out, stdout


def _records(out):
    """{label: record} of every finished run (one with a cache key) under out/runs."""
    return {folder.name: records.read_record(next(folder.glob("*.json")))
            for folder in (out / "runs").iterdir() if (folder / "cache-key").is_file()}


def test_report_writes_every_file(tiny_report):
    _, out, _ = tiny_report
    sweeps = plan.plan(extras=False)
    for sweep in sweeps:
        for suffix in (".pdf", ".png"):
            path = out / "figures" / f"{sweep.key}{suffix}"
            assert path.is_file() and path.stat().st_size > 0, path
    labels = sorted(p.name for p in (out / "runs").iterdir())
    # Q1: 3 runs, Q2.1: 3, Q2.2: 6, Q2.3: 2 built on the best of Q2.2
    assert len(labels) == 14, labels
    for label in labels:
        folder = out / "runs" / label
        found = list(folder.glob("*.json"))
        assert len(found) == 1 and (folder / "cache-key").is_file()
        record = records.read_record(found[0])
        assert len(record["valid_acc"]) == 2 and record["test_acc"] is not None
        assert list(folder.glob("*.png")), f"{label} has no figures"
    text = (out / "results.md").read_text()
    for sweep in sweeps:
        assert f"## {sweep.title}" in text
    assert "| 0.7236 | 0.6193 |" in text and "| 0.8251 | 0.7028 |" in text  # the course's Q1
    assert text.count("(best)") == 3  # Q2.1, Q2.2, Q2.3
    assert "Best learning rate: `logistic_regression -batch_size 1 -learning_rate" in text
    assert "failed" not in text
    assert [p for p in out.rglob(".*")] == []  # no temporary file left


def test_both_scripts_train_accuracy_comes_from_their_records(tiny_report):
    _, out, _ = tiny_report
    saved = _records(out)
    text = (out / "results.md").read_text()
    for sweep in plan.plan(extras=False)[:3]:
        _, table = table_rows(text, sweep.title)
        for run in sweep.runs:
            assert table[run.description][1] == f"{saved[run.label]['final_train_acc']:.4f}"


def test_q23_builds_on_the_best_q22_run(tiny_report):
    _, out, _ = tiny_report
    saved = _records(out)
    q22 = plan.plan(extras=False)[2].runs
    best = max(q22, key=lambda r: (saved[r.label]["valid_acc"][-1], -q22.index(r)))
    assert best.with_flags(layers=2).label in saved
    assert best.with_flags(layers=3).label in saved
    q23 = [line for line in (out / "results.md").read_text().split("## Q2.3")[1].splitlines()
           if line.startswith("| ") and "`" in line]
    assert [line.split("`")[1] for line in q23] == [
        best.description, best.with_flags(layers=2).description,
        best.with_flags(layers=3).description]


def test_progress_lines_count_every_run(tiny_report):
    _, _, log = tiny_report
    lines = log.splitlines()
    assert lines[0] == f"14 runs to do, {report.parse_args([]).jobs} at a time"
    done = [line for line in lines if line.startswith("[")]
    assert [line.split("]")[0] for line in done] == [f"[{i}/14" for i in range(1, 15)]
    assert len([line for line in lines if line.startswith("start ")]) == 14
    assert re.fullmatch(r"Wrote \S+results\.md and results\.tex \(14 runs, 0 failed\); "
                        r"total: (\d+m\d\ds|\d+s) \(\d+\.\d s\)", lines[-1]), lines[-1]


def test_second_call_reuses_every_run(tiny_report, monkeypatch):
    argv, out, _ = tiny_report
    before = (out / "results.md").read_text()

    def no_runs(self, run):
        raise AssertionError(f"{run.label} was run again")
    monkeypatch.setattr(Runner, "execute", no_runs)
    code, stdout = run_report(argv)
    assert code == 0
    assert stdout.startswith(f"14 runs: 14 finished earlier, reused from {out / 'runs'}; "
                             f"0 to do\n")
    after = (out / "results.md").read_text()
    strip = lambda text: [l for l in text.splitlines() if not l.startswith("Report time")]
    assert strip(after) == strip(before)
    assert "(0 runs executed, 14 reused)" in after and "(14 runs executed, 0 reused)" in before


CORRUPTIONS = {
    "truncated": lambda text: text[:len(text) // 2],
    "garbled": lambda text: text[:20] + bytes(range(128, 256)) + text[20:],
    "older-format": lambda text: json.dumps({k: v for k, v in json.loads(text).items()
                                             if k != "record_version"}).encode(),
}


@pytest.mark.parametrize("corrupt", CORRUPTIONS.values(), ids=CORRUPTIONS)
def test_a_damaged_record_is_a_cache_miss_redone_with_a_warning(tiny_report, tmp_path,
                                                                 corrupt, capsys):
    argv, out, _ = tiny_report
    copy = tmp_path / "report"
    shutil.copytree(out, copy)
    run = plan.q1("perceptron")
    folder = copy / "runs" / run.label
    [path] = folder.glob("*.json")
    original = json.loads(path.read_text())
    others = lambda: {p: p.read_bytes() for p in (copy / "runs").rglob("*")
                      if p.is_file() and folder not in p.parents}
    untouched = others()
    path.write_bytes(corrupt(path.read_bytes()))
    code, stdout = run_report([*argv, "--output-dir", str(copy)])
    assert code == 0
    [warning] = capsys.readouterr().err.splitlines()
    assert warning.startswith(f"warning: {path}: ") and \
        warning.endswith(f"; running {run.label} again"), warning
    lines = stdout.splitlines()
    assert lines[0].startswith(f"14 runs: 13 finished earlier, reused from {copy / 'runs'}; "
                               f"1 to do")
    assert lines[1] == f"start {run.script} {run.description}"
    assert lines[2].startswith(f"[14/14] done {run.script} {run.description} in ")
    [path] = folder.glob("*.json")
    redone = json.loads(path.read_text())
    for key in ("epochs", "train_acc", "valid_acc", "weight_norm", "test_acc"):
        assert redone[key] == original[key], key
    assert others() == untouched


def test_extras_run_on_tiny_data(tmp_path, tiny_data):
    out = tmp_path / "report"
    code, _ = run_report(["--data-path", str(tiny_data), "--output-dir", str(out),
                          "--epochs", "1", "--extras"])
    assert code == 0
    for sweep in plan.plan(extras=True):
        assert (out / "figures" / f"{sweep.key}.png").is_file(), sweep.key
    # 14 runs of the 2022-23 plan + 9 extra ones (the default FFN is shared, not re-run)
    assert len(list((out / "runs").iterdir())) == 23
    text = (out / "results.md").read_text()
    assert "Best batch size: `mlp -batch_size" in text and "failed" not in text
    saved = _records(out).values()
    assert any(r["model"] == "logistic_regression" and r["config"].get("l2_penalty") == 0.01
               and r["weight_norm"] for r in saved)


# ----------------------------------------------------------------------------- flags

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


def test_results_name_the_command_and_warn_when_short(tiny_report):
    argv, out, _ = tiny_report
    text = (out / "results.md").read_text()
    assert f"Regenerated by `python report.py --data-path {argv[1]} --output-dir {out} " \
           f"--epochs 2`." in text
    assert "every run trained for 2 epochs, not the course's 20, so these numbers are not " \
           "comparable with the course's published ones" in text
    assert "The course's columns are after 20 epochs, ours after 2." in text


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


# ----------------------------------------------------------------------------- bad input

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
    monkeypatch.setattr(Runner, "execute", lambda self, run: started.append(run))
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


def test_missing_data_is_a_clean_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        report.main(["--data-path", str(tmp_path / "none.npz"), "--output-dir", str(tmp_path)])
    assert exc.value.code == 1
    assert "download_kuzushiji_mnist.py" in capsys.readouterr().err
    assert not (tmp_path / "results.md").exists()


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


# ----------------------------------------------------------------------------- seeds

SEEDS = [42, 1, 2]  # --seeds 3: the course's 42, then the stated list 1, 2, ...
MEASURES = {"train": lambda r: r["final_train_acc"], "dev": lambda r: r["valid_acc"][-1],
            "test": lambda r: r["test_acc"]}


def _best_by_mean_dev(configs, saved, seeds):
    means = [np.mean([saved[c.with_seed(s).label]["valid_acc"][-1] for s in seeds])
             for c in configs]
    return configs[int(np.argmax(means))]


def _configurations(saved, seeds):
    sweeps = plan.plan(extras=False)
    best = _best_by_mean_dev(sweeps[2].runs, saved, seeds)
    return [s.runs for s in sweeps[:3]] + [[best, best.with_flags(layers=2),
                                            best.with_flags(layers=3)]]


def _expected_runs(saved, seeds):
    return {c.with_seed(s) for configs in _configurations(saved, seeds) for c in configs
            for s in seeds}


def _started(log):
    return {line.removeprefix("start ") for line in log.splitlines() if line.startswith("start ")}


@pytest.fixture(scope="module")
def seeded_report(tiny_report, tmp_path_factory):
    """The tiny report run again with --seeds 3, in a copy of its folder."""
    argv, out, _ = tiny_report
    copy = tmp_path_factory.mktemp("seeded") / "report"
    shutil.copytree(out, copy)
    before = set(_records(copy))
    argv = [*argv, "--output-dir", str(copy), "--seeds", "3"]
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        code, stdout = run_report(argv)
    assert code == 0 and stderr.getvalue() == ""
    return argv, copy, stdout, before


def test_seeds_run_every_configuration_with_each_seed_reusing_seed_42s(seeded_report):
    _, out, log, before = seeded_report
    lines = log.splitlines()
    assert lines[0] == (f"42 runs: 12 finished earlier, reused from {out / 'runs'}; 30 to do, "
                        f"{report.parse_args([]).jobs} at a time")
    saved = _records(out)
    expected = _expected_runs(saved, SEEDS)
    assert {r.label for r in expected} <= set(saved)
    assert set(saved) - {r.label for r in expected} <= before
    for run in expected:
        assert saved[run.label]["config"]["seed"] == run.seed
    assert _started(log) == {f"{r.script} {r.description}" for r in expected
                             if r.label not in before}


def test_seeded_tables_give_each_configuration_s_mean_sd_and_range(seeded_report):
    _, out, _, _ = seeded_report
    text = (out / "results.md").read_text()
    saved = _records(out)
    spread = re.compile(r"(\d\.\d{4}) ± (\d\.\d{4}) \((\d\.\d{4})–(\d\.\d{4})\)")
    for sweep, runs in zip(plan.plan(extras=False), _configurations(saved, SEEDS)):
        configs = {run.description: run for run in runs}
        header, table = table_rows(text, sweep.title)
        assert header[:8] == ["run", "train acc", "dev acc", "test acc", "seconds",
                              "train acc over 3 seeds", "dev acc over 3 seeds",
                              "test acc over 3 seeds"]
        assert list(table) == list(configs)
        for description, cells in table.items():
            config = configs[description]
            for i, measure in enumerate(MEASURES.values()):
                assert cells[1 + i] == f"{measure(saved[config.label]):.4f}"  # seed 42's
                values = [measure(saved[config.with_seed(s).label]) for s in SEEDS]
                match = spread.fullmatch(cells[5 + i])
                assert match, cells[5 + i]
                assert [float(x) for x in match.groups()] == pytest.approx(
                    [np.mean(values), np.std(values, ddof=1), min(values), max(values)],
                    abs=5.1e-5)
            if header[-2:] == ["course dev", "course test"] and cells[-1] != "—":
                assert re.fullmatch(r"\d\.\d{4} \((inside the range of 3 seeds|\d\.\d{4} "
                                    r"(above the highest|below the lowest) of 3 seeds)\)",
                                    cells[-2]), cells[-2]


def test_results_tex_holds_every_table_of_results_md(seeded_report):
    _, out, _, _ = seeded_report
    md = (out / "results.md").read_text()
    tex = (out / "results.tex").read_text()
    tabulars = re.findall(r"\\begin\{tabular\}\{(lr*)\}\n(.*?)\n\\end\{tabular\}", tex, re.S)
    sweeps = plan.plan(extras=False)
    assert len(tabulars) == len(sweeps) == tex.count(r"\begin{tabular}")
    for sweep, (columns, body) in zip(sweeps, tabulars):
        header, table = table_rows(md, sweep.title)
        lines = body.splitlines()
        assert (lines[0], lines[2], lines[-1]) == (r"\toprule", r"\midrule", r"\bottomrule")
        assert len(columns) == len(lines[1].split(" & ")) == len(header)
        rows = lines[3:-1]
        assert len(rows) == len(table)
        for row, cells in zip(rows, table.values()):
            assert re.findall(r"\d+\.\d+", row) == re.findall(r"\d+\.\d+", " | ".join(cells))


def test_a_seeded_rerun_reuses_every_run(seeded_report, monkeypatch, capsys):
    argv, out, _, _ = seeded_report

    def no_runs(self, run):
        raise AssertionError(f"{run.label} was run again")
    monkeypatch.setattr(Runner, "execute", no_runs)
    code, stdout = run_report(argv)
    assert code == 0
    assert stdout.startswith(f"42 runs: 42 finished earlier, reused from {out / 'runs'}; "
                             f"0 to do\n")
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("run, seed", [(plan.q1("logistic_regression"), 2),
                                       (plan.q2("mlp"), 1)], ids=["q1", "q2"])
def test_a_seeded_run_is_the_script_run_alone_with_that_seed(seeded_report, tmp_path, run, seed):
    argv, out, _, _ = seeded_report
    data = argv[argv.index("--data-path") + 1]
    result = subprocess.run([sys.executable, str(ROOT / run.script), *run.args, "-seed", str(seed),
                             "-data_path", data, "-epochs", "2", "-output_dir", str(tmp_path)],
                            capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr
    [alone] = [json.loads(path.read_text()) for path in tmp_path.glob("*.json")]
    saved = _records(out)
    ours = saved[run.with_seed(seed).label]
    for key in ("train_acc", "valid_acc", "train_loss", "valid_loss", "weight_norm",
                "final_train_acc", "test_acc"):
        assert ours.get(key) == alone.get(key), key
    assert ours["config"]["seed"] == alone["config"]["seed"] == seed
    assert ours["train_loss"] != saved[run.label]["train_loss"]  # the seed changed the run
