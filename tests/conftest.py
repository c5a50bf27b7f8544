"""Shared fixtures and helpers, one per job: the repository on sys.path, script loading, the
real-data file, tiny data, a Ctrl-C of a run, and the bit-for-bit comparison of two trainings
(with the one-ulp nudge that proves it can fail)."""
import contextlib
import io
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

REAL_DATA_ENV = "KMNIST_NPZ"

import utils  # noqa: E402
from runkit import epoch_log  # noqa: E402
from utils import load_script  # noqa: E402  (re-exported for the tests)


@pytest.fixture(scope="session")
def real_data_path():
    """The built Kuzushiji-MNIST.npz: $KMNIST_NPZ if set, else the default file in the current
    folder, beside the scripts or in build/ (utils.find_dataset); skipped (visibly) when absent.

    In CI (CI=true) a missing file is an error, so real-data tests cannot silently vanish.
    """
    path = utils.find_dataset(os.environ.get(REAL_DATA_ENV) or None)
    if path is None:
        reason = (f"real data not available: build it with 'python download_kuzushiji_mnist.py' "
                  f"(or set {REAL_DATA_ENV} to the file)")
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return path


def make_tiny_dataset(path, n_train=60, n_dev=20, n_test=20, side=4, n_classes=3, seed=0):
    """Write a small learnable dataset in the course layout (uint8 pixels) and return its path."""
    rng = np.random.RandomState(seed)
    prototypes = rng.randint(0, 256, size=(n_classes, side * side))

    def split(n):
        y = rng.randint(0, n_classes, size=n)
        noise = rng.randint(-40, 41, size=(n, side * side))
        X = np.clip(prototypes[y] + noise, 0, 255).astype(np.uint8)
        return X, y.astype(np.uint8)

    arrays = {}
    for name, n in (("train", n_train), ("dev", n_dev), ("test", n_test)):
        arrays[f"X{name}"], arrays[f"y{name}"] = split(n)
    np.savez_compressed(path, **arrays)
    return Path(path)


@pytest.fixture
def tiny_data(tmp_path):
    return make_tiny_dataset(tmp_path / "tiny.npz")


def assert_ctrl_c_ends_a_run_cleanly(script, args, out):
    """Run `script` with `args`, Ctrl-C it once its first epoch is printed: `interrupted` on
    stderr, exit code 130, no traceback, nothing written under `out`."""
    process = subprocess.Popen([sys.executable, str(ROOT / script), *map(str, args),
                                "-output_dir", str(out)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().startswith("training path: ")
        assert process.stdout.readline().startswith("epoch   1 ")  # training
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 130
    assert stderr.strip() == "interrupted"
    assert not out.exists() or not list(out.iterdir())


def assert_same_training(model_a, optim_a, model_b, optim_b):
    """Two torch trainings' parameters and optimizer state, bit for bit."""
    import torch
    for (name, p), q in zip(model_a.named_parameters(), model_b.parameters()):
        assert torch.equal(p, q), f"{name} differs by {(p - q).abs().max().item():.3g}"
        for key, value in optim_b.state[q].items():
            if isinstance(value, torch.Tensor):
                assert torch.equal(optim_a.state[p][key], value), (name, key)


def nudge_gradient(monkeypatch, index):
    """Make fast_sgd's ManualSGD.step move the first entry of gradient `index` up by one ulp."""
    import math

    import torch

    from fast_sgd import manual
    original = manual.ManualSGD.step

    def nudged(self, *args):
        grads = original(self, *args)
        grad = grads[index].clone()
        flat = grad.view(-1)
        flat[0] = torch.nextafter(flat[0], torch.tensor(math.inf))
        grads[index] = grad
        return grads

    monkeypatch.setattr(manual.ManualSGD, "step", nudged)


# ----------------------------------------------------------------------------- the report's tests

def report_record(model="perceptron", seed=42, dev=0.5, test=0.4, train=0.6, epochs=2, **extra):
    """A whole record of the scripts' format (runkit/epoch_log.py), final accuracies as given."""
    curve = lambda last: [last / 2] * (epochs - 1) + [last]
    made = {"model": model, "config": {"seed": seed}, "record_version": epoch_log.RECORD_VERSION,
            "path": "fast (test)", "engine": "test", "epochs": list(range(1, epochs + 1)),
            "train_loss": [1.0] * epochs, "train_acc": curve(train), "valid_loss": None,
            "valid_acc": curve(dev), "weight_norm": None, "epoch_seconds": [0.5] * epochs,
            "train_seconds": 0.5 * epochs, "final_train_acc": train, "test_acc": test,
            "diverged": False}
    assert set(epoch_log.RECORD_KEYS) <= set(made)
    made.update(extra)
    return made


def table_rows(text, title):
    """(header, {description: cells}) of the Markdown table under `## title`."""
    section = text.split(f"## {title}\n")[1].split("\n## ")[0]
    rows = [line for line in section.splitlines() if line.startswith("|")]
    split = lambda line: [c.strip() for c in line.strip().strip("|").split("|")]
    return split(rows[0]), {split(line)[0].split("`")[1]: split(line) for line in rows[2:]}


def run_report(argv):
    """report.main(argv) in this process: (exit code, stdout)."""
    import report
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = report.main(argv)
    return code, stdout.getvalue()
