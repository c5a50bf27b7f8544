"""The downloader (against a server on 127.0.0.1), the course's split, and utils.py."""
import argparse
import hashlib
import io
import json
import random
import threading
from pathlib import Path
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from conftest import make_tiny_dataset

import download_kuzushiji_mnist as dl
import utils


# ----------------------------------------------------------------------------- fake release

def _npz_bytes(array):
    buf = io.BytesIO()
    np.savez_compressed(buf, arr_0=array)
    return buf.getvalue()


@pytest.fixture(scope="module")
def fake_release():
    """Small files in the official layout, and a checksum table that makes them verify."""
    rng = np.random.RandomState(7)
    arrays = {
        "kmnist-train-imgs.npz": rng.randint(0, 256, size=(60, 28, 28)).astype(np.uint8),
        "kmnist-train-labels.npz": (np.arange(60) % 10).astype(np.uint8),
        "kmnist-test-imgs.npz": rng.randint(0, 256, size=(12, 28, 28)).astype(np.uint8),
        "kmnist-test-labels.npz": (np.arange(12) % 10).astype(np.uint8),
    }
    blobs = {name: _npz_bytes(a) for name, a in arrays.items()}
    checksums = {name: (len(b), hashlib.md5(b).hexdigest()) for name, b in blobs.items()}
    return arrays, blobs, checksums


class FakeHost:
    """An HTTP server on 127.0.0.1 serving `files`; `drop[name] = k` cuts the next k responses
    for `name` halfway through (Content-Length promises the whole file)."""

    def __init__(self, files):
        self.files = dict(files)
        self.drop = {}
        self.requests = []
        host = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                name = self.path.rsplit("/", 1)[-1]
                host.requests.append(name)
                body = host.files.get(name)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if host.drop.get(name, 0) > 0:
                    host.drop[name] -= 1
                    self.wfile.write(body[:len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/kmnist/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def _run(host_url, tmp_path, checksums, *extra):
    argv = ["--url-base", host_url, "--cache-dir", str(tmp_path / "raw"),
            "--output", str(tmp_path / "out.npz"), *extra]
    return dl.main(argv, checksums=checksums, backoff=0.01)


def _leftovers(folder):
    return sorted(p.name for p in folder.rglob("*") if p.name.endswith(".part")
                  or p.name.startswith("."))


def test_download_builds_the_split(fake_release, tmp_path):
    arrays, blobs, checksums = fake_release
    with FakeHost(blobs) as host:
        assert _run(host.url, tmp_path, checksums, "--retries", "0") == 0
    assert sorted(host.requests) == sorted(blobs)
    for name, blob in blobs.items():
        assert (tmp_path / "raw" / name).read_bytes() == blob
    train_idx, dev_idx = dl.course_split(60)
    with np.load(tmp_path / "out.npz") as out:
        assert out["Xtrain"].dtype == np.uint8
        flat = arrays["kmnist-train-imgs.npz"].reshape(60, -1)
        np.testing.assert_array_equal(out["Xtrain"], flat[train_idx])
        np.testing.assert_array_equal(out["Xdev"], flat[dev_idx])
        np.testing.assert_array_equal(out["ytrain"], arrays["kmnist-train-labels.npz"][train_idx])
        np.testing.assert_array_equal(out["Xtest"], arrays["kmnist-test-imgs.npz"].reshape(12, -1))
        np.testing.assert_array_equal(out["ytest"], arrays["kmnist-test-labels.npz"])
    data = utils.load_dataset(tmp_path / "out.npz")
    assert [len(data[s][0]) for s in ("train", "dev", "test")] == [50, 10, 12]
    assert _leftovers(tmp_path) == []


def test_md5_mismatch_is_an_error_and_leaves_no_file(fake_release, tmp_path, capsys):
    _, blobs, checksums = fake_release
    corrupt = dict(blobs)
    blob = bytearray(blobs["kmnist-test-imgs.npz"])
    blob[len(blob) // 2] ^= 0xFF
    corrupt["kmnist-test-imgs.npz"] = bytes(blob)
    with FakeHost(corrupt) as host:
        assert _run(host.url, tmp_path, checksums) == 1
    err = capsys.readouterr().err
    assert "md5 mismatch" in err and "kmnist-test-imgs.npz" in err and "--source" in err
    assert not (tmp_path / "raw" / "kmnist-test-imgs.npz").exists()
    assert not (tmp_path / "out.npz").exists()
    assert _leftovers(tmp_path) == []


def test_dropped_connection_is_retried(fake_release, tmp_path, capsys):
    _, blobs, checksums = fake_release
    with FakeHost(blobs) as host:
        host.drop["kmnist-train-imgs.npz"] = 1
        assert _run(host.url, tmp_path, checksums, "--retries", "2") == 0
    assert host.requests.count("kmnist-train-imgs.npz") == 2
    assert "retrying" in capsys.readouterr().err
    assert (tmp_path / "raw" / "kmnist-train-imgs.npz").read_bytes() == blobs["kmnist-train-imgs.npz"]


def test_connection_that_keeps_dropping_gives_a_clean_error(fake_release, tmp_path, capsys):
    _, blobs, checksums = fake_release
    with FakeHost(blobs) as host:
        host.drop["kmnist-train-labels.npz"] = 10
        assert _run(host.url, tmp_path, checksums, "--retries", "2") == 1
    assert host.requests.count("kmnist-train-labels.npz") == 3
    err = capsys.readouterr().err
    assert "network error after 3 attempts" in err and "--source" in err
    assert not (tmp_path / "raw" / "kmnist-train-labels.npz").exists()
    assert not (tmp_path / "out.npz").exists()
    assert _leftovers(tmp_path) == []


def test_unreachable_host_says_what_to_do(fake_release, tmp_path, capsys):
    _, _, checksums = fake_release
    with FakeHost({}) as host:
        url = host.url
    # the server is closed now: connections are refused
    assert _run(url, tmp_path, checksums, "--retries", "1") == 1
    err = capsys.readouterr().err
    assert "network error" in err and "--source DIR" in err


def test_rerun_fetches_nothing(fake_release, tmp_path, capsys):
    _, blobs, checksums = fake_release
    with FakeHost(blobs) as host:
        assert _run(host.url, tmp_path, checksums) == 0
        first = len(host.requests)
        assert _run(host.url, tmp_path, checksums) == 0
        assert len(host.requests) == first == 4
    assert capsys.readouterr().err.count("present, md5 verified") == 4


def test_a_corrupt_cached_file_is_fetched_again(fake_release, tmp_path):
    _, blobs, checksums = fake_release
    with FakeHost(blobs) as host:
        assert _run(host.url, tmp_path, checksums) == 0
        (tmp_path / "raw" / "kmnist-test-labels.npz").write_bytes(b"garbage")
        assert _run(host.url, tmp_path, checksums) == 0
    assert host.requests.count("kmnist-test-labels.npz") == 2
    assert (tmp_path / "raw" / "kmnist-test-labels.npz").read_bytes() == blobs["kmnist-test-labels.npz"]


def _source_folder(tmp_path, blobs):
    src = tmp_path / "src"
    src.mkdir()
    for name, blob in blobs.items():
        (src / name).write_bytes(blob)
    return src


def test_source_folder_builds_offline(fake_release, tmp_path):
    arrays, blobs, checksums = fake_release
    src = _source_folder(tmp_path, blobs)
    out = tmp_path / "out.npz"
    assert dl.main(["--source", str(src), "--output", str(out)], checksums=checksums) == 0
    _, dev_idx = dl.course_split(60)
    with np.load(out) as data:
        np.testing.assert_array_equal(data["ydev"], arrays["kmnist-train-labels.npz"][dev_idx])


def test_source_folder_missing_or_corrupt_file(fake_release, tmp_path, capsys):
    _, blobs, checksums = fake_release
    src = _source_folder(tmp_path, blobs)
    out = tmp_path / "out.npz"
    (src / "kmnist-test-labels.npz").unlink()
    assert dl.main(["--source", str(src), "--output", str(out)], checksums=checksums) == 1
    assert "kmnist-test-labels.npz is missing" in capsys.readouterr().err
    (src / "kmnist-test-labels.npz").write_bytes(b"not the file")
    assert dl.main(["--source", str(src), "--output", str(out)], checksums=checksums) == 1
    assert "kmnist-test-labels.npz has md5" in capsys.readouterr().err
    assert dl.main(["--source", str(tmp_path / "nowhere"), "--output", str(out)],
                   checksums=checksums) == 1
    assert "no such folder" in capsys.readouterr().err
    assert not out.exists()


def test_bad_flag_values_are_rejected(capsys):
    with pytest.raises(SystemExit) as exc:
        dl.main(["--retries", "-1"])
    assert exc.value.code == 2
    assert "--retries" in capsys.readouterr().err


# ----------------------------------------------------------------------------- the split

def test_course_split_indices():
    train_idx, dev_idx = dl.course_split()
    order = np.random.RandomState(42).permutation(60000)
    np.testing.assert_array_equal(dev_idx, order[:10000])
    np.testing.assert_array_equal(train_idx, order[10000:60000])
    assert len(train_idx) == 50000 and len(dev_idx) == 10000
    assert not set(train_idx.tolist()) & set(dev_idx.tolist())
    assert sorted(np.concatenate([train_idx, dev_idx]).tolist()) == list(range(60000))


def test_real_split_fingerprints(real_data_path):
    with np.load(real_data_path) as data:
        assert sorted(data.files) == sorted(utils.COURSE_KEYS)
        assert data["Xtrain"].dtype == np.uint8
        assert data["Xtrain"].shape == (50000, 784)
        assert data["Xdev"].shape == (10000, 784)
        assert data["Xtest"].shape == (10000, 784)
        assert data["ydev"][:10].tolist() == [6, 4, 7, 5, 8, 2, 3, 0, 1, 9]
        assert data["ytrain"][:10].tolist() == [9, 3, 8, 8, 2, 0, 7, 1, 9, 5]
        assert np.bincount(data["ytrain"]).tolist() == [5024, 4982, 5017, 4993, 5028, 4978,
                                                         5000, 4928, 5025, 5025]
        assert np.bincount(data["ytest"]).tolist() == [1000] * 10
    splits = utils.load_dataset(real_data_path)
    X = splits["train"][0]
    assert X.dtype == np.float64 and X.min() == 0.0 and X.max() == 255 / 256


def test_real_split_matches_the_official_files(real_data_path):
    """When the official files sit beside the project (as in CI), the split is built from them."""
    source = Path(__file__).resolve().parents[2] / "shared" / "data" / "kmnist"
    if not source.is_dir():
        pytest.skip(f"official files not found at {source}")
    images = np.load(source / "kmnist-train-imgs.npz")["arr_0"].reshape(60000, -1)
    test_images = np.load(source / "kmnist-test-imgs.npz")["arr_0"].reshape(10000, -1)
    train_idx, dev_idx = dl.course_split()
    with np.load(real_data_path) as data:
        np.testing.assert_array_equal(data["Xdev"], images[dev_idx])
        np.testing.assert_array_equal(data["Xtrain"], images[train_idx])
        np.testing.assert_array_equal(data["Xtest"], test_images)


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
    with pytest.raises(utils.DataError, match=r"d\.npz: cannot be read.*truncated"):
        utils.load_dataset(path)
    path.write_text("this is not a zip file")
    with pytest.raises(utils.DataError, match="cannot be read"):
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
    utils.add_flag(parser, "learning_rate", type=utils.positive_float, default=0.1)
    utils.add_flag(parser, "epochs", type=utils.positive_int, default=2)
    utils.add_flag(parser, "dropout", type=utils.probability, default=0.3)
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
    assert utils.run_name("mlp", dict(defaults), defaults) == "mlp"
    config = dict(defaults, learning_rate=0.1, output_dir="elsewhere",
                  data_path="/tmp/octmnist.npz")
    assert utils.run_name("mlp", config, defaults) == "mlp-data_path=octmnist-learning_rate=0.1"
    config["data_path"] = "/data/Kuzushiji-MNIST.npz"  # the default file, in another folder
    assert utils.run_name("mlp", config, defaults) == "mlp-learning_rate=0.1"


def test_write_record_is_atomic(tmp_path):
    path = tmp_path / "run.json"
    utils.write_record(path, {"acc": np.float64(0.5), "loss": [1.0, float("nan")],
                              "n": np.int64(3)})
    assert json.loads(path.read_text()) == {"acc": 0.5, "loss": [1.0, None], "n": 3}
    with pytest.raises(TypeError):
        utils.write_record(path, {"bad": object()})
    assert json.loads(path.read_text())["acc"] == 0.5  # the old record is intact
    with pytest.raises(TypeError):
        utils.write_record(tmp_path / "new.json", {"bad": object()})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.json"]


def test_save_run_writes_figures_then_record(tmp_path):
    record = {"epochs": [1, 2, 3], "valid_acc": [0.1, 0.2, 0.3]}
    paths = utils.save_run(tmp_path / "out", "demo", record,
                           {"accuracy": ("Accuracy", {"dev": record["valid_acc"]})})
    assert [p.name for p in paths] == ["demo-accuracy.pdf", "demo-accuracy.png", "demo.json"]
    assert (tmp_path / "out" / "demo-accuracy.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "out" / "demo-accuracy.pdf").read_bytes()[:5] == b"%PDF-"
    assert utils.read_record(tmp_path / "out" / "demo.json") == record
