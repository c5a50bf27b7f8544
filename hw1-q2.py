#!/usr/bin/env python
"""Homework 1, question 2: logistic regression and a feedforward network, with PyTorch autodiff.

    python hw1-q2.py logistic_regression -learning_rate 0.001     # Q2.1, batch size 1
    python hw1-q2.py mlp                                           # Q2.2, Table 1's defaults
    python hw1-q2.py mlp -layers 2 -hidden_size 200                # Q2.3

The course's flow: seed, dataset, DataLoader(shuffle=True), model, optimizer, cross-entropy;
per epoch, train_batch on every batch, then the dev loss and accuracy. `-impl reference` runs
exactly that. `-impl fast` (the default) hands each epoch to fast_sgd/manual.py, which gives
the same numbers, bit for bit (checked when the run starts), without DataLoader and, for SGD,
without autograd's per-step bookkeeping.

Shapes: N examples, D features, H hidden units, C classes, B examples per batch.
"""
import argparse
import time

import torch
from torch import nn
from torch.utils.data import DataLoader

import utils
from fast_sgd import manual

# -batch_size when not given: Q2.1 asks for 1 with logistic regression, Table 1 gives 16
DEFAULT_BATCH_SIZE = {"logistic_regression": 1, "mlp": 16}


class LogisticRegression(nn.Module):
    def __init__(self, n_classes, n_features, **kwargs):
        super().__init__()
        self.linear = nn.Linear(n_features, n_classes)

    def forward(self, x, **kwargs):
        """x (B, D) -> scores (B, C); the loss applies the softmax."""
        return self.linear(x)


class FeedforwardNetwork(nn.Module):
    """`layers` hidden blocks Linear -> activation -> Dropout, then a Linear output layer.

    The layers are made input to output, so their initial weights take the random numbers in
    the course's order.
    """

    def __init__(self, n_classes, n_features, hidden_size, layers, activation_type, dropout,
                 **kwargs):
        super().__init__()
        activation = {"relu": nn.ReLU, "tanh": nn.Tanh}[activation_type]
        blocks = []
        width = n_features
        for _ in range(layers):
            blocks += [nn.Linear(width, hidden_size), activation(), nn.Dropout(dropout)]
            width = hidden_size
        blocks.append(nn.Linear(width, n_classes))
        self.layers = nn.Sequential(*blocks)

    def forward(self, x, **kwargs):
        """x (B, D) -> scores (B, C)."""
        return self.layers(x)


def train_batch(X, y, model, optimizer, criterion, **kwargs):
    """One optimizer step on the batch X (B, D), y (B,); returns the batch's loss."""
    optimizer.zero_grad()
    loss = criterion(model(X), y)
    loss.backward()
    optimizer.step()
    return loss.item()


def predict(model, X):
    """X (N, D) -> predicted labels (N,)."""
    scores = model(X)  # (N, C)
    return scores.argmax(dim=-1)


def evaluate(model, X, y):
    """Accuracy on (X, y), in eval mode (no dropout) and without gradients."""
    model.eval()
    with torch.no_grad():
        y_hat = predict(model, X)
    model.train()
    return (y == y_hat).sum().item() / y.shape[0]


def evaluate_with_loss(model, X, y, criterion):
    """(mean loss, accuracy) on (X, y) from one forward pass, as `evaluate` runs it."""
    model.eval()
    with torch.no_grad():
        scores = model(X)  # (N, C)
        loss = criterion(scores, y).item()
        accuracy = (y == scores.argmax(dim=-1)).sum().item() / y.shape[0]
    model.train()
    return loss, accuracy


def train(model, optimizer, criterion, dataset, epochs, batch_size, device, impl):
    """The course's training loop; returns the run's history (curves, seconds, path)."""
    dev_X, dev_y = dataset.dev_X.to(device), dataset.dev_y.to(device)
    run_epoch = None
    if impl == "fast":
        run_epoch, path = manual.fast_epochs(model, optimizer, criterion, dataset.X.to(device),
                                             dataset.y.to(device), batch_size, train_batch)
    if run_epoch is None:  # the course's DataLoader flow
        train_dataloader = DataLoader(dataset, batch_size=batch_size, shuffle=True)
        path = path if impl == "fast" else "reference: DataLoader and autograd"

        def run_epoch():
            return torch.tensor([train_batch(X_batch.to(device), y_batch.to(device), model,
                                             optimizer, criterion)
                                 for X_batch, y_batch in train_dataloader], dtype=torch.float64)
    print(f"training path: {path}")

    history = {"path": path, "train_loss": [], "valid_loss": [], "valid_acc": [],
               "epoch_seconds": [], "diverged": False}
    n_classes = len(list(model.parameters())[-1])  # the output layer's bias: (C,)
    started = time.perf_counter()
    for epoch in range(1, epochs + 1):
        epoch_start = time.perf_counter()
        train_loss = run_epoch().mean().item()  # over this epoch's batches
        valid_loss, valid_acc = evaluate_with_loss(model, dev_X, dev_y, criterion)
        seconds = time.perf_counter() - epoch_start
        for key, value in (("train_loss", train_loss), ("valid_loss", valid_loss),
                           ("valid_acc", valid_acc), ("epoch_seconds", seconds)):
            history[key].append(value)
        print(f"epoch {epoch:3d} | train loss {train_loss:.4f} | dev loss {valid_loss:.4f} | "
              f"dev acc {valid_acc:.4f} | {seconds:.2f} s", flush=True)
        weights_finite = all(torch.isfinite(p).all() for p in model.parameters())
        history["diverged"] |= utils.flag_divergence(epoch, train_loss, weights_finite,
                                                     n_classes, history["diverged"])
    history["train_seconds"] = time.perf_counter() - started
    return history


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", choices=("logistic_regression", "mlp"),
                        help="which model to train")
    utils.add_flag(parser, "epochs", type=utils.positive_int, default=20,
                   help="number of epochs (default: %(default)s)")
    utils.add_flag(parser, "batch_size", type=utils.positive_int, default=None,
                   help="examples per batch (default: 1 for logistic_regression as Q2.1 asks, "
                        "16 for mlp as Table 1 gives)")
    utils.add_flag(parser, "learning_rate", type=utils.float32_positive, default=0.01,
                   help="learning rate (default: %(default)s)")
    utils.add_flag(parser, "l2_decay", type=utils.float32_nonnegative, default=0.0,
                   help="L2 weight decay, the optimizer's weight_decay (default: %(default)s)")
    utils.add_flag(parser, "hidden_size", "hidden_sizes", type=utils.positive_int, default=100,
                   help="mlp: units per hidden layer; -hidden_sizes is the skeleton's spelling "
                        "(default: %(default)s)")
    utils.add_flag(parser, "layers", type=utils.positive_int, default=1,
                   help="mlp: number of hidden layers (default: %(default)s)")
    utils.add_flag(parser, "dropout", type=utils.probability, default=0.3,
                   help="mlp: dropout probability, in [0, 1) (default: %(default)s)")
    utils.add_flag(parser, "activation", choices=("relu", "tanh"), default="relu",
                   help="mlp: hidden activation (default: %(default)s)")
    utils.add_flag(parser, "optimizer", choices=("sgd", "adam"), default="sgd",
                   help="optimizer (default: %(default)s)")
    utils.add_flag(parser, "momentum", type=utils.probability, default=0.0,
                   help="SGD momentum, in [0, 1) (the 2024-25 edition's; default: %(default)s)")
    utils.add_flag(parser, "seed", type=utils.seed_value, default=42,
                   help="seeds Python, numpy and torch (default: %(default)s)")
    utils.add_flag(parser, "data_path", default=utils.DEFAULT_DATA_PATH,
                   help="dataset file (default: %(default)s)")
    utils.add_flag(parser, "output_dir", default="results",
                   help="where the figures and the JSON record go (default: %(default)s)")
    utils.add_flag(parser, "device", type=utils.torch_device, default="auto",
                   help="torch device; auto picks cuda when available (default: %(default)s)")
    utils.add_flag(parser, "impl", choices=("fast", "reference"), default="fast",
                   help="fast: fast_sgd's epochs, the same numbers (default); reference: the "
                        "course's DataLoader loop")
    return parser


def parse_args(argv=None):
    """The flags, with -batch_size and -device resolved; and their defaults, resolved the same
    way, so that a run's name lists only the flags that change it."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.optimizer != "sgd" and args.momentum != 0:
        parser.error("argument -momentum/--momentum: applies to -optimizer sgd only")
    defaults = {key: parser.get_default(key) for key in vars(args)}
    defaults["batch_size"] = DEFAULT_BATCH_SIZE[args.model]
    if args.batch_size is None:
        args.batch_size = defaults["batch_size"]
    defaults["device"] = utils.resolve_device("auto")
    args.device = utils.resolve_device(args.device)
    return args, defaults


def main(argv=None):
    args, defaults = parse_args(argv)
    utils.configure_seed(seed=args.seed)
    try:
        data = utils.load_classification_data(args.data_path)
        n_classes = utils.class_count(data)
        n_features = data["train"][0].shape[1]
        if args.model == "mlp":
            utils.check_mlp_size(data, args.hidden_size, args.layers, itemsize=4)
        utils.writable_dir(args.output_dir)  # now, not after training
    except utils.RunError as err:
        utils.fail(str(err))
    # MKL's products round differently with one thread and with two: one thread, which every
    # machine has, makes a run's numbers independent of the core count
    torch.set_num_threads(1)
    dataset = utils.ClassificationDataset(data)

    if args.model == "logistic_regression":
        model = LogisticRegression(n_classes, n_features)
    else:
        model = FeedforwardNetwork(n_classes, n_features, args.hidden_size, args.layers,
                                   args.activation, args.dropout)
    model = model.to(args.device)
    if args.optimizer == "sgd":
        optimizer = torch.optim.SGD(model.parameters(), lr=args.learning_rate,
                                    weight_decay=args.l2_decay, momentum=args.momentum)
    else:
        optimizer = torch.optim.Adam(model.parameters(), lr=args.learning_rate,
                                     weight_decay=args.l2_decay)
    criterion = nn.CrossEntropyLoss()

    history = train(model, optimizer, criterion, dataset, args.epochs, args.batch_size,
                    args.device, args.impl)
    final_train_acc = evaluate(model, dataset.X.to(args.device), dataset.y.to(args.device))
    test_acc = evaluate(model, dataset.test_X.to(args.device), dataset.test_y.to(args.device))
    print(f"Final train acc: {final_train_acc:.4f}")
    print(f"Final test acc: {test_acc:.4f}")
    print(f"Training time: {history['train_seconds']:.2f} s")

    config = vars(args)
    record = {"model": args.model, "config": config, "path": history["path"],
              "epochs": list(range(1, args.epochs + 1)), "train_loss": history["train_loss"],
              "valid_loss": history["valid_loss"], "valid_acc": history["valid_acc"],
              "final_train_acc": final_train_acc, "test_acc": test_acc,
              "train_seconds": history["train_seconds"], "epoch_seconds": history["epoch_seconds"],
              "diverged": history["diverged"]}
    figures = {"loss": ("Loss", {"train": history["train_loss"], "dev": history["valid_loss"]}),
               "accuracy": ("Dev accuracy", {"dev": history["valid_acc"]})}
    name = utils.run_name(f"q2-{args.model}", config, defaults)
    try:
        paths = utils.save_run(args.output_dir, name, record, figures)
    except utils.RunError as err:
        utils.fail(str(err))
    print(f"Saved {', '.join(str(p) for p in paths)}")
    return record


if __name__ == "__main__":
    utils.run_command(main)
