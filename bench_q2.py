#!/usr/bin/env python
"""Time hw1-q2's training epochs: the course's DataLoader flow against fast_sgd/manual.py, and
each of the engine's two mechanisms on and off.

    python bench_q2.py                      # both cases, 2 epochs per flow
    python bench_q2.py --cases logistic_regression --epochs 1

Flows, each in a process of its own from the course's start (seed 42, one intra-op thread):
    reference          DataLoader(shuffle=True) + train_batch (autograd), the course's loop
    pre-shuffled       shuffled_order's batches + train_batch: ManualSGD off
    dataloader+manual  DataLoader batches + ManualSGD: pre-shuffled batches off
    fast               shuffled_order's batches + ManualSGD, what -impl fast runs
The table gives each flow's fastest epoch (training only), its ratio to the reference, and
whether its per-batch losses equal the reference's bit for bit on this machine. ManualSGD is
timed here even where hw1-q2.py's start-up check would turn it down (the column says so).
"""
import argparse
import json
import os
import subprocess
import sys
import time

import utils
from runkit import flags

CASES = {  # Q2.1 and Table 1's defaults
    "logistic_regression": {"batch_size": 1, "learning_rate": 0.001},
    "mlp": {"batch_size": 16, "learning_rate": 0.01, "hidden_size": 100, "dropout": 0.3},
}
FLOWS = ("reference", "pre-shuffled", "dataloader+manual", "fast")


def child(case, flow, epochs, data_path):
    """Train `epochs` epochs with one flow; print the epochs' seconds and losses as JSON."""
    import torch
    from torch import nn
    from torch.utils.data import DataLoader
    from fast_sgd import manual
    q2 = utils.load_script("hw1-q2.py")
    settings = CASES[case]
    utils.configure_seed(42)
    data = utils.load_classification_data(data_path)
    torch.set_num_threads(1)
    dataset = utils.ClassificationDataset(data)
    n_classes, n_features = utils.class_count(data), dataset.X.shape[1]
    if case == "logistic_regression":
        model = q2.LogisticRegression(n_classes, n_features)
    else:
        model = q2.FeedforwardNetwork(n_classes, n_features, settings["hidden_size"], 1, "relu",
                                      settings["dropout"])
    optimizer = torch.optim.SGD(model.parameters(), lr=settings["learning_rate"])
    criterion = nn.CrossEntropyLoss()
    batch_size = settings["batch_size"]
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True)
    batches = manual.ShuffledBatches(dataset.X, dataset.y, batch_size)
    trainer = manual.ManualSGD.build(model, optimizer, criterion, batch_size)
    agrees = trainer.agrees_with(q2.train_batch, dataset.X, dataset.y)
    def from_loader():  # one DataLoader epoch as ShuffledBatches gives it: (X batches, y)
        X_batches, y_batches = zip(*loader)
        return list(X_batches), torch.cat(y_batches)

    epoch = {
        "reference": lambda: torch.tensor([q2.train_batch(X_b, y_b, model, optimizer, criterion)
                                           for X_b, y_b in loader], dtype=torch.float64),
        "pre-shuffled": lambda: manual.autograd_epoch(batches, q2.train_batch, model, optimizer,
                                                      criterion),
        "dataloader+manual": lambda: trainer.epoch(from_loader),
        "fast": lambda: trainer.epoch(batches),
    }[flow]
    seconds, losses = [], []
    for _ in range(epochs):
        start = time.perf_counter()
        losses += epoch().tolist()
        seconds.append(time.perf_counter() - start)
    print(json.dumps({"seconds": seconds, "losses": losses, "check": agrees}))


def timed(case, flow, epochs, data_path):
    result = subprocess.run([sys.executable, __file__, "--child", case, flow, str(epochs),
                             str(data_path)], capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"error: {case} ({flow}) failed:\n{result.stderr}")
    return json.loads(result.stdout.splitlines()[-1])


def main():
    if sys.argv[1:2] == ["--child"]:
        case, flow, epochs, data_path = sys.argv[2:6]
        return child(case, flow, int(epochs), data_path)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES),
                        help="what to time (default: both)")
    parser.add_argument("--epochs", type=flags.positive_int, default=2,
                        help="epochs per flow; the fastest is reported (default: %(default)s)")
    parser.add_argument("-data_path", default=None,
                        help="dataset (default: $KMNIST_NPZ, else Kuzushiji-MNIST.npz here or "
                             "in build/)")
    args = parser.parse_args()
    data_path = utils.find_dataset(args.data_path)
    if data_path is None:
        sys.exit("error: no dataset found; build it with: python download_kuzushiji_mnist.py")
    print(f"data {data_path}, {args.epochs} epoch(s) per flow, load average at start "
          f"{os.getloadavg()[0]:.2f}")
    for case in args.cases:
        print(f"\n{case} (batch {CASES[case]['batch_size']})")
        print(f"{'flow':<20} {'s/epoch':>8} {'speed-up':>9}  same losses as reference")
        results = {flow: timed(case, flow, args.epochs, data_path) for flow in FLOWS}
        reference = results["reference"]
        for flow, result in results.items():
            best = min(result["seconds"])
            same = result["losses"] == reference["losses"]
            print(f"{flow:<20} {best:8.3f} {min(reference['seconds']) / best:8.1f}x  "
                  f"{'yes' if same else 'no'}", flush=True)
        print(f"start-up check (ManualSGD gives autograd's bits here): "
              f"{'passes' if reference['check'] else 'fails: -impl fast runs pre-shuffled'}")
    print(f"\nload average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
