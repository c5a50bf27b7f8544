"""hw1-q1.py: the layers and their gradients, the three models' updates, the training loop
(and which path it takes), the command line, and the course's published numbers on the real
data. fast_sgd/blocked.py's own contracts are in test_fast_sgd.py.

Shapes: N examples, D features, H hidden units, C classes.
"""
import json
import math
import re
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT, assert_ctrl_c_ends_a_run_cleanly, load_script, make_tiny_dataset

import utils
from fast_sgd import Engine, TrainingPath, blocked

q1 = load_script("hw1-q1.py")

MODELS = ("perceptron", "logistic_regression", "mlp")


def random_problem(N=50, D=12, C=4, seed=0, bias=True, pixels=True):
    """X (N, D [+1]), y (N,): pixels k/256 like the real data (or Gaussian), a column of ones
    appended when `bias`."""
    rng = np.random.RandomState(seed)
    X = rng.randint(0, 256, size=(N, D)) / 256.0 if pixels else rng.randn(N, D)
    if bias:
        X = np.hstack((X, np.ones((N, 1))))
    return X, rng.randint(0, C, size=N)


def random_splits(N=80, D=12, C=4, bias=True, seed=20):
    """{"train", "dev", "test"}: (X, y) of random_problem, with random labels (so that
    accuracies move from epoch to epoch)."""
    return {split: random_problem(N, D, C, seed=seed + i, bias=bias)
            for i, split in enumerate(("train", "dev", "test"))}


def rel_error(a, b, eps=1e-8):
    """max |a - b| / (|a| + |b|), elementwise, with eps in the denominator for zeros."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float(np.max(np.abs(a - b) / np.maximum(eps, np.abs(a) + np.abs(b))))


def numeric_gradient(f, x, h=1e-5):
    """Centred differences of the scalar f() in every entry of the float64 array x (changed
    in place and restored)."""
    grad = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        old = x[idx]
        x[idx] = old + h
        plus = f()
        x[idx] = old - h
        minus = f()
        x[idx] = old
        grad[idx] = (plus - minus) / (2 * h)
    return grad


def without_timings(record):
    return {k: v for k, v in record.items() if k not in ("epoch_seconds", "train_seconds")}


# ============================================================================= layers

def test_layer_shapes_and_values():
    """affine, ReLU and softmax cross-entropy on small inputs, values worked out by hand."""
    rng = np.random.RandomState(0)
    N, D, H = 3, 4, 5
    x, W, b = rng.randn(N, D), rng.randn(H, D), rng.randn(H)
    out, cache = q1.affine_forward(x, W, b)
    np.testing.assert_allclose(out, x @ W.T + b)
    dx, dW, db = q1.affine_backward(np.ones((N, H)), cache)
    assert dx.shape == (N, D) and dW.shape == (H, D) and db.shape == (H,)
    np.testing.assert_allclose(db, [N] * H)
    r, r_cache = q1.relu_forward(np.array([[-1.0, 0.0, 2.0]]))
    np.testing.assert_array_equal(r, [[0, 0, 2]])
    np.testing.assert_array_equal(q1.relu_backward(np.ones((1, 3)), r_cache), [[0, 0, 1]])


def test_softmax_is_stable_and_normalised():
    """Rows sum to one, and huge scores give no overflow (the row maximum is subtracted)."""
    scores = np.array([[1000.0, 0.0, -1000.0], [1.0, 2.0, 3.0]])
    p = q1.softmax(scores)
    np.testing.assert_allclose(p.sum(axis=1), [1, 1])
    np.testing.assert_allclose(p[0], [1, 0, 0])
    e = np.exp([1.0, 2.0, 3.0])
    np.testing.assert_allclose(p[1], e / e.sum(), rtol=1e-15)


def test_softmax_cross_entropy_values():
    """loss_i = -log softmax(scores_i)[y_i], dscores = softmax - onehot, stable at 1000."""
    losses, dscores = q1.softmax_cross_entropy(np.array([[1000.0, 0.0], [0.0, 0.0]]),
                                               np.array([1, 0]))
    np.testing.assert_allclose(losses, [1000.0, np.log(2)])
    np.testing.assert_allclose(dscores, [[1, -1], [-0.5, 0.5]])


# ----------------------------------------------------------------------------- gradient checks
# centred differences, h = 1e-5, float64; relative error with eps = 1e-8 in the denominator

def test_affine_backward_gradient_check():
    """dx, dW, db of f = sum(out * G) for a random G (the upstream gradient) against
    centred differences: relative error below 1e-8."""
    rng = np.random.RandomState(1)
    N, D, H = 3, 4, 5
    x, W, b, G = rng.randn(N, D), rng.randn(H, D), rng.randn(H), rng.randn(N, H)

    def f():
        return float(np.sum(q1.affine_forward(x, W, b)[0] * G))

    dx, dW, db = q1.affine_backward(G, q1.affine_forward(x, W, b)[1])
    for analytic, array in ((dx, x), (dW, W), (db, b)):
        assert rel_error(analytic, numeric_gradient(f, array)) < 1e-8


def test_relu_backward_gradient_check():
    """Away from the kink (no input within 0.1 of zero): relative error below 1e-6."""
    rng = np.random.RandomState(2)
    x = rng.randn(4, 6)
    x[np.abs(x) < 0.1] = 0.5
    G = rng.randn(4, 6)
    dx = q1.relu_backward(G, q1.relu_forward(x)[1])
    numeric = numeric_gradient(lambda: float(np.sum(q1.relu_forward(x)[0] * G)), x)
    assert rel_error(dx, numeric) < 1e-6


def test_softmax_cross_entropy_gradient_check():
    """dscores is the gradient of the summed losses: relative error below 1e-6."""
    rng = np.random.RandomState(3)
    N, C = 5, 4
    scores, y = rng.randn(N, C), rng.randint(0, C, size=N)
    _, dscores = q1.softmax_cross_entropy(scores, y)
    numeric = numeric_gradient(lambda: float(q1.softmax_cross_entropy(scores, y)[0].sum()),
                               scores)
    assert rel_error(dscores, numeric) < 1e-6


def kink_free_mlp(layers, seed, N=4, D=6, H=5, C=3):
    """An MLP with N(0, 0.25) weights, N(0, 0.01) biases, and X (N, D), y (N,), checked to have
    no hidden pre-activation within 1e-3 of zero (so +-h never crosses a ReLU kink)."""
    rng = np.random.RandomState(seed)
    X, y = rng.randn(N, D), rng.randint(0, C, size=N)
    model = q1.MLP(C, D, H, layers)
    model.W = [rng.randn(*W.shape) * 0.5 for W in model.W]
    model.b = [rng.randn(*b.shape) * 0.1 for b in model.b]
    h = X
    for W, b in zip(model.W[:-1], model.b[:-1]):
        h = h @ W.T + b
        assert np.abs(h).min() > 1e-3, "choose another seed: a pre-activation sits on a kink"
        h = np.maximum(h, 0)
    return model, X, y


def mlp_loss_and_grads(model, X, y):
    """The summed loss over the batch and backward's gradients."""
    scores, caches = model.forward(X)
    losses, dscores = q1.softmax_cross_entropy(scores, y)
    dW, db = model.backward(dscores, caches)
    return float(losses.sum()), dW, db


@pytest.mark.parametrize("layers", [1, 2, 3])
def test_mlp_backward_gradient_check(layers):
    """Every weight and bias of 1-3 hidden layers: relative error below 1e-6."""
    model, X, y = kink_free_mlp(layers, seed=layers)
    loss, dW, db = mlp_loss_and_grads(model, X, y)
    assert loss > 0
    for params, grads in ((model.W, dW), (model.b, db)):
        for param, grad in zip(params, grads):
            assert grad.shape == param.shape
            numeric = numeric_gradient(lambda: mlp_loss_and_grads(model, X, y)[0], param)
            assert rel_error(grad, numeric) < 1e-6


@pytest.mark.parametrize("layers", [1, 2, 3])
def test_mlp_backward_matches_torch_autograd_in_float64(layers):
    """A second reference: torch's autograd of the same network (float64, summed
    cross-entropy) gives the same gradients (relative error below 1e-10) and loss."""
    torch = pytest.importorskip("torch")
    model, X, y = kink_free_mlp(layers, seed=10 + layers, N=7, D=9, H=8, C=4)
    loss, dW, db = mlp_loss_and_grads(model, X, y)
    Ws = [torch.tensor(W, requires_grad=True) for W in model.W]
    bs = [torch.tensor(b, requires_grad=True) for b in model.b]
    h = torch.tensor(X)
    for l, (W, b) in enumerate(zip(Ws, bs)):
        h = h @ W.T + b
        if l < len(Ws) - 1:
            h = torch.relu(h)
    torch_loss = torch.nn.functional.cross_entropy(h, torch.tensor(y), reduction="sum")
    torch_loss.backward()
    assert loss == pytest.approx(torch_loss.item(), rel=1e-12)
    for grad, tensor in zip(dW + db, Ws + bs):
        assert rel_error(grad, tensor.grad.numpy()) < 1e-10


@pytest.mark.parametrize("l2_penalty", [0.0, 0.7])
def test_logistic_regression_step_is_minus_the_gradient(l2_penalty):
    """(W - W_new) / lr is the gradient of -log softmax(W x)_y + l2_penalty/2 ||W||^2 (the bias
    column penalised too), by centred differences: relative error below 1e-7."""
    rng = np.random.RandomState(1)
    C, D = 4, 6
    W0, x, y, lr = rng.randn(C, D), rng.randn(D), 3, 0.01

    def objective():
        scores = W @ x
        shifted = scores - scores.max()
        return float(np.log(np.exp(shifted).sum()) - shifted[y]
                     + l2_penalty / 2 * np.sum(W ** 2))

    W = W0.copy()
    numeric = numeric_gradient(objective, W)
    model = q1.LogisticRegression(C, D)
    model.W = W0.copy()
    model.update_weight(x, y, learning_rate=lr, l2_penalty=l2_penalty)
    assert rel_error((W0 - model.W) / lr, numeric) < 1e-7


# ============================================================================= perceptron

def test_perceptron_update_on_a_mistake():
    """A mistake moves the gold row towards x and the predicted row away; no mistake, no
    change; ties go to the first class."""
    model = q1.Perceptron(n_classes=3, n_features=3)
    x = np.array([1.0, 2.0, 1.0])
    model.update_weight(x, 1)  # all scores 0: predicts class 0, gold is 1
    np.testing.assert_array_equal(model.W, [[-1, -2, -1], [1, 2, 1], [0, 0, 0]])
    before = model.W.copy()
    model.update_weight(x, 1)  # now right: no change
    np.testing.assert_array_equal(model.W, before)
    model.update_weight(np.array([0.0, 0.0, 1.0]), 2)  # scores (-1, 1, 0): predicts 1, gold 2
    np.testing.assert_array_equal(model.W, [[-1, -2, -1], [1, 2, 0], [0, 0, 1]])


def test_perceptron_predict_evaluate_and_no_loss():
    """predict: the highest score, the first on ties; evaluate: the accuracy; train_epoch
    returns None (the perceptron has no loss)."""
    model = q1.Perceptron(n_classes=3, n_features=2)
    model.W = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    X = np.array([[2.0, 1.0], [1.0, 3.0], [-1.0, -1.0], [1.0, 1.0]])
    np.testing.assert_array_equal(model.predict(X), [0, 1, 2, 0])  # tie (1, 1, 0) -> 0
    assert model.evaluate(X, np.array([0, 1, 2, 1])) == 0.75
    assert model.train_epoch(X, np.array([0, 1, 2, 1])) is None


def integer_perceptron(codes, y, C, orders):
    """The perceptron on integer pixel codes (int64, exact by construction), one epoch per
    order; returns W (C, D) in codes."""
    W = np.zeros((C, codes.shape[1]), dtype=np.int64)
    for order in orders:
        for x, y_i in zip(codes[order], y[order]):
            y_hat = int(np.argmax(W @ x))
            if y_hat != y_i:
                W[y_i] += x
                W[y_hat] -= x
    return W


def test_perceptron_training_is_exact_on_pixels():
    """On pixels k/256 (and the bias column of ones) train()'s float64 perceptron, on either
    path, is exact: 256 W equals the integer perceptron's weights on the codes k (and 256 for
    the bias), visiting the examples in the training loop's orders."""
    N, D, C = 300, 20, 5
    rng = np.random.RandomState(4)
    codes = np.hstack((rng.randint(0, 256, size=(N, D)), np.full((N, 1), 256)))
    y = rng.randint(0, C, size=N)
    data = {split: (codes / 256.0, y) for split in ("train", "dev", "test")}
    utils.configure_seed(5)
    order, orders = np.arange(N), []
    for _ in range(3):
        order = order[np.random.permutation(N)]
        orders.append(order)
    W_codes = integer_perceptron(codes, y, C, orders)
    assert np.abs(W_codes).sum() > 0
    for impl in ("fast", "reference"):
        utils.configure_seed(5)
        model = q1.Perceptron(C, D + 1)
        q1.train(model, data, epochs=3, impl=impl)
        np.testing.assert_array_equal(model.W * 256, W_codes)


def test_perceptron_fast_path_gives_the_reference_bits(capsys):
    """-impl fast trains the perceptron with fast_sgd's loop over the epoch's order (no copy of
    X); on pixel data k/256 its arithmetic is exact, so the weights equal the reference path's
    bit for bit, epoch after epoch, and the record says which path ran."""
    data = random_splits()
    weights = {}
    for impl in ("fast", "reference"):
        utils.configure_seed(3)
        model = q1.Perceptron(4, 13)
        record = q1.train(model, data, epochs=3, impl=impl)
        weights[impl] = model.W
        assert record["engine"] == ("BLOCKED" if impl == "fast" else "PER_EXAMPLE")
        assert f"training path: {record['path']}" in capsys.readouterr().out
    np.testing.assert_array_equal(weights["fast"], weights["reference"])
    assert np.abs(weights["fast"]).sum() > 0


# ============================================================================= logistic regression

def test_logistic_regression_update_by_hand():
    """At zero weights the probabilities are uniform: loss log 3, and W = lr (onehot - 1/3) x^T."""
    model = q1.LogisticRegression(n_classes=3, n_features=2)
    x = np.array([1.0, 0.5])
    loss = model.update_weight(x, 2, learning_rate=0.1)
    assert loss == pytest.approx(np.log(3), rel=1e-15)
    np.testing.assert_allclose(model.W, 0.1 * np.outer([-1 / 3, -1 / 3, 2 / 3], x), rtol=1e-15)


def test_l2_penalty_shrinks_the_weights():
    """x = 0: no data gradient, so the step is W <- (1 - lr l2) W (the bias column too); with
    data, W <- (1 - lr l2) W + lr (onehot(y) - p) x^T."""
    model = q1.LogisticRegression(n_classes=2, n_features=3)
    W0 = np.array([[1.0, -2.0, 0.5], [0.0, 4.0, -1.0]])
    model.W = W0.copy()
    model.update_weight(np.zeros(3), 0, learning_rate=0.1, l2_penalty=0.5)
    np.testing.assert_allclose(model.W, 0.95 * W0, rtol=1e-15)
    x, W1 = np.array([1.0, 0.0, 1.0]), model.W.copy()
    p = q1.softmax((W1 @ x)[None, :])[0]
    model.update_weight(x, 1, learning_rate=0.1, l2_penalty=0.5)
    np.testing.assert_allclose(model.W, 0.95 * W1 + 0.1 * np.outer([0, 1] - p, x), rtol=1e-13)


def test_linear_train_epoch_is_one_update_per_row_in_order():
    """train_epoch(X, y) is update_weight on each row in turn, and returns the mean of their
    losses; another order gives other weights."""
    X, y = random_problem(seed=6)
    model, by_hand = q1.LogisticRegression(4, 13), q1.LogisticRegression(4, 13)
    loss = model.train_epoch(X, y, learning_rate=0.1, l2_penalty=0.01)
    losses = [by_hand.update_weight(x_i, y_i, learning_rate=0.1, l2_penalty=0.01)
              for x_i, y_i in zip(X, y)]
    np.testing.assert_array_equal(model.W, by_hand.W)
    assert loss == float(np.mean(losses))
    reversed_order = q1.LogisticRegression(4, 13)
    reversed_order.train_epoch(X[::-1], y[::-1], learning_rate=0.1, l2_penalty=0.01)
    assert not np.allclose(reversed_order.W, model.W)


# ============================================================================= MLP

def test_mlp_init_shapes_and_distribution():
    """W[l] (out, in) drawn from N(0.1, 0.1^2) with numpy's global generator, layer by layer
    from the input; biases zero."""
    np.random.seed(0)
    model = q1.MLP(n_classes=10, n_features=784, hidden_size=200, layers=2)
    assert [W.shape for W in model.W] == [(200, 784), (200, 200), (10, 200)]
    assert [b.shape for b in model.b] == [(200,), (200,), (10,)]
    assert all((b == 0).all() for b in model.b)
    weights = np.concatenate([W.ravel() for W in model.W])
    assert abs(weights.mean() - 0.1) < 0.002 and abs(weights.std() - 0.1) < 0.002
    np.random.seed(0)
    np.testing.assert_array_equal(model.W[0], np.random.normal(0.1, 0.1, size=(200, 784)))
    np.testing.assert_array_equal(model.W[1], np.random.normal(0.1, 0.1, size=(200, 200)))


def test_mlp_update_weight_is_one_sgd_step():
    """update_weight returns the example's loss before the step and moves every W and b by
    -lr times backward's gradient."""
    np.random.seed(3)
    model = q1.MLP(n_classes=3, n_features=4, hidden_size=5, layers=2)
    x, y = np.random.RandomState(3).rand(4), 2
    before = [p.copy() for p in q1.parameters(model)]
    loss, dW, db = mlp_loss_and_grads(model, x[None, :], np.array([y]))
    assert model.update_weight(x, y, learning_rate=0.01) == loss
    grads = [g for pair in zip(dW, db) for g in pair]
    for p0, p, g in zip(before, q1.parameters(model), grads):
        np.testing.assert_allclose(p, p0 - 0.01 * g, rtol=1e-14, atol=1e-17)


def test_mlp_train_epoch_and_predict():
    """train_epoch: update_weight row by row, returning the mean loss; predict: the argmax of
    forward's scores; evaluate: the accuracy."""
    X, y = random_problem(N=30, D=6, C=3, seed=7, bias=False)
    np.random.seed(1)
    model = q1.MLP(3, 6, hidden_size=4, layers=1)
    np.random.seed(1)
    by_hand = q1.MLP(3, 6, hidden_size=4, layers=1)
    loss = model.train_epoch(X, y, learning_rate=0.05)
    losses = [by_hand.update_weight(x_i, y_i, 0.05) for x_i, y_i in zip(X, y)]
    assert loss == float(np.mean(losses))
    for p, q in zip(q1.parameters(model), q1.parameters(by_hand)):
        np.testing.assert_array_equal(p, q)
    labels = model.forward(X)[0].argmax(axis=1)
    np.testing.assert_array_equal(model.predict(X), labels)
    for rows in (1, 7, 30):  # a few rows at a time: every row, in order, the last chunk short
        np.testing.assert_array_equal(model.predict(X, rows=rows), labels)
    assert model.predict(X[:0]).shape == (0,)
    assert model.evaluate(X, y) == np.mean(labels == y)


# ============================================================================= training loop

def course_loop(model, data, epochs, **kwargs):
    """The course's loop, written out: per epoch, train_X = train_X[permutation] (cumulative),
    train_epoch on it, then train and dev accuracy; test accuracy at the end."""
    (train_X, train_y), (dev_X, dev_y), (test_X, test_y) = data["train"], data["dev"], data["test"]
    out = {"train_loss": [], "train_acc": [], "valid_acc": [], "weight_norm": []}
    for _ in range(epochs):
        permutation = np.random.permutation(len(train_y))
        train_X, train_y = train_X[permutation], train_y[permutation]
        out["train_loss"].append(model.train_epoch(train_X, train_y, **kwargs))
        out["train_acc"].append(model.evaluate(train_X, train_y))
        out["valid_acc"].append(model.evaluate(dev_X, dev_y))
        if hasattr(model, "W") and not isinstance(model.W, list):
            out["weight_norm"].append(float(np.linalg.norm(model.W)))
    out["test_acc"] = model.evaluate(test_X, test_y)
    return out


def build(name, C, D, hidden_size=8, layers=1):
    if name == "perceptron":
        return q1.Perceptron(C, D)
    if name == "logistic_regression":
        return q1.LogisticRegression(C, D)
    return q1.MLP(C, D, hidden_size, layers)


@pytest.mark.parametrize("name", MODELS)
def test_reference_training_is_the_courses_loop(name):
    """train(..., impl="reference") gives the course's loop's numbers, exactly: per-epoch
    loss, train and dev accuracy, weight norm, test accuracy, and the final weights."""
    data = random_splits(bias=(name != "mlp"))
    D = data["train"][0].shape[1]
    kwargs = {"learning_rate": 0.5} if name != "mlp" else {"learning_rate": 0.05}
    utils.configure_seed(3)
    model = build(name, 4, D)
    record = q1.train(model, data, epochs=4, impl="reference", **kwargs)
    utils.configure_seed(3)
    by_hand = build(name, 4, D)
    expected = course_loop(by_hand, data, 4, **kwargs)
    assert record["engine"] == "PER_EXAMPLE"
    assert record["epochs"] == [1, 2, 3, 4]
    for key in ("train_acc", "valid_acc", "test_acc"):
        assert record[key] == expected[key], key
    assert record["train_loss"] == (None if name == "perceptron" else expected["train_loss"])
    assert record["weight_norm"] == (None if name == "mlp" else expected["weight_norm"])
    for p, q in zip(q1.parameters(model), q1.parameters(by_hand)):
        np.testing.assert_array_equal(p, q)
    assert len(set(record["valid_acc"])) > 1  # the epochs did differ


@pytest.mark.parametrize("name", ["logistic_regression", "mlp"])
def test_fast_training_matches_the_courses_loop(name):
    """train(..., impl="fast") on small data: the same accuracies as the course's loop, its
    losses and final weights allclose (rtol 1e-9): the same per-example SGD up to rounding."""
    data = random_splits(bias=(name != "mlp"))
    D = data["train"][0].shape[1]
    kwargs = {"learning_rate": 0.1, "l2_penalty": 0.01} if name != "mlp" else \
        {"learning_rate": 0.05}
    utils.configure_seed(8)
    model = build(name, 4, D, layers=2)
    record = q1.train(model, data, epochs=3, impl="fast", **kwargs)
    utils.configure_seed(8)
    by_hand = build(name, 4, D, layers=2)
    expected = course_loop(by_hand, data, 3, **kwargs)
    assert record["engine"] == "BLOCKED"
    for key in ("train_acc", "valid_acc", "test_acc"):
        assert record[key] == expected[key], key
    np.testing.assert_allclose(record["train_loss"], expected["train_loss"], rtol=1e-9)
    for p, q in zip(q1.parameters(model), q1.parameters(by_hand)):
        np.testing.assert_allclose(p, q, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("impl,engine", [("fast", Engine.BLOCKED),
                                         ("reference", Engine.PER_EXAMPLE)])
def test_record_and_printed_line_say_which_path_ran(capsys, name, impl, engine):
    """record["engine"] and ["path"], and the `training path:` line printed before the
    epochs, name it."""
    data = random_splits(bias=(name != "mlp"))
    record = q1.train(build(name, 4, data["train"][0].shape[1]), data, epochs=1, impl=impl,
                      learning_rate=0.01)
    lines = capsys.readouterr().out.splitlines()
    assert record["engine"] == engine.name and record["path"] == str(TrainingPath(engine))
    assert lines[0] == f"training path: {record['path']}"
    assert lines[1].startswith("epoch   1 ")


def test_same_seed_same_record():
    """Seeded as main() seeds it, two runs give the same record (timings aside); another seed
    another order, so other losses."""
    data = random_splits(bias=False)

    def run(seed):
        utils.configure_seed(seed)
        return without_timings(q1.train(q1.MLP(4, 12, 8, 1), data, epochs=3,
                                         learning_rate=0.05))

    first = run(1)
    assert run(1) == first
    assert run(2)["train_loss"] != first["train_loss"]


def test_train_with_the_updates_default_learning_rate():
    """Without a learning rate, both paths use train's default and agree up to rounding."""
    data = random_splits()
    records = []
    for impl in ("reference", "fast"):
        utils.configure_seed(0)
        records.append(q1.train(q1.LogisticRegression(4, 13), data, epochs=2, impl=impl))
    np.testing.assert_allclose(records[0]["train_loss"], records[1]["train_loss"], rtol=1e-9)


# ============================================================================= command line

def run_cli(*args, cwd=None):
    """hw1-q1.py as a script, in a fresh process."""
    return subprocess.run([sys.executable, str(ROOT / "hw1-q1.py"), *map(str, args)],
                          capture_output=True, text=True, cwd=cwd, timeout=300)


def run_main(capsys, *args):
    """hw1-q1.main in this process: (exit code, stdout, stderr)."""
    try:
        q1.main([str(a) for a in args])
        code = 0
    except SystemExit as exit:
        code = exit.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_runs_as_a_script(tiny_data, tmp_path):
    """`python hw1-q1.py perceptron ...`: exit 0, the final accuracy line, the record saved."""
    result = run_cli("perceptron", "-data_path", tiny_data, "-epochs", 1, "-output_dir",
                     tmp_path / "out")
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(r"Final test acc: [01]\.\d{4}", result.stdout.splitlines()[-2])
    assert (tmp_path / "out" / "q1-perceptron-data_path=tiny-epochs=1.json").is_file()


@pytest.mark.parametrize("model", MODELS)
def test_cli_writes_record_and_figures(tiny_data, tmp_path, capsys, model):
    """The record (config, path, curves, test accuracy) and each model's figures (accuracy;
    loss where there is one; weight norm for the linear models), and nothing else."""
    out = tmp_path / "out"
    code, stdout, stderr = run_main(capsys, model, "-data_path", tiny_data, "-epochs", 2,
                                    "-output_dir", out, "-hidden_size", 8)
    assert code == 0, stderr
    lines = stdout.splitlines()
    assert sum(line.startswith("epoch") for line in lines) == 2
    assert re.fullmatch(r"Final test acc: [01]\.\d{4}", lines[-2]), lines[-2:]
    name = f"q1-{model}-data_path=tiny-epochs=2-hidden_size=8"
    record = json.loads((out / f"{name}.json").read_text())
    assert record["model"] == model and record["epochs"] == [1, 2]
    assert lines[0] == f"training path: {record['path']}"
    assert record["path"].startswith("fast")
    assert len(record["train_acc"]) == len(record["valid_acc"]) == 2
    assert 0 <= record["test_acc"] <= 1 and record["diverged"] is False
    assert record["config"]["learning_rate"] == 0.001 and record["config"]["impl"] == "fast"
    assert set(record["config"]) >= {"epochs", "learning_rate", "l2_penalty", "hidden_size",
                                     "layers", "data_path", "output_dir", "seed", "impl"}
    figures = {"accuracy"}
    figures |= {"loss"} if model != "perceptron" else set()
    figures |= {"weight_norm"} if model != "mlp" else set()
    for key in figures:
        for suffix in (".pdf", ".png"):
            assert (out / f"{name}-{key}{suffix}").stat().st_size > 0
    assert len(list(out.iterdir())) == 2 * len(figures) + 1
    if model == "perceptron":
        assert record["train_loss"] is None and len(record["weight_norm"]) == 2
    elif model == "mlp":
        assert record["weight_norm"] is None and len(record["train_loss"]) == 2
    else:
        assert len(record["train_loss"]) == len(record["weight_norm"]) == 2


def test_cli_names_differ_across_flags(tiny_data, tmp_path, capsys):
    """Each flag that differs from its default is in the run's name: six runs, six records."""
    out = tmp_path / "out"
    runs = [("logistic_regression",), ("logistic_regression", "-learning_rate", 0.01),
            ("logistic_regression", "--l2-penalty", 0.1), ("logistic_regression", "-seed", 3),
            ("logistic_regression", "-impl", "reference"), ("perceptron",)]
    for args in runs:
        code, _, stderr = run_main(capsys, *args, "-data_path", tiny_data, "-epochs", 1,
                                   "-output_dir", out)
        assert code == 0, stderr
    assert len(list(out.glob("*.json"))) == len(runs)


def test_double_dash_aliases_give_the_same_flags():
    """--learning-rate is -learning_rate, and so on for every flag."""
    parser = q1.build_parser()
    single = parser.parse_args(["mlp", "-learning_rate", "0.05", "-hidden_size", "5",
                                "-l2_penalty", "0.1", "-data_path", "x.npz", "-output_dir", "o",
                                "-epochs", "3", "-layers", "2", "-seed", "7", "-impl",
                                "reference"])
    double = parser.parse_args(["mlp", "--learning-rate", "0.05", "--hidden-size", "5",
                                "--l2-penalty", "0.1", "--data-path", "x.npz", "--output-dir",
                                "o", "--epochs", "3", "--layers", "2", "--seed", "7", "--impl",
                                "reference"])
    assert vars(single) == vars(double)
    assert single.learning_rate == 0.05 and single.hidden_size == 5 and single.layers == 2


@pytest.mark.parametrize("flag,value", [
    ("-epochs", "0"), ("-learning_rate", "0"), ("--learning-rate", "-1"),
    ("-learning_rate", "nan"), ("-learning_rate", "inf"), ("-hidden_size", "0"),
    ("-layers", "0"), ("-l2_penalty", "-0.5"), ("-l2_penalty", "inf"), ("-epochs", "two"),
    ("-impl", "slow"), ("-seed", "-1"),
])
def test_cli_rejects_bad_flags(tmp_path, capsys, flag, value):
    """A bad value is an argparse error (exit 2) that names the flag."""
    code, _, stderr = run_main(capsys, "mlp", flag, value, "-data_path", tmp_path / "none.npz")
    assert code == 2
    dest = flag.lstrip("-").replace("-", "_")
    assert f"error: argument -{dest}/" in stderr, stderr


def test_cli_rejects_unknown_model(capsys):
    """A model other than the three is an argparse error."""
    code, _, stderr = run_main(capsys, "svm")
    assert code == 2 and "invalid choice" in stderr


def test_cli_missing_data_is_a_clear_error(tmp_path):
    """A missing data file: exit 1, one `error:` line naming it, no traceback, no output."""
    result = run_cli("perceptron", "-data_path", tmp_path / "missing.npz",
                     "-output_dir", tmp_path / "out")
    assert result.returncode == 1
    assert result.stderr.startswith("error: ") and "missing.npz" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_cli_too_large_a_network_fails_in_one_line(tiny_data, tmp_path, capsys):
    """-hidden_size 1000000000 cannot fit in memory: one `error:` line saying how much it
    needs, exit 1, before training and before any folder is made."""
    out = tmp_path / "out"
    code, stdout, stderr = run_main(capsys, "mlp", "-hidden_size", 1000000000, "-data_path",
                                    tiny_data, "-output_dir", out)
    assert code == 1
    assert re.fullmatch(r"error: -hidden_size 1000000000 needs about .+\n", stderr), stderr
    assert "epoch" not in stdout and not out.exists()


def test_cli_large_learning_rate_is_flagged_diverged(tiny_data, tmp_path):
    """logistic_regression -learning_rate 1e6: the loss blows up, finite but above 2 log C:
    one warning on stderr, exit 0, the record flagged and complete."""
    out = tmp_path / "out"
    result = run_cli("logistic_regression", "-learning_rate", "1e6", "-epochs", 2,
                     "-data_path", tiny_data, "-output_dir", out)
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("warning") == 1, result.stderr
    assert "diverged" in result.stderr and "> 2 log(3)" in result.stderr
    assert "RuntimeWarning" not in result.stderr
    record = json.loads(next(out.glob("*.json")).read_text())
    assert record["diverged"] is True and record["epochs"] == [1, 2]
    assert record["train_loss"][0] > 2 * math.log(3)


@pytest.mark.parametrize("model,lr", [("mlp", "1e200"), ("logistic_regression", "1e308")])
def test_cli_non_finite_divergence_warns_once_and_is_recorded(tiny_data, tmp_path, model, lr):
    """Learning rates that overflow the weights: one warning, no numpy RuntimeWarning, exit 0,
    three epochs recorded, flagged diverged."""
    out = tmp_path / "out"
    result = run_cli(model, "-data_path", tiny_data, "-epochs", 3, "-learning_rate", lr,
                     "-output_dir", out, "-hidden_size", 8)
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("warning") == 1, result.stderr
    assert "diverged" in result.stderr and "RuntimeWarning" not in result.stderr
    record = json.loads(next(out.glob("*.json")).read_text())
    assert record["diverged"] is True and record["epochs"] == [1, 2, 3]


@pytest.mark.parametrize("impl", ["fast", "reference"])
def test_cli_huge_l2_penalty_completes_and_is_flagged(tiny_data, tmp_path, capsys, impl):
    """-l2_penalty 1e10 (each step multiplies W by 1 - 1e7): the weights overflow; the run
    completes without a traceback (exit 0) and is flagged diverged."""
    code, _, stderr = run_main(capsys, "logistic_regression", "-l2_penalty", "1e10",
                               "-epochs", 2, "-impl", impl, "-data_path", tiny_data,
                               "-output_dir", tmp_path / "out")
    assert code == 0, stderr
    assert stderr.count("warning: training diverged") == 1
    record = json.loads(next((tmp_path / "out").glob("*.json")).read_text())
    assert record["diverged"] is True


def test_script_does_not_import_torch():
    """hw1-q1.py and fast_sgd/blocked.py are numpy only: loading them imports no torch."""
    code = (f"import sys; sys.path.insert(0, {str(ROOT)!r}); import utils; "
            f"utils.load_script('hw1-q1.py'); import fast_sgd.blocked; "
            f"print('torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "False", result.stderr


def test_cli_bad_output_dir_fails_before_training(tiny_data, tmp_path, monkeypatch, capsys):
    """A -output_dir that cannot be written: exit 1 at once (no training), in one line."""
    blocker = tmp_path / "afile"
    blocker.write_text("not a folder")
    monkeypatch.setattr(q1, "train", lambda *a, **k: pytest.fail("trained"))
    for out in (blocker, blocker / "sub"):
        code, _, stderr = run_main(capsys, "perceptron", "-data_path", tiny_data,
                                   "-output_dir", out)
        assert code == 1
        assert stderr == (f"error: {out}: cannot be used as an output folder: a file of that "
                          f"name (or in its path) is in the way\n")
    assert blocker.read_text() == "not a folder"


def test_cli_save_failure_leaves_no_partial_run(tiny_data, tmp_path, capsys):
    """If one of the run's files cannot be written (a folder in its way), none is: exit 1, one
    line naming the file, the earlier run's files as they were, no temporary left."""
    out = tmp_path / "out"
    args = ["perceptron", "-data_path", tiny_data, "-epochs", 1, "-output_dir", out]
    assert run_main(capsys, *args)[0] == 0
    name = "q1-perceptron-data_path=tiny-epochs=1"
    (out / f"{name}-weight_norm.png").unlink()
    (out / f"{name}-weight_norm.png").mkdir()
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    code, _, stderr = run_main(capsys, *args)
    assert code == 1
    assert stderr.startswith("error: cannot write ") and "weight_norm.png" in stderr
    assert len(stderr.strip().splitlines()) == 1
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_cli_q1_and_q2_runs_do_not_overwrite_each_other(tiny_data, tmp_path, capsys):
    """hw1-q1's and hw1-q2's runs of a model with the same flags go to different files."""
    out = tmp_path / "out"
    assert run_main(capsys, "logistic_regression", "-data_path", tiny_data, "-epochs", 1,
                    "-output_dir", out)[0] == 0
    result = subprocess.run([sys.executable, str(ROOT / "hw1-q2.py"), "logistic_regression",
                             "-data_path", str(tiny_data), "-epochs", "1", "-output_dir",
                             str(out)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    records = {p.name: json.loads(p.read_text()) for p in out.glob("*.json")}
    q1_name, q2_name = ("q1-logistic_regression-data_path=tiny-epochs=1.json",
                        "q2-logistic_regression-data_path=tiny-epochs=1.json")
    assert set(records) == {q1_name, q2_name}
    assert "l2_penalty" in records[q1_name]["config"]
    assert "batch_size" in records[q2_name]["config"]


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child process")
def test_ctrl_c_ends_a_run_cleanly(tmp_path):
    """Ctrl-C mid-run: `interrupted` on stderr, exit code 130, no traceback, no files."""
    path = make_tiny_dataset(tmp_path / "d.npz", n_train=3000, side=28)
    assert_ctrl_c_ends_a_run_cleanly("hw1-q1.py", ["mlp", "-data_path", path, "-epochs", 100000, "-hidden_size", 8], tmp_path / "out")


# ============================================================================= real data

@pytest.fixture(scope="module")
def real_linear(real_data_path):
    return utils.load_dataset(real_data_path, bias=True)


@pytest.fixture(scope="module")
def real_logistic_runs(real_linear):
    """The course's `logistic_regression` run (20 epochs, lr 0.001, seed 42) on both paths:
    {impl: (model, record)}."""
    runs = {}
    for impl in ("fast", "reference"):
        utils.configure_seed(42)
        model = q1.LogisticRegression(10, real_linear["train"][0].shape[1])
        runs[impl] = model, q1.train(model, real_linear, 20, impl, learning_rate=0.001,
                                     l2_penalty=0.0)
    return runs


def test_real_data_perceptron_reproduces_the_published_numbers(real_linear):
    """`hw1-q1.py perceptron` (default -impl fast): final dev 0.7236 and test 0.6193, to the
    fourth decimal."""
    utils.configure_seed(42)
    record = q1.train(q1.Perceptron(10, real_linear["train"][0].shape[1]), real_linear, 20,
                      "fast")
    assert record["path"].startswith("fast")
    assert round(record["valid_acc"][-1], 4) == 0.7236
    assert round(record["test_acc"], 4) == 0.6193


@pytest.mark.parametrize("impl", ["fast", "reference"])
def test_real_data_logistic_regression_reproduces_the_published_numbers(real_logistic_runs,
                                                                       impl):
    """Final dev 0.8251 and test 0.7028, to the fourth decimal, on both paths."""
    _, record = real_logistic_runs[impl]
    assert record["path"].startswith(impl)
    assert round(record["valid_acc"][-1], 4) == 0.8251
    assert round(record["test_acc"], 4) == 0.7028
    assert record["diverged"] is False


def test_real_data_logistic_regression_paths_agree(real_logistic_runs):
    """After 20 epochs (a million steps) the two paths' weights are still allclose (rtol 1e-9
    against the largest weight), their accuracies equal, their losses allclose."""
    (fast, fast_record), (ref, ref_record) = real_logistic_runs["fast"], \
        real_logistic_runs["reference"]
    assert np.abs(fast.W - ref.W).max() <= 1e-9 * np.abs(ref.W).max()
    assert fast_record["train_acc"] == ref_record["train_acc"]
    assert fast_record["valid_acc"] == ref_record["valid_acc"]
    np.testing.assert_allclose(fast_record["train_loss"], ref_record["train_loss"], rtol=1e-9)


def test_real_data_mlp_fast_path_matches_reference(real_data_path):
    """The first 256 steps of the course's MLP run (200 hidden, lr 0.001, seed 42) on both
    paths: the same loss and weights up to rounding (relative to each layer's scale).

    Only a few hundred steps: with this initialisation (all weights near 0.1, a saturated
    softmax) per-example SGD is chaotic, and any rounding difference, even one ulp on the
    reference path itself, grows to a percent in the weights within ~600 steps.
    """
    data = utils.load_dataset(real_data_path)
    X, y = data["train"]
    utils.configure_seed(42)
    fast = q1.MLP(10, X.shape[1], hidden_size=200, layers=1)
    order = np.random.permutation(len(y))[:256]  # the start of the run's first epoch
    utils.configure_seed(42)
    reference = q1.MLP(10, X.shape[1], hidden_size=200, layers=1)
    start = [p.copy() for p in q1.parameters(reference)]
    with np.errstate(over="ignore"):
        loss_fast = blocked.sgd_epoch("mlp", q1.parameters(fast), X, y, order, 0.001)
        loss_ref = reference.train_epoch(X[order], y[order], learning_rate=0.001)
    assert loss_fast == pytest.approx(loss_ref, rel=1e-8)
    for a, b, b0 in zip(q1.parameters(fast), q1.parameters(reference), start):
        assert np.abs(a - b).max() <= 1e-7 * np.abs(b).max()
        assert np.abs(b - b0).max() > 1e-4  # every layer moved


