"""utils.py's loader and configure_seed, and runkit's flags, records and exit."""
import argparse
import json
import random

import numpy as np
import pytest

from conftest import make_tiny_dataset

import utils
from runkit import errors, flags, records


# ----------------------------------------------------------------------------- the loader

def test_course_layout_is_scaled_by_1_over_256(tmp_path):
    path = make_tiny_dataset(tmp_path / "d.npz")
    with np.load(path) as raw:
        Xtrain = raw["Xtrain"]
    data = utils.load_dataset(path)
    X, y = data["train"]
    assert X.dtype == np.float64 and y.dtype == np.int64
    np.testing.assert_array_equal(X, Xtrain / 256)
    Xb, _ = utils.load_dataset(path, bias=True)["dev"]
    assert Xb.shape[1] == X.shape[1] + 1
    np.testing.assert_array_equal(Xb[:, -1], 1.0)
    np.testing.assert_array_equal(Xb[:, :-1], data["dev"][0])


def test_float_layout_and_other_image_sizes(tmp_path):
    rng = np.random.RandomState(0)
    arrays = {}
    for split, n in (("train", 8), ("dev", 4), ("test", 4)):
        arrays[f"X{split}"] = rng.rand(n, 8, 8)
        arrays[f"y{split}"] = rng.randint(0, 3, size=n)
    np.savez(tmp_path / "f.npz", **arrays)
    data = utils.load_dataset(tmp_path / "f.npz")
    np.testing.assert_array_equal(data["test"][0], arrays["Xtest"].reshape(4, 64))


def test_medmnist_layout(tmp_path):
    rng = np.random.RandomState(0)
    arrays = {}
    for split, n in (("train", 10), ("val", 5), ("test", 6)):
        arrays[f"{split}_images"] = rng.randint(0, 256, size=(n, 28, 28)).astype(np.uint8)
        arrays[f"{split}_labels"] = rng.randint(0, 4, size=(n, 1)).astype(np.uint8)
    np.savez(tmp_path / "octmnist.npz", **arrays)
    data = utils.load_dataset(tmp_path / "octmnist.npz", bias=True)
    X, y = data["dev"]
    assert X.shape == (5, 785) and y.shape == (5,)
    np.testing.assert_array_equal(y, arrays["val_labels"][:, 0])
    np.testing.assert_array_equal(X[:, :-1], arrays["val_images"].reshape(5, -1) / 256)


def test_missing_file_names_the_command(tmp_path):
    with pytest.raises(utils.DataError, match="python download_kuzushiji_mnist.py --output"):
        utils.load_dataset(tmp_path / "elsewhere.npz")
    with pytest.raises(utils.DataError, match=r"no such file\. Create it with: python "
                                              r"download_kuzushiji_mnist.py$"):
        utils.load_dataset(tmp_path / "Kuzushiji-MNIST.npz")


def test_truncated_file(tmp_path):
    path = make_tiny_dataset(tmp_path / "d.npz")
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(utils.DataError, match=r"d\.npz: not a \.npz dataset .*truncated"):
        utils.load_dataset(path)
    path.write_text("this is not a zip file")
    with pytest.raises(utils.DataError, match="not a .npz dataset"):
        utils.load_dataset(path)


def test_missing_keys_and_mismatched_lengths(tmp_path):
    np.savez(tmp_path / "k.npz", Xtrain=np.zeros((2, 4)), ytrain=np.zeros(2, int))
    with pytest.raises(utils.DataError, match=r"k\.npz: missing keys Xdev, Xtest, ydev, ytest"):
        utils.load_dataset(tmp_path / "k.npz")
    arrays = {f"{p}{s}": np.zeros((3, 4)) if p == "X" else np.zeros(3, int)
              for p in "Xy" for s in ("train", "dev", "test")}
    arrays["ydev"] = np.zeros(2, int)
    np.savez(tmp_path / "m.npz", **arrays)
    with pytest.raises(utils.DataError, match="'Xdev' has 3 examples but 'ydev' has 2 labels"):
        utils.load_dataset(tmp_path / "m.npz")


# ----------------------------------------------------------------------------- utils

def test_ctrl_c_is_interrupted_not_a_traceback(capsys):
    def interrupted():
        raise KeyboardInterrupt

    with pytest.raises(SystemExit) as exc:
        errors.run_command(interrupted)
    assert exc.value.code == 130
    assert capsys.readouterr().err.strip() == "interrupted"
    with pytest.raises(SystemExit) as exc:
        errors.run_command(lambda: 3)
    assert exc.value.code == 3


def test_configure_seed_makes_draws_repeat():
    draws = []
    for _ in range(2):
        utils.configure_seed(3)
        draws.append((random.random(), np.random.rand(3).tolist()))
    assert draws[0] == draws[1]
    utils.configure_seed(4)
    assert (random.random(), np.random.rand(3).tolist()) != draws[0]


def test_configure_seed_seeds_torch_when_imported():
    torch = pytest.importorskip("torch")
    utils.configure_seed(5)
    a = torch.rand(4)
    utils.configure_seed(5)
    assert torch.equal(a, torch.rand(4))


def test_flags_have_aliases_and_named_errors(capsys):
    parser = argparse.ArgumentParser()
    flags.add_flag(parser, "learning_rate", type=flags.positive_float, default=0.1)
    flags.add_flag(parser, "epochs", type=flags.positive_int, default=2)
    flags.add_flag(parser, "dropout", type=flags.probability, default=0.3)
    args = parser.parse_args(["-learning_rate", "0.5", "--epochs", "3", "--dropout", "0"])
    assert (args.learning_rate, args.epochs, args.dropout) == (0.5, 3, 0.0)
    assert parser.parse_args(["--learning-rate", "2"]).learning_rate == 2.0
    for argv, flag in ((["-learning_rate", "0"], "-learning_rate"), (["-epochs", "0"], "-epochs"),
                       (["-epochs", "x"], "-epochs"), (["-dropout", "1"], "-dropout"),
                       (["-learning_rate", "nan"], "-learning_rate")):
        with pytest.raises(SystemExit) as exc:
            parser.parse_args(argv)
        assert exc.value.code == 2
        assert f"argument {flag}" in capsys.readouterr().err


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
