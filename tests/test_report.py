"""report.py end to end on a tiny synthetic dataset: every file written, runs reused on the second call."""
import pytest

import report
import utils


@pytest.fixture(scope="module")
def tiny_report(tmp_path_factory):
    from conftest import make_tiny_dataset
    folder = tmp_path_factory.mktemp("report")
    data = make_tiny_dataset(folder / "tiny.npz", n_train=48, n_dev=16, n_test=16)
    out = folder / "report"
    argv = ["--data-path", str(data), "--output-dir", str(out), "--epochs", "2"]
    assert report.main(argv) == 0
    return argv, out


def test_report_writes_every_file(tiny_report):
    _, out = tiny_report
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
        record = utils.read_record(records[0])
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
    _, out = tiny_report
    records = {}
    for folder in (out / "runs").iterdir():
        records[folder.name] = utils.read_record(next(folder.glob("*.json")))
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
    argv, out = tiny_report
    before = (out / "results.md").read_text()

    def no_runs(self, run):
        raise AssertionError(f"{run.label} was run again")
    monkeypatch.setattr(report.Runner, "execute", no_runs)
    assert report.main(argv) == 0
    assert "reusing 12 finished run(s)" in capsys.readouterr().out  # + 2 Q2.3 runs once resolved
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
    records = [utils.read_record(next(d.glob("*.json"))) for d in (out / "runs").iterdir()]
    assert any(r["model"] == "logistic_regression" and r["config"].get("l2_penalty") == 0.01
               and r["weight_norm"] for r in records)
