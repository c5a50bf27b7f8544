"""Bad input, second round (issue #16): labels, non-finite pixels, empty splits, a full disk,
temporary files of killed runs, an empty -output_dir and the folders of failed runs.

Each case runs on small synthetic files and checks the one-line message, and that no file was
left behind or damaged. The downloader's damaged-split case is in test_data.py.
"""
import errno
import io
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT

import utils
from runkit import errors, figures, files, records

Q1 = ROOT / "hw1-q1.py"


def write_split(path, **arrays):
    """A course-layout file of 3 classes (every split has each), with `arrays` replacing some."""
    rng = np.random.RandomState(0)
    base = {}
    for split, n in (("train", 30), ("dev", 12), ("test", 12)):
        base[f"X{split}"] = rng.randint(0, 256, size=(n, 16)).astype(np.uint8)
        base[f"y{split}"] = (np.arange(n) % 3).astype(np.uint8)
    base.update(arrays)
    np.savez_compressed(path, **base)
    return Path(path)


def labels(n, classes):
    """n labels cycling through `classes`, as int64."""
    return np.resize(np.asarray(classes, dtype=np.int64), n)


def hidden(folder):
    return sorted(p.name for p in Path(folder).iterdir() if p.name.startswith("."))


def snapshot(folder):
    return {p.name: p.read_bytes() for p in sorted(Path(folder).iterdir())}


# ----------------------------------------------------------------------------- labels

def test_negative_labels_are_refused_naming_file_key_and_values(tmp_path):
    ytrain = labels(30, [0, 1, 2])
    ytrain[[4, 7, 9]] = [-1, -3, -1]
    path = write_split(tmp_path / "d.npz", ytrain=ytrain)
    with pytest.raises(utils.DataError) as info:
        utils.load_dataset(path)
    assert str(info.value) == (f"{path}: 'ytrain' has negative labels (-3, -1); class labels "
                               f"must be 0, 1, ..., C-1")


def test_negative_labels_in_the_medmnist_layout(tmp_path):
    rng = np.random.RandomState(1)
    arrays = {}
    for split, n in (("train", 12), ("val", 6), ("test", 6)):
        arrays[f"{split}_images"] = rng.randint(0, 256, size=(n, 4, 4)).astype(np.uint8)
        arrays[f"{split}_labels"] = labels(n, [0, 1, 2]).reshape(n, 1)
    arrays["val_labels"][2, 0] = -7
    np.savez(tmp_path / "oct.npz", **arrays)
    with pytest.raises(utils.DataError) as info:
        utils.load_dataset(tmp_path / "oct.npz")
    assert str(info.value) == (f"{tmp_path / 'oct.npz'}: 'val_labels' has negative labels (-7); "
                               f"class labels must be 0, 1, ..., C-1")


def test_float_labels_are_refused_even_when_whole(tmp_path):
    path = write_split(tmp_path / "d.npz", ydev=labels(12, [0, 1, 2]).astype(np.float64))
    with pytest.raises(utils.DataError) as info:
        utils.load_dataset(path)
    assert str(info.value) == (f"{path}: 'ydev' has dtype float64 (values 0.0, 1.0, 2.0); class "
                               f"labels must be stored as integers 0, 1, ..., C-1")


def test_a_label_beyond_the_number_of_examples_is_refused(tmp_path):
    ytest = labels(12, [0, 1, 2])
    ytest[5] = 10 ** 9  # 10**9 outputs would not fit in memory
    path = write_split(tmp_path / "d.npz", ytest=ytest)
    with pytest.raises(utils.DataError) as info:
        utils.load_dataset(path)
    assert str(info.value) == (f"{path}: 'ytest' has label 1000000000, but the splits hold only "
                               f"54 examples; class labels must be 0, 1, ..., C-1")


def test_a_single_class_is_refused(tmp_path):
    path = write_split(tmp_path / "d.npz", ytrain=np.zeros(30, np.int64),
                       ydev=np.zeros(12, np.int64), ytest=np.zeros(12, np.int64))
    with pytest.raises(utils.DataError) as info:
        utils.load_dataset(path)
    assert str(info.value) == (f"{path}: every label of 'ytrain', 'ydev', 'ytest' is 0; a "
                               f"classifier needs at least two classes")


def test_a_training_split_lacking_a_class_warns_once_and_keeps_all_classes(tmp_path, capsys):
    ytrain = labels(30, [0, 1, 2])  # class 3 is only in dev and test
    path = write_split(tmp_path / "d.npz", ytrain=ytrain, ydev=labels(12, [0, 1, 2, 3]),
                       ytest=labels(12, [3, 2, 1, 0]))
    data = utils.load_dataset(path)
    assert len(np.unique(data["train"][1])) == 3  # what the scripts counted before
    assert utils.class_count(data) == 4
    np.testing.assert_array_equal(data["train"][1], ytrain)
    assert data["train"][1].dtype == np.int64
    assert capsys.readouterr().err == (f"warning: {path}: 'ytrain' lacks class 3; the model still "
                                       f"gets all 4 outputs (labels 0..3)\n")
    utils.load_dataset(path)
    assert capsys.readouterr().err == ""  # once per file


def test_a_label_only_in_training_is_a_warning_with_every_gap(tmp_path, capsys):
    ytrain = labels(30, [0, 1, 2])
    ytrain[0] = 10  # was silently 11 classes
    path = write_split(tmp_path / "d.npz", ytrain=ytrain)
    data = utils.load_dataset(path)
    assert utils.class_count(data) == 11
    assert capsys.readouterr().err == (
        f"warning: {path}: 'ydev' lacks class 10; 'ytest' lacks class 10; no split has classes "
        f"3, 4, 5, 6, 7, ... (7 in all); the model still gets all 11 outputs (labels 0..10)\n")


def test_complete_splits_give_no_warning(tmp_path, capsys):
    data = utils.load_dataset(write_split(tmp_path / "d.npz"))
    assert utils.class_count(data) == 3
    assert capsys.readouterr().err == ""


def test_class_count_spans_all_three_splits():
    X = np.zeros((2, 3))
    data = {"train": (X, np.array([0, 1])), "dev": (X, np.array([4, 0])),
            "test": (X, np.array([2, 2]))}
    assert utils.class_count(data) == 5
    data["dev"] = (X[:0], np.array([], dtype=np.int64))  # an empty split counts for nothing
    assert utils.class_count(data) == 3


# ----------------------------------------------------------------------------- pixels, empty splits

@pytest.mark.parametrize("bad", [[np.nan, np.nan, np.inf], [-np.inf]])
def test_non_finite_pixels_are_a_data_error(tmp_path, bad):
    Xtrain = np.random.RandomState(2).rand(30, 16)
    Xtrain.flat[[3, 50, 400][:len(bad)]] = bad
    path = write_split(tmp_path / "d.npz", Xtrain=Xtrain)
    with pytest.raises(utils.DataError) as info:
        utils.load_dataset(path)
    assert str(info.value) == (
        f"{path}: 'Xtrain' has {len(bad)} non-finite values (NaN or inf); the data is damaged: "
        f"rebuild it with: python download_kuzushiji_mnist.py --output {path} --force")


@pytest.mark.parametrize("shape", [(0, 16), (0, 4, 4)])
def test_an_empty_split_is_said_to_be_empty_not_truncated(tmp_path, shape):
    path = write_split(tmp_path / "d.npz", Xdev=np.zeros(shape, np.uint8),
                       ydev=np.zeros(0, np.uint8))
    with pytest.raises(utils.DataError) as info:
        utils.load_dataset(path)
    assert str(info.value) == (f"{path}: the dev split is empty ('Xdev' has 0 rows); rebuild it "
                               f"with: python download_kuzushiji_mnist.py --output {path} --force")


def test_empty_labels_beside_images_are_said_to_be_empty(tmp_path):
    path = write_split(tmp_path / "d.npz", ytest=np.zeros(0, np.uint8))
    with pytest.raises(utils.DataError, match=r"the test split is empty \('ytest' has 0 rows\)"):
        utils.load_dataset(path)


def _negative_label(path):
    ytrain = labels(30, [0, 1, 2])
    ytrain[3] = -1
    write_split(path, ytrain=ytrain)
    return f"{path.name}: 'ytrain' has negative labels (-1); class labels must be 0, 1, ..., C-1"


def _nan_pixels(path):
    X = np.random.RandomState(3).rand(12, 16)
    X[1, 2] = np.nan
    write_split(path, Xtest=X)
    return (f"{path.name}: 'Xtest' has 1 non-finite values (NaN or inf); the data is damaged: "
            f"rebuild it with: python download_kuzushiji_mnist.py --output {path.name} --force")


def _empty_dev(path):
    write_split(path, Xdev=np.zeros((0, 16), np.uint8), ydev=np.zeros(0, np.uint8))
    return (f"{path.name}: the dev split is empty ('Xdev' has 0 rows); rebuild it with: "
            f"python download_kuzushiji_mnist.py --output {path.name} --force")


@pytest.mark.parametrize("damage", [_negative_label, _nan_pixels, _empty_dev])
def test_the_script_stops_on_bad_data_with_one_line(tmp_path, damage):
    """The command line: `error: ...`, exit code 1, no output folder, the data file untouched."""
    data = tmp_path / "bad.npz"
    message = damage(data)
    before = data.read_bytes()
    result = subprocess.run([sys.executable, str(Q1), "perceptron", "-data_path", data.name,
                             "-output_dir", "out", "-epochs", "1"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr == f"error: {message}\n"
    assert result.stdout == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.npz"]
    assert data.read_bytes() == before


# ----------------------------------------------------------------------------- -output_dir ''

def test_an_empty_output_folder_name_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(errors.OutputError) as info:
        files.writable_dir("")
    assert str(info.value) == ("the output folder is '' (empty): name a folder, or '.' for the "
                               "current one")
    assert files.writable_dir(".") == Path(".")  # said explicitly, the current folder is fine
    assert list(tmp_path.iterdir()) == []


def test_the_script_refuses_an_empty_output_dir(tmp_path):
    write_split(tmp_path / "d.npz")
    result = subprocess.run([sys.executable, str(Q1), "perceptron", "-data_path", "d.npz",
                             "-output_dir", "", "-epochs", "1"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr == ("error: the output folder is '' (empty): name a folder, or '.' for "
                             "the current one\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.npz"]


# ----------------------------------------------------------------------------- folders of failed runs

def test_remove_created_folders_removes_only_empty_folders_it_made(tmp_path):
    (tmp_path / "mine").mkdir()
    files.writable_dir(tmp_path / "mine")  # there before: never removed
    files.writable_dir(tmp_path / "a" / "b")
    files.writable_dir(tmp_path / "kept" / "c")
    (tmp_path / "kept" / "c" / "run.json").write_text("{}")
    files.remove_created_folders()
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == [
        "kept", "kept/c", "kept/c/run.json", "mine"]


RUN_THEN = textwrap.dedent("""\
    import sys
    sys.path.insert(0, sys.argv[1])
    import utils
    from runkit import errors, figures, files, records

    def main():
        out = files.writable_dir(sys.argv[2])
        if sys.argv[3] == "write":
            (out / "run.json").write_text("{}")
        elif sys.argv[3] == "fail":
            errors.fail("training failed")
        elif sys.argv[3] == "interrupt":
            raise KeyboardInterrupt
        elif sys.argv[3] == "crash":
            raise MemoryError
        return 0

    errors.run_command(main)
    """)


@pytest.mark.parametrize("end, code", [("fail", 1), ("interrupt", 130), ("crash", 1),
                                       ("write", 0)])
def test_a_run_that_ends_before_writing_leaves_no_output_folder(tmp_path, end, code):
    script = tmp_path / "run.py"
    script.write_text(RUN_THEN)
    out = tmp_path / "results" / "sweep"
    result = subprocess.run([sys.executable, str(script), str(ROOT), str(out), end],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == code, result.stderr
    if end == "write":
        assert [p.name for p in out.iterdir()] == ["run.json"]
    else:
        assert sorted(p.name for p in tmp_path.iterdir()) == ["run.py"]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_leaves_its_parents_folders(tmp_path):
    files.writable_dir(tmp_path / "parent")
    pid = os.fork()
    if pid == 0:  # the child: exits without pytest's clean-up
        files.remove_created_folders()
        os._exit(0)
    os.waitpid(pid, 0)
    assert (tmp_path / "parent").is_dir()
    files.remove_created_folders()
    assert not (tmp_path / "parent").exists()


# ----------------------------------------------------------------------------- a full disk

RECORD = {"epochs": [1, 2], "train_acc": [0.5, 0.6]}
FIGURES = {"accuracy": ("Accuracy", {"train": [0.5, 0.6]}), "loss": ("Loss", {"train": [2., 1.]})}


class NearlyFull(io.FileIO):
    """A file on a disk with `free` bytes left: writes past them fail with ENOSPC, after
    writing what fits."""

    def __init__(self, path, mode, free):
        super().__init__(path, mode)
        self.free = free

    def write(self, data):
        data = memoryview(data).cast("B")
        if len(data) > self.free:
            super().write(data[:self.free])
            self.free = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.free -= len(data)
        return super().write(data)


def _nearly_full_open(free):
    """An `open` for matplotlib's file writers, on a disk with `free` bytes left."""
    def fake_open(file, mode="r", *args, **kwargs):
        assert "b" in mode and "w" in mode
        return io.BufferedWriter(NearlyFull(file, "wb", free), buffer_size=1024)
    return fake_open


def test_a_full_disk_in_the_pdf_writer_is_one_line_and_keeps_the_earlier_run(tmp_path,
                                                                             monkeypatch):
    import matplotlib.cbook
    import matplotlib.pyplot as plt

    out = tmp_path / "out"
    records.save_run(out, "run", {"epochs": [1], "train_acc": [0.1]},
                   {key: (label, {"train": [0.1]}) for key, (label, _) in FIGURES.items()})
    earlier = snapshot(out)
    monkeypatch.setattr(matplotlib.cbook, "open", _nearly_full_open(1500), raising=False)
    # the case of the issue: matplotlib itself reports the full disk as an AttributeError
    fig = plt.figure()
    fig.gca().plot([1, 2])
    with pytest.raises(AttributeError, match="'Stream' object has no attribute 'pos'"):
        fig.savefig(tmp_path / "probe.pdf")
    plt.close(fig)
    (tmp_path / "probe.pdf").unlink()
    with pytest.raises(errors.OutputError) as info:
        records.save_run(out, "run", RECORD, FIGURES)
    assert str(info.value) == f"cannot write {out / 'run-accuracy.pdf'}: No space left on device"
    assert snapshot(out) == earlier  # no partial file, no temporary file, the old run whole


def test_save_figure_raises_the_full_disk_itself(tmp_path, monkeypatch):
    """report.py saves figures on its own: it gets the OSError, and no file."""
    import matplotlib.cbook
    import matplotlib.pyplot as plt

    monkeypatch.setattr(matplotlib.cbook, "open", _nearly_full_open(1500), raising=False)
    fig = plt.figure()
    fig.gca().plot([1, 2])
    with pytest.raises(OSError) as info:
        figures.save_figure(fig, tmp_path / "sweep")
    assert info.value.errno == errno.ENOSPC
    assert list(tmp_path.iterdir()) == []


def test_a_full_disk_on_the_record_keeps_the_earlier_run(tmp_path, monkeypatch):
    out = tmp_path / "out"
    records.save_run(out, "run", {"epochs": [1], "train_acc": [0.1]},
                   {"accuracy": ("Accuracy", {"train": [0.1]})})
    earlier = snapshot(out)
    real_write_text = Path.write_text

    def half_then_enospc(self, text, *args, **kwargs):
        real_write_text(self, text[:len(text) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Path, "write_text", half_then_enospc)
    with pytest.raises(errors.OutputError) as info:
        records.save_run(out, "run", RECORD, FIGURES)
    monkeypatch.undo()
    assert str(info.value) == f"cannot write {out / 'run.json'}: No space left on device"
    assert snapshot(out) == earlier


LIMITED_SAVE = textwrap.dedent("""\
    import resource, signal, sys
    sys.path.insert(0, sys.argv[1])
    import utils
    from runkit import errors, figures, files, records
    import matplotlib.pyplot  # its font cache is read before the limit

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (2000, resource.RLIM_INFINITY))
    record = {"epochs": [1, 2], "train_acc": [0.5, 0.6]}
    try:
        records.save_run(sys.argv[2], "run", record, {"accuracy": ("Accuracy", {"train": [0.5, 0.6]})})
    except errors.OutputError as err:
        errors.fail(str(err))
    """)


@pytest.mark.skipif(not hasattr(signal, "SIGXFSZ"), reason="needs RLIMIT_FSIZE")
def test_a_real_write_failure_is_one_line_and_keeps_the_earlier_run(tmp_path):
    """A file-size limit makes the kernel refuse the writes (EFBIG), as a full disk would."""
    out = tmp_path / "out"
    records.save_run(out, "run", {"epochs": [1], "train_acc": [0.1]},
                   {"accuracy": ("Accuracy", {"train": [0.1]})})
    earlier = snapshot(out)
    script = tmp_path / "save.py"
    script.write_text(LIMITED_SAVE)
    result = subprocess.run([sys.executable, str(script), str(ROOT), str(out)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr == f"error: cannot write {out / 'run-accuracy.pdf'}: File too large\n"
    assert snapshot(out) == earlier


# ----------------------------------------------------------------------------- killed runs

KILLED_MID_WRITE = textwrap.dedent("""\
    import os, signal, sys
    sys.path.insert(0, sys.argv[1])
    import utils
    from runkit import errors, figures, files, records

    with files.staged_files() as stage:
        stage(os.path.join(sys.argv[2], "run-accuracy.png")).write_bytes(b"x" * 4096)
        stage(os.path.join(sys.argv[2], "run.json")).write_text('{"half')
        os.kill(os.getpid(), signal.SIGKILL)
    """)


@pytest.mark.skipif(os.name != "posix", reason="needs SIGKILL")
def test_the_temporary_files_of_a_killed_run_are_removed_by_the_next_run(tmp_path):
    out = tmp_path / "out"
    records.save_run(out, "run", {"epochs": [1], "train_acc": [0.1]},
                   {"accuracy": ("Accuracy", {"train": [0.1]})})
    earlier = snapshot(out)
    script = tmp_path / "killed.py"
    script.write_text(KILLED_MID_WRITE)
    result = subprocess.run([sys.executable, str(script), str(ROOT), str(out)], timeout=60)
    assert result.returncode == -signal.SIGKILL
    left = hidden(out)
    assert len(left) == 2 and left[0].startswith(".run-accuracy.png.part-")
    assert left[1].startswith(".run.json.part-")
    # a live run's temporary file (this process's) and another machine's are kept
    with files.staged_files() as stage:
        live = stage(out / "other.json")
        live.write_text("{}")
        foreign = out / ".x.json.part-elsewhere-1-abcdefgh.json"
        foreign.write_text("{}")
        files.writable_dir(out)  # what the next run does first
        assert hidden(out) == sorted([live.name, foreign.name])
    foreign.unlink()
    (out / "other.json").unlink()
    assert snapshot(out) == earlier
