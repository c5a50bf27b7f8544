#!/usr/bin/env python
"""Homework 1, question 1: perceptron, logistic regression and an MLP in numpy, by hand.

    python hw1-q1.py perceptron
    python hw1-q1.py logistic_regression -learning_rate 0.001 -l2_penalty 0.01
    python hw1-q1.py mlp -hidden_size 200 -layers 2

Shapes: N examples, D features (784 pixels, +1 bias column for the linear models), H hidden
units, C classes, B examples in a block of the fast path.

Every model trains by per-example SGD, in the order the training loop gives. Each model has two
implementations of that same computation, chosen with `-impl`:
- `reference`: the textbook loop, one example at a time (`update_weight`, or forward/backward
  per example for the MLP). It is the oracle the tests compare against.
- `fast` (default): blocks of B examples. The block's scores come from one matrix product with
  the weights at the block's start; the effect of the block's earlier updates on a later
  example's activations goes through the block's Gram matrix X_B X_B^T; the block's rank-1
  updates are then applied as one product. The coupled equations are solved by fixed-point
  sweeps (see `_fixed_point`), which end at the per-example result exactly (up to rounding).
  The perceptron's scores are exact in float64, so its fast path gives bit-identical weights.
"""
import argparse
import os
import sys
import time

# The fast path multiplies many small matrices; on a 2-core machine OpenBLAS's threads cost more
# than they save there (measured 2-5x slower). Only effective when this file is run as a script
# (numpy not yet imported); set OPENBLAS_NUM_THREADS yourself to override.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

import utils  # noqa: E402

MODELS = ("perceptron", "logistic_regression", "mlp")
# Block sizes of the fast path, tuned on the real data (bench_q1.py): larger blocks need fewer
# Python-level steps, but the Gram matrix costs B*D per example and the sweeps grow with B.
BLOCK_SIZE = {"perceptron": 32, "logistic_regression": 32, "mlp": 32}


# ----------------------------------------------------------------------------- layers

def affine_forward(x, W, b):
    """x (N, D), W (H, D), b (H,) -> out (N, H) = x W^T + b, and the cache for the backward."""
    out = x @ W.T + b  # (N, H)
    return out, (x, W)


def affine_backward(dout, cache):
    """dout (N, H) -> dx (N, D), dW (H, D), db (H,)."""
    x, W = cache
    dx = dout @ W  # (N, D)
    dW = dout.T @ x  # (H, D)
    db = dout.sum(axis=0)  # (H,)
    return dx, dW, db


def relu_forward(x):
    """x (N, H) -> max(x, 0) (N, H), and the cache (the input) for the backward."""
    return np.maximum(x, 0), x


def relu_backward(dout, cache):
    """dout (N, H) -> dx (N, H): the gradient passes where the input was positive."""
    return dout * (cache > 0)


def softmax(scores):
    """scores (N, C) -> probabilities (N, C), each row summing to 1 (stable: max subtracted)."""
    z = np.exp(scores - scores.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def softmax_cross_entropy(scores, y):
    """scores (N, C), gold labels y (N,) -> per-example losses (N,) and dscores (N, C).

    loss_i = -log softmax(scores_i)[y_i]; dscores_i = softmax(scores_i) - onehot(y_i), the
    gradient of loss_i (not of the mean: SGD here takes one example's gradient at a time).
    """
    shifted = scores - scores.max(axis=1, keepdims=True)  # (N, C)
    log_z = np.log(np.exp(shifted).sum(axis=1))  # (N,)
    rows = np.arange(len(y))
    losses = log_z - shifted[rows, y]  # (N,)
    dscores = np.exp(shifted - log_z[:, None])  # (N, C) probabilities
    dscores[rows, y] -= 1
    return losses, dscores


# ----------------------------------------------------------------------------- fast-path tools

def _blocks(X, y, order, block_size, chunk=32):
    """Yield (X_B, y_B, G_B) for consecutive blocks of `order`, G_B = X_B X_B^T (B, B).

    Examples are gathered `chunk` blocks at a time and their Gram matrices computed as one
    stacked product, which saves Python-level work per block.
    """
    n = len(order)
    step = block_size * chunk
    for start in range(0, n, step):
        idx = order[start:start + step]
        Xc, yc = X[idx], y[idx]  # (K, D), (K,)
        full = len(idx) // block_size * block_size
        if full:
            Xs = Xc[:full].reshape(-1, block_size, Xc.shape[1])  # (K/B, B, D)
            Gs = Xs @ Xs.transpose(0, 2, 1)  # (K/B, B, B)
            for k in range(len(Xs)):
                yield Xs[k], yc[k * block_size:(k + 1) * block_size], Gs[k]
        if full < len(idx):
            XB = Xc[full:]
            yield XB, yc[full:], XB @ XB.T


def _fixed_point(step, state, max_sweeps):
    """Iterate state <- step(state) until it no longer changes (exactly), at most max_sweeps.

    Used for a block's sequential dependencies: the value for example k depends only on
    examples j < k, so after t sweeps the first t examples are final, and a state that maps to
    itself is the unique solution, the per-example result. Non-finite values (a diverged run)
    would never compare equal, so they end the iteration.
    """
    for _ in range(max_sweeps):
        new = step(state)
        if all(np.array_equal(a, b) for a, b in zip(new, state)):
            return new
        state = new
        if not all(np.isfinite(a).all() for a in state):
            return state
    return state


# ----------------------------------------------------------------------------- linear models

class LinearModel:
    """A C x D weight matrix W (bias as the last feature column), zero at the start."""

    def __init__(self, n_classes, n_features):
        self.W = np.zeros((n_classes, n_features))

    def update_weight(self, x_i, y_i, **kwargs):
        raise NotImplementedError

    def train_epoch(self, X, y, order=None, fast=True, **kwargs):
        """One epoch of per-example updates over X (N, D), y (N,), visiting X[order] in order.

        `order` (default: 0..N-1) spares the training loop a copy of X each epoch. Returns the
        epoch's mean training loss, or None for a model without one.
        """
        order = np.arange(len(y)) if order is None else np.asarray(order)
        if fast:
            return self._train_epoch_fast(X, y, order, **kwargs)
        losses = [self.update_weight(X[i], y[i], **kwargs) for i in order]
        return None if losses[0] is None else float(np.mean(losses))

    def predict(self, X):
        """X (N, D) -> predicted labels (N,): the highest score, the first one on ties."""
        scores = self.W @ X.T  # (C, N); faster than X @ W.T for a tall X
        return scores.argmax(axis=0)

    def evaluate(self, X, y):
        return float((self.predict(X) == y).mean())


class Perceptron(LinearModel):

    def update_weight(self, x_i, y_i, **kwargs):
        """On a mistake, add x_i to the gold row and subtract it from the predicted row."""
        y_hat = (self.W @ x_i).argmax()
        if y_hat != y_i:
            self.W[y_i] += x_i
            self.W[y_hat] -= x_i

    def _train_epoch_fast(self, X, y, order, block_size=BLOCK_SIZE["perceptron"], **kwargs):
        """Per block: U (B, C) holds each example's update (+1 gold, -1 predicted on a mistake).

        Example k's scores are X_B W_0^T + strictly-lower(G) U, solved by `_fixed_point`. With
        pixels k/256 every product and sum here is exact in float64, so the weights equal the
        per-example loop's bit for bit.
        """
        eye = np.eye(self.W.shape[0])
        for XB, yB, G in _blocks(X, y, order, block_size):
            gold = eye[yB]  # (B, C)
            S0 = XB @ self.W.T  # (B, C) scores with the weights at the block's start
            U = gold - eye[S0.argmax(axis=1)]  # (B, C); zero rows where the prediction is right
            if not U.any():
                continue
            LG = np.tril(G, -1)  # (B, B): example k sees the updates of examples j < k

            def step(state):
                return (gold - eye[(S0 + LG @ state[0]).argmax(axis=1)],)

            U, = _fixed_point(step, (U,), len(yB) + 1)
            self.W += U.T @ XB


class LogisticRegression(LinearModel):

    def update_weight(self, x_i, y_i, learning_rate=0.001, l2_penalty=0.0):
        """One SGD step on -log p(y_i | x_i) + l2_penalty/2 ||W||^2; returns the cross-entropy.

        The gradient is -(onehot(y_i) - p) x_i^T + l2_penalty W. The penalty covers all of W,
        the bias column included (as the 2024-25 solution does).
        """
        scores = self.W @ x_i  # (C,)
        probs = softmax(scores[None, :])[0]  # (C,)
        loss = -np.log(probs[y_i])
        error = -probs
        error[y_i] += 1  # onehot(y_i) - p
        self.W = (1 - learning_rate * l2_penalty) * self.W + learning_rate * np.outer(error, x_i)
        return loss

    def _train_epoch_fast(self, X, y, order, learning_rate=0.001, l2_penalty=0.0,
                          block_size=BLOCK_SIZE["logistic_regression"]):
        """Per block, with a = 1 - lr*l2 and Derr = E - P (B, C) the examples' errors:

        W_k = a^k W_0 + lr sum_{j<k} a^(k-1-j) Derr_j x_j^T, so example k's scores are
        a^k (X_B W_0^T)_k + lr sum_{j<k} a^(k-1-j) G_kj Derr_j; Derr solved by `_fixed_point`.
        Returns the mean cross-entropy of the epoch (each example's, before its own step).
        """
        lr = learning_rate
        a = 1.0 - lr * l2_penalty
        eye = np.eye(self.W.shape[0])
        total = 0.0
        for XB, yB, G in _blocks(X, y, order, block_size):
            B = len(yB)
            gold = eye[yB]  # (B, C)
            S0 = XB @ self.W.T  # (B, C)
            LG = lr * np.tril(G, -1)  # (B, B)
            if a != 1.0:
                k = np.arange(B)
                decay = np.tril(a ** np.maximum(k[:, None] - 1 - k[None, :], 0), -1)
                LG *= decay  # a^(k-1-j) below the diagonal
                S0 *= (a ** k)[:, None]

            def step(state):
                return (gold - softmax(S0 + LG @ state[0]),)

            Derr, = _fixed_point(step, (gold - softmax(S0),), B + 1)
            losses, _ = softmax_cross_entropy(S0 + LG @ Derr, yB)
            total += losses.sum()
            if a != 1.0:
                Derr = Derr * (a ** (B - 1 - np.arange(B)))[:, None]
                self.W *= a ** B
            self.W += lr * (Derr.T @ XB)
        return total / len(order)


# ----------------------------------------------------------------------------- MLP

class MLP:
    """`layers` ReLU hidden layers of `hidden_size` units, softmax cross-entropy at the output.

    W[l] (out, in) and b[l] (out,) for l = 0..layers, input to output. Weights are drawn from
    N(0.1, 0.1^2) with numpy's global generator, layer by layer; biases start at zero.
    """

    def __init__(self, n_classes, n_features, hidden_size=200, layers=1):
        sizes = [n_features] + [hidden_size] * layers + [n_classes]
        self.W = [np.random.normal(0.1, 0.1, size=(n_out, n_in))
                  for n_in, n_out in zip(sizes[:-1], sizes[1:])]
        self.b = [np.zeros(n_out) for n_out in sizes[1:]]

    def forward(self, X):
        """X (N, D) -> scores (N, C) and the caches for `backward`."""
        caches = []
        h = X
        for l, (W, b) in enumerate(zip(self.W, self.b)):
            h, affine_cache = affine_forward(h, W, b)  # (N, H), last layer (N, C)
            relu_cache = None
            if l < len(self.W) - 1:
                h, relu_cache = relu_forward(h)
            caches.append((affine_cache, relu_cache))
        return h, caches

    def backward(self, dscores, caches):
        """dscores (N, C) -> gradients dW, db (lists like W, b) of the summed loss."""
        dW, db = [None] * len(self.W), [None] * len(self.W)
        dout = dscores
        for l in reversed(range(len(self.W))):
            affine_cache, relu_cache = caches[l]
            if relu_cache is not None:
                dout = relu_backward(dout, relu_cache)
            dout, dW[l], db[l] = affine_backward(dout, affine_cache)
        return dW, db

    def loss_and_grads(self, X, y):
        """Summed cross-entropy over X (N, D), y (N,) and its gradients dW, db."""
        scores, caches = self.forward(X)
        losses, dscores = softmax_cross_entropy(scores, y)
        dW, db = self.backward(dscores, caches)
        return losses.sum(), dW, db

    def predict(self, X):
        """X (N, D) -> predicted labels (N,); computed in slices to bound memory."""
        return np.concatenate([self.forward(X[i:i + 10000])[0].argmax(axis=1)
                               for i in range(0, len(X), 10000)])

    def evaluate(self, X, y):
        return float((self.predict(X) == y).mean())

    def update_weight(self, x_i, y_i, learning_rate=0.001):
        """One SGD step on example (x_i (D,), y_i); returns its loss before the step."""
        loss, dW, db = self.loss_and_grads(x_i[None, :], np.array([y_i]))
        for l in range(len(self.W)):
            self.W[l] -= learning_rate * dW[l]
            self.b[l] -= learning_rate * db[l]
        return loss

    def train_epoch(self, X, y, learning_rate=0.001, order=None, fast=True,
                    block_size=BLOCK_SIZE["mlp"], **kwargs):
        """One epoch of per-example SGD over X[order]; returns the mean training loss.

        fast=False is the reference: `update_weight` on each example in turn.
        """
        order = np.arange(len(y)) if order is None else np.asarray(order)
        if not fast:
            return float(np.mean([self.update_weight(X[i], y[i], learning_rate) for i in order]))
        total = 0.0
        for XB, yB, G in _blocks(X, y, order, block_size):
            total += self._train_block(XB, yB, G, learning_rate)
        return total / len(order)

    def _train_block(self, XB, yB, G, lr):
        """Per-example SGD over one block, computed for the whole block at once.

        With dA[l] (B, out) the gradients at layer l's pre-activations, example k sees
            W_l = W_l0 - lr sum_{j<k} dA[l]_j h_j^T,  b_l = b_l0 - lr sum_{j<k} dA[l]_j,
        so its pre-activation is (h W_l0^T + b_l0)_k - lr sum_{j<k} (h_j.h_k + 1) dA[l]_j, and
        the gradient it sends down is (dA[l] W_l0)_k - lr sum_{j<k} (dA[l]_j.dA[l]_k) h_j.
        Given dA, one sweep recomputes the forward and backward passes for every example;
        `_fixed_point` repeats until dA no longer changes.
        """
        B = len(yB)
        L = len(self.W)
        lower = np.tri(B, B, -1)  # (B, B) strictly lower: j < k
        LG0 = lr * lower * (G + 1)  # (B, B) for the first layer, whose input does not change
        A0 = XB @ self.W[0].T + self.b[0]  # (B, H) with the weights at the block's start
        out = {}

        def step(dA):
            hs = [XB]
            As = []
            for l in range(L):
                if l == 0:
                    A = A0 - LG0 @ dA[0]
                else:
                    h = hs[-1]
                    A = h @ self.W[l].T + self.b[l] - (lr * lower * (h @ h.T + 1)) @ dA[l]
                As.append(A)
                if l < L - 1:
                    hs.append(np.maximum(A, 0))
            losses, dscores = softmax_cross_entropy(As[-1], yB)  # (B,), (B, C)
            new = [None] * L
            new[L - 1] = dscores
            for l in range(L - 1, 0, -1):
                d = new[l]
                dh = d @ self.W[l] - (lr * lower * (d @ d.T)) @ hs[l]  # (B, H)
                new[l - 1] = dh * (As[l - 1] > 0)
            out["losses"], out["hs"] = losses, hs
            return new

        start = [np.zeros((B, W.shape[0])) for W in self.W]
        dA = _fixed_point(step, start, B + 1)
        step(dA)  # the forward values and losses that go with the final dA
        for l in range(L):
            self.W[l] -= lr * (dA[l].T @ out["hs"][l])
            self.b[l] -= lr * dA[l].sum(axis=0)
        return out["losses"].sum()


# ----------------------------------------------------------------------------- training loop

def _parameters(model):
    return [model.W] if isinstance(model, LinearModel) else model.W + model.b


def weight_norm(model):
    return float(np.linalg.norm(model.W)) if isinstance(model, LinearModel) else None


def build_model(name, n_classes, n_features, hidden_size=200, layers=1):
    if name == "perceptron":
        return Perceptron(n_classes, n_features)
    if name == "logistic_regression":
        return LogisticRegression(n_classes, n_features)
    return MLP(n_classes, n_features, hidden_size, layers)


def train(model_name, data, epochs=20, learning_rate=0.001, l2_penalty=0.0, hidden_size=200,
          layers=1, seed=42, fast=True, verbose=True):
    """The course's training loop; returns the model and the run's record (without `config`).

    `data` is utils.load_dataset's dict. The generator is seeded before the model is built
    (the MLP's initial weights come from it) and before each epoch's permutation.
    """
    utils.configure_seed(seed)
    train_X, train_y = data["train"]
    dev_X, dev_y = data["dev"]
    test_X, test_y = data["test"]
    n_classes = np.unique(train_y).size
    n_feats = train_X.shape[1]
    model = build_model(model_name, n_classes, n_feats, hidden_size, layers)
    kwargs = {"learning_rate": learning_rate}
    if model_name == "logistic_regression":
        kwargs["l2_penalty"] = l2_penalty

    record = {"model": model_name, "epochs": [], "train_acc": [], "valid_acc": [],
              "train_loss": [] if model_name != "perceptron" else None,
              "weight_norm": [] if model_name != "mlp" else None,
              "epoch_seconds": [], "diverged": False}
    # The course reorders the training set each epoch, cumulatively:
    # train_X = train_X[np.random.permutation(n)]. Keeping the composed order instead visits
    # the same examples in the same sequence without copying X (314 MB) every epoch.
    order = np.arange(train_X.shape[0])
    for epoch in range(1, epochs + 1):
        start = time.perf_counter()
        order = order[np.random.permutation(train_X.shape[0])]
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            loss = model.train_epoch(train_X, train_y, order=order, fast=fast, **kwargs)
            train_acc = model.evaluate(train_X, train_y)  # accuracy does not depend on order
            valid_acc = model.evaluate(dev_X, dev_y)
        seconds = time.perf_counter() - start
        finite = all(np.isfinite(w).all() for w in _parameters(model))
        if (loss is not None and not np.isfinite(loss)) or not finite:
            if not record["diverged"]:
                print(f"warning: training diverged at epoch {epoch} (non-finite "
                      f"{'loss' if loss is not None and not np.isfinite(loss) else 'weights'}); "
                      f"try a smaller -learning_rate", file=sys.stderr)
            record["diverged"] = True
        record["epochs"].append(epoch)
        record["train_acc"].append(train_acc)
        record["valid_acc"].append(valid_acc)
        record["epoch_seconds"].append(seconds)
        if record["train_loss"] is not None:
            record["train_loss"].append(loss)
        if record["weight_norm"] is not None:
            record["weight_norm"].append(weight_norm(model))
        if verbose:
            loss_text = "" if loss is None else f" | train loss {loss:.4f}"
            print(f"epoch {epoch:3d}{loss_text} | train acc {train_acc:.4f} | "
                  f"dev acc {valid_acc:.4f} | {seconds:.2f} s", flush=True)
    record["train_seconds"] = float(sum(record["epoch_seconds"]))
    with np.errstate(over="ignore", invalid="ignore"):
        record["test_acc"] = model.evaluate(test_X, test_y)
    return model, record


def figures(record):
    """The run's figures for utils.save_run: accuracy, and loss / weight norm where defined."""
    figs = {"accuracy": ("Accuracy", {"train": record["train_acc"], "dev": record["valid_acc"]})}
    if record["train_loss"] is not None:
        figs["loss"] = ("Training loss", {"train": record["train_loss"]})
    if record["weight_norm"] is not None:
        figs["weight_norm"] = ("||W||_F", {"W": record["weight_norm"]})
    return figs


def seed_int(text):
    """A seed numpy accepts: an integer in [0, 2**32)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected int, got {text!r}") from None
    if not 0 <= value < 2 ** 32:
        raise argparse.ArgumentTypeError(f"must be in [0, 2**32), got {text}")
    return value


seed_int.__name__ = "int"


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", choices=MODELS, help="which model to train")
    utils.add_flag(parser, "epochs", type=utils.positive_int, default=20,
                   help="number of epochs (default: 20)")
    utils.add_flag(parser, "learning_rate", type=utils.positive_float, default=0.001,
                   help="SGD step size for logistic regression and the MLP (default: 0.001)")
    utils.add_flag(parser, "l2_penalty", type=utils.nonnegative_float, default=0.0,
                   help="logistic regression: adds l2_penalty/2 ||W||^2 to the objective, "
                        "bias column included (default: 0)")
    utils.add_flag(parser, "hidden_size", type=utils.positive_int, default=200,
                   help="MLP: units per hidden layer (default: 200)")
    utils.add_flag(parser, "layers", type=utils.positive_int, default=1,
                   help="MLP: number of hidden layers (default: 1)")
    utils.add_flag(parser, "data_path", default=utils.DEFAULT_DATA_PATH,
                   help=f"dataset file (default: {utils.DEFAULT_DATA_PATH})")
    utils.add_flag(parser, "output_dir", default="results",
                   help="where figures and the JSON record go (default: results)")
    utils.add_flag(parser, "seed", type=seed_int, default=42, help="random seed (default: 42)")
    utils.add_flag(parser, "impl", choices=("fast", "reference"), default="fast",
                   help="fast: blocked per-example SGD (default); reference: the textbook "
                        "one-example-at-a-time loop. Both compute the same updates.")
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        data = utils.load_dataset(args.data_path, bias=(args.model != "mlp"))
    except utils.DataError as err:
        utils.fail(str(err))
    _, record = train(args.model, data, epochs=args.epochs, learning_rate=args.learning_rate,
                      l2_penalty=args.l2_penalty, hidden_size=args.hidden_size,
                      layers=args.layers, seed=args.seed, fast=(args.impl == "fast"))
    print(f"Final test acc: {record['test_acc']:.4f}")
    config = vars(args)
    record = {"model": args.model, "config": config, **record}
    defaults = {key: parser.get_default(key) for key in config}
    name = utils.run_name(args.model, config, defaults)
    paths = utils.save_run(args.output_dir, name, record, figures(record))
    print(f"Saved {', '.join(str(p) for p in paths)}")
    return record


if __name__ == "__main__":
    main()
