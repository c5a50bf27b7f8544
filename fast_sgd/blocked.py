"""Per-example SGD in blocks of examples, in numpy: hw1-q1's fast path.

Per-example SGD is sequential: example k is scored with the weights that examples 0..k-1 left.
Most of that work can still be done by a few large products per block of B examples, because
example j's update is rank one, x_j times a C- (or H-) vector, so its effect on a later
example k's scores goes through the single number x_j . x_k:

    scores_k = (X_B W_0^T)_k + sum_{j<k} (x_j . x_k) u_j      (u_j: example j's update vector)

X_B W_0^T is one product per block, the Gram matrix X_B X_B^T another; what is left per
example is arithmetic on B x C or B x H numbers. See README.md beside this file.

Shapes: N examples, D features, H hidden units, C classes, B examples per block.
"""
import contextlib
import math

import numpy as np

try:
    from threadpoolctl import threadpool_limits
except ImportError:  # then BLAS keeps its own thread count
    threadpool_limits = None

MODELS = ("perceptron", "logistic_regression", "mlp")
BLOCK_SIZE = 64


def sgd_epoch(model, params, X, y, order, learning_rate, l2_penalty=0.0, block_size=BLOCK_SIZE):
    """One epoch of per-example updates over X[order], y[order]; the arrays of `params` are
    updated in place. Returns the epoch's mean cross-entropy, each example's taken before its
    step (None for the perceptron).

    model "perceptron": params [W (C, D)], not blocked (see _perceptron_epoch).
    model "logistic_regression": params [W (C, D)], loss -log softmax(W x)_y + l2_penalty/2 ||W||^2.
    model "mlp": params [W_0 (H, D), b_0, ..., W_L (C, H), b_L], ReLU hidden layers.
    """
    if model not in MODELS:
        raise ValueError(f"no blocked SGD for {model!r}; models: {', '.join(MODELS)}")
    order = np.asarray(order)
    if model == "perceptron":
        _perceptron_epoch(params[0], X, y, order)
        return None
    # the products here are small: a second BLAS thread costs more to wake than it saves
    with threadpool_limits(1, user_api="blas") if threadpool_limits else contextlib.nullcontext():
        if model == "logistic_regression":
            total = _logistic_regression_epoch(params[0], X, y, order, learning_rate,
                                               l2_penalty, block_size)
        else:
            total = _mlp_epoch(params[0::2], params[1::2], X, y, order, learning_rate,
                               block_size)
    return total / len(order)


def _strictly_lower(B):
    """(B, B): entry (k, j) is 1 when j < k, else 0: example k sees only earlier updates."""
    return np.tri(B, B, -1)


def _blocks(X, y, order, block_size, coupling, offset=0.0):
    """Yield (X_B (B, D), y_B (B,), K_B (B, B)) for consecutive blocks of X[order], y[order],
    with K_B = coupling[:B, :B] * (X_B X_B^T + offset), elementwise. The last block may be
    shorter."""
    for start in range(0, len(order), block_size):
        rows = order[start:start + block_size]
        X_B = X[rows]
        n = len(rows)
        yield X_B, y[rows], coupling[:n, :n] * (X_B @ X_B.T + offset)


# ----------------------------------------------------------------------------- perceptron

def _perceptron_epoch(W, X, y, order):
    """hw1-q1.py's per-example loop, over X[order] without first copying X into that order.
    On pixel data k/256 every score is exact, so the weights are the reference path's bits."""
    for i in order.tolist():
        x_i = X[i]
        y_hat = (W @ x_i).argmax()
        if y_hat != y[i]:
            W[y[i]] += x_i
            W[y_hat] -= x_i


# ----------------------------------------------------------------------------- logistic regression

def _logistic_regression_epoch(W, X, y, order, lr, l2_penalty, B):
    """Blocked SGD for softmax regression; returns the summed loss. With a = 1 - lr l2 the
    penalty's shrinkage per step and E - P (B, C) the errors (one-hot minus probabilities):

        W_k = a^k W_0 + lr sum_{j<k} a^(k-1-j) (E - P)_j x_j^T
        scores_k = a^k (X_B W_0^T)_k + lr sum_{j<k} a^(k-1-j) G_kj (E - P)_j

    and P = softmax(scores) row by row. P is found by fixed-point sweeps: example k depends only
    on examples j < k, so sweep t fixes example t for good and the sweeps end within B + 1, at
    the per-example result (up to rounding).
    """
    a = np.float64(1.0 - lr * l2_penalty)  # numpy's powers overflow to inf, Python's raise
    k = np.arange(B)
    # coupling (k, j) = lr a^(k-1-j) for j < k: it depends on k - j only, so its top-left corner
    # serves a shorter last block too
    coupling = lr * _strictly_lower(B) * a ** np.maximum(k[:, None] - 1 - k[None, :], 0)
    decay = (a ** k)[:, None]  # (B, 1)
    eye = np.eye(W.shape[0])
    total = 0.0
    for X_B, y_B, K in _blocks(X, y, order, B, coupling):
        n = len(y_B)
        gold = eye[y_B]  # (n, C)
        S0 = X_B @ W.T  # (n, C) the scores with the weights at the block's start
        S0 *= decay[:n]
        # scores = S0 + K (E - P) = T0 - K P; less each row's max of S0 so exp stays in range
        # while the corrections are moderate (else the sweeps shift each row: a large lr)
        T0 = S0 + K @ gold
        T0 -= S0.max(axis=1, keepdims=True)
        P, scores, z = _solve_block(T0, K, _softmax(S0), shift=False)
        if P is None:
            P, scores, z = _solve_block(T0, K, _softmax(S0), shift=True)
        total += np.log(z).sum() - scores[k[:n], y_B].sum()  # log sum exp - gold score
        error = gold - P  # (n, C)
        if a != 1.0:
            error *= (a ** (n - 1 - k[:n]))[:, None]  # the shrinkage still ahead of each update
            W *= a ** n
        W += lr * (error.T @ X_B)
    return total


def _softmax(scores):
    """(n, C) -> row-wise softmax (n, C)."""
    z = np.exp(scores - scores.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def _solve_block(T0, K, P, shift):
    """Sweep P <- softmax(T0 - K P) until P no longer changes (at most B + 1 sweeps).

    Returns P, the scores T0 - K P (less each row's max if `shift`) and their row sums of exp;
    (None, None, None) if, without `shift`, exp overflowed and the sweeps did not settle.
    """
    for _ in range(len(T0) + 1):
        scores = T0 - K @ P  # (n, C)
        if shift:
            scores -= scores.max(axis=1, keepdims=True)
        new = np.exp(scores)
        z = new.sum(axis=1)  # (n,)
        new /= z[:, None]
        if (new == P).all():
            return P, scores, z
        P = new
    if not shift and not np.isfinite(P).all():
        return None, None, None
    return P, scores, z  # only a diverged run gets here


# ----------------------------------------------------------------------------- MLP

def _mlp_epoch(Ws, bs, X, y, order, lr, B):
    """Blocked SGD for the ReLU MLP; returns the summed loss.

    The first layer (H x D, most of the arithmetic) is never updated example by example. With
    lr dA (B, H) its pre-activation gradients, example k sees W_0 - sum_{j<k} lr dA_j x_j^T and
    b_0 - sum_{j<k} lr dA_j, so its pre-activations are

        (X_B W_0^T + b_0)_k - sum_{j<k} (x_j . x_k + 1) lr dA_j = A0_k - (K lr dA)_k

    with K = strictly-lower(X_B X_B^T + 1). A0 is one product per block, and so is the first
    layer's update from lr dA. The small layers above are walked example by example.
    """
    W0, b0 = Ws[0], bs[0]
    # the upper layers with their bias as a last column, so each is one product per example
    upper = [np.hstack((W, b[:, None])) for W, b in zip(Ws[1:], bs[1:])]
    total = 0.0
    for X_B, y_B, K in _blocks(X, y, order, B, _strictly_lower(B), offset=1.0):
        A0 = X_B @ W0.T  # (n, H)
        A0 += b0
        dA = np.empty_like(A0)  # (n, H) lr times the first layer's pre-activation gradients
        total += _walk(A0, K, y_B, lr, dA, upper)
        b0 -= dA.sum(axis=0)
        W0 -= dA.T @ X_B
    for W, b, Wb in zip(Ws[1:], bs[1:], upper):
        W[...] = Wb[:, :-1]
        b[...] = Wb[:, -1]
    return total


def _walk(A0, K, y_B, lr, dA, upper):
    """Per-example SGD through a block for the layers above the first; fills dA (n, H) with lr
    times each example's first-layer pre-activation gradient and updates `upper` in place.
    Returns the block's summed loss."""
    hidden_in = [np.ones(Wb.shape[1]) for Wb in upper]  # each layer's input, with a 1 for the bias
    total = 0.0
    for k, y_k in enumerate(y_B.tolist()):
        preacts = [A0[k] - K[k, :k] @ dA[:k]]  # (H,) the first layer's, after examples < k
        for l, Wb in enumerate(upper):
            np.maximum(preacts[l], 0, out=hidden_in[l][:-1])
            preacts.append(Wb @ hidden_in[l])
        shifted = preacts[-1] - preacts[-1].max()  # (C,)
        exp = np.exp(shifted)
        z = exp.sum()
        total += math.log(z) - shifted[y_k]
        dscores = exp / z  # softmax - onehot, times lr
        dscores[y_k] -= 1
        dscores *= lr
        column = dscores[:, None]  # (C, 1)
        for l in reversed(range(len(upper))):
            Wb = upper[l]
            dhidden = column[:, 0] @ Wb[:, :-1]  # (H,) with the weights before this step
            Wb -= column * hidden_in[l]
            gradient = np.multiply(dhidden, preacts[l] > 0, out=dA[k] if l == 0 else None)
            column = gradient[:, None]
    return total
