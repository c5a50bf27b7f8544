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
- `fast` (default): blocks of B examples. The block's scores (the MLP's first-layer
  pre-activations) come from one matrix product with the weights at the block's start; the
  effect of the block's earlier updates on a later example goes through the block's Gram matrix
  X_B X_B^T; the block's rank-1 updates are then applied as one product. For the linear models
  the coupled equations are solved by fixed-point sweeps over the block, which end at the
  per-example result; the MLP walks its small upper layers example by example. Same updates,
  up to rounding; the perceptron's scores are exact in float64, so there it is bit for bit.
  The fast path reads the data from 8-bit codes (CompactRows: X * 256, checked exact, else
  float64), turned into float64 a cache-sized slice at a time: the same float64 products,
  scaled by a power of two.

Both cores work. For the linear models a background thread gathers the next blocks and their
Gram matrices (numpy's products release the GIL, so it runs beside the sequential walk). The
MLP's first layer goes further: on Linux a forked process (`FirstLayerProcess`) holds it and
does all its products, one block ahead, while this process walks the upper layers, so the two
share no GIL. Each epoch's accuracies are computed from a copy of its weights while the next
epoch trains. None of this depends on timing: the numbers are the same on every run.

The training loop is the course's, so that its published numbers reproduce: perceptron dev
0.7236 / test 0.6193, logistic regression dev 0.8251 / test 0.7028 (20 epochs, seed 42).
"""
import argparse
import collections
import contextlib
import copy
import ctypes
import math
import multiprocessing
import queue
import signal
import struct
import sys
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

import utils

MODELS = ("perceptron", "logistic_regression", "mlp")
# Block sizes of the fast path, tuned on the real data: larger blocks need fewer Python-level
# steps, but the Gram matrix costs B*D per example and the linear models' sweeps grow with B.
# (Retuned once the weight updates went into preallocated buffers: perceptron 16 -> 32 and
# logistic regression 40 -> 64 took ~10% and ~5% off an epoch; 48 / 128 and above are slower.)
BLOCK_SIZE = {"perceptron": 32, "logistic_regression": 64, "mlp": 64}


# ----------------------------------------------------------------------------- BLAS threads

def _openblas_thread_functions():
    """(get, set) for the number of threads of numpy's bundled OpenBLAS, or None if not found."""
    for lib_path in sorted((Path(np.__file__).parent.parent / "numpy.libs").glob("*openblas*")):
        try:
            lib = ctypes.CDLL(str(lib_path))
            return lib.scipy_openblas_get_num_threads64_, lib.scipy_openblas_set_num_threads64_
        except (OSError, AttributeError):
            continue
    return None


@contextlib.contextmanager
def single_threaded_blas():
    """Run numpy's OpenBLAS on one thread inside the block, as threadpoolctl would.

    Training multiplies many small matrices; on the 2-core machine OpenBLAS's threads made them
    2-5x slower (and the 50000 x 785 evaluation product no faster). Does nothing when numpy's
    BLAS is not the bundled OpenBLAS.
    """
    functions = _openblas_thread_functions()
    if functions is None:
        yield
        return
    get, set_ = functions
    before = get()
    set_(1)
    try:
        yield
    finally:
        set_(before)


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

class CompactRows:
    """The rows of X (N, D) as 8-bit codes, for the fast path: 8x less memory to read per epoch.

    The data is pixels k/256 (and a bias column of ones), so X * 256 is exact integers. The
    codes hold X * 256 as uint8 for the columns in 0..255; columns that are constant (the bias)
    are kept once. `rows` writes 256 X[idx] as float64 (exact) into a cache-sized buffer, so
    every product downstream is the float64 product of the data, only scaled by a power of two
    (which changes no rounding). Data that is not of that form is kept as is (unit 1).
    """

    def __init__(self, X):
        X = np.asarray(X, dtype=np.float64)
        self.shape = X.shape
        self._row_norms = None
        self.unit, self.codes = 1.0, X  # the fallback: float64 rows, unscaled
        self.small_integers = False
        self.const_cols, self.const_vals = np.zeros(0, dtype=np.intp), np.zeros(0)
        if X.ndim != 2 or len(X) == 0:
            return
        const = (X == X[0]).all(axis=0)  # (D,)
        codes = np.empty(X.shape, dtype=np.uint8)
        back = np.empty((min(2048, len(X)), X.shape[1]))
        for start in range(0, len(X), 2048):  # in slices: no 314 MB temporary
            part, out = X[start:start + 2048], codes[start:start + 2048]
            with np.errstate(invalid="ignore"):  # out-of-range values fail the check below
                np.multiply(part, 256.0, out=out, casting="unsafe")
            decoded = back[:len(part)]
            np.copyto(decoded, out)
            decoded *= 1 / 256.0
            if not ((decoded == part) | const).all():  # the check that counts: exact codes
                return
        codes[:, const] = 0
        self.unit, self.codes = 256.0, codes
        self.const_cols = np.flatnonzero(const)
        self.const_vals = X[0, const] * 256.0
        # u X holds integers in 0..256 (pixels, a bias of 1): see `_grams`
        self.small_integers = bool(((self.const_vals >= 0) & (self.const_vals <= 256)
                                    & (self.const_vals == np.round(self.const_vals))).all())

    @classmethod
    def of(cls, X):
        return X if isinstance(X, cls) else cls(X)

    def __len__(self):
        return self.shape[0]

    def rows(self, idx, out):
        """out[:len(idx)] = unit * X[idx] (exact in float64, and in float32 for 8-bit codes);
        `idx` an index array or a slice."""
        out = out[:len(self.codes[idx]) if isinstance(idx, slice) else len(idx)]
        np.copyto(out, self.codes[idx])
        if len(self.const_cols):
            out[:, self.const_cols] = self.const_vals
        return out

    def row_norms(self):
        """|x| for each row of X (N,), computed once."""
        if self._row_norms is None:
            self._row_norms = np.concatenate(
                [np.linalg.norm(Xc, axis=1) for Xc in self.chunks()]) / self.unit
        return self._row_norms

    def chunks(self, size=1024, dtype=np.float64):
        """Yield unit * X[i:i + size] (see `rows`) for consecutive slices, in one buffer."""
        buf = np.empty((min(size, len(self)), self.shape[1]), dtype=dtype)
        for start in range(0, len(self), size):
            yield self.rows(slice(start, start + size), buf)


def _float32_inexact(G):
    """Where the float32 product G of operands holding integers in 0..256 may have rounded.

    Every term of such a product is an integer in 0..2^16, so each partial sum is exact while
    below 2^24, and a sum is >= 2^24 exactly when its float32 value is (rounding is monotone):
    the entries flagged are those >= 2^24.
    """
    return G >= 2.0 ** 24


def _grams(Xs, small_integers, out32=None):
    """Xs (M, B, D) -> the Gram matrices Xs_m Xs_m^T (M, B, B), float64, exact below the diagonal.

    With small_integers (Xs holds integers in 0..256), they come from a float32 product, which
    is about twice as fast and exact unless `_float32_inexact` flags an entry: a block with
    such an entry below the diagonal (none on the real data; the diagonal is not used) is
    recomputed in float64.
    """
    if not small_integers:
        return Xs @ Xs.transpose(0, 2, 1)
    if out32 is None:
        out32 = np.empty(Xs.shape, dtype=np.float32)
    np.copyto(out32, Xs)  # exact
    G = (out32 @ out32.transpose(0, 2, 1)).astype(np.float64)  # (M, B, B)
    for m in np.flatnonzero(_float32_inexact(np.tril(G, -1)).any(axis=(1, 2))):
        G[m] = Xs[m] @ Xs[m].T
    return G


def _prefetched(make, items, depth=2):
    """Yield make(item, slot) for each item, computed ahead (depth >= 1) in a background thread.

    The products and copies `make` runs are numpy calls that release the GIL, so they run on
    the second core while the caller works through the previous item. `make` may keep buffers
    in its slot (a dict), one of depth + 2 used in turn: the thread is at most depth + 1 items
    ahead, so the result the caller holds is never overwritten. Close the generator (or
    exhaust it) to stop the thread.
    """
    slots = [{} for _ in range(depth + 2)]
    results = queue.Queue(maxsize=depth)
    stop = threading.Event()
    errstate = np.geterr()  # numpy's error settings are per thread: the caller's apply

    def put(result):
        while not stop.is_set():
            try:
                results.put(result, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce():
        try:
            for i, item in enumerate(items):
                with np.errstate(**errstate):
                    result = make(item, slots[i % len(slots)])
                if not put((True, result)):
                    return
        except BaseException as err:  # handed to the caller, raised there
            put((False, err))
            return
        put((True, StopIteration))

    thread = threading.Thread(target=produce, name="hw1-q1 blocks", daemon=True)
    thread.start()
    try:
        while True:
            ok, result = results.get()
            if not ok:
                raise result
            if result is StopIteration:
                return
            yield result
    finally:
        stop.set()
        thread.join()


def _blocks(rows, y, order, block_size, coupling, offset=0.0, chunk=1024):
    """Yield (X_B, y_B, K_B) for consecutive blocks of B examples of X[order], y[order].

    `rows` is a CompactRows, so the X_B yielded is u X_B for its unit u (256 for pixel data);
    K_B = coupling[:B, :B] * (X_B X_B^T + offset), (B, B), is in the data's own units (the
    scaling by u^2 is undone exactly): the Gram matrix of the block, scaled elementwise by
    `coupling`, which is zero on and above the diagonal (example k is affected only by the
    updates of examples j < k). Examples are gathered `chunk` at a time into buffers and
    their blocks' Gram matrices computed as one stacked product, in a background thread
    (`_prefetched`) while the caller trains on the previous chunk. The arrays yielded are
    views into those buffers: use each block before asking for the next one.
    """
    per_chunk = max(1, chunk // block_size) * block_size
    u2 = rows.unit ** 2
    offset, coupling = offset * u2, coupling / u2  # powers of two: K_B is unchanged, bit for bit

    def make(start, slot):
        idx = order[start:start + per_chunk]
        if "X" not in slot:
            slot["X"] = np.empty((per_chunk, rows.shape[1]))  # (K, D)
        Xc = rows.rows(idx, slot["X"])  # (K, D)
        full = len(idx) // block_size * block_size
        Xs = Xc[:full].reshape(-1, block_size, Xc.shape[1])  # (K/B, B, D)
        if "X32" not in slot:
            slot["X32"] = np.empty((per_chunk // block_size, block_size, rows.shape[1]),
                                   dtype=np.float32)
        Ks = _grams(Xs, rows.small_integers, slot["X32"][:len(Xs)])  # (K/B, B, B)
        if offset:
            Ks += offset
        Ks *= coupling
        if full < len(idx):  # the last, partial block
            n = len(idx) - full
            tail = coupling[:n, :n] * (Xc[full:] @ Xc[full:].T + offset)
        return Xc, y[idx], Ks, tail if full < len(idx) else None

    # the background thread does a few large calls per chunk (it needs the GIL between them)
    with contextlib.closing(_prefetched(make, range(0, len(order), per_chunk))) as chunks:
        for Xc, yc, Ks, tail in chunks:
            for k in range(len(Ks)):
                rows_k = slice(k * block_size, (k + 1) * block_size)
                yield Xc[rows_k], yc[rows_k], Ks[k]
            if tail is not None:
                yield Xc[len(Ks) * block_size:len(yc)], yc[len(Ks) * block_size:], tail


def _lower(B):
    """(B, B) strictly lower-triangular ones: entry (k, j) is 1 when j < k."""
    return np.tri(B, B, -1)


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
        return None if not losses or losses[0] is None else float(np.mean(losses))

    def predict(self, X):
        """X (N, D) -> predicted labels (N,): the highest score, the first one on ties.

        X may be a CompactRows: then slice by slice, from u X (u a power of two), which scales
        every score by u exactly, so the labels are the same.
        """
        if isinstance(X, CompactRows):
            size = 256  # cache-sized slices; products into a preallocated buffer
            scores, labels = np.empty((len(self.W), size)), np.empty(len(X), dtype=np.intp)
            for start, Xc in zip(range(0, len(X), size), X.chunks(size)):
                n = len(Xc)
                np.matmul(self.W, Xc.T, out=scores[:, :n])  # (C, n)
                scores[:, :n].argmax(axis=0, out=labels[start:start + n])
            return labels
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
        """Per block, U (B, C) holds each example's update: +1 gold, -1 predicted on a mistake.

        Example k's scores are (X_B W_0^T)_k + sum_{j<k} G_kj U_j. U is found by fixed-point
        sweeps: predict every example from the current U, rebuild U, until the predictions stop
        changing. As example k depends only on examples j < k, sweep t fixes example t for good,
        so this ends within B + 1 sweeps, at the unique solution: the per-example result. With
        pixels k/256 every product and sum here is exact in float64, so the weights equal the
        per-example loop's bit for bit (on other data, up to rounding).
        """
        rows = CompactRows.of(X)
        u = rows.unit  # X_B below is u X_B, u a power of two; scaling by u is exact
        W = self.W * u  # (C, D) so every score and correction below is u^2 times, exactly
        eye = np.eye(W.shape[0])
        update = np.empty_like(W)  # (C, D); a preallocated product is ~5x faster than a new one
        blocks = _blocks(rows, y, order, block_size, u * u * _lower(block_size))
        with contextlib.closing(blocks):  # stops its thread, also if this loop fails
            for XB, yB, LG in blocks:
                S0 = XB @ W.T  # (B, C) the scores with the weights at the block's start
                pred = S0.argmax(axis=1)  # (B,)
                gold = eye[yB]  # (B, C)
                T0 = S0 + LG @ gold  # the scores, less sum_{j<k} G_kj onehot(pred_j)
                for _ in range(len(yB) + 1):
                    new_pred = (T0 - LG @ eye[pred]).argmax(axis=1)
                    if (new_pred == pred).all():
                        break
                    pred = new_pred
                U = gold - eye[pred]  # (B, C); zero rows where the prediction is right
                W += np.matmul(U.T, XB, out=update)
        np.multiply(W, 1.0 / u, out=self.W)


class LogisticRegression(LinearModel):

    def update_weight(self, x_i, y_i, learning_rate=0.001, l2_penalty=0.0):
        """One SGD step on -log p(y_i | x_i) + l2_penalty/2 ||W||^2; returns the cross-entropy.

        The gradient is -(onehot(y_i) - p) x_i^T + l2_penalty W. The penalty covers all of W,
        the bias column included (as the 2024-25 solution does).
        """
        scores = self.W @ x_i  # (C,)
        probs = softmax(scores[None, :])[0]  # (C,)
        shifted = scores - scores.max()
        loss = np.log(np.exp(shifted).sum()) - shifted[y_i]  # -log probs[y_i], without log(0)
        error = -probs
        error[y_i] += 1  # onehot(y_i) - p
        self.W = (1 - learning_rate * l2_penalty) * self.W + learning_rate * np.outer(error, x_i)
        return loss

    def _train_epoch_fast(self, X, y, order, learning_rate=0.001, l2_penalty=0.0,
                          block_size=BLOCK_SIZE["logistic_regression"]):
        """Per block, with a = 1 - lr*l2 the penalty's shrinkage and E - P (B, C) the errors:

            W_k = a^k W_0 + lr sum_{j<k} a^(k-1-j) (E - P)_j x_j^T,
            scores_k = a^k (X_B W_0^T)_k + lr sum_{j<k} a^(k-1-j) G_kj (E - P)_j,

        and P = softmax(scores) row by row. P is found by fixed-point sweeps, as for the
        perceptron: sweep t fixes example t, and the sweeps stop when P no longer changes
        (exactly), which is the per-example result up to rounding. Returns the epoch's mean
        cross-entropy (each example's, before its own step).
        """
        lr = learning_rate
        a = 1.0 - lr * l2_penalty
        B = block_size
        k = np.arange(B)
        # coupling (k, j) = lr a^(k-1-j) for j < k; the decay depends on k - j only, so its
        # top-left corner serves a shorter last block too
        coupling = lr * _lower(B) * a ** np.maximum(k[:, None] - 1 - k[None, :], 0)
        rows = CompactRows.of(X)
        inv = 1.0 / rows.unit  # X_B below is u X_B, u a power of two: scaling by 1/u is exact
        decay = (a ** k * inv)[:, None]  # (B, 1) a^k / u
        eye = np.eye(self.W.shape[0])
        update = np.empty_like(self.W)  # (C, D); a preallocated product is ~5x faster
        total = 0.0
        with contextlib.closing(_blocks(rows, y, order, B, coupling)) as blocks:
            for XB, yB, K in blocks:
                n = len(yB)
                gold = eye[yB]  # (B, C)
                S0 = XB @ self.W.T  # (B, C) u * the scores, weights as at the block's start
                S0 *= decay[:n]
                # scores = S0 + K (E - P) = T0 - K P, less each row's max of S0: exp stays in
                # range as long as the corrections K (E - P) are moderate (else a retry below)
                T0 = S0 + K @ gold
                T0 -= S0.max(axis=1, keepdims=True)
                P, scores, z = self._solve_block(T0, K, softmax(S0), shift=False)
                if P is None:  # exp overflowed (a large learning rate): take the row maxima out
                    P, scores, z = self._solve_block(T0, K, softmax(S0), shift=True)
                # cross-entropy of each example before its step: log sum exp(scores) - scores[y]
                total += np.log(z).sum() - scores[k[:n], yB].sum()
                error = gold - P  # (B, C)
                if a != 1.0:
                    error *= (a ** (n - 1 - k[:n]))[:, None]  # the shrinkage still ahead
                    self.W *= a ** n
                np.matmul(error.T, XB, out=update)
                update *= lr * inv
                self.W += update
        return total / len(order)

    @staticmethod
    def _solve_block(T0, K, P, shift):
        """Sweeps P <- softmax(T0 - K P) until P no longer changes (at most B + 1 sweeps).

        Returns P, the scores T0 - K P (less each row's max if `shift`) and their row sums of
        exp, or (None, None, None) if the sweeps did not settle because exp overflowed.
        """
        for _ in range(len(T0) + 1):
            scores = K @ P
            np.subtract(T0, scores, out=scores)  # (B, C)
            if shift:
                scores -= scores.max(axis=1, keepdims=True)
            new = np.exp(scores)
            z = new.sum(axis=1)  # (B,)
            new /= z[:, None]
            if (new == P).all():
                return P, scores, z
            P = new
        if not shift and not np.isfinite(P).all():
            return None, None, None
        return P, scores, z  # only a diverged run gets here


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
        """X (N, D) -> predicted labels (N,): the highest score, the first one on ties.

        With one hidden layer and X a CompactRows, computed in float32 from the 8-bit codes
        (about twice as fast as float64), each label checked: the rounding is bounded, through
        the ReLU, by the standard |fl(w.h) - w.h| <= gamma_n sum_i |w_i h_i| (gamma_n ~ n 2^-24;
        for the first layer, sum_i |x_i w_i| <= |x| |w|), and a row whose best score is not
        above the others by more than twice that bound is redone in float64. So the labels are
        float64's. (With more layers the bound grows loose and most rows would be redone.)
        """
        params = self.W + self.b
        if (not isinstance(X, CompactRows) or len(self.W) != 2
                or not all(np.isfinite(p).all() and np.abs(p).max() < 1e30 for p in params)):
            return self.predict_float64(X)
        u = 2.0 ** -24
        (W1, W2), (b1, b2) = [[p.astype(np.float32) for p in ps] for ps in (self.W, self.b)]
        n_classes = len(W2)
        W2_both = np.vstack((W2, np.abs(W2)))  # (2C, H): the scores and a product of the bound
        # The bound on each score's error, |W2| e1 + gamma_H |W2| h + the biases' rounding,
        # with e1 (H,) = gamma_D |x| |w1_h| + 3u |b1| the first layer's (|x| |w1_h| >= the sum
        # of |x_i w1_hi|, gamma_n ~ (n + 4) u also covers the operands' rounding to float32)
        first = np.abs(self.W[1]) @ np.linalg.norm(self.W[0], axis=1) * ((X.shape[1] + 4) * u)
        biases = np.abs(self.W[1]) @ (3 * u * np.abs(self.b[0])) + 3 * u * np.abs(self.b[1])
        second = (W2.shape[1] + 4) * u
        x_norms = X.row_norms()
        labels = np.empty(len(X), dtype=np.intp)
        for start, X32 in zip(range(0, len(X), 4096), X.chunks(4096, np.float32)):
            n = len(X32)
            X32 *= np.float32(1.0 / X.unit)  # exact: a power of two
            h = X32 @ W1.T  # (n, H)
            h += b1
            np.maximum(h, 0, out=h)  # ReLU: makes no difference larger
            both = h @ W2_both.T  # (n, 2C)
            scores = both[:, :n_classes] + b2  # (n, C)
            err = np.multiply.outer(x_norms[start:start + n], first)  # (n, C)
            err += biases
            err += second * both[:, n_classes:]
            err *= 2.02  # room for the rounding of the bound itself
            best = scores.argmax(axis=1)  # (n,)
            rows = np.arange(n)
            floor = scores[rows, best] - err[rows, best]
            ceiling = scores + err  # the highest each score can be
            ceiling[rows, best] = -np.inf
            unsure = np.flatnonzero(floor <= ceiling.max(axis=1))
            if len(unsure):
                rows64 = X.rows(start + unsure, np.empty((len(unsure), X.shape[1])))
                best[unsure] = self.predict_float64(rows64 * (1.0 / X.unit))
            labels[start:start + n] = best
        return labels

    def predict_float64(self, X):
        """X (N, D) -> predicted labels (N,), in float64, in slices to bound memory.

        X may be a CompactRows (u X, u a power of two), scaled back exactly.
        """
        if isinstance(X, CompactRows):
            slices = (Xc * (1.0 / X.unit) for Xc in X.chunks())
        else:
            slices = (X[i:i + 10000] for i in range(0, len(X), 10000))
        return np.concatenate([self.forward(Xs)[0].argmax(axis=1) for Xs in slices])

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
                    block_size=BLOCK_SIZE["mlp"], first_layer=None, **kwargs):
        """One epoch of per-example SGD over X[order]; returns the mean training loss.

        fast=False is the reference: `update_weight` on each example in turn. The fast path
        takes the examples in blocks of B (see `_walk`); `first_layer`, a `FirstLayerProcess`
        started on the same X, computes the first layer's products in a second process.
        """
        order = np.arange(len(y)) if order is None else np.asarray(order)
        if not fast:
            return float(np.mean([self.update_weight(X[i], y[i], learning_rate) for i in order]))
        upper = self._upper_layers()
        total = 0.0
        if first_layer is not None:
            for P, K, yB, dA, offset in first_layer.epoch(self, y, order, learning_rate):
                total += self._walk(P, K, yB, learning_rate, dA, upper, offset)
        else:
            rows = CompactRows.of(X)
            inv = 1.0 / rows.unit
            buffers = _first_layer_buffers(block_size, self.W[0])
            A0, dA = (np.empty((block_size, len(self.W[0]))) for _ in range(2))  # (B, H)
            blocks = _blocks(rows, y, order, block_size, _lower(block_size), offset=1.0)
            with contextlib.closing(blocks):  # stops its thread, also if this loop fails
                for XB, yB, K in blocks:
                    n = len(yB)
                    _first_layer_forward(XB, self.W[0], self.b[0], inv, out=A0[:n])
                    total += self._walk(A0[:n], K, yB, learning_rate, dA[:n], upper)
                    _first_layer_update(self.W[0], self.b[0], dA[:n], XB, inv, buffers)
        for l in range(1, len(self.W)):
            self.W[l][...] = upper[0][l - 1][:, :-1]
            self.b[l][...] = upper[0][l - 1][:, -1]
        return total / len(order)

    def _upper_layers(self):
        """Working copies of the layers above the first, for `_walk`: each weight matrix with
        its bias as a last column, views of them without it, and their inputs with a 1 appended."""
        Wb = [np.hstack((W, b[:, None])) for W, b in zip(self.W[1:], self.b[1:])]
        return Wb, [W[:, :-1] for W in Wb], [np.ones(W.shape[1] + 1) for W in self.W[1:]]

    @staticmethod
    def _walk(A0, K, yB, lr, dA, upper, offset=0):
        """Per-example SGD over a block for every layer above the first; returns the summed loss.

        The first layer (D x H, the bulk of the work) is never updated example by example.
        With dA (B, H) the gradients at its pre-activations, example k sees
        W_0 - lr sum_{j<k} dA_j x_j^T and b_0 - lr sum_{j<k} dA_j, so its pre-activation is
            (XB W_0^T + b_0)_k - lr sum_{j<k} (x_j.x_k + 1) dA_j = A0_k - (K lr dA)_k,
        with K = strictly-lower(XB XB^T + 1) (B, B). A0 (B, H) comes from one product for the
        block, and so does the caller's update of W_0 from the lr * dA (B, H) this fills in. The
        small layers above (`upper`, see `_upper_layers`) are updated in place, per example.

        With an `offset`, dA holds `offset` rows of earlier examples (the block before, whose
        update A0 lacks: see `FirstLayerProcess`) before this block's, which start at zero, and
        K has a column for each row: example k takes in the whole of K_k lr dA.
        """
        Wb, Wv, hb = upper
        n_up = len(Wb)
        dscores = np.empty((len(Wb[-1]), 1))  # (C, 1) lr * (softmax - onehot), a column
        exp, log = math.exp, math.log
        total = 0.0
        for k, y_k in enumerate(yB.tolist()):
            coupled = K[k] @ dA if offset else K[k, :k] @ dA[:k]  # (H,)
            acts = [A0[k] - coupled]  # pre-activations, layer by layer
            for l in range(n_up):
                np.maximum(acts[l], 0, out=hb[l][:-1])
                acts.append(Wb[l] @ hb[l])
            # the softmax of C scores in plain Python floats: faster than numpy calls on them
            scores = acts[-1].tolist()
            top = max(scores)
            e = [exp(s - top) for s in scores]
            z = sum(e)
            total += log(z) - (scores[y_k] - top)  # cross-entropy, before the step
            step = lr / z
            dout = [v * step for v in e]
            dout[y_k] -= lr
            dscores[:, 0] = dout
            col, dout = dscores, dscores[:, 0]  # (C, 1), (C,)
            for l in reversed(range(n_up)):
                dh = dout @ Wv[l]  # (H,) with the weights before this example's step
                Wb[l] -= col * hb[l]
                dout = np.multiply(dh, acts[l] > 0, out=dA[offset + k] if l == 0 else None)
                col = dout[:, None]
        return total


def _first_layer_forward(XB, W, b, inv, out):
    """out = inv (XB W^T) + b (B, H): the first layer's pre-activations for the rows XB (B, D)
    scaled by 1/inv (a power of two: undone exactly)."""
    np.matmul(XB, W.T, out=out)
    out *= inv
    out += b
    return out


def _first_layer_buffers(B, W):
    """Preallocated buffers for `_first_layer_update` (a preallocated product is much faster)."""
    return np.empty((B, W.shape[0])), np.empty_like(W)  # (B, H), (H, D)


def _first_layer_update(W, b, dA, XB, inv, buffers):
    """W -= inv dA^T XB and b -= the column sums of dA, in place, for the lr dA (B, H) of a
    block of rows XB scaled by 1/inv; dA is left as it is."""
    scaled, update = buffers
    np.subtract(b, dA.sum(axis=0), out=b)
    np.multiply(dA, inv, out=scaled[:len(dA)])  # before the product: (B, H), not (H, D)
    np.subtract(W, np.matmul(scaled[:len(dA)].T, XB, out=update), out=W)


class FirstLayerProcess:
    """The MLP's first layer in a second process, one block ahead of the walk (fork: Linux).

    The walk (`MLP._walk`) is many small numpy calls, which hold the GIL; the first layer's
    products are most of the arithmetic. Here they run in a forked process, on the other core,
    with the first layer's weights, while the walk goes on. For block b the process sends
        P_b = X_b W_{b-1}^T + b_{b-1}   (the first layer before block b-1's update) and
        K_b = [X_b X_{b-1}^T + 1 | strictly-lower(X_b X_b^T + 1)]   (B, 2B),
    and the walk takes in the update P_b lacks, - K_b[:, :B] lr dA_{b-1}, per example. While
    the walk goes through block b, the process applies lr dA_{b-1} and computes P_{b+1}. The
    same arithmetic as in one process, in another order (so equal up to rounding); and as each
    side waits for the other's numbers, the results do not depend on timing.

    Arrays go through shared memory, in 3 slots used in turn (neither side is more than one
    block ahead); short messages through pipes. Start it before other threads (fork copies only
    the calling thread), use it as a context manager, and `epoch` once per epoch. An error in
    the process is raised in the caller; a failed epoch stops the process.
    """
    SLOTS = 3

    def __init__(self, X, hidden_size, block_size=BLOCK_SIZE["mlp"]):
        ctx = multiprocessing.get_context("fork")
        self.rows = CompactRows.of(X)
        n, d = self.rows.shape
        B, H = block_size, hidden_size
        self.block_size = B

        def shared(shape, dtype=np.float64):
            size = int(np.prod(shape))
            raw = ctx.RawArray(ctypes.c_byte, size * np.dtype(dtype).itemsize)
            return np.frombuffer(raw, dtype=dtype, count=size).reshape(shape)

        self.W, self.b, self.order = shared((H, d)), shared((H,)), shared((n,), np.intp)
        self.P, self.K = shared((self.SLOTS, B, H)), shared((self.SLOTS, B, 2 * B))
        self.dA = shared((self.SLOTS, B, H))
        commands, self._send = ctx.Pipe(duplex=False)  # (receive, send) ends
        self._receive, replies = ctx.Pipe(duplex=False)
        self.process = ctx.Process(target=self._serve, args=(commands, replies),
                                   name="hw1-q1 first layer", daemon=True)
        self.process.start()
        commands.close()  # the process's ends
        replies.close()
        self._broken = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        """Stop the process (at once if an epoch was left unfinished)."""
        if self.process.is_alive():
            if self._broken:
                self.process.terminate()
            else:
                with contextlib.suppress(OSError):
                    self._send.send_bytes(b"q")
            self.process.join()
        self._send.close()
        self._receive.close()

    def _reply(self):
        """The process's next message; raises RuntimeError with its traceback if it failed."""
        try:
            message = self._receive.recv_bytes()
        except EOFError:
            raise RuntimeError("the first-layer process stopped unexpectedly") from None
        if message.startswith(b"!"):
            raise RuntimeError(f"the first-layer process failed:\n{message[1:].decode()}")
        return message

    def epoch(self, model, y, order, learning_rate):
        """Yield (P, K, y_B, dA, offset) for each block of X[order], for `MLP._walk`, which
        fills dA's rows from `offset` on (lr times the gradients); they are sent on when the
        next block is asked for. At the end, model.W[0] and b[0] hold the updated first layer."""
        if self._broken or not self.process.is_alive():
            raise RuntimeError("the first-layer process is not running")
        B, n = self.block_size, len(order)
        self.W[...] = model.W[0]
        self.b[...] = model.b[0]
        self.order[:n] = order
        self._send.send_bytes(struct.pack("<qd", n, learning_rate))
        self._broken = True  # until the epoch completes
        dA = np.zeros((2 * B, self.W.shape[0]))  # (2B, H) lr dA of the blocks b-1 and b
        for b, start in enumerate(range(0, n, B)):
            m = min(B, n - start)
            self._reply()
            slot = b % self.SLOTS
            yield self.P[slot, :m], self.K[slot, :m], y[order[start:start + m]], dA, B
            self.dA[slot, :m] = dA[B:B + m]
            self._send.send_bytes(b"d")
            dA[:B] = dA[B:]
            dA[B:] = 0
        self._reply()
        model.W[0][...] = self.W
        model.b[0][...] = self.b
        self._broken = False

    def _serve(self, commands, replies):
        """The process: one `_epoch` per command, until told to quit."""
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops it
        np.seterr(all="ignore")  # a diverging run is the parent's to report
        self._send.close()  # the parent's ends
        self._receive.close()
        try:
            while True:
                message = commands.recv_bytes()
                if message == b"q":
                    return
                n, lr = struct.unpack("<qd", message)
                self._epoch(n, lr, commands, replies)
        except EOFError:  # the parent is gone
            return
        except BaseException:
            with contextlib.suppress(OSError):
                replies.send_bytes(b"!" + traceback.format_exc().encode())

    def _epoch(self, n, lr, commands, replies):
        """The process's side of `epoch`: Gram matrices, the first layer's products and updates."""
        rows, B, W, b = self.rows, self.block_size, self.W, self.b
        inv = 1.0 / rows.unit  # rows come as u X (u a power of two): undone exactly
        X = np.empty((self.SLOTS, B, W.shape[1]))  # (3, B, D) u X of blocks b-1, b, b+1
        X32 = np.empty(X.shape, dtype=np.float32)  # the same in float32, for Gram matrices
        G32 = np.empty((B, 2 * B), dtype=np.float32)
        lower = _lower(B)
        buffers = _first_layer_buffers(B, W)
        starts = range(0, n, B)

        def prepare(i):  # gather block i, its Gram matrices into K
            slot = i % self.SLOTS
            Xi = rows.rows(self.order[starts[i]:starts[i] + B], X[slot])  # (m, D)
            m = len(Xi)
            K = self.K[slot, :m]
            # the products with block i-1 and with itself, exact: float32 unless
            # `_float32_inexact` flags an entry, else float64
            G = G32[:m]  # (m, 2B)
            G[:, B + m:] = 0
            if i == 0:
                G[:, :B] = 0
            if rows.small_integers:
                Xi32 = X32[slot, :m]
                np.copyto(Xi32, Xi)
                if i > 0:
                    np.matmul(Xi32, X32[(i - 1) % self.SLOTS].T, out=G[:, :B])
                np.matmul(Xi32, Xi32.T, out=G[:, B:B + m])
                G[:, B:B + m] *= lower[:m, :m]  # only these are used
            if rows.small_integers and not _float32_inexact(G).any():
                np.copyto(K, G)
            else:
                K[:, :B] = 0 if i == 0 else Xi @ X[(i - 1) % self.SLOTS].T
                np.matmul(Xi, Xi.T, out=K[:, B:B + m])
                K[:, B + m:] = 0
            K[:, :B + m] *= inv * inv
            K[:, :B + m] += 1.0
            K[:, B:B + m] *= lower[:m, :m]
            return Xi

        def forward(i, Xi):  # P_i from the first layer as it now stands
            _first_layer_forward(Xi, W, b, inv, out=self.P[i % self.SLOTS, :len(Xi)])

        def apply(i):  # the update of block i: lr dA_i from the walk (which the parent reads)
            m = min(B, n - starts[i])
            _first_layer_update(W, b, self.dA[i % self.SLOTS, :m], X[i % self.SLOTS, :m], inv,
                                buffers)

        Xi = prepare(0)
        forward(0, Xi)
        replies.send_bytes(b"p")
        for i in range(len(starts)):
            if i + 1 < len(starts):
                Xi = prepare(i + 1)  # before waiting: it needs nothing from the walk
            if i >= 1:
                commands.recv_bytes()  # lr dA_{i-1} is in place
                apply(i - 1)
            if i + 1 < len(starts):
                forward(i + 1, Xi)
                replies.send_bytes(b"p")
        commands.recv_bytes()
        apply(len(starts) - 1)
        replies.send_bytes(b"w")


# ----------------------------------------------------------------------------- training loop

def _parameters(model):
    return [model.W] if isinstance(model, LinearModel) else model.W + model.b


def weight_norm(model):
    """||W||_F of a linear model (None for the MLP); scaled, so huge weights do not overflow."""
    if not isinstance(model, LinearModel):
        return None
    largest = np.abs(model.W).max()
    if largest == 0 or not np.isfinite(largest):
        return float(largest)
    return float(largest * np.linalg.norm(model.W / largest))


def build_model(name, n_classes, n_features, hidden_size=200, layers=1):
    if name == "perceptron":
        return Perceptron(n_classes, n_features)
    if name == "logistic_regression":
        return LogisticRegression(n_classes, n_features)
    return MLP(n_classes, n_features, hidden_size, layers)


@single_threaded_blas()
def train(model_name, data, epochs=20, learning_rate=0.001, l2_penalty=0.0, hidden_size=200,
          layers=1, seed=42, fast=True, verbose=True):
    """The course's training loop; returns the model and the run's record (without `config`).

    `data` is utils.load_dataset's dict. The generator is seeded before the model is built
    (the MLP's initial weights come from it) and before each epoch's permutation. Per epoch the
    record gets train and dev accuracy, the training loss (mean cross-entropy of the epoch's
    examples, each taken before its own step; the L2 term is not included) and ||W||_F for the
    linear models; `diverged` is set, with one warning, once a loss or weight is not finite.
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
    start = clock = time.perf_counter()
    # the fast path trains from 8-bit copies of the rows (same values, exactly)
    train_rows = CompactRows(train_X) if fast else train_X
    # The accuracies are computed from the float64 rows for the linear models (one (C, D) x
    # (D, N) product was faster, 0.065 s vs 0.083 s on the training set, than converting 8-bit
    # slices for it), and from 8-bit copies for the MLP, whose `predict` then checks float32
    # products (0.24 s on the training set, against 0.50 s for float64's)
    if model_name == "mlp":
        splits = [CompactRows.of(train_rows), CompactRows(dev_X), CompactRows(test_X)]
    else:
        splits = [train_X, dev_X, test_X]
    train_eval, dev_eval, test_eval = splits

    def report(epoch, loss, seconds, snapshot, accuracies):
        """Record (and print) a finished epoch: its loss, its seconds of training, and the
        accuracies of its weights."""
        train_acc, valid_acc = accuracies.result()
        finite = all(np.isfinite(w).all() for w in _parameters(snapshot))
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
            record["weight_norm"].append(weight_norm(snapshot))
        if verbose:
            loss_text = "" if loss is None else f" | train loss {loss:.4f}"
            print(f"epoch {epoch:3d}{loss_text} | train acc {train_acc:.4f} | "
                  f"dev acc {valid_acc:.4f} | {seconds:.2f} s", flush=True)

    # Each epoch's train and dev accuracy are computed from a copy of its weights in a second
    # thread, on the other core, while the next epoch trains (numpy's products release the
    # GIL); its line is printed once they are known. Same numbers, one evaluation less to wait
    # for per epoch.
    pending = collections.deque()  # (epoch, loss, seconds, weights, accuracies), not reported
    with contextlib.ExitStack() as stack:
        if fast and model_name == "mlp" and sys.platform == "linux":
            # forked first, before this process has other threads
            kwargs["first_layer"] = stack.enter_context(
                FirstLayerProcess(train_rows, hidden_size))
        evaluator = stack.enter_context(
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="hw1-q1 evaluation"))
        for epoch in range(1, epochs + 1):
            order = order[np.random.permutation(len(train_y))]
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                loss = model.train_epoch(train_rows, train_y, order=order, fast=fast, **kwargs)
            snapshot = copy.deepcopy(model)
            now = time.perf_counter()
            seconds, clock = now - clock, now  # this epoch's training (the first: set-up too)
            accuracies = evaluator.submit(_accuracies, snapshot, (train_eval, train_y),
                                          (dev_eval, dev_y))
            pending.append((epoch, loss, seconds, snapshot, accuracies))
            while pending and pending[0][-1].done():
                report(*pending.popleft())
        with np.errstate(over="ignore", invalid="ignore"):
            test_acc = model.evaluate(test_eval, test_y)  # beside the last epoch's evaluation
        while pending:
            report(*pending.popleft())
    # set-up, training, and the evaluations after the last epoch (the test set's too)
    record["train_seconds"] = time.perf_counter() - start
    record["test_acc"] = test_acc
    return model, record


def _accuracies(model, *splits):
    """The model's accuracy on each (X, y) split."""
    with np.errstate(over="ignore", invalid="ignore"):
        return [model.evaluate(X, y) for X, y in splits]


def figures(record):
    """The run's figures for utils.save_run: accuracy, and loss / weight norm where defined."""
    figs = {"accuracy": ("Accuracy", {"train": record["train_acc"], "dev": record["valid_acc"]})}
    if record["train_loss"] is not None:
        figs["loss"] = ("Training loss", {"train": record["train_loss"]})
    if record["weight_norm"] is not None:
        figs["weight_norm"] = ("||W||_F", {"W": record["weight_norm"]})
    return figs


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", choices=MODELS, help="which model to train")
    utils.add_flag(parser, "epochs", type=utils.positive_int, default=20,
                   help="number of epochs (default: %(default)s)")
    utils.add_flag(parser, "learning_rate", type=utils.positive_float, default=0.001,
                   help="SGD step size for logistic regression and the MLP (default: %(default)s)")
    utils.add_flag(parser, "l2_penalty", type=utils.nonnegative_float, default=0.0,
                   help="logistic regression: adds l2_penalty/2 ||W||^2 to the objective, "
                        "bias column included (default: %(default)s)")
    utils.add_flag(parser, "hidden_size", type=utils.positive_int, default=200,
                   help="MLP: units per hidden layer (default: %(default)s)")
    utils.add_flag(parser, "layers", type=utils.positive_int, default=1,
                   help="MLP: number of hidden layers (default: %(default)s)")
    utils.add_flag(parser, "data_path", default=utils.DEFAULT_DATA_PATH,
                   help="dataset file (default: %(default)s)")
    utils.add_flag(parser, "output_dir", default="results",
                   help="where figures and the JSON record go (default: %(default)s)")
    utils.add_flag(parser, "seed", type=utils.seed_value, default=42,
                   help="random seed (default: %(default)s)")
    utils.add_flag(parser, "impl", choices=("fast", "reference"), default="fast",
                   help="fast: blocked per-example SGD (default); reference: the textbook "
                        "one-example-at-a-time loop. Both compute the same updates.")
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        data = utils.load_dataset(args.data_path, bias=(args.model != "mlp"))
        utils.writable_dir(args.output_dir)  # now, not after training
    except (utils.DataError, utils.OutputError) as err:
        utils.fail(str(err))
    _, record = train(args.model, data, epochs=args.epochs, learning_rate=args.learning_rate,
                      l2_penalty=args.l2_penalty, hidden_size=args.hidden_size,
                      layers=args.layers, seed=args.seed, fast=(args.impl == "fast"))
    print(f"Final test acc: {record['test_acc']:.4f}")
    config = vars(args)
    record = {"model": args.model, "config": config, **record}
    defaults = {key: parser.get_default(key) for key in config}
    name = utils.run_name(f"q1-{args.model}", config, defaults)  # q1-: apart from hw1-q2's
    try:
        paths = utils.save_run(args.output_dir, name, record, figures(record))
    except utils.OutputError as err:
        utils.fail(str(err))
    print(f"Saved {', '.join(str(p) for p in paths)}")
    return record


if __name__ == "__main__":
    utils.run_command(main)
