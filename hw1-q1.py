#!/usr/bin/env python
"""Homework 1, question 1: perceptron, logistic regression and an MLP in numpy, by hand.

    python hw1-q1.py perceptron
    python hw1-q1.py logistic_regression -learning_rate 0.001 -l2_penalty 0.01
    python hw1-q1.py mlp -hidden_size 200 -layers 1

Shapes: N examples, D features (784 pixels, plus a bias column of ones for the linear models),
H hidden units, C classes.

Every model learns by per-example SGD, in the order the training loop gives. `-impl reference`
runs the code below, one example at a time. `-impl fast` (the default) hands each epoch to
fast_sgd/blocked.py, which computes the same updates, up to rounding, a block of examples at a
time (the perceptron: the same loop, without reordering a copy of X first).
"""
import argparse

import numpy as np

import utils
from fast_sgd import Engine, TrainingPath, blocked
from runkit import epoch_log, errors, files, flags, records


# ----------------------------------------------------------------------------- layers

def affine_forward(x, W, b):
    """x (N, D), W (H, D), b (H,) -> out = x W^T + b (N, H), and the cache for the backward."""
    return x @ W.T + b, (x, W)


def affine_backward(dout, cache):
    """dout (N, H) -> dx (N, D), dW (H, D), db (H,)."""
    x, W = cache
    return dout @ W, dout.T @ x, dout.sum(axis=0)


def relu_forward(x):
    """x (N, H) -> max(x, 0), and the cache (the input) for the backward."""
    return np.maximum(x, 0), x


def relu_backward(dout, cache):
    """dout (N, H) -> dx (N, H): the gradient passes where the input was positive."""
    return dout * (cache > 0)


def softmax(scores):
    """scores (N, C) -> probabilities (N, C); the row maximum is taken out first, so exp
    cannot overflow."""
    z = np.exp(scores - scores.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def softmax_cross_entropy(scores, y):
    """scores (N, C), labels y (N,) -> losses (N,) and dscores (N, C).

    loss_i = -log softmax(scores_i)[y_i]; dscores_i = softmax(scores_i) - onehot(y_i), the
    gradient of loss_i (SGD here takes one example's gradient at a time, not a mean).
    """
    shifted = scores - scores.max(axis=1, keepdims=True)  # (N, C)
    log_z = np.log(np.exp(shifted).sum(axis=1))  # (N,)
    rows = np.arange(len(y))
    dscores = softmax(scores)
    dscores[rows, y] -= 1
    return log_z - shifted[rows, y], dscores


# ----------------------------------------------------------------------------- linear models

class LinearModel:
    """Weights W (C, D), zero at the start; the bias is the last column, facing the ones."""

    def __init__(self, n_classes, n_features):
        self.W = np.zeros((n_classes, n_features))

    def update_weight(self, x_i, y_i, **kwargs):
        raise NotImplementedError

    def train_epoch(self, X, y, **kwargs):
        """One update per example of X (N, D), y (N,), in order; returns the mean loss (None
        for a model without one)."""
        losses = [self.update_weight(x_i, y_i, **kwargs) for x_i, y_i in zip(X, y)]
        return None if losses[0] is None else float(np.mean(losses))

    def predict(self, X):
        """X (N, D) -> labels (N,): the highest score (the first one on ties)."""
        return (X @ self.W.T).argmax(axis=1)

    def evaluate(self, X, y):
        return float(np.mean(self.predict(X) == y))


class Perceptron(LinearModel):
    def update_weight(self, x_i, y_i, **kwargs):
        """On a mistake, move the gold class's row towards x_i and the predicted one away."""
        y_hat = (self.W @ x_i).argmax()
        if y_hat != y_i:
            self.W[y_i] += x_i
            self.W[y_hat] -= x_i


class LogisticRegression(LinearModel):
    def update_weight(self, x_i, y_i, learning_rate=0.001, l2_penalty=0.0):
        """One SGD step on -log p(y_i | x_i) + l2_penalty/2 ||W||^2; returns the cross-entropy.

        The gradient is (p - onehot(y_i)) x_i^T + l2_penalty W (the penalty covers the bias
        column too).
        """
        scores = self.W @ x_i  # (C,)
        loss, dscores = softmax_cross_entropy(scores[None, :], np.array([y_i]))
        gradient = np.outer(dscores[0], x_i)  # (C, D), without the penalty's l2_penalty W
        self.W = (1 - learning_rate * l2_penalty) * self.W - learning_rate * gradient
        return loss[0]


# ----------------------------------------------------------------------------- MLP

class MLP:
    """`layers` ReLU hidden layers of `hidden_size` units, then softmax cross-entropy.

    W[l] (out, in) and b[l] (out,), input to output. Weights are drawn from N(0.1, 0.1^2),
    layer by layer, with numpy's global generator (so the seed fixes them); biases start at 0.
    """

    def __init__(self, n_classes, n_features, hidden_size=200, layers=1):
        sizes = [n_features] + [hidden_size] * layers + [n_classes]
        self.W = [np.random.normal(0.1, 0.1, size=(n_out, n_in))
                  for n_in, n_out in zip(sizes[:-1], sizes[1:])]
        self.b = [np.zeros(n_out) for n_out in sizes[1:]]

    def forward(self, X):
        """X (N, D) -> scores (N, C), and the caches for `backward`."""
        caches = []
        h = X
        for l, (W, b) in enumerate(zip(self.W, self.b)):
            h, affine_cache = affine_forward(h, W, b)  # (N, H); the last layer's (N, C)
            relu_cache = None
            if l < len(self.W) - 1:
                h, relu_cache = relu_forward(h)
            caches.append((affine_cache, relu_cache))
        return h, caches

    def backward(self, dscores, caches):
        """dscores (N, C) -> the gradients dW, db (lists shaped like W, b)."""
        dW, db = [None] * len(self.W), [None] * len(self.W)
        dout = dscores
        for l in reversed(range(len(self.W))):
            affine_cache, relu_cache = caches[l]
            if relu_cache is not None:
                dout = relu_backward(dout, relu_cache)
            dout, dW[l], db[l] = affine_backward(dout, affine_cache)
        return dW, db

    def predict(self, X, rows=4096):
        """X (N, D) -> labels (N,): the highest score (the first one on ties). A few thousand
        rows at a time, so the hidden activations stay small (each row's scores are its own)."""
        chunks = [X[i:i + rows] for i in range(0, len(X), rows)] or [X]
        return np.concatenate([self.forward(chunk)[0].argmax(axis=1) for chunk in chunks])

    def evaluate(self, X, y):
        return float(np.mean(self.predict(X) == y))

    def update_weight(self, x_i, y_i, learning_rate=0.001):
        """One SGD step on example (x_i (D,), y_i); returns its loss before the step."""
        scores, caches = self.forward(x_i[None, :])
        losses, dscores = softmax_cross_entropy(scores, np.array([y_i]))
        dW, db = self.backward(dscores, caches)
        for l in range(len(self.W)):
            self.W[l] -= learning_rate * dW[l]
            self.b[l] -= learning_rate * db[l]
        return losses[0]

    def train_epoch(self, X, y, learning_rate=0.001, **kwargs):
        """One SGD step per example of X (N, D), y (N,), in order; returns the mean loss."""
        losses = [self.update_weight(x_i, y_i, learning_rate) for x_i, y_i in zip(X, y)]
        return float(np.mean(losses))


# ----------------------------------------------------------------------------- training

def parameters(model):
    """The model's weight arrays, in the order fast_sgd expects."""
    if isinstance(model, LinearModel):
        return [model.W]
    return [p for W, b in zip(model.W, model.b) for p in (W, b)]


def train(model, data, epochs=20, impl="fast", learning_rate=0.001, l2_penalty=0.0):
    """The course's loop: per epoch, shuffle, one pass of per-example SGD, train and dev
    accuracy. Returns the run's record (runkit.epoch_log): curves, test accuracy, the path that
    trained. (The perceptron takes no learning rate, and only logistic regression an L2
    penalty.)"""
    train_X, train_y = data["train"]
    dev_X, dev_y = data["dev"]
    test_X, test_y = data["test"]
    engine_name = {Perceptron: "perceptron", LogisticRegression: "logistic_regression",
                   MLP: "mlp"}.get(type(model))
    fast = impl == "fast" and engine_name is not None
    log = epoch_log.EpochLog(TrainingPath(Engine.BLOCKED if fast else Engine.PER_EXAMPLE),
                              n_classes=len(parameters(model)[-1]),
                              advice=not isinstance(model, Perceptron),
                              unbounded_epochs=1 if isinstance(model, MLP) else 0)
    kwargs = {"learning_rate": learning_rate, "l2_penalty": l2_penalty}
    # The course reorders the training set each epoch (train_X = train_X[permutation]); the
    # composed order visits the same sequence without copying X every epoch.
    order = np.arange(len(train_y))
    for _ in range(epochs):
        order = order[np.random.permutation(len(order))]
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            if fast:
                loss = blocked.sgd_epoch(engine_name, parameters(model), train_X, train_y,
                                         order, **kwargs)
            else:
                loss = model.train_epoch(train_X[order], train_y[order], **kwargs)
            log.epoch(all(np.isfinite(p).all() for p in parameters(model)), train_loss=loss,
                      train_acc=model.evaluate(train_X, train_y),
                      valid_acc=model.evaluate(dev_X, dev_y),
                      weight_norm=(float(np.linalg.norm(model.W))
                                   if isinstance(model, LinearModel) else None))
    with np.errstate(over="ignore", invalid="ignore"):
        return log.finish(test_acc=model.evaluate(test_X, test_y))


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", choices=("perceptron", "logistic_regression", "mlp"),
                        help="which model to train")
    flags.add_flag(parser, "epochs", type=flags.positive_int, default=20,
                   help="number of epochs (default: %(default)s)")
    flags.add_flag(parser, "learning_rate", type=flags.positive_float, default=0.001,
                   help="SGD step size of logistic regression and the MLP (default: %(default)s)")
    flags.add_flag(parser, "l2_penalty", type=flags.nonnegative_float, default=0.0,
                   help="logistic regression: adds l2_penalty/2 ||W||^2 to the loss "
                        "(default: %(default)s)")
    flags.add_flag(parser, "hidden_size", type=flags.positive_int, default=200,
                   help="MLP: units per hidden layer (default: %(default)s)")
    flags.add_flag(parser, "layers", type=flags.positive_int, default=1,
                   help="MLP: number of hidden layers (default: %(default)s)")
    flags.add_flag(parser, "data_path", default=utils.DEFAULT_DATA_PATH,
                   help="dataset file (default: %(default)s)")
    flags.add_flag(parser, "output_dir", default="results",
                   help="where the figures and the JSON record go (default: %(default)s)")
    flags.add_flag(parser, "seed", type=flags.seed_value, default=42,
                   help="random seed (default: %(default)s)")
    flags.add_flag(parser, "impl", choices=("fast", "reference"), default="fast",
                   help="fast: fast_sgd/blocked.py, the same updates up to rounding "
                        "(default); reference: the per-example loop of this file")
    return parser


def main(argv=None, loader=None):
    """Train as the flags `argv` say. `loader`, if given, reads the data in place of
    utils.load_dataset, with its signature (report.py hands its forked runs one that returns
    the split it loaded once)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        data = (loader or utils.load_dataset)(args.data_path, bias=(args.model != "mlp"))
        n_classes = utils.class_count(data)
        n_features = data["train"][0].shape[1]
        if args.model == "mlp":
            errors.check_mlp_size(data, args.hidden_size, args.layers, itemsize=8)
        files.writable_dir(args.output_dir)  # now, not after training
    except errors.RUN_ERRORS as err:
        errors.fail(str(err))
    utils.configure_seed(args.seed)
    if args.model == "perceptron":
        model = Perceptron(n_classes, n_features)
    elif args.model == "logistic_regression":
        model = LogisticRegression(n_classes, n_features)
    else:
        model = MLP(n_classes, n_features, args.hidden_size, args.layers)

    record = train(model, data, args.epochs, args.impl, args.learning_rate, args.l2_penalty)
    print(f"Final test acc: {record['test_acc']:.4f}")

    config = vars(args)
    record = {"model": args.model, "config": config, **record}
    defaults = {key: parser.get_default(key) for key in config}
    name = records.run_name(f"q1-{args.model}", config, defaults)
    try:
        paths = records.save_run(args.output_dir, name, record, epoch_log.figures(record))
    except errors.OutputError as err:
        errors.fail(str(err))
    print(f"Saved {', '.join(str(p) for p in paths)}")
    return record


if __name__ == "__main__":
    errors.run_command(main)
