#!/usr/bin/env python
"""Time hw1-q1's training epochs: the per-example loop of hw1-q1.py against fast_sgd/blocked.py.

    python bench_q1.py                       # every model, 2 epochs per path
    python bench_q1.py --models mlp --epochs 1

Each (model, path) trains in a process of its own, from the course's start (seed 42, the
course's epoch order), and reports each epoch's training seconds (evaluation excluded); the
table gives the fastest epoch of each path and the ratio reference / fast. The perceptron's
fast path is the same loop, without reordering a copy of X first. The load average is printed: on a busy machine the seconds are high and the ratios noisy.
"""
import argparse
import json
import os
import subprocess
import sys
import time

import utils
from runkit import flags

MODELS = ("perceptron", "logistic_regression", "mlp")


def child(model, path, epochs, data_path):
    """Train `epochs` epochs on one path; print the epochs' seconds as JSON."""
    import numpy as np
    q1 = utils.load_script("hw1-q1.py")
    from fast_sgd import blocked
    data = utils.load_dataset(data_path, bias=(model != "mlp"))
    X, y = data["train"]
    utils.configure_seed(42)
    n_classes, n_features = utils.class_count(data), X.shape[1]
    net = {"perceptron": lambda: q1.Perceptron(n_classes, n_features),
           "logistic_regression": lambda: q1.LogisticRegression(n_classes, n_features),
           "mlp": lambda: q1.MLP(n_classes, n_features, 200, 1)}[model]()
    kwargs = {"learning_rate": 0.001}  # the perceptron ignores it
    order = np.arange(len(y))
    seconds = []
    for _ in range(epochs):
        order = order[np.random.permutation(len(order))]
        start = time.perf_counter()
        if path == "fast":
            blocked.sgd_epoch(model, q1.parameters(net), X, y, order, **kwargs)
        else:
            net.train_epoch(X[order], y[order], **kwargs)
        seconds.append(time.perf_counter() - start)
    print(json.dumps(seconds))


def timed(model, path, epochs, data_path):
    result = subprocess.run([sys.executable, __file__, "--child", model, path, str(epochs),
                             str(data_path)], capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"error: {model} ({path}) failed:\n{result.stderr}")
    return min(json.loads(result.stdout.splitlines()[-1]))


def main():
    if sys.argv[1:2] == ["--child"]:
        model, path, epochs, data_path = sys.argv[2:6]
        return child(model, path, int(epochs), data_path)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS,
                        help="models to time (default: all)")
    parser.add_argument("--epochs", type=flags.positive_int, default=2,
                        help="epochs per path; the fastest is reported (default: %(default)s)")
    parser.add_argument("-data_path", default=None,
                        help="dataset (default: $KMNIST_NPZ, else Kuzushiji-MNIST.npz here or "
                             "in build/)")
    args = parser.parse_args()
    data_path = utils.find_dataset(args.data_path)
    if data_path is None:
        sys.exit("error: no dataset found; build it with: python download_kuzushiji_mnist.py")
    print(f"data {data_path}, {args.epochs} epoch(s) per path, load average at start "
          f"{os.getloadavg()[0]:.2f}")
    print(f"{'model':<20} {'reference s/epoch':>18} {'fast s/epoch':>13} {'ratio':>7}")
    for model in args.models:
        reference = timed(model, "reference", args.epochs, data_path)
        fast = timed(model, "fast", args.epochs, data_path)
        print(f"{model:<20} {reference:18.3f} {fast:13.3f} {reference / fast:6.1f}x", flush=True)
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
