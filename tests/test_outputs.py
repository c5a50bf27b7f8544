"""utils' output side: the output-folder check, files written all or nothing, and the dataset
loader's messages for files that are not datasets."""
import pytest

from conftest import make_tiny_dataset

import utils
from runkit import errors, files, records


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


def test_load_dataset_says_what_is_wrong_with_the_file(tmp_path):
    with pytest.raises(utils.DataError, match="is a folder; give the dataset file"):
        utils.load_dataset(tmp_path)
    text = tmp_path / "notes.npz"
    text.write_text("hello")
    with pytest.raises(utils.DataError, match=r"not a \.npz dataset") as info:
        utils.load_dataset(text)
    assert "pickle" not in str(info.value)
    assert str(info.value).endswith(f"--output {text} --force")  # rebuilds this file
    good = make_tiny_dataset(tmp_path / "Kuzushiji-MNIST.npz")
    cut = tmp_path / "Kuzushiji-MNIST-cut.npz"
    cut.write_bytes(good.read_bytes()[:-40])  # the zip's directory lost
    with pytest.raises(utils.DataError, match="truncated") as info:
        utils.load_dataset(cut)
    assert f"--output {cut} --force" in str(info.value)
    assert utils.load_dataset(good)["train"][0].shape == (60, 16)
    default = tmp_path / "sub" / "Kuzushiji-MNIST.npz"
    default.parent.mkdir()
    default.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(utils.DataError) as info:
        utils.load_dataset(default)
    assert str(info.value).endswith(f"{utils.BUILD_COMMAND} --force")  # the default file
