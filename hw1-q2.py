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

import torch
from torch import nn
from torch.utils.data import DataLoader

import utils
from fast_sgd import Engine, TrainingPath, manual
from runkit import epoch_log, errors, files, flags, records

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
    """The course's training loop: per epoch, train_batch on every batch, then the dev loss
    and accuracy. Returns the run's record (runkit.epoch_log), with the test accuracy and the
    final training accuracy."""
    train_X, train_y = dataset.X.to(device), dataset.y.to(device)
    dev_X, dev_y = dataset.dev_X.to(device), dataset.dev_y.to(device)
    run_epoch = None
    if impl == "fast":
        run_epoch, path = manual.fast_epochs(model, optimizer, criterion, train_X, train_y,
                                             batch_size, train_batch)
    if run_epoch is None:  # the course's DataLoader flow
        train_dataloader = DataLoader(dataset, batch_size=batch_size, shuffle=True)
        if impl != "fast":
            path = TrainingPath(Engine.DATALOADER)

        def run_epoch():
            return torch.tensor([train_batch(X_batch.to(device), y_batch.to(device), model,
                                             optimizer, criterion)
                                 for X_batch, y_batch in train_dataloader], dtype=torch.float64)

    n_classes = len(list(model.parameters())[-1])  # the output layer's bias: (C,)
    log = epoch_log.EpochLog(path, n_classes)
    for _ in range(epochs):
        train_loss = run_epoch().mean().item()  # over this epoch's batches
        valid_loss, valid_acc = evaluate_with_loss(model, dev_X, dev_y, criterion)
        log.epoch(all(torch.isfinite(p).all() for p in model.parameters()),
                  train_loss=train_loss, valid_loss=valid_loss, valid_acc=valid_acc)
    return log.finish(test_acc=evaluate(model, dataset.test_X.to(device),
                                        dataset.test_y.to(device)),
                      final_train_acc=evaluate(model, train_X, train_y))


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", choices=("logistic_regression", "mlp"),
                        help="which model to train")
    flags.add_flag(parser, "epochs", type=flags.positive_int, default=20,
                   help="number of epochs (default: %(default)s)")
    flags.add_flag(parser, "batch_size", type=flags.positive_int, default=None,
                   help="examples per batch (default: 1 for logistic_regression as Q2.1 asks, "
                        "16 for mlp as Table 1 gives)")
    flags.add_flag(parser, "learning_rate", type=flags.float32_positive, default=0.01,
                   help="learning rate (default: %(default)s)")
    flags.add_flag(parser, "l2_decay", type=flags.float32_nonnegative, default=0.0,
                   help="L2 weight decay, the optimizer's weight_decay (default: %(default)s)")
    flags.add_flag(parser, "hidden_size", "hidden_sizes", type=flags.positive_int, default=100,
                   help="mlp: units per hidden layer; -hidden_sizes is the skeleton's spelling "
                        "(default: %(default)s)")
    flags.add_flag(parser, "layers", type=flags.positive_int, default=1,
                   help="mlp: number of hidden layers (default: %(default)s)")
    flags.add_flag(parser, "dropout", type=flags.probability, default=0.3,
                   help="mlp: dropout probability, in [0, 1) (default: %(default)s)")
    flags.add_flag(parser, "activation", choices=("relu", "tanh"), default="relu",
                   help="mlp: hidden activation (default: %(default)s)")
    flags.add_flag(parser, "optimizer", choices=("sgd", "adam"), default="sgd",
                   help="optimizer (default: %(default)s)")
    flags.add_flag(parser, "momentum", type=flags.probability, default=0.0,
                   help="SGD momentum, in [0, 1) (the 2024-25 edition's; default: %(default)s)")
    flags.add_flag(parser, "seed", type=flags.seed_value, default=42,
                   help="seeds Python, numpy and torch (default: %(default)s)")
    flags.add_flag(parser, "data_path", default=utils.DEFAULT_DATA_PATH,
                   help="dataset file (default: %(default)s)")
    flags.add_flag(parser, "output_dir", default="results",
                   help="where the figures and the JSON record go (default: %(default)s)")
    flags.add_flag(parser, "device", type=flags.torch_device, default="auto",
                   help="torch device; auto picks cuda when available (default: %(default)s)")
    flags.add_flag(parser, "impl", choices=("fast", "reference"), default="fast",
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
    defaults["device"] = flags.resolve_device("auto")
    args.device = flags.resolve_device(args.device)
    return args, defaults


def main(argv=None, loader=None):
    """Train as the flags `argv` say. `loader`, if given, reads the data in place of
    utils.load_classification_data, with its signature (report.py hands its forked runs one
    that returns the split it loaded once)."""
    args, defaults = parse_args(argv)
    utils.configure_seed(seed=args.seed)
    try:
        data = (loader or utils.load_classification_data)(args.data_path)
        n_classes = utils.class_count(data)
        n_features = data["train"][0].shape[1]
        if args.model == "mlp":
            errors.check_mlp_size(data, args.hidden_size, args.layers, itemsize=4)
        files.writable_dir(args.output_dir)  # now, not after training
    except errors.RUN_ERRORS as err:
        errors.fail(str(err))
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

    record = train(model, optimizer, criterion, dataset, args.epochs, args.batch_size,
                   args.device, args.impl)
    print(f"Final train acc: {record['final_train_acc']:.4f}")
    print(f"Final test acc: {record['test_acc']:.4f}")
    print(f"Training time: {record['train_seconds']:.2f} s")

    config = vars(args)
    record = {"model": args.model, "config": config, **record}
    name = records.run_name(f"q2-{args.model}", config, defaults)
    try:
        paths = records.save_run(args.output_dir, name, record, epoch_log.figures(record))
    except errors.RUN_ERRORS as err:
        errors.fail(str(err))
    print(f"Saved {', '.join(str(p) for p in paths)}")
    return record


if __name__ == "__main__":
    errors.run_command(main)
