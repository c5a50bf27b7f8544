"""The report's cache, without running anything: the key (flags, seed, code, data), records
read back and checked (damaged or older ones are misses), and a run folder cleared of the
report's own files only."""
import json

import pytest

from reporting.cache import Cache, InTheWay, local_imports, record_problem
from reporting.plan import q1, q2
from conftest import report_record

SCRIPTS = {"utils.py": "import os\n",
           "hw1-q1.py": "import numpy as np\nimport utils\nfrom pkg import part\n",
           "hw1-q2.py": "import utils\n",
           "helper.py": "x = 1\n", "pkg/__init__.py": "", "pkg/part.py": "from . import other\n",
           "pkg/other.py": "import helper\n", "unused.py": ""}


@pytest.fixture
def root(tmp_path):
    """A folder of scripts and the local code they import."""
    root = tmp_path / "code"
    for name, text in SCRIPTS.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def cache(tmp_path, root=None, common=("-epochs", "2"), data="data-a", **options):
    options = {"root": root} if root else {}
    return Cache(tmp_path / "runs", list(common), data, warn=warnings.append, **options)


warnings = []


@pytest.fixture(autouse=True)
def no_warnings_yet():
    warnings.clear()


def test_the_key_follows_flags_seed_common_flags_and_data(tmp_path):
    c = cache(tmp_path)
    run = q1("mlp")
    key = c.key(run)
    assert c.key(q1("mlp")) == key
    assert c.key(q1("mlp", learning_rate="0.1")) != key
    assert c.key(run.with_seed(1)) != key
    assert cache(tmp_path, common=("-epochs", "3")).key(run) != key
    assert cache(tmp_path, data="data-b").key(run) != key


def test_the_key_follows_the_local_code_a_script_imports(tmp_path, root):
    assert local_imports(root / "hw1-q1.py", root=root) == sorted(
        root / name for name in ("utils.py", "helper.py", "pkg/__init__.py", "pkg/part.py",
                                 "pkg/other.py"))

    def keys():
        c = cache(tmp_path, root=root)
        return c.key(q1("mlp")), c.key(q2("mlp"))
    q1_key, q2_key = keys()
    (root / "pkg" / "other.py").write_text("import helper  # edited\n")
    edited, same = keys()
    assert edited != q1_key and same == q2_key
    (root / "unused.py").write_text("x = 2\n")
    assert keys() == (edited, q2_key)
    (root / "utils.py").write_text("import sys\n")
    assert all(new != old for new, old in zip(keys(), (edited, q2_key)))


def finished(c, run, made=None, name=None):
    """Write `run`'s folder as a finished run left it: its record, a figure, its log, its key."""
    folder = c.folder(run)
    folder.mkdir(parents=True, exist_ok=True)
    name = name or f"{run.tag}-{run.model}"
    (folder / f"{name}.json").write_text(json.dumps(made or report_record(run.model, run.seed)))
    (folder / f"{name}-accuracy.png").write_bytes(b"png")
    (folder / "log.txt").write_text("log\n")
    (folder / "cache-key").write_text(c.key(run) + "\n")
    return folder


def test_a_finished_run_is_found_again_unless_forced_or_changed(tmp_path):
    c, run = cache(tmp_path), q1("perceptron")
    assert c.lookup(run) is None  # no folder
    finished(c, run)
    assert c.lookup(run) == report_record()
    assert cache(tmp_path, data="data-b").lookup(run) is None  # another key: a quiet miss
    forced = Cache(tmp_path / "runs", ["-epochs", "2"], "data-a", force=True)
    assert forced.lookup(run) is None
    (c.folder(run) / "cache-key").unlink()  # a run that did not end
    assert c.lookup(run) is None
    assert warnings == []


@pytest.mark.parametrize("change, problem", [
    (lambda r: {k: v for k, v in r.items() if k != "record_version"}, "a record of format 1"),
    (lambda r: {**r, "record_version": 3}, "a record of format 3, not 2"),
    (lambda r: {k: v for k, v in r.items() if k != "final_train_acc"}, "no 'final_train_acc'"),
    (lambda r: {**r, "valid_acc": ["x", 1]}, "'valid_acc' is not 2 numbers"),
    (lambda r: {**r, "train_loss": [1.0]}, "'train_loss' is not None or 2 numbers"),
    (lambda r: {**r, "model": "mlp"}, "a record of 'mlp', not 'perceptron'"),
    (lambda r: {**r, "config": {"seed": 1}}, "not a record of seed 42"),
    (lambda r: {**r, "diverged": "no"}, "'diverged' is not true or false"),
    (lambda r: [r], "a JSON list, not a record"),
], ids=["version-1", "version-3", "no-final_train_acc", "valid_acc", "short-curve", "model",
        "seed", "diverged", "a-list"])
def test_a_record_of_another_format_or_damaged_is_a_miss_with_a_warning(tmp_path, change,
                                                                        problem):
    c, run = cache(tmp_path), q1("perceptron")
    assert record_problem(change(report_record()), run).startswith(problem)
    folder = finished(c, run, made=change(report_record()))
    assert c.lookup(run) is None
    [warning] = warnings
    assert warning.startswith(f"warning: {folder / 'q1-perceptron.json'}: {problem}")
    assert warning.endswith("; running q1-perceptron again")


@pytest.mark.parametrize("text", ["", "{\"model\": ", "\x80\x81 not utf-8"])
def test_an_unreadable_record_is_a_miss_with_a_warning(tmp_path, text):
    c, run = cache(tmp_path), q1("perceptron")
    folder = finished(c, run)
    (folder / "q1-perceptron.json").write_bytes(text.encode("latin-1"))
    assert c.lookup(run) is None
    assert len(warnings) == 1 and "unreadable" in warnings[0]


def test_a_record_of_the_previous_report_format_does_not_crash_the_lookup(tmp_path):
    """What the report wrote before the scripts shared one record format: hw1-q2's record had
    no final_train_acc per epoch curve and no record_version."""
    c, run = cache(tmp_path), q2("mlp")
    old = {"model": "mlp", "config": {"seed": 42}, "epochs": [1, 2], "train_loss": [1, 0.5],
           "valid_acc": [0.5, 0.6], "final_train_acc": 0.7, "test_acc": 0.6,
           "train_seconds": 3.0}
    finished(c, run, made=old)
    assert c.lookup(run) is None and len(warnings) == 1


def test_clearing_deletes_the_report_s_files_and_nothing_else(tmp_path):
    c, run = cache(tmp_path), q1("perceptron")
    folder = finished(c, run, name="q1-perceptron-epochs=2")
    (folder / ".q1-perceptron-epochs=2.json.part-host-999999-abc.json").write_text("")  # a temp
    (folder / "q1-perceptron-epochs=2+2.json").write_text("{}")  # runkit's name for a 2nd run
    (folder / "q1-perceptronic.json").write_text("not a name the script gives: the user's")
    (folder / "old").mkdir()
    (folder / "old" / "q1-perceptron.json").write_text("the user's")
    (folder / "notes.txt").write_text("the user's")
    (folder / "q1-mlp.png").write_text("another model's name: the user's")
    assert c.clear(run) == folder
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt", "old", "q1-mlp.png",
                                                        "q1-perceptronic.json"]
    assert (folder / "old" / "q1-perceptron.json").read_text() == "the user's"
    assert c.clear(q1("mlp", layers=2)).is_dir()  # a folder not there yet is made


@pytest.mark.parametrize("blocker", ["log.txt", "q1-perceptron.json", "cache-key"])
def test_a_folder_where_a_run_file_goes_is_in_the_way_and_nothing_is_deleted(tmp_path,
                                                                           blocker):
    c, run = cache(tmp_path), q1("perceptron")
    folder = finished(c, run, name="q1-perceptron-x")
    (folder / blocker).unlink(missing_ok=True)
    (folder / blocker).mkdir()
    (folder / blocker / "mine").write_text("the user's")
    before = sorted(p.relative_to(folder) for p in folder.rglob("*"))
    with pytest.raises(InTheWay) as err:
        c.clear(run)
    assert f"{folder}: {blocker}/ stand(s) where the run writes its files" in str(err.value)
    assert sorted(p.relative_to(folder) for p in folder.rglob("*")) == before


def test_a_file_where_the_run_folder_goes_is_in_the_way(tmp_path):
    c, run = cache(tmp_path), q1("perceptron")
    c.runs_dir.mkdir()
    c.folder(run).write_text("the user's")
    with pytest.raises(InTheWay, match="is a file, not the run's folder"):
        c.clear(run)
    assert c.folder(run).read_text() == "the user's"


def test_complete_reads_the_record_back_and_writes_the_key_last(tmp_path):
    c, run = cache(tmp_path), q1("perceptron")
    folder = finished(c, run)
    (folder / "cache-key").unlink()
    (folder / "notes.json").write_text("{}")  # the user's: not a record of this run
    assert c.complete(run) == (report_record(), None)
    assert c.lookup(run) == report_record()
    (folder / "cache-key").unlink()
    (folder / "q1-perceptron-copy.json").write_text(json.dumps(report_record()))
    made, problem = c.complete(run)
    assert made is None and problem.endswith("2 records (q1-*.json), not 1")
    assert not (folder / "cache-key").exists()
