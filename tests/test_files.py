"""runkit's files, records and figures: output folders checked before training, files written
all or nothing, the temporary files and empty folders of failed or killed runs, a full disk."""
import errno
import io
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT

from runkit import errors, figures, files, records


def hidden(folder):
    return sorted(p.name for p in Path(folder).iterdir() if p.name.startswith("."))


def snapshot(folder):
    return {p.name: p.read_bytes() for p in sorted(Path(folder).iterdir())}


def test_writable_dir_creates_the_folder(tmp_path):
    path = files.writable_dir(tmp_path / "a" / "b")
    assert path.is_dir() and list(path.iterdir()) == []  # its check file is gone


def test_writable_dir_with_a_file_in_the_way(tmp_path):
    (tmp_path / "afile").write_text("x")
    for bad in (tmp_path / "afile", tmp_path / "afile" / "sub", tmp_path / "new" / "afile" / "x"):
        if bad.parent.name == "afile" and bad.parent.parent.name == "new":
            (tmp_path / "new").mkdir()
            (tmp_path / "new" / "afile").write_text("y")
        with pytest.raises(errors.OutputError, match="a file of that name .* is in the way"):
            files.writable_dir(bad)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "new"]
    assert [p.name for p in (tmp_path / "new").iterdir()] == ["afile"]
    assert (tmp_path / "afile").read_text() == "x"


def test_writable_dir_removes_the_folders_it_made_when_it_fails(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(files.tempfile, "NamedTemporaryFile", refuse)
    with pytest.raises(errors.OutputError, match=r"cannot write there \(Permission denied\)"):
        files.writable_dir(tmp_path / "x" / "y")
    assert list(tmp_path.iterdir()) == []


def test_staged_files_are_all_or_nothing(tmp_path):
    (tmp_path / "a.txt").write_text("old a")
    with pytest.raises(RuntimeError):
        with files.staged_files() as stage:
            stage(tmp_path / "a.txt").write_text("new a")
            stage(tmp_path / "b.txt").write_text("new b")
            raise RuntimeError("the third file failed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]
    assert (tmp_path / "a.txt").read_text() == "old a"
    with files.staged_files() as stage:
        stage(tmp_path / "a.txt").write_text("new a")
        stage(tmp_path / "b.txt").write_text("new b")
        assert (tmp_path / "a.txt").read_text() == "old a"  # not before the block ends
    assert (tmp_path / "a.txt").read_text() == "new a"
    assert (tmp_path / "b.txt").read_text() == "new b"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.txt"]


def test_save_run_with_a_folder_in_the_way_writes_nothing(tmp_path):
    record = {"epochs": [1, 2], "train_acc": [0.5, 0.6]}
    figures = {"accuracy": ("Accuracy", {"train": record["train_acc"]}),
               "loss": ("Loss", {"train": [2.0, 1.0]})}
    out = tmp_path / "out"
    (out / "run-loss.png").mkdir(parents=True)
    with pytest.raises(errors.OutputError) as info:
        records.save_run(out, "run", record, figures)
    assert str(info.value) == (f"cannot write {out / 'run-loss.png'}: a folder of that name is "
                               f"in the way")
    assert [p.name for p in out.iterdir()] == ["run-loss.png"]  # no figure, no record, no temp
    (out / "run-loss.png").rmdir()
    paths = records.save_run(out, "run", record, figures)
    assert [p.name for p in paths] == ["run-accuracy.pdf", "run-accuracy.png", "run-loss.pdf",
                                       "run-loss.png", "run.json"]
    assert records.read_record(out / "run.json") == record


def test_an_empty_output_folder_name_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(errors.OutputError) as info:
        files.writable_dir("")
    assert str(info.value) == ("the output folder is '' (empty): name a folder, or '.' for the "
                               "current one")
    assert files.writable_dir(".") == Path(".")  # said explicitly, the current folder is fine
    assert list(tmp_path.iterdir()) == []





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


# ----------------------------------------------------------------------------- run names

def test_two_data_files_with_one_stem_never_share_a_run_name(tmp_path, monkeypatch):
    """va/data.npz and vb/data.npz (or 'a b.npz' and 'a_b.npz') give one name from the flags;
    the second run takes name+2 instead of replacing the first one's files, and a rerun of
    either replaces its own."""
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"

    def save(data_path, acc):
        record = {"config": {"data_path": data_path, "epochs": 1}, "epochs": [1],
                  "valid_acc": [acc]}
        paths = records.save_run(out, "q1-perceptron-data_path=data", record,
                                 {"accuracy": ("Accuracy", {"dev": [acc]})})
        return paths[-1].name

    assert save("va/data.npz", 0.25) == "q1-perceptron-data_path=data.json"
    assert save("vb/data.npz", 0.5) == "q1-perceptron-data_path=data+2.json"
    assert save("va/data.npz", 0.75) == "q1-perceptron-data_path=data.json"
    assert save("vb/data.npz", 0.125) == "q1-perceptron-data_path=data+2.json"
    first = records.read_record(out / "q1-perceptron-data_path=data.json")
    second = records.read_record(out / "q1-perceptron-data_path=data+2.json")
    assert (first["valid_acc"], second["valid_acc"]) == ([0.75], [0.125])
    assert records.run_name("q1", {"data_path": "a b.npz"}, {"data_path": "x.npz"}) == \
        records.run_name("q1", {"data_path": "a_b.npz"}, {"data_path": "x.npz"})
    assert save("a b.npz", 0.5) == "q1-perceptron-data_path=data+3.json"


def test_run_name_lists_non_default_flags():
    defaults = {"learning_rate": 0.001, "epochs": 20, "output_dir": "results",
                "data_path": "Kuzushiji-MNIST.npz"}
    assert records.run_name("mlp", dict(defaults), defaults) == "mlp"
    config = dict(defaults, learning_rate=0.1, output_dir="elsewhere",
                  data_path="/tmp/octmnist.npz")
    assert records.run_name("mlp", config, defaults) == "mlp-data_path=octmnist-learning_rate=0.1"
    config["data_path"] = "/data/Kuzushiji-MNIST.npz"  # the default file, in another folder
    assert records.run_name("mlp", config, defaults) == "mlp-learning_rate=0.1"


def test_write_record_is_atomic(tmp_path):
    path = tmp_path / "run.json"
    records.write_record(path, {"acc": np.float64(0.5), "loss": [1.0, float("nan")],
                              "n": np.int64(3)})
    assert json.loads(path.read_text()) == {"acc": 0.5, "loss": [1.0, None], "n": 3}
    with pytest.raises(TypeError):
        records.write_record(path, {"bad": object()})
    assert json.loads(path.read_text())["acc"] == 0.5  # the old record is intact
    with pytest.raises(TypeError):
        records.write_record(tmp_path / "new.json", {"bad": object()})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.json"]


def test_save_run_writes_figures_then_record(tmp_path):
    record = {"epochs": [1, 2, 3], "valid_acc": [0.1, 0.2, 0.3]}
    paths = records.save_run(tmp_path / "out", "demo", record,
                           {"accuracy": ("Accuracy", {"dev": record["valid_acc"]})})
    assert [p.name for p in paths] == ["demo-accuracy.pdf", "demo-accuracy.png", "demo.json"]
    assert (tmp_path / "out" / "demo-accuracy.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "out" / "demo-accuracy.pdf").read_bytes()[:5] == b"%PDF-"
    assert records.read_record(tmp_path / "out" / "demo.json") == record
