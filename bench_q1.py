#!/usr/bin/env python
"""Benchmark hw1-q1.py: seconds of each model on the fast and the reference path, and the ratio.

    python bench_q1.py                                  # all models, 20 epochs, both paths
    python bench_q1.py --models mlp --reference-epochs 2   # reference time extrapolated

Runs the course's training loop (hw1-q1.train) once per model and path, each in a fresh
process, on the real data when it is found (--data-path, else $KMNIST_NPZ, else
Kuzushiji-MNIST.npz or build/Kuzushiji-MNIST.npz), otherwise on random data of the same shape.
Reports, per run: the seconds spent in train_epoch (what the paths change), the seconds of the
whole epoch loop (training plus the per-epoch train and dev evaluation, and the fast path's
one-off 8-bit copy of the data), the process's CPU seconds for train() (less sensitive to
other processes on a shared machine than wall-clock), the final dev and test accuracies, and
the process's peak memory (max RSS, loading included) and that of the largest process it
started (the MLP's first-layer process, forked: the pages it shares with its parent, the data
among them, count in both). CPU seconds include that process's.

With --textbook, also times the textbook loop the issue's table quotes: the course's skeleton
with one np.outer update per example (and its copy of the training set each epoch), written out
here in a few lines per model.

Timings are wall-clock on whatever else the machine is doing; run it on a quiet machine, or
use --repeat N (the fastest of N runs is reported). --fast-only skips the reference path.
"""
import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import utils  # beside this script

MODELS = ("perceptron", "logistic_regression", "mlp")
SHAPES = {"train": 50000, "dev": 10000, "test": 10000}


def synthetic_data(path, seed=0):
    """Random uint8 images (784 pixels) and labels (10 classes) in the real split's shapes."""
    rng = np.random.RandomState(seed)
    arrays = {}
    for split, n in SHAPES.items():
        arrays[f"X{split}"] = rng.randint(0, 256, size=(n, 28, 28), dtype=np.uint8)
        arrays[f"y{split}"] = rng.randint(0, 10, size=n).astype(np.uint8)
    np.savez(path, **arrays)
    return Path(path)


def textbook(model, data, epochs, learning_rate=0.001, seed=42):
    """The course's skeleton loop with the textbook per-example updates; returns a record."""
    utils.configure_seed(seed)
    train_X, train_y = data["train"]
    n_classes, n_feats = np.unique(train_y).size, train_X.shape[1]
    lr = learning_rate
    if model == "mlp":
        W1 = np.random.normal(0.1, 0.1, size=(200, n_feats))
        W2 = np.random.normal(0.1, 0.1, size=(n_classes, 200))
        b1, b2 = np.zeros(200), np.zeros(n_classes)
    else:
        W = np.zeros((n_classes, n_feats))

    def predict(X):
        if model == "mlp":
            return (np.maximum(X @ W1.T + b1, 0) @ W2.T + b2).argmax(axis=1)
        return (W @ X.T).argmax(axis=0)

    spent, loop = 0.0, 0.0
    for _ in range(epochs):
        start = time.perf_counter()
        order = np.random.permutation(train_X.shape[0])
        train_X, train_y = train_X[order], train_y[order]
        begin = time.perf_counter()
        for x, t in zip(train_X, train_y):
            if model == "perceptron":
                y_hat = (W @ x).argmax()
                if y_hat != t:
                    W[t] += x
                    W[y_hat] -= x
            elif model == "logistic_regression":
                s = W @ x
                p = np.exp(s - s.max())
                p /= p.sum()
                p[t] -= 1
                W -= lr * np.outer(p, x)
            else:
                a = W1 @ x + b1
                h = np.maximum(a, 0)
                z = W2 @ h + b2
                p = np.exp(z - z.max())
                p /= p.sum()
                p[t] -= 1
                da = (W2.T @ p) * (a > 0)
                W2 -= lr * np.outer(p, h)
                b2 -= lr * p
                W1 -= lr * np.outer(da, x)
                b1 -= lr * da
        spent += time.perf_counter() - begin
        # the course evaluates train and dev accuracy after each epoch
        dev_X, dev_y = data["dev"]
        _ = (predict(train_X) == train_y).mean(), (predict(dev_X) == dev_y).mean()
        loop += time.perf_counter() - start
    return {"train_epoch_seconds": spent, "loop_seconds": loop, "cpu_seconds": None,
            "valid_acc": float((predict(data["dev"][0]) == data["dev"][1]).mean()),
            "test_acc": float((predict(data["test"][0]) == data["test"][1]).mean())}


def child(model, impl, epochs, data_path):
    """Run one training in this process and print its measurements as one JSON line."""
    import resource

    q1 = utils.load_script("hw1-q1.py")

    data = utils.load_dataset(data_path, bias=(model != "mlp"))
    if impl == "textbook":
        with q1.single_threaded_blas():
            record = textbook(model, data, epochs)
        record["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(record))
        return
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

    def children_cpu():  # of the processes train() started and waited for (the MLP's first layer)
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return usage.ru_utime + usage.ru_stime

    cpu = time.process_time() - children_cpu()
    _, record = q1.train(model, data, epochs=epochs, fast=(impl == "fast"), verbose=False)
    cpu = time.process_time() + children_cpu() - cpu
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    child_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(json.dumps({"train_epoch_seconds": sum(spent), "loop_seconds": record["train_seconds"],
                      "cpu_seconds": cpu,
                      "valid_acc": record["valid_acc"][-1], "test_acc": record["test_acc"],
                      "peak_mb": peak_mb, "child_peak_mb": child_mb}))


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
    parser.add_argument("--synthetic", action="store_true",
                        help="use random data of the real shape even if the real data is found")
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS),
                        help="models to time (default: all)")
    parser.add_argument("--epochs", type=int, default=20, help="epochs per run (default: 20)")
    parser.add_argument("--reference-epochs", type=int, default=None,
                        help="epochs for the (slow) reference path; its seconds are then "
                             "scaled to --epochs and marked '~' (default: --epochs)")
    parser.add_argument("--fast-only", action="store_true",
                        help="time the fast path only (no reference run, no ratio)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="runs per model and path; the fastest is reported (default: 1)")
    parser.add_argument("--textbook", action="store_true",
                        help="also time the textbook np.outer loop (for --reference-epochs)")
    args = parser.parse_args()
    ref_epochs = args.reference_epochs or args.epochs
    paths = [("fast", args.epochs)] + ([] if args.fast_only else [("reference", ref_epochs)])
    if args.textbook:
        paths.append(("textbook", ref_epochs))

    data_path = None if args.synthetic else utils.find_dataset(args.data_path)
    if args.data_path and data_path is None:
        sys.exit(f"error: {args.data_path}: no such file")
    with tempfile.TemporaryDirectory() as tmp:
        if data_path is None:
            data_path = synthetic_data(Path(tmp) / "synthetic.npz")
            print("real data not found: random data of the same shape "
                  "(accuracies are meaningless)")
        print(f"data: {data_path}; {args.epochs} epochs; seconds are wall-clock")
        print(f"{'model':<20} {'path':<10} {'train_epoch s':>13} {'loop s':>8} {'cpu s':>7} "
              f"{'dev acc':>8} {'test acc':>8} {'peak MB':>8} {'child MB':>8}")
        rows = {}
        for model in args.models:
            for impl, epochs in paths:
                runs = [run(model, impl, epochs, data_path) for _ in range(args.repeat)]
                r = min(runs, key=lambda r: r["loop_seconds"])
                scale = args.epochs / epochs
                mark = "~" if scale != 1 else " "
                rows[model, impl] = r["train_epoch_seconds"] * scale, r["loop_seconds"] * scale
                accs = (f"{r['valid_acc']:8.4f} {r['test_acc']:8.4f}" if scale == 1
                        else f"{'(' + str(epochs) + ' ep)':>17}")
                cpu = "" if r["cpu_seconds"] is None else f"{r['cpu_seconds'] * scale:.2f}"
                print(f"{model:<20} {impl:<10} {mark}{rows[model, impl][0]:12.2f} "
                      f"{mark}{rows[model, impl][1]:7.2f} {cpu:>7} {accs} {r['peak_mb']:8.0f} "
                      f"{r.get('child_peak_mb') or 0:8.0f}", flush=True)
            fast = rows[model, "fast"]
            for impl, _ in paths[1:]:
                slow = rows[model, impl]
                label = {"reference": "ref ratio", "textbook": "tb ratio"}[impl]
                print(f"{model:<20} {label:<10} {slow[0] / fast[0]:12.1f}x "
                      f"{slow[1] / fast[1]:7.1f}x", flush=True)


if __name__ == "__main__":
    main()
