#!/usr/bin/env python
"""Benchmark hw1-q1.py: seconds of each model on the fast and the reference path, and the ratio.

    python bench_q1.py                                  # all models, 20 epochs, both paths
    python bench_q1.py --models mlp --reference-epochs 2   # reference time extrapolated

Runs the course's training loop (hw1-q1.train) once per model and path, each in a fresh
process, on the real data when it is found (--data-path, else $KMNIST_NPZ, else
Kuzushiji-MNIST.npz or build/Kuzushiji-MNIST.npz), otherwise on random data of the same shape.
Reports, per run: the seconds spent in train_epoch (what the paths change), the seconds of the
whole epoch loop (training plus the per-epoch train and dev evaluation), the final dev and test
accuracies, and the process's peak memory (max RSS, loading included).

Timings are wall-clock on whatever else the machine is doing; run it on a quiet machine.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent
MODELS = ("perceptron", "logistic_regression", "mlp")
SHAPES = {"train": 50000, "dev": 10000, "test": 10000}


def find_data(path):
    candidates = [path] if path else [os.environ.get("KMNIST_NPZ"), "Kuzushiji-MNIST.npz",
                                      ROOT / "Kuzushiji-MNIST.npz",
                                      ROOT / "build" / "Kuzushiji-MNIST.npz"]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    if path:
        sys.exit(f"error: {path}: no such file")
    return None


def synthetic_data(path, seed=0):
    """Random uint8 images (784 pixels) and labels (10 classes) in the real split's shapes."""
    rng = np.random.RandomState(seed)
    arrays = {}
    for split, n in SHAPES.items():
        arrays[f"X{split}"] = rng.randint(0, 256, size=(n, 28, 28), dtype=np.uint8)
        arrays[f"y{split}"] = rng.randint(0, 10, size=n).astype(np.uint8)
    np.savez(path, **arrays)
    return Path(path)


def child(model, impl, epochs, data_path):
    """Run one training in this process and print its measurements as one JSON line."""
    import resource

    sys.path.insert(0, str(ROOT))
    import importlib.util
    import utils
    spec = importlib.util.spec_from_file_location("hw1_q1", ROOT / "hw1-q1.py")
    q1 = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(q1)

    data = utils.load_dataset(data_path, bias=(model != "mlp"))
    spent = []
    cls = {"perceptron": q1.Perceptron, "logistic_regression": q1.LogisticRegression,
           "mlp": q1.MLP}[model]
    # the class's own train_epoch (the linear models share LinearModel's)
    original = cls.train_epoch

    def timed(self, *args, **kwargs):
        start = time.perf_counter()
        result = original(self, *args, **kwargs)
        spent.append(time.perf_counter() - start)
        return result

    cls.train_epoch = timed
    _, record = q1.train(model, data, epochs=epochs, fast=(impl == "fast"), verbose=False)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(json.dumps({"train_epoch_seconds": sum(spent), "loop_seconds": record["train_seconds"],
                      "valid_acc": record["valid_acc"][-1], "test_acc": record["test_acc"],
                      "peak_mb": peak_mb}))


def run(model, impl, epochs, data_path):
    result = subprocess.run([sys.executable, __file__, "--child", model, impl, str(epochs),
                             str(data_path)], capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"error: {model} ({impl}) failed:\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        model, impl, epochs, data_path = sys.argv[2:6]
        return child(model, impl, int(epochs), data_path)

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-path", help="the dataset file (default: found as described)")
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS),
                        help="models to time (default: all)")
    parser.add_argument("--epochs", type=int, default=20, help="epochs per run (default: 20)")
    parser.add_argument("--reference-epochs", type=int, default=None,
                        help="epochs for the (slow) reference path; its seconds are then "
                             "scaled to --epochs and marked '~' (default: --epochs)")
    args = parser.parse_args()
    ref_epochs = args.reference_epochs or args.epochs

    data_path = find_data(args.data_path)
    with tempfile.TemporaryDirectory() as tmp:
        if data_path is None:
            data_path = synthetic_data(Path(tmp) / "synthetic.npz")
            print("real data not found: random data of the same shape "
                  "(accuracies are meaningless)")
        print(f"data: {data_path}; {args.epochs} epochs; seconds are wall-clock")
        print(f"{'model':<20} {'path':<10} {'train_epoch s':>13} {'loop s':>8} "
              f"{'dev acc':>8} {'test acc':>8} {'peak MB':>8}")
        rows = {}
        for model in args.models:
            for impl, epochs in (("fast", args.epochs), ("reference", ref_epochs)):
                r = run(model, impl, epochs, data_path)
                scale = args.epochs / epochs
                mark = "~" if scale != 1 else " "
                rows[model, impl] = r["train_epoch_seconds"] * scale, r["loop_seconds"] * scale
                accs = (f"{r['valid_acc']:8.4f} {r['test_acc']:8.4f}" if scale == 1
                        else f"{'(' + str(epochs) + ' ep)':>17}")
                print(f"{model:<20} {impl:<10} {mark}{rows[model, impl][0]:12.2f} "
                      f"{mark}{rows[model, impl][1]:7.2f} {accs} {r['peak_mb']:8.0f}",
                      flush=True)
            fast, ref = rows[model, "fast"], rows[model, "reference"]
            print(f"{model:<20} {'ratio':<10} {ref[0] / fast[0]:12.1f}x "
                  f"{ref[1] / fast[1]:7.1f}x", flush=True)


if __name__ == "__main__":
    main()
