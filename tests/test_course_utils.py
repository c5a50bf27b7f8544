"""utils.py as a drop-in for the course's utils.py (issue #14): every edition's loader on small
files in its layout, ClassificationDataset, configure_seed, fetch_classification_data, and
students' scripts written on the course's skeletons (tests/course_clients/) run beside a copy
of utils.py. Expected values are computed here from the raw arrays, never by utils."""
import hashlib
import os
import pickle
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, make_tiny_dataset

import utils

CLIENTS = Path(__file__).resolve().parent / "course_clients"


def student_folder(folder, data, *scripts, no_torch=False):
    """A student's folder: the course scripts, a copy of this utils.py and the data under the
    course's file name; with `no_torch`, a torch package that cannot be imported."""
    folder.mkdir()
    shutil.copy(ROOT / "utils.py", folder / "utils.py")
    for script in scripts:
        shutil.copy(CLIENTS / script, folder / script)
    (folder / "Kuzushiji-MNIST.npz").symlink_to(Path(data).resolve())
    if no_torch:
        (folder / "torch").mkdir()
        (folder / "torch" / "__init__.py").write_text(
            "raise ImportError('torch is not installed (test stand-in)')\n")
    return folder


def run_student(folder, *args, timeout=600):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run([sys.executable, *args], cwd=folder, capture_output=True, text=True,
                            env=env, timeout=timeout)
    assert result.returncode == 0, result.stderr
    return result.stdout


def values_after(stdout, prefix):
    return [line.split(prefix, 1)[1].strip() for line in stdout.splitlines() if prefix in line]


def textbook_perceptron(npz, epochs, seed=42):
    """The course's perceptron computed straight from the file: pixels / 256, a bias column,
    np.random.seed(seed), one permutation per epoch. Returns (dev accuracies, test accuracy)."""
    raw = np.load(npz)

    def split(name):
        X = raw[f"X{name}"].reshape(len(raw[f"X{name}"]), -1) / 256
        return np.hstack((X, np.ones((len(X), 1)))), raw[f"y{name}"].astype(int)

    (X, y), (dev_X, dev_y), (test_X, test_y) = split("train"), split("dev"), split("test")
    np.random.seed(seed)
    W = np.zeros((len(np.unique(y)), X.shape[1]))
    dev_accs = []
    for _ in range(epochs):
        order = np.random.permutation(len(X))
        X, y = X[order], y[order]
        for x_i, y_i in zip(X, y):
            y_hat = np.argmax(W @ x_i)
            if y_hat != y_i:
                W[y_i] += x_i
                W[y_hat] -= x_i
        dev_accs.append(np.mean((W @ dev_X.T).argmax(axis=0) == dev_y))
    return dev_accs, np.mean((W @ test_X.T).argmax(axis=0) == test_y)


# ----------------------------------------------------------------------------- loaders

def test_load_classification_data_has_the_course_signature(tmp_path, monkeypatch):
    make_tiny_dataset(tmp_path / "Kuzushiji-MNIST.npz", side=5)
    raw = np.load(tmp_path / "Kuzushiji-MNIST.npz")
    monkeypatch.chdir(tmp_path)
    data = utils.load_classification_data()  # the course's default file name, in this folder
    with_bias = utils.load_classification_data(bias=True)
    assert sorted(data) == ["dev", "test", "train"]
    for split in ("train", "dev", "test"):
        X, y = data[split]
        expected = raw[f"X{split}"].astype(np.float64) / 256
        assert X.dtype == np.float64 and X.shape == (len(expected), 25)
        np.testing.assert_array_equal(X, expected)
        assert 0 <= X.min() and X.max() <= 255 / 256
        np.testing.assert_array_equal(y, raw[f"y{split}"])
        Xb, yb = with_bias[split]
        np.testing.assert_array_equal(Xb[:, :-1], expected)
        np.testing.assert_array_equal(Xb[:, -1], np.ones(len(expected)))
        np.testing.assert_array_equal(yb, raw[f"y{split}"])
    X, _ = utils.load_classification_data(tmp_path / "Kuzushiji-MNIST.npz", True)["dev"]
    assert X.shape == (20, 26)


def write_medmnist(path, test_labels, side=3, seed=0):
    """A MedMNIST-style file: (N, side, side) uint8 images, (N, 1) uint8 labels."""
    rng = np.random.RandomState(seed)
    arrays = {}
    for split, labels in (("train", rng.randint(0, 4, 30)), ("val", rng.randint(0, 4, 12)),
                          ("test", np.asarray(test_labels))):
        arrays[f"{split}_images"] = rng.randint(0, 256, (len(labels), side, side)).astype(np.uint8)
        arrays[f"{split}_labels"] = labels.astype(np.uint8).reshape(-1, 1)
    np.savez_compressed(path, **arrays)
    return arrays


def oct_test_labels(seed=1):
    """More test examples of every class than the course keeps, shuffled."""
    labels = np.repeat([0, 1, 2, 3], [200, 70, 50, 260])
    return np.random.RandomState(seed).permutation(labels)


def test_load_oct_data_cuts_the_test_set_as_the_course_does(tmp_path, monkeypatch):
    arrays = write_medmnist(tmp_path / "octmnist.npz", oct_test_labels())
    labels = arrays["test_labels"][:, 0]
    keep = []  # the first 182, 55, 42 and 250 of classes 0..3, class after class
    for label, count in ((0, 182), (1, 55), (2, 42), (3, 250)):
        keep += [i for i in range(len(labels)) if labels[i] == label][:count]
    monkeypatch.chdir(tmp_path)
    data = utils.load_oct_data()
    X, y = data["test"]
    assert X.shape == (182 + 55 + 42 + 250, 9)
    np.testing.assert_array_equal(X, arrays["test_images"][keep].reshape(len(keep), 9) / 256)
    np.testing.assert_array_equal(y, labels[keep])
    assert y.tolist() == [0] * 182 + [1] * 55 + [2] * 42 + [3] * 250
    for split, key in (("train", "train"), ("dev", "val")):
        X, y = data[split]
        images = arrays[f"{key}_images"]
        np.testing.assert_array_equal(X, images.reshape(len(images), -1) / 256)
        np.testing.assert_array_equal(y, arrays[f"{key}_labels"][:, 0])

    Xb, yb = utils.load_oct_data(bias=True)["test"]
    assert Xb.shape == (529, 10) and (Xb[:, -1] == 1).all()
    np.testing.assert_array_equal(yb, labels[keep])


def test_load_oct_data_full_test_set_and_root(tmp_path):
    (tmp_path / "medmnist").mkdir()
    arrays = write_medmnist(tmp_path / "medmnist" / "octmnist.npz", oct_test_labels())
    X, y = utils.load_oct_data(eq_test_dist=True, root=tmp_path / "medmnist")["test"]
    np.testing.assert_array_equal(X, arrays["test_images"].reshape(580, 9) / 256)
    np.testing.assert_array_equal(y, arrays["test_labels"][:, 0])
    with pytest.raises(utils.DataError, match=r"octmnist.npz: no such file.*MedMNIST"):
        utils.load_oct_data(root=tmp_path)


def test_load_dataset_reads_the_2024_25_layout_without_a_cut(tmp_path):
    arrays = write_medmnist(tmp_path / "any-name.npz", oct_test_labels(), side=4)
    data = utils.load_dataset(tmp_path / "any-name.npz", bias=True)
    for split, key in (("train", "train"), ("dev", "val"), ("test", "test")):
        X, y = data[split]
        images = arrays[f"{key}_images"]
        np.testing.assert_array_equal(X[:, :-1], images.reshape(len(images), 16) / 256)
        assert (X[:, -1] == 1).all()
        np.testing.assert_array_equal(y, arrays[f"{key}_labels"][:, 0])


def test_load_regression_data_reads_ames(tmp_path, monkeypatch):
    rng = np.random.RandomState(3)
    arrays = {"Xtrain": rng.randn(8, 3), "ytrain": rng.randn(8, 1) * 1e5,
              "Xtest": rng.randn(4, 3), "ytest": rng.randn(4, 1) * 1e5}
    np.savez(tmp_path / "ames.npz", **arrays)
    monkeypatch.chdir(tmp_path)
    data = utils.load_regression_data()
    assert sorted(data) == ["test", "train"]
    with_bias = utils.load_regression_data(bias=True)
    for split in ("train", "test"):
        X, y = data[split]
        np.testing.assert_array_equal(X, arrays[f"X{split}"])
        assert y.shape == (len(arrays[f"y{split}"]),)
        np.testing.assert_array_equal(y, arrays[f"y{split}"][:, 0])
        Xb, yb = with_bias[split]
        np.testing.assert_array_equal(Xb, np.column_stack((arrays[f"X{split}"],
                                                           np.ones(len(X)))))
        np.testing.assert_array_equal(yb, y)
    np.savez(tmp_path / "other.npz", Xtrain=arrays["Xtrain"], ytrain=arrays["ytrain"])
    with pytest.raises(utils.DataError, match="missing keys Xtest, ytest"):
        utils.load_regression_data(path=tmp_path / "other.npz")
    (tmp_path / "ames.npz").unlink()
    with pytest.raises(utils.DataError, match="ames.npz: no such file"):
        utils.load_regression_data()


# ----------------------------------------------------------------------------- fetch

def test_fetch_classification_data_builds_the_course_split(tmp_path, monkeypatch):
    script = utils.load_script("download_kuzushiji_mnist.py")
    rng = np.random.RandomState(5)
    raw = {"kmnist-train-imgs.npz": rng.randint(0, 256, (60, 4, 4)).astype(np.uint8),
           "kmnist-train-labels.npz": rng.randint(0, 10, 60).astype(np.uint8),
           "kmnist-test-imgs.npz": rng.randint(0, 256, (12, 4, 4)).astype(np.uint8),
           "kmnist-test-labels.npz": rng.randint(0, 10, 12).astype(np.uint8)}
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    checksums = {}
    for name, array in raw.items():
        np.savez_compressed(mirror / name, array)
        content = (mirror / name).read_bytes()
        checksums[name] = (len(content), hashlib.md5(content).hexdigest())
    monkeypatch.setattr(script, "FILES", checksums)
    monkeypatch.setattr(script, "URL_BASE", mirror.as_uri())  # the script's file:// support
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)

    assert utils.fetch_classification_data() == Path("Kuzushiji-MNIST.npz")

    order = np.random.RandomState(42).permutation(60)  # train_test_split's, random_state=42
    dev, train = order[:10], order[10:]
    images = raw["kmnist-train-imgs.npz"].reshape(60, 16)
    labels = raw["kmnist-train-labels.npz"]
    built = np.load(work / "Kuzushiji-MNIST.npz")
    np.testing.assert_array_equal(built["Xtrain"], images[train])
    np.testing.assert_array_equal(built["ytrain"], labels[train])
    np.testing.assert_array_equal(built["Xdev"], images[dev])
    np.testing.assert_array_equal(built["ydev"], labels[dev])
    np.testing.assert_array_equal(built["Xtest"], raw["kmnist-test-imgs.npz"].reshape(12, 16))
    np.testing.assert_array_equal(built["ytest"], raw["kmnist-test-labels.npz"])
    assert sorted(p.name for p in (work / "kmnist-raw").iterdir()) == sorted(raw)
    X, y = utils.load_classification_data()["dev"]
    np.testing.assert_array_equal(X, images[dev] / 256)


def test_fetch_classification_data_other_datasets_are_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="only 'Kuzushiji-MNIST' can be built here, not 'mnist'"):
        utils.fetch_classification_data("mnist")
    with pytest.raises(ValueError, match=r"only the course's split \(random_state=42\)"):
        utils.fetch_classification_data(random_state=7)
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- seed, torch

def test_configure_seed_as_the_course_does(monkeypatch):
    torch = pytest.importorskip("torch")
    monkeypatch.setenv("PYTHONHASHSEED", "0")
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", False)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", True)
    draws = []
    for _ in range(2):
        utils.configure_seed(seed=11)
        draws.append((random.random(), np.random.rand(2).tolist(), torch.rand(2).tolist()))
    assert draws[0] == draws[1]
    assert draws[0] == (random.Random(11).random(), np.random.RandomState(11).rand(2).tolist(),
                        torch.rand(2, generator=torch.Generator().manual_seed(11)).tolist())
    assert os.environ["PYTHONHASHSEED"] == "11"
    utils.configure_seed(seed=12)
    assert (random.random(), np.random.rand(2).tolist(), torch.rand(2).tolist()) != draws[0]
    assert torch.backends.cudnn.deterministic is True
    assert torch.backends.cudnn.benchmark is False


def test_classification_dataset_is_a_torch_dataset():
    torch = pytest.importorskip("torch")
    from torch.utils.data import DataLoader, Dataset
    rng = np.random.RandomState(2)
    data = {split: (rng.rand(n, 6), rng.randint(0, 3, n)) for split, n in
            (("train", 10), ("dev", 4), ("test", 5))}
    dataset = utils.ClassificationDataset(data)
    assert isinstance(dataset, Dataset)
    from utils import ClassificationDataset  # the course's other spelling
    assert ClassificationDataset is utils.ClassificationDataset
    assert len(dataset) == 10
    X, y = dataset[3]
    assert X.dtype == torch.float32 and y.dtype == torch.int64
    np.testing.assert_array_equal(X.numpy(), data["train"][0][3].astype(np.float32))
    assert y.item() == data["train"][1][3]
    for split in ("dev", "test"):
        X, y = getattr(dataset, f"{split}_X"), getattr(dataset, f"{split}_y")
        assert X.dtype == torch.float32 and y.dtype == torch.int64
        np.testing.assert_array_equal(X.numpy(), data[split][0].astype(np.float32))
        np.testing.assert_array_equal(y.numpy(), data[split][1])
    batches = list(DataLoader(dataset, batch_size=4))
    assert [len(b[0]) for b in batches] == [4, 4, 2]
    np.testing.assert_array_equal(torch.cat([b[0] for b in batches]).numpy(),
                                  data["train"][0].astype(np.float32))
    copy = pickle.loads(pickle.dumps(dataset))  # what DataLoader workers receive
    assert type(copy) is utils.ClassificationDataset and torch.equal(copy.y, dataset.y)


def test_torch_is_imported_only_for_classification_dataset(tiny_data):
    code = (f"import sys; sys.path.insert(0, {str(ROOT)!r}); import utils\n"
            f"utils.configure_seed(1); utils.load_classification_data({str(tiny_data)!r})\n"
            f"print('torch' in sys.modules, hasattr(utils, 'NoSuchName'))\n"
            f"utils.ClassificationDataset; print('torch' in sys.modules)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.split() == ["False", "False", "True"], result.stderr


# ----------------------------------------------------------------------------- students' scripts

def test_course_q1_script_runs_beside_utils_without_torch(tmp_path):
    # noisy, so that the accuracies depend on the order the seed draws
    rng = np.random.RandomState(4)
    tiny = tmp_path / "tiny.npz"
    np.savez(tiny, **{f"{p}{split}": rng.randint(0, 256, (n, 16)).astype(np.uint8) if p == "X"
                      else rng.randint(0, 5, n).astype(np.uint8)
                      for split, n in (("train", 80), ("dev", 40), ("test", 40)) for p in "Xy"})
    folder = student_folder(tmp_path / "student", tiny, "hw1-q1.py", no_torch=True)
    out = run_student(folder, "hw1-q1.py", "perceptron", "-epochs", "3")
    dev_accs, test_acc = textbook_perceptron(tiny, epochs=3)
    assert [v.split("val acc:")[1].strip() for v in values_after(out, "train acc:")] == \
        [f"{acc:.4f}" for acc in dev_accs]
    assert values_after(out, "Final test acc:") == [f"{test_acc:.4f}"]


def accuracy(model, X, y):
    import torch
    with torch.no_grad():
        return (model(X).argmax(dim=1) == y).sum().item() / len(y)


def test_course_q2_script_uses_classification_dataset_with_a_dataloader(tmp_path):
    torch = pytest.importorskip("torch")
    from torch.utils.data import DataLoader, TensorDataset
    tiny = make_tiny_dataset(tmp_path / "tiny.npz", n_train=40, n_dev=20, n_test=20)
    folder = student_folder(tmp_path / "student", tiny, "hw1-q2.py")
    out = run_student(folder, "hw1-q2.py", "logistic_regression", "-epochs", "3",
                      "-batch_size", "4", "-learning_rate", "0.1")

    # the same training from the raw file, on torch's own TensorDataset
    raw = np.load(tiny)
    tensors = {s: (torch.tensor(raw[f"X{s}"] / 256, dtype=torch.float32),
                   torch.tensor(raw[f"y{s}"], dtype=torch.long)) for s in ("train", "dev", "test")}
    torch.manual_seed(42)
    loader = DataLoader(TensorDataset(*tensors["train"]), batch_size=4, shuffle=True)
    model = torch.nn.Linear(16, 3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    losses, mean_losses, dev_accs = [], [], []
    for _ in range(3):
        for X, y in loader:
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(X), y)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        mean_losses.append(f"{torch.tensor(losses).mean().item():.4f}")
        dev_accs.append(f"{accuracy(model, *tensors['dev']):.4f}")
    assert values_after(out, "Training loss:") == mean_losses
    assert values_after(out, "Valid acc:") == dev_accs
    assert values_after(out, "Final Test acc:") == [f"{accuracy(model, *tensors['test']):.4f}"]


def test_course_q1_perceptron_gives_the_course_numbers(real_data_path, tmp_path):
    folder = student_folder(tmp_path / "student", real_data_path, "hw1-q1.py")
    start = time.perf_counter()
    out = run_student(folder, "hw1-q1.py", "perceptron")
    seconds = time.perf_counter() - start
    dev = [v.split("val acc:")[1].strip() for v in values_after(out, "train acc:")]
    assert len(dev) == 20
    assert (dev[-1], values_after(out, "Final test acc:")) == ("0.7236", ["0.6193"]), out
    print(f"course client perceptron: dev {dev[-1]}, test 0.6193, {seconds:.1f} s")
