"""hw1-q1.py: the models' updates and gradients, fast path = reference path, the CLI, and the
course's published numbers on the real data."""
import json
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, load_script, make_tiny_dataset

import utils

q1 = load_script("hw1-q1.py")


def random_problem(n=50, d=12, n_classes=4, seed=0, bias=True, pixels=True):
    """A small random classification problem; pixels are k/256 like the real data."""
    rng = np.random.RandomState(seed)
    X = rng.randint(0, 256, size=(n, d)) / 256.0 if pixels else rng.randn(n, d)
    if bias:
        X = np.hstack((X, np.ones((n, 1))))
    y = rng.randint(0, n_classes, size=n)
    return X, y


def rel_error(a, b, eps=1e-12):
    return np.max(np.abs(a - b) / np.maximum(eps, np.abs(a) + np.abs(b)))


# ----------------------------------------------------------------------------- perceptron

def test_perceptron_update_on_a_mistake():
    model = q1.Perceptron(n_classes=3, n_features=3)
    x = np.array([1.0, 2.0, 1.0])
    model.update_weight(x, 1)  # all scores 0: predicts class 0 (first on ties), gold is 1
    np.testing.assert_array_equal(model.W, [[-1, -2, -1], [1, 2, 1], [0, 0, 0]])
    before = model.W.copy()
    model.update_weight(x, 1)  # now predicted correctly: no change
    np.testing.assert_array_equal(model.W, before)
    model.update_weight(np.array([0.0, 0.0, 1.0]), 2)  # scores (-1, 1, 0): predicts 1, gold 2
    np.testing.assert_array_equal(model.W, [[-1, -2, -1], [1, 2, 0], [0, 0, 1]])


def test_perceptron_predict_and_evaluate():
    model = q1.Perceptron(n_classes=3, n_features=2)
    model.W = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    X = np.array([[2.0, 1.0], [1.0, 3.0], [-1.0, -1.0], [1.0, 1.0]])
    np.testing.assert_array_equal(model.predict(X), [0, 1, 2, 0])  # tie (1, 1, 0) -> 0
    assert model.evaluate(X, np.array([0, 1, 2, 1])) == 0.75


# ----------------------------------------------------------------------------- logistic regression

def test_logistic_regression_update_by_hand():
    model = q1.LogisticRegression(n_classes=3, n_features=2)
    x = np.array([1.0, 0.5])
    loss = model.update_weight(x, 2, learning_rate=0.1)
    assert loss == pytest.approx(np.log(3))  # uniform probabilities at zero weights
    # W = 0 + 0.1 * (onehot(2) - [1/3, 1/3, 1/3]) x^T
    expected = 0.1 * np.outer([-1 / 3, -1 / 3, 2 / 3], x)
    np.testing.assert_allclose(model.W, expected, rtol=1e-12)


def test_logistic_regression_step_is_minus_the_gradient():
    """W_new - W = -lr * d/dW [-log softmax(W x)_y], checked by centred differences."""
    rng = np.random.RandomState(1)
    W0 = rng.randn(4, 6)
    x, y, lr, h = rng.randn(6), 3, 0.01, 1e-5

    def loss(W):
        scores = W @ x
        return -(scores[y] - scores.max() - np.log(np.exp(scores - scores.max()).sum()))

    numeric = np.zeros_like(W0)
    for idx in np.ndindex(W0.shape):
        plus, minus = W0.copy(), W0.copy()
        plus[idx] += h
        minus[idx] -= h
        numeric[idx] = (loss(plus) - loss(minus)) / (2 * h)
    model = q1.LogisticRegression(4, 6)
    model.W = W0.copy()
    model.update_weight(x, y, learning_rate=lr)
    assert rel_error((W0 - model.W) / lr, numeric) < 1e-7


def test_l2_penalty_shrinks_the_weights():
    model = q1.LogisticRegression(n_classes=2, n_features=3)
    W0 = np.array([[1.0, -2.0, 0.5], [0.0, 4.0, -1.0]])
    model.W = W0.copy()
    # x = 0: the data term has no gradient, so the step is W -= lr * l2 * W (bias column too)
    model.update_weight(np.zeros(3), 0, learning_rate=0.1, l2_penalty=0.5)
    np.testing.assert_allclose(model.W, 0.95 * W0, rtol=1e-15)
    # with data: W_new = (1 - lr l2) W + lr (onehot(y) - p) x^T
    x = np.array([1.0, 0.0, 1.0])
    W1 = model.W.copy()
    p = q1.softmax((W1 @ x)[None, :])[0]
    model.update_weight(x, 1, learning_rate=0.1, l2_penalty=0.5)
    np.testing.assert_allclose(model.W, 0.95 * W1 + 0.1 * np.outer([0, 1] - p, x), rtol=1e-13)


def test_l2_penalty_zero_matches_plain_update():
    X, y = random_problem(n=5, seed=4)
    a, b = q1.LogisticRegression(4, X.shape[1]), q1.LogisticRegression(4, X.shape[1])
    for x_i, y_i in zip(X, y):
        a.update_weight(x_i, y_i, learning_rate=0.05)
        b.update_weight(x_i, y_i, learning_rate=0.05, l2_penalty=0.0)
    np.testing.assert_array_equal(a.W, b.W)
    assert np.abs(a.W).max() > 0


# ----------------------------------------------------------------------------- MLP

def test_mlp_init_shapes_and_distribution():
    np.random.seed(0)
    model = q1.MLP(n_classes=10, n_features=784, hidden_size=200, layers=2)
    assert [W.shape for W in model.W] == [(200, 784), (200, 200), (10, 200)]
    assert [b.shape for b in model.b] == [(200,), (200,), (10,)]
    assert all((b == 0).all() for b in model.b)
    weights = np.concatenate([W.ravel() for W in model.W])
    assert abs(weights.mean() - 0.1) < 0.002 and abs(weights.std() - 0.1) < 0.002
    # drawn layer by layer, input to output, each (out, in), from the global generator
    np.random.seed(0)
    first = np.random.normal(0.1, 0.1, size=(200, 784))
    second = np.random.normal(0.1, 0.1, size=(200, 200))
    np.testing.assert_array_equal(model.W[0], first)
    np.testing.assert_array_equal(model.W[1], second)


@pytest.mark.parametrize("layers", [1, 2, 3])
def test_mlp_gradient_check(layers):
    """Centred differences (h = 1e-5, float64) against backprop, for every weight and bias."""
    rng = np.random.RandomState(layers)
    n, d, hidden, n_classes, h = 4, 6, 5, 3, 1e-5
    X = rng.randn(n, d)
    y = rng.randint(0, n_classes, size=n)
    model = q1.MLP(n_classes, d, hidden, layers)
    model.W = [rng.randn(*W.shape) * 0.5 for W in model.W]
    model.b = [rng.randn(*b.shape) * 0.1 for b in model.b]

    # away from ReLU kinks: no hidden pre-activation within 1e-3 of zero, so that +-h never
    # crosses one (each parameter moves a pre-activation by at most h * |input| < 1e-4)
    pre = X
    for W, b in zip(model.W[:-1], model.b[:-1]):
        pre = pre @ W.T + b
        assert np.abs(pre).min() > 1e-3, "choose another seed: a pre-activation sits on a kink"
        pre = np.maximum(pre, 0)

    loss, dW, db = model.loss_and_grads(X, y)
    for params, grads in ((model.W, dW), (model.b, db)):
        for param, grad in zip(params, grads):
            numeric = np.zeros_like(param)
            for idx in np.ndindex(param.shape):
                old = param[idx]
                param[idx] = old + h
                plus = model.loss_and_grads(X, y)[0]
                param[idx] = old - h
                minus = model.loss_and_grads(X, y)[0]
                param[idx] = old
                numeric[idx] = (plus - minus) / (2 * h)
            assert rel_error(grad, numeric, eps=1e-8) < 1e-6
    assert loss > 0


def test_mlp_update_weight_is_one_sgd_step():
    rng = np.random.RandomState(3)
    np.random.seed(3)
    model = q1.MLP(n_classes=3, n_features=4, hidden_size=5, layers=2)
    x, y = rng.rand(4), 2
    before_W = [W.copy() for W in model.W]
    before_b = [b.copy() for b in model.b]
    loss, dW, db = model.loss_and_grads(x[None, :], np.array([y]))
    returned = model.update_weight(x, y, learning_rate=0.01)
    assert returned == pytest.approx(loss)
    for W0, W, g in zip(before_W, model.W, dW):
        np.testing.assert_allclose(W, W0 - 0.01 * g, rtol=1e-14)
    for b0, b, g in zip(before_b, model.b, db):
        np.testing.assert_allclose(b, b0 - 0.01 * g, rtol=1e-14, atol=1e-17)


def test_layers_forward_backward_shapes():
    rng = np.random.RandomState(0)
    x, W, b = rng.randn(3, 4), rng.randn(5, 4), rng.randn(5)
    out, cache = q1.affine_forward(x, W, b)
    assert out.shape == (3, 5)
    dx, dW, db = q1.affine_backward(np.ones((3, 5)), cache)
    assert dx.shape == x.shape and dW.shape == W.shape and db.shape == b.shape
    np.testing.assert_allclose(db, [3] * 5)
    r, rc = q1.relu_forward(np.array([[-1.0, 0.0, 2.0]]))
    np.testing.assert_array_equal(r, [[0, 0, 2]])
    np.testing.assert_array_equal(q1.relu_backward(np.ones((1, 3)), rc), [[0, 0, 1]])
    losses, dscores = q1.softmax_cross_entropy(np.array([[1000.0, 0.0], [0.0, 0.0]]),
                                               np.array([1, 0]))
    np.testing.assert_allclose(losses, [1000.0, np.log(2)])  # stable for large scores
    np.testing.assert_allclose(dscores, [[1, -1], [-0.5, 0.5]])


# ----------------------------------------------------------------------------- fast = reference

def test_compact_rows_are_exact_8_bit_codes():
    X, _ = random_problem(n=30, d=7, seed=8)  # pixels k/256 and a bias column of ones
    rows = q1.CompactRows(X)
    assert rows.unit == 256.0 and rows.codes.dtype == np.uint8
    idx = np.array([5, 0, 29, 5])
    buf = np.empty((8, X.shape[1]))
    np.testing.assert_array_equal(rows.rows(idx, buf) / rows.unit, X[idx])
    chunks = [c.copy() for c in rows.chunks(size=4)]
    np.testing.assert_array_equal(np.vstack(chunks) / rows.unit, X)
    assert q1.CompactRows.of(rows) is rows


@pytest.mark.parametrize("X", [
    np.random.RandomState(0).randn(20, 5),  # not pixels
    np.full((20, 5), 255.0 / 256) * np.arange(20)[:, None],  # pixel steps, but above 255/256
    np.full((20, 5), 1.0 / 512),  # constant columns are kept as they are: compact, exact
    np.vstack([np.full(5, 1.0 / 512), np.zeros(5)]),  # half steps of 1/256: not 8-bit codes
])
def test_compact_rows_fall_back_to_float64(X):
    rows = q1.CompactRows(X)
    buf = np.empty(X.shape)
    np.testing.assert_array_equal(rows.rows(np.arange(len(X)), buf) / rows.unit, X)
    if rows.unit == 1.0:
        assert rows.codes.dtype == np.float64


@pytest.mark.parametrize("pixels", [True, False])
def test_predict_on_compact_rows_is_the_same(pixels):
    X, y = random_problem(n=3000, d=30, seed=9, pixels=pixels)
    rows = q1.CompactRows(X)
    assert (rows.unit == 256.0) == pixels
    linear = q1.LogisticRegression(4, X.shape[1])
    linear.W = np.random.RandomState(1).randn(4, X.shape[1])
    np.testing.assert_array_equal(linear.predict(rows), linear.predict(X))
    np.random.seed(0)
    mlp = q1.MLP(4, X.shape[1] - 1, hidden_size=9, layers=2)
    rows = q1.CompactRows(X[:, :-1])
    np.testing.assert_array_equal(mlp.predict(rows), mlp.predict(X[:, :-1]))


def test_mlp_predict_in_checked_float32_gives_float64_labels(monkeypatch):
    """One hidden layer on 8-bit rows: float32 products, each label checked against a bound on
    their rounding; close calls are redone in float64. Same labels as float64, ties included."""
    X, _ = random_problem(n=5000, d=40, seed=13, bias=False)
    rows = q1.CompactRows(X)
    rng = np.random.RandomState(1)
    mlp = q1.MLP(5, 40, hidden_size=30, layers=1)
    mlp.W = [rng.randn(30, 40), rng.randn(5, 30)]
    mlp.b = [3 * rng.randn(30), np.zeros(5)]
    redone = []
    float64 = q1.MLP.predict_float64
    monkeypatch.setattr(q1.MLP, "predict_float64",
                        lambda self, Xs: redone.append(len(Xs)) or float64(self, Xs))
    np.testing.assert_array_equal(mlp.predict(rows), float64(mlp, X))
    assert sum(redone) < len(X) / 20  # float32 settles nearly all of them
    mlp.W[1][3] = mlp.W[1][1]  # classes 1 and 3 tie: 1 wins
    mlp.W[1][4] = mlp.W[1][0] * (1 + 1e-9)  # 0 and 4: closer than float32 can tell
    redone.clear()
    labels, expected = mlp.predict(rows), float64(mlp, X)
    np.testing.assert_array_equal(labels, expected)
    assert sum(redone) > 0 and 1 in set(expected) and 3 not in set(expected)
    redone.clear()
    np.testing.assert_array_equal(mlp.predict(X), expected)  # float64 rows: float64
    assert redone == [len(X)]
    mlp.W[1][0, 0] = np.inf  # float32 could overflow: float64
    redone.clear()
    with np.errstate(invalid="ignore"):
        np.testing.assert_array_equal(mlp.predict(rows), float64(mlp, X))
    assert redone == [len(X)]


def test_block_grams_from_float32_are_exact():
    """The float32 Gram matrices of integer blocks equal the float64 ones below the diagonal,
    also where a sum reaches 2^24 and float32 alone would round (that block is redone)."""
    rng = np.random.RandomState(12)
    Xs = rng.randint(0, 257, size=(6, 8, 400)).astype(np.float64)  # integers 0..256
    Xs[4, 1], Xs[4, 5] = 255.0, rng.randint(200, 257, size=400)  # x_1 . x_5 > 2^24, odd terms
    exact = np.tril(Xs @ Xs.transpose(0, 2, 1), -1)
    assert exact[4, 5, 1] >= 2 ** 24
    X32 = Xs.astype(np.float32)
    assert not np.array_equal(np.tril(X32 @ X32.transpose(0, 2, 1), -1), exact)  # rounds
    for out32 in (None, np.empty(Xs.shape, dtype=np.float32)):
        G = q1._grams(Xs, small_integers=True, out32=out32)
        assert G.dtype == np.float64
        np.testing.assert_array_equal(np.tril(G, -1), exact)
    Y = Xs / 3  # not integers: the float64 product
    np.testing.assert_array_equal(q1._grams(Y, small_integers=False), Y @ Y.transpose(0, 2, 1))


def test_compact_rows_know_when_they_hold_small_integers():
    X, _ = random_problem(n=30, d=7, seed=8)  # pixels and a bias of 1: u X in 0..256
    assert q1.CompactRows(X).small_integers
    assert not q1.CompactRows(np.hstack((X, np.full((30, 1), 3.0)))).small_integers  # 768
    assert not q1.CompactRows(np.random.RandomState(0).randn(20, 5)).small_integers


def test_prefetched_results_arrive_in_order_and_are_not_overwritten_while_held():
    def make(i, slot):  # reuses its slot's buffer, as _blocks does
        buf = slot.setdefault("buf", np.empty(3))
        buf[:] = i
        return buf

    count = 0
    for i, buf in enumerate(q1._prefetched(make, range(40), depth=2)):
        assert (buf == i).all()
        time.sleep(0.002)  # the thread runs ahead and fills the other slots meanwhile
        assert (buf == i).all()
        count += 1
    assert count == 40


def test_prefetched_passes_errors_on_and_stops_when_closed():
    def make(i, slot):
        if i == 3:
            raise ValueError("no such block")
        return i

    with pytest.raises(ValueError, match="no such block"):
        list(q1._prefetched(make, range(10)))
    results = q1._prefetched(lambda i, slot: i, range(10 ** 6))
    assert [next(results) for _ in range(3)] == [0, 1, 2]
    results.close()  # the thread is told to stop and joined
    assert not [t for t in threading.enumerate() if t.name == "hw1-q1 blocks"]


ORDER = np.random.RandomState(7).permutation(50)


@pytest.mark.parametrize("block_size", [1, 3, 16, 64])
def test_perceptron_fast_path_gives_identical_weights(block_size):
    X, y = random_problem(n=50, seed=2)
    fast, ref = q1.Perceptron(4, X.shape[1]), q1.Perceptron(4, X.shape[1])
    for _ in range(3):
        fast.train_epoch(X, y, order=ORDER, fast=True, block_size=block_size)
        ref.train_epoch(X, y, order=ORDER, fast=False)
    np.testing.assert_array_equal(fast.W, ref.W)
    assert np.abs(ref.W).sum() > 0


@pytest.mark.parametrize("pixels", [True, False])  # False: CompactRows falls back to float64
@pytest.mark.parametrize("l2_penalty", [0.0, 0.3])
@pytest.mark.parametrize("block_size", [1, 3, 16, 64])
def test_logistic_regression_fast_path_matches_reference(block_size, l2_penalty, pixels):
    X, y = random_problem(n=50, seed=3, pixels=pixels)
    fast, ref = q1.LogisticRegression(4, X.shape[1]), q1.LogisticRegression(4, X.shape[1])
    kwargs = {"learning_rate": 0.05, "l2_penalty": l2_penalty, "order": ORDER}
    for _ in range(2):
        loss_fast = fast.train_epoch(X, y, fast=True, block_size=block_size, **kwargs)
        loss_ref = ref.train_epoch(X, y, fast=False, **kwargs)
    np.testing.assert_allclose(fast.W, ref.W, rtol=1e-10, atol=1e-12)
    assert loss_fast == pytest.approx(loss_ref, rel=1e-10)
    np.testing.assert_array_equal(fast.predict(X), ref.predict(X))


@pytest.mark.parametrize("layers", [1, 2, 3])
@pytest.mark.parametrize("block_size", [1, 5, 64])
def test_mlp_fast_path_matches_reference(layers, block_size):
    X, y = random_problem(n=50, d=12, seed=5, bias=False)
    np.random.seed(0)
    fast = q1.MLP(4, 12, hidden_size=6, layers=layers)
    np.random.seed(0)
    ref = q1.MLP(4, 12, hidden_size=6, layers=layers)
    start = [W.copy() for W in ref.W]
    loss_fast = fast.train_epoch(X, y, learning_rate=0.01, order=ORDER, fast=True,
                                 block_size=block_size)
    loss_ref = ref.train_epoch(X, y, learning_rate=0.01, order=ORDER, fast=False)
    assert loss_fast == pytest.approx(loss_ref, rel=1e-10)
    for a, b in zip(fast.W + fast.b, ref.W + ref.b):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    assert all(not np.allclose(W0, W) for W0, W in zip(start, ref.W))  # it did train


needs_fork = pytest.mark.skipif(sys.platform != "linux",
                                reason="FirstLayerProcess forks (train() uses it on Linux only)")


@needs_fork
@pytest.mark.parametrize("pixels", [True, False])  # False: float64 rows, float64 Gram matrices
@pytest.mark.parametrize("layers", [1, 2, 3])
@pytest.mark.parametrize("block_size", [1, 5, 16, 64])
def test_mlp_first_layer_process_matches_reference(block_size, layers, pixels):
    """Two epochs in two orders: blocks of 1, partial last blocks (50 = 3 x 16 + 2), and a
    single partial block (64)."""
    X, y = random_problem(n=50, d=12, seed=5, bias=False, pixels=pixels)
    np.random.seed(0)
    fast = q1.MLP(4, 12, hidden_size=6, layers=layers)
    np.random.seed(0)
    ref = q1.MLP(4, 12, hidden_size=6, layers=layers)
    with q1.FirstLayerProcess(X, hidden_size=6, block_size=block_size) as first_layer:
        for order in (ORDER, ORDER[::-1]):
            loss_fast = fast.train_epoch(X, y, learning_rate=0.01, order=order,
                                         first_layer=first_layer)
            loss_ref = ref.train_epoch(X, y, learning_rate=0.01, order=order, fast=False)
            assert loss_fast == pytest.approx(loss_ref, rel=1e-10)
            for a, b in zip(fast.W + fast.b, ref.W + ref.b):
                np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    assert not first_layer.process.is_alive()


@needs_fork
def test_mlp_first_layer_process_gram_matrices_are_exact_past_float32():
    """Rows of 255/256 in 301 columns: x.x' = 301 * 255^2 = 19572525 in 8-bit codes, odd and
    above 2^24, so float32 cannot hold it; the process redoes such blocks in float64. Its last
    two blocks' K (left in shared memory) equal the float64 products exactly."""
    rng = np.random.RandomState(1)
    X = rng.randint(0, 256, size=(24, 301)) / 256
    X[8:16] = 255 / 256  # block 1 (of 8 rows); blocks 0 and 2 stay below 2^24
    y = rng.randint(0, 3, size=24)
    model = q1.MLP(3, 301, hidden_size=5, layers=1)
    order = np.arange(24)
    with q1.FirstLayerProcess(X, hidden_size=5, block_size=8) as first_layer:
        model.train_epoch(X, y, learning_rate=1e-4, order=order, first_layer=first_layer)
        lower = np.tri(8, 8, -1)
        for block in (1, 2):
            Xb, Xp = X[8 * block:8 * block + 8], X[8 * block - 8:8 * block]
            expected = np.hstack((Xb @ Xp.T + 1, lower * (Xb @ Xb.T + 1)))
            np.testing.assert_array_equal(first_layer.K[block % first_layer.SLOTS], expected)


@needs_fork
def test_mlp_first_layer_process_errors_reach_the_caller(monkeypatch):
    X, y = random_problem(n=50, d=12, seed=5, bias=False)
    model = q1.MLP(4, 12, hidden_size=6, layers=1)

    def broken(self, idx, out):
        raise ValueError("no such rows")

    monkeypatch.setattr(q1.CompactRows, "rows", broken)  # in the process: it forks after this
    with q1.FirstLayerProcess(X, hidden_size=6, block_size=16) as first_layer:
        with pytest.raises(RuntimeError, match="(?s)first-layer process failed.*no such rows"):
            model.train_epoch(X, y, first_layer=first_layer)
        with pytest.raises(RuntimeError, match="not running"):  # no second epoch on it
            model.train_epoch(X, y, first_layer=first_layer)
    assert not first_layer.process.is_alive()


@needs_fork
def test_mlp_first_layer_process_that_dies_is_reported_and_an_unfinished_epoch_stops_it():
    X, y = random_problem(n=50, d=12, seed=5, bias=False)
    model = q1.MLP(4, 12, hidden_size=6, layers=1)
    with q1.FirstLayerProcess(X, hidden_size=6, block_size=16) as first_layer:
        first_layer.process.kill()
        with pytest.raises(RuntimeError, match="stopped unexpectedly"):
            model.train_epoch(X, y, first_layer=first_layer)
    with q1.FirstLayerProcess(X, hidden_size=6, block_size=16) as first_layer:
        blocks = first_layer.epoch(model, y, ORDER, 0.01)
        next(blocks)  # the caller fails in the middle of an epoch
    first_layer.process.join(timeout=10)  # the exit stopped it, without waiting for the epoch
    assert not first_layer.process.is_alive()


@needs_fork
def test_mlp_train_runs_its_first_layer_process_and_stops_it(tmp_path, monkeypatch):
    """train() on Linux runs the MLP's epochs through a FirstLayerProcess: the same record as
    in one process up to rounding, the same every time, and no process left behind."""
    import multiprocessing
    data = utils.load_dataset(make_tiny_dataset(tmp_path / "tiny.npz"))
    epochs = []
    original = q1.FirstLayerProcess.epoch

    def counted(self, *args):
        epochs.append(self)
        return original(self, *args)

    monkeypatch.setattr(q1.FirstLayerProcess, "epoch", counted)
    runs = [q1.train("mlp", data, epochs=3, verbose=False)[1] for _ in range(2)]
    assert len(epochs) == 6 and not multiprocessing.active_children()
    monkeypatch.setattr(q1.sys, "platform", "elsewhere")  # no fork: the in-process fast path
    one_process = q1.train("mlp", data, epochs=3, verbose=False)[1]
    assert len(epochs) == 6
    timings = ("epoch_seconds", "train_seconds")
    first, second = ({k: v for k, v in run.items() if k not in timings} for run in runs)
    assert first == second
    assert first["train_loss"] == pytest.approx(one_process["train_loss"], rel=1e-10)
    for key in ("train_acc", "valid_acc", "test_acc", "diverged"):
        assert first[key] == one_process[key]


@pytest.mark.parametrize("model", q1.MODELS)
def test_a_failing_epoch_stops_its_background_thread(model):
    X, y = random_problem(n=300, seed=4, bias=(model != "mlp"))
    y[200] = 99  # no such class: the epoch fails at that example, with blocks still to come
    np.random.seed(0)
    net = q1.build_model(model, 4, X.shape[1], hidden_size=6)
    with pytest.raises(IndexError):
        net.train_epoch(X, y, block_size=16, learning_rate=0.01)
    assert not [t for t in threading.enumerate() if t.name == "hw1-q1 blocks"]


def test_train_epoch_visits_examples_in_the_given_order():
    """order=o on X is the same as X[o] in its own order (the course's reordering)."""
    X, y = random_problem(n=50, seed=6)
    for fast in (True, False):
        a, b = q1.LogisticRegression(4, X.shape[1]), q1.LogisticRegression(4, X.shape[1])
        a.train_epoch(X, y, order=ORDER, fast=fast, learning_rate=0.1)
        b.train_epoch(X[ORDER], y[ORDER], fast=fast, learning_rate=0.1)
        np.testing.assert_allclose(a.W, b.W, rtol=1e-12)
        c = q1.LogisticRegression(4, X.shape[1])
        c.train_epoch(X, y, fast=fast, learning_rate=0.1)  # a different order: other weights
        assert not np.allclose(a.W, c.W)


# ----------------------------------------------------------------------------- training loop

def small_data(tmp_path, **kwargs):
    path = make_tiny_dataset(tmp_path / "tiny.npz", **kwargs)
    return path


def test_training_loop_same_seed_same_record(tmp_path):
    path = small_data(tmp_path)
    timing = ("epoch_seconds", "train_seconds")
    for model in q1.MODELS:
        data = utils.load_dataset(path, bias=(model != "mlp"))
        records = [q1.train(model, data, epochs=3, hidden_size=8, verbose=False)[1]
                   for _ in range(2)]
        for key in records[0]:
            if key not in timing:
                assert records[0][key] == records[1][key], (model, key)
        other = q1.train(model, data, epochs=3, hidden_size=8, seed=1, verbose=False)[1]
        if model != "perceptron":  # a different seed, a different order: other losses
            assert other["train_loss"] != records[0]["train_loss"]


def test_training_loop_reorders_cumulatively(tmp_path, monkeypatch):
    """Epoch e visits X[p1][p2]...[pe], as the course's train_X = train_X[order] does."""
    path = small_data(tmp_path)
    data = utils.load_dataset(path, bias=True)
    seen = []
    monkeypatch.setattr(q1.Perceptron, "train_epoch",
                        lambda self, X, y, order=None, **kw: seen.append(order.copy()))
    q1.train("perceptron", data, epochs=3, seed=11, verbose=False)
    np.random.seed(11)
    n = len(data["train"][1])
    expected = np.arange(n)
    for epoch_order in seen:
        expected = expected[np.random.permutation(n)]
        np.testing.assert_array_equal(epoch_order, expected)


def test_each_epochs_accuracies_are_those_of_its_weights(capsys):
    """The training loop evaluates an epoch in the background while the next one trains; its
    record and lines must still be the course's loop, done by hand here, epoch by epoch."""
    data = {split: random_problem(n=80, seed=seed)  # random labels: accuracies move
            for split, seed in (("train", 20), ("dev", 21), ("test", 22))}
    _, record = q1.train("logistic_regression", data, epochs=5, learning_rate=0.5, seed=3)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("epoch")]
    (X, y), (dev_X, dev_y), (test_X, test_y) = data["train"], data["dev"], data["test"]
    utils.configure_seed(3)
    model = q1.LogisticRegression(len(np.unique(y)), X.shape[1])
    order = np.arange(len(y))
    for epoch in range(5):
        order = order[np.random.permutation(len(y))]
        loss = model.train_epoch(X, y, order=order, learning_rate=0.5)
        train_acc, valid_acc = model.evaluate(X, y), model.evaluate(dev_X, dev_y)
        assert (record["train_loss"][epoch], record["train_acc"][epoch],
                record["valid_acc"][epoch]) == (loss, train_acc, valid_acc)
        assert record["weight_norm"][epoch] == q1.weight_norm(model)
        assert lines[epoch].startswith(f"epoch {epoch + 1:3d} | train loss {loss:.4f} | "
                                       f"train acc {train_acc:.4f} | dev acc {valid_acc:.4f}")
    assert record["test_acc"] == model.evaluate(test_X, test_y)
    assert len(set(record["train_acc"])) > 1  # the epochs did differ
    # the whole loop: each epoch's training, and the evaluations still running after the last
    assert sum(record["epoch_seconds"]) <= record["train_seconds"]


def test_fast_and_reference_paths_give_the_same_run(tmp_path):
    path = small_data(tmp_path, n_train=80)
    for model in q1.MODELS:
        data = utils.load_dataset(path, bias=(model != "mlp"))
        runs = [q1.train(model, data, epochs=3, hidden_size=8, learning_rate=0.01,
                         fast=fast, verbose=False)[1] for fast in (True, False)]
        assert runs[0]["train_acc"] == runs[1]["train_acc"]
        assert runs[0]["valid_acc"] == runs[1]["valid_acc"]
        assert runs[0]["test_acc"] == runs[1]["test_acc"]
        if model != "perceptron":
            np.testing.assert_allclose(runs[0]["train_loss"], runs[1]["train_loss"], rtol=1e-9)


# ----------------------------------------------------------------------------- CLI

def run_cli(*args, cwd=None):
    """hw1-q1.py as a script, in a fresh process."""
    return subprocess.run([sys.executable, str(ROOT / "hw1-q1.py"), *map(str, args)],
                          capture_output=True, text=True, cwd=cwd, timeout=300)


def run_main(capsys, *args):
    """hw1-q1.main in this process (no interpreter start-up): (exit code, stdout, stderr)."""
    try:
        q1.main([str(a) for a in args])
        code = 0
    except SystemExit as exit:
        code = exit.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_runs_as_a_script(tmp_path):
    path = small_data(tmp_path)
    result = run_cli("perceptron", "-data_path", path, "-epochs", 1, "-output_dir",
                     tmp_path / "out")
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(r"Final test acc: [01]\.\d{4}", result.stdout.splitlines()[-2])
    assert (tmp_path / "out" / "q1-perceptron-data_path=tiny-epochs=1.json").is_file()


@pytest.mark.parametrize("model", q1.MODELS)
def test_cli_writes_record_and_figures(tmp_path, capsys, model):
    path = small_data(tmp_path)
    out = tmp_path / "out"
    code, stdout, stderr = run_main(capsys, model, "-data_path", path, "-epochs", 2,
                                    "-output_dir", out, "-hidden_size", 8)
    assert code == 0, stderr
    lines = stdout.splitlines()
    assert sum(line.startswith("epoch") for line in lines) == 2
    assert re.fullmatch(r"Final test acc: [01]\.\d{4}", lines[-2]), lines[-2:]
    name = f"q1-{model}-data_path=tiny-epochs=2-hidden_size=8"
    record = json.loads((out / f"{name}.json").read_text())
    assert record["model"] == model
    assert record["epochs"] == [1, 2]
    assert len(record["train_acc"]) == len(record["valid_acc"]) == 2
    assert 0 <= record["test_acc"] <= 1
    assert record["diverged"] is False
    assert record["config"]["learning_rate"] == 0.001 and record["config"]["impl"] == "fast"
    assert set(record["config"]) >= {"epochs", "learning_rate", "l2_penalty", "hidden_size",
                                     "layers", "data_path", "output_dir", "seed", "impl"}
    assert record["train_seconds"] > 0
    figures = {"accuracy"}
    figures |= {"loss"} if model != "perceptron" else set()
    figures |= {"weight_norm"} if model != "mlp" else set()
    for key in figures:
        for suffix in (".pdf", ".png"):
            assert (out / f"{name}-{key}{suffix}").stat().st_size > 0
    written = {p.name for p in out.iterdir()}
    assert len(written) == 2 * len(figures) + 1
    if model == "perceptron":
        assert record["train_loss"] is None and len(record["weight_norm"]) == 2
    elif model == "mlp":
        assert record["weight_norm"] is None and len(record["train_loss"]) == 2
    else:
        assert len(record["train_loss"]) == len(record["weight_norm"]) == 2


def test_cli_names_differ_across_flags(tmp_path, capsys):
    path = small_data(tmp_path)
    out = tmp_path / "out"
    runs = [("logistic_regression",), ("logistic_regression", "-learning_rate", 0.01),
            ("logistic_regression", "--l2-penalty", 0.1), ("logistic_regression", "-seed", 3),
            ("logistic_regression", "-impl", "reference"), ("perceptron",)]
    for args in runs:
        code, _, stderr = run_main(capsys, *args, "-data_path", path, "-epochs", 1,
                                   "-output_dir", out)
        assert code == 0, stderr
    records = sorted(out.glob("*.json"))
    assert len(records) == len(runs)
    configs = [json.loads(p.read_text())["config"] for p in records]
    assert len({json.dumps(c, sort_keys=True) for c in configs}) == len(runs)


@pytest.mark.parametrize("flag,value", [
    ("-epochs", "0"), ("-learning_rate", "0"), ("--learning-rate", "-1"),
    ("-hidden_size", "0"), ("-layers", "0"), ("-l2_penalty", "-0.5"), ("-epochs", "two"),
    ("-impl", "slow"), ("-seed", "-1"),
])
def test_cli_rejects_bad_flags(tmp_path, capsys, flag, value):
    code, _, stderr = run_main(capsys, "mlp", flag, value, "-data_path", tmp_path / "none.npz")
    assert code == 2
    dest = flag.lstrip("-").replace("-", "_")
    assert f"error: argument -{dest}/" in stderr, stderr


def test_cli_rejects_unknown_model(capsys):
    code, _, stderr = run_main(capsys, "svm")
    assert code == 2 and "invalid choice" in stderr


def test_cli_missing_data_is_a_clear_error(tmp_path):
    result = run_cli("perceptron", "-data_path", tmp_path / "missing.npz",
                     "-output_dir", tmp_path / "out")
    assert result.returncode == 1
    assert result.stderr.startswith("error: ") and "missing.npz" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("model,lr", [("mlp", "1e200"), ("logistic_regression", "1e308")])
def test_cli_divergence_warns_once_and_is_recorded(tmp_path, model, lr):
    path = small_data(tmp_path)
    out = tmp_path / "out"
    result = run_cli(model, "-data_path", path, "-epochs", 3, "-learning_rate", lr,
                     "-output_dir", out, "-hidden_size", 8)
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("warning") == 1, result.stderr
    assert "diverged" in result.stderr
    assert "RuntimeWarning" not in result.stderr  # not from numpy, in any thread either
    record = json.loads(next(out.glob("*.json")).read_text())
    assert record["diverged"] is True
    assert record["epochs"] == [1, 2, 3]


def test_script_does_not_import_torch():
    code = (f"import sys; sys.path.insert(0, {str(ROOT)!r}); sys.path.insert(0, "
            f"{str(ROOT / 'tests')!r}); from conftest import load_script; "
            f"load_script('hw1-q1.py'); print('torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "False", result.stderr


# ----------------------------------------------------------------------------- real data

@pytest.fixture(scope="module")
def real_linear(real_data_path):
    return utils.load_dataset(real_data_path, bias=True)


@pytest.mark.parametrize("model,dev,test", [
    ("perceptron", 0.7236, 0.6193),
    ("logistic_regression", 0.8251, 0.7028),
])
def test_real_data_reproduces_published_numbers(real_linear, model, dev, test):
    """The course's published final dev and test accuracies, to the fourth decimal."""
    _, record = q1.train(model, real_linear, epochs=20, verbose=False)
    assert round(record["valid_acc"][-1], 4) == dev
    assert round(record["test_acc"], 4) == test


@pytest.mark.parametrize("model", ["perceptron", "logistic_regression"])
def test_real_data_fast_path_equals_reference(real_linear, model):
    """Two epochs of the course's loop on the real data: same accuracies, same weights."""
    runs = [q1.train(model, real_linear, epochs=2, fast=fast, verbose=False)
            for fast in (True, False)]
    (fast_model, fast_record), (ref_model, ref_record) = runs
    assert fast_record["train_acc"] == ref_record["train_acc"]
    assert fast_record["valid_acc"] == ref_record["valid_acc"]
    if model == "perceptron":
        np.testing.assert_array_equal(fast_model.W, ref_model.W)
    else:
        np.testing.assert_allclose(fast_model.W, ref_model.W, rtol=1e-9, atol=1e-12)


def test_real_data_mlp_fast_path_matches_reference(real_data_path):
    """The first 256 steps of the course's MLP run on the real data, on both paths.

    Only a few hundred steps: with this initialisation (all weights near 0.1, saturated
    softmax) per-example SGD is chaotic, and any rounding difference, even moving each
    first-layer weight by one ulp on the reference path itself, grows to a percent in the
    weights within ~600 steps. So the paths are compared where rounding has not yet grown.
    """
    data = utils.load_dataset(real_data_path)
    X, y = data["train"]
    utils.configure_seed(42)
    fast = q1.MLP(10, X.shape[1], hidden_size=200, layers=1)
    order = np.random.permutation(len(y))[:256]
    utils.configure_seed(42)
    ref = q1.MLP(10, X.shape[1], hidden_size=200, layers=1)
    loss_fast = fast.train_epoch(X, y, learning_rate=0.001, order=order, fast=True)
    loss_ref = ref.train_epoch(X, y, learning_rate=0.001, order=order, fast=False)
    assert loss_fast == pytest.approx(loss_ref, rel=1e-8)
    for a, b in zip(fast.W + fast.b, ref.W + ref.b):
        assert np.abs(a - b).max() <= 1e-7 * np.abs(b).max()  # relative to the layer's scale


def test_cli_bad_output_dir_fails_before_training(tmp_path, monkeypatch):
    """A -output_dir that cannot be written is an error at once (no training), in one line."""
    path = small_data(tmp_path)
    blocker = tmp_path / "afile"
    blocker.write_text("not a folder")
    trained = []
    monkeypatch.setattr(q1, "train", lambda *a, **k: trained.append(1))
    for out in (blocker, blocker / "sub"):
        with pytest.raises(SystemExit) as exit:
            q1.main(["perceptron", "-data_path", str(path), "-output_dir", str(out)])
        assert exit.value.code == 1
    assert trained == []
    result = run_cli("perceptron", "-data_path", path, "-output_dir", blocker / "sub")
    assert result.returncode == 1
    assert result.stderr.strip() == (f"error: {blocker / 'sub'}: cannot be used as an output "
                                     f"folder: a file of that name (or in its path) is in the way")
    assert blocker.read_text() == "not a folder"


def test_cli_save_failure_leaves_no_partial_run(tmp_path, capsys):
    """If one of the run's files cannot be written, none is: the old record and figures stay."""
    path = small_data(tmp_path)
    out = tmp_path / "out"
    args = ["perceptron", "-data_path", path, "-epochs", 1, "-output_dir", out]
    assert run_main(capsys, *args)[0] == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    name = "q1-perceptron-data_path=tiny-epochs=1"
    (out / f"{name}-weight_norm.png").unlink()
    (out / f"{name}-weight_norm.png").mkdir()  # a folder in the way of one file
    code, _, stderr = run_main(capsys, *args, "-seed", 1)  # another run, another name
    assert code == 0, stderr
    code, _, stderr = run_main(capsys, *args)
    assert code == 1
    assert stderr.startswith("error: cannot save the run in ") and "Traceback" not in stderr
    after = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    for file_name, content in before.items():  # this run's old files, untouched
        if not file_name.endswith("weight_norm.png"):
            assert after[file_name] == content
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary left


def test_cli_q1_and_q2_runs_do_not_overwrite_each_other(tmp_path, capsys):
    """hw1-q1's and hw1-q2's runs of a model with the same flags go to different files."""
    path = small_data(tmp_path)
    out = tmp_path / "out"
    assert run_main(capsys, "logistic_regression", "-data_path", path, "-epochs", 1,
                    "-output_dir", out)[0] == 0
    result = subprocess.run([sys.executable, str(ROOT / "hw1-q2.py"), "logistic_regression",
                             "-data_path", str(path), "-epochs", "1", "-output_dir", str(out)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    records = {p.name: json.loads(p.read_text()) for p in out.glob("*.json")}
    assert set(records) == {"q1-logistic_regression-data_path=tiny-epochs=1.json",
                            "q2-logistic_regression-data_path=tiny-epochs=1.json"}
    assert "l2_penalty" in records["q1-logistic_regression-data_path=tiny-epochs=1.json"]["config"]
    assert "batch_size" in records["q2-logistic_regression-data_path=tiny-epochs=1.json"]["config"]


def test_epoch_seconds_are_each_epochs_own(tiny_data, monkeypatch):
    """The seconds printed and recorded for an epoch are that epoch's training, although its
    accuracies are computed (and its line printed) while the next epoch trains."""
    data = utils.load_dataset(tiny_data, bias=True)
    original = q1.Perceptron.train_epoch
    calls = []

    def slow_third(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            time.sleep(0.5)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(q1.Perceptron, "train_epoch", slow_third)
    _, record = q1.train("perceptron", data, epochs=5, verbose=False)
    seconds = record["epoch_seconds"]
    assert seconds[2] >= 0.5
    assert max(seconds[1], seconds[3], seconds[4]) < 0.3, seconds
    assert record["train_seconds"] >= sum(seconds)


@needs_fork
def test_ctrl_c_ends_a_run_cleanly(tmp_path):
    """Ctrl-C: `interrupted`, exit code 130, no traceback, no files, no process left behind."""
    path = make_tiny_dataset(tmp_path / "d.npz", n_train=3000, side=28)
    out = tmp_path / "out"
    process = subprocess.Popen([sys.executable, str(ROOT / "hw1-q1.py"), "mlp", "-data_path",
                                str(path), "-epochs", "100000", "-hidden_size", "8",
                                "-output_dir", str(out)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stdout.readline().startswith("epoch   1 ")  # training, with its helpers
    children = _children(process.pid)
    assert children  # the MLP's first-layer process
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 130
    assert stderr.strip() == "interrupted" and "Traceback" not in stderr
    assert not out.exists() or not list(out.iterdir())
    time.sleep(0.2)
    assert not [pid for pid in children if Path(f"/proc/{pid}").exists()
                and "zombie" not in Path(f"/proc/{pid}/status").read_text()]


def _children(pid):
    """The ids of `pid`'s child processes (Linux)."""
    tasks = Path(f"/proc/{pid}/task")
    return [int(c) for t in tasks.iterdir() for c in (t / "children").read_text().split()]
