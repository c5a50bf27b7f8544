"""Question 3, the pen-and-paper question, verified on numbers.

    python hw1-q3.py                      # check every claim, one line each, then a summary
    python hw1-q3.py -claim q3.3          # only the claims whose name contains "q3.3"
    python hw1-q3.py -seed 7 -interval -1 1 -output_dir results/

Every claim of the proofs is checked numerically and printed as one line: PASS or FAIL, the measured
error and its threshold. The exit status is 1 if any claim fails. No dataset is needed.

2022-23 (this edition): a one-hidden-layer network with the quadratic activation g(z) = z^2,
    y_hat = v^T g(W x),   W: (K, D), v: (K,),
is linear in a fixed feature map: h = A_Theta phi(x) and y_hat = c_Theta^T phi(x), with
phi(x) in R^{D(D+1)/2}. The other editions' versions of the question are checked in the same style:
2024-25 (g(z) = z(1 - z) with biases), 2023-24 (the Boolean interval function, sign and ReLU MLPs)
and 2021-22 (the derivatives that backpropagation uses).

Shapes: D input dimension, K hidden units, N examples, M = D(D+1)/2 features, C classes.
Each claim draws from its own generator, seeded by (seed, claim name), so a filtered run prints
the same numbers as the full run.
"""
import argparse
import sys
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import utils
from runkit import errors, files, flags

FD_STEP = 1e-5          # centred finite differences in float64
FD_TOL = 1e-6           # relative error allowed between an analytic derivative and its FD estimate
EXACT_TOL = 1e-10       # identities that hold exactly up to rounding
PSD_TOL = -1e-12        # smallest eigenvalue allowed for a positive semi-definite matrix
MAX_BOOLEAN_D = 10


# ----------------------------------------------------------------------------- results, registry

@dataclass
class Result:
    """One claim's outcome: `quantity` was measured as `error` and compared with `threshold`."""
    name: str
    description: str
    quantity: str
    error: float
    threshold: float
    passed: bool
    relation: str = "<"
    notes: str = ""

    def line(self, width=0):
        status = "PASS" if self.passed else "FAIL"
        if np.isnan(self.threshold):  # the claim crashed before measuring anything
            return f"{status}  {self.name:<{width}}  {self.quantity}"
        text = (f"{status}  {self.name:<{width}}  {self.quantity} = {_fmt(self.error)} "
                f"({self.relation} {_fmt(self.threshold, 0)})")
        return f"{text}; {self.notes}" if self.notes else text


def _fmt(x, digits=1):
    """Counts as integers, everything else in scientific notation."""
    if isinstance(x, (int, np.integer)):
        return f"{int(x):,}"
    return f"{x:.{digits}e}"


_COMPARE = {"<": lambda e, t: e < t, ">=": lambda e, t: e >= t, "=": lambda e, t: e == t}


CLAIMS = {}  # name -> (function, description), in the order of the question


def claim(name, description):
    """Register `fn(rng, **overrides) -> Result` under `name`; the overrides let tests break it."""
    def register(fn):
        CLAIMS[name] = (fn, description)
        fn.claim_name = name
        return fn
    return register


def _result(fn, quantity, error, threshold, relation="<", ok=True, notes=""):
    """Build the Result of claim `fn`: passed iff `error relation threshold` and every extra check.

    A NaN error fails every relation (NaN comparisons are False).
    """
    name = fn.claim_name
    passed = bool(_COMPARE[relation](error, threshold) and ok)
    return Result(name, CLAIMS[name][1], quantity, error, threshold, passed, relation, notes)


def claim_rng(seed, name):
    """The generator of one claim: the same numbers whether it runs alone or with the others."""
    return np.random.default_rng([seed, zlib.crc32(name.encode())])


def rel_error(a, b, eps=1e-12):
    """||a - b|| / (||a|| + ||b|| + eps): the usual gradient-check error, scale free."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.linalg.norm(a - b) / (np.linalg.norm(a) + np.linalg.norm(b) + eps))


# ----------------------------------------------------------------------------- 2022-23: g(z) = z^2

def phi(x):
    """phi(x) = (x_1^2, ..., x_D^2, 2 x_i x_j for i < j): (..., D) -> (..., M), M = D(D+1)/2.

    Pairs (i, j) come in np.triu_indices order: (0, 1), (0, 2), ..., (1, 2), ...
    """
    x = np.asarray(x, dtype=float)
    i, j = np.triu_indices(x.shape[-1], k=1)
    return np.concatenate([x ** 2, 2 * x[..., i] * x[..., j]], axis=-1)


def A_theta(W):
    """Rows a_k = (w_k1^2, ..., w_kD^2, w_ki w_kj for i < j), so (w_k^T x)^2 = a_k^T phi(x).

    (w^T x)^2 = sum_i w_i^2 x_i^2 + sum_{i<j} w_i w_j (2 x_i x_j).  W: (K, D) -> (K, M).
    """
    W = np.asarray(W, dtype=float)
    i, j = np.triu_indices(W.shape[1], k=1)
    return np.concatenate([W ** 2, W[:, i] * W[:, j]], axis=1)


def hidden(W, X):
    """h = g(W x) with g(z) = z^2, for each row of X: (N, D) -> (N, K)."""
    return (np.asarray(X, float) @ np.asarray(W, float).T) ** 2


def predict(W, v, X):
    """y_hat = v^T g(W x), for each row of X: (N,)."""
    return hidden(W, X) @ v


def vech(C):
    """(C_11, ..., C_DD, C_ij for i < j) of a symmetric (D, D) matrix: the layout of phi."""
    i, j = np.triu_indices(C.shape[0], k=1)
    return np.concatenate([np.diag(C), C[i, j]])


def unvech(c):
    """The symmetric (D, D) matrix C with vech(C) = c, so that c^T phi(x) = x^T C x."""
    c = np.asarray(c, dtype=float)
    D = int(round((np.sqrt(8 * len(c) + 1) - 1) / 2))
    if D * (D + 1) // 2 != len(c):
        raise ValueError(f"a vector of length {len(c)} is not D(D+1)/2 for any D")
    C = np.diag(c[:D])
    i, j = np.triu_indices(D, k=1)
    C[i, j] = C[j, i] = c[D:]
    return C


def c_theta(W, v):
    """c_Theta = vech(W^T diag(v) W), the matrix form of A_Theta^T v (checked in q3.2).

    y_hat = sum_k v_k (w_k^T x)^2 = x^T (W^T diag(v) W) x, and x^T C x = vech(C)^T phi(x).
    """
    W = np.asarray(W, dtype=float)
    return vech(W.T @ (np.asarray(v, float)[:, None] * W))


def recover_theta(c, K):
    """A Theta = (W, v) with K hidden units and c_Theta = c; needs K >= D.

    C = unvech(c) = Q Lambda Q^T;  W = Q^T padded with zero rows to (K, D), v = eigenvalues padded
    with zeros, so W^T diag(v) W = Q Lambda Q^T = C.
    """
    C = unvech(c)
    D = C.shape[0]
    if K < D:
        raise ValueError(f"K = {K} < D = {D}: W^T diag(v) W has rank <= K, so no Theta in general")
    lam, Q = np.linalg.eigh(C)
    W, v = np.zeros((K, D)), np.zeros(K)
    W[:D], v[:D] = Q.T, lam
    return W, v


def squared_loss(W, v, X, y):
    """L(Theta) = 1/(2N) sum_n (y_hat_n - y_n)^2 and its gradients (dL/dW: (K, D), dL/dv: (K,))."""
    Z = X @ W.T                               # (N, K) pre-activations
    r = ((Z ** 2) @ v - y) / len(y)           # (N,) residuals / N
    loss = 0.5 * len(y) * float(r @ r)
    grad_v = (Z ** 2).T @ r
    grad_W = 2 * (Z * r[:, None] * v).T @ X   # d(v_k z_k^2)/dw_k = 2 v_k z_k x
    return loss, (grad_W, grad_v)


def features_loss(c, Phi, y):
    """L(c) = 1/(2N) ||Phi c - y||^2, convex in c."""
    r = Phi @ c - y
    return 0.5 * float(r @ r) / len(y)


def closed_form(Phi, y):
    """c_hat = Phi^+ y, the least-squares solution; unique when Phi (N, M) has full column rank."""
    return np.linalg.pinv(Phi) @ y


def matrix_fit_loss(W, v, C):
    """f(Theta) = ||W^T diag(v) W - C||_F^2 and its gradients: 4 diag(v) W R and 2 diag(W R W^T)."""
    R = W.T @ (v[:, None] * W) - C            # (D, D), symmetric
    return float(np.sum(R ** 2)), (4 * v[:, None] * (W @ R), 2 * np.einsum("ki,ij,kj->k", W, R, W))


def gradient_descent(loss_and_grads, params, steps, lr=0.1):
    """Gradient descent with Armijo backtracking: never diverges, whatever the scale of the loss.

    loss_and_grads(*params) -> (loss, grads). Returns (params, loss) after `steps` accepted steps
    (or earlier, once the step size underflows at a stationary point).
    """
    loss, grads = loss_and_grads(*params)
    for _ in range(steps):
        norm2 = sum(float(np.sum(g ** 2)) for g in grads)
        while True:
            trial = [p - lr * g for p, g in zip(params, grads)]
            trial_loss, trial_grads = loss_and_grads(*trial)
            if trial_loss <= loss - 0.5 * lr * norm2:
                break
            lr *= 0.5
            if lr < 1e-30:
                return params, loss
        params, loss, grads = trial, trial_loss, trial_grads
        lr *= 2  # let the step grow back after a cut
    return params, loss


SHAPES = [(1, 1), (2, 3), (3, 2), (5, 4), (8, 8)]  # (K, D)


@claim("q3.1-feature-map", "h = g(W x) = A_Theta phi(x), with phi independent of Theta")
def check_feature_map(rng, feature_map=phi, build_A=A_theta, n=50):
    err = 0.0
    for K, D in SHAPES:
        W, X = rng.normal(size=(K, D)), rng.normal(size=(n, D))
        F = feature_map(X)
        ok_shape = F.shape == (n, D * (D + 1) // 2)
        gap = np.max(np.abs(hidden(W, X) - F @ build_A(W).T)) if ok_shape else np.inf
        err = max(err, float(gap))
    return _result(check_feature_map, "max|h - A φ|", err, EXACT_TOL,
                   notes=f"(K, D) in {SHAPES}, {n} inputs each")


@claim("q3.2-linear-in-features", "c_Theta = A_Theta^T v and y_hat = c_Theta^T phi(x)")
def check_linear_in_features(rng, coefficients=c_theta, n=50):
    err_c = err_y = 0.0
    for K, D in SHAPES:
        W, v, X = rng.normal(size=(K, D)), rng.normal(size=K), rng.normal(size=(n, D))
        c = coefficients(W, v)
        err_c = max(err_c, float(np.max(np.abs(c - A_theta(W).T @ v))))
        err_y = max(err_y, float(np.max(np.abs(predict(W, v, X) - phi(X) @ c))))
    return _result(check_linear_in_features, "max|ŷ - c_Θᵀ φ|", err_y, EXACT_TOL,
                   ok=err_c < EXACT_TOL, notes=f"max|c_Θ - A_Θᵀ v| = {err_c:.1e}")


@claim("q3.3-surjective-k-ge-d", "K >= D: every c is c_Theta for some Theta (eigendecomposition)")
def check_surjective(rng, recover=recover_theta):
    shapes = [(1, 1), (2, 2), (3, 2), (4, 3), (6, 4), (8, 8)]
    err = 0.0
    for K, D in shapes:
        c = rng.normal(size=D * (D + 1) // 2)
        W, v = recover(c, K)
        ok_shape = W.shape == (K, D) and v.shape == (K,)
        # A_Theta^T v is the feature-map definition, independent of the vech route to W, v
        err = max(err, float(np.max(np.abs(A_theta(W).T @ v - c))) if ok_shape else np.inf)
    return _result(check_surjective, "max|c_Θ - c|", err, EXACT_TOL,
                   notes=f"random c, (K, D) in {shapes}")


def _identity_target(rng, D):
    return np.eye(D)


def _random_target(rng, D):
    """A random symmetric matrix with eigenvalues of both signs, |lambda| >= 0.5: full rank."""
    Q, _ = np.linalg.qr(rng.normal(size=(D, D)))
    lam = rng.choice([-1, 1], size=D) * rng.uniform(0.5, 2, size=D)
    return (Q * lam) @ Q.T


@claim("q3.3-rank-limit-k-lt-d",
       "K < D: rank(W^T diag(v) W) <= K, so no Theta reaches a c whose C has rank > K")
def check_rank_limit(rng, targets=(_identity_target, _random_target), starts=3, steps=200):
    shapes = [(1, 2), (2, 3), (3, 5)]
    worst_rank = 0.0   # max sigma_{K+1}(C_Theta) / sigma_1(C_Theta) over random Theta
    ranks_ok = True    # every target has rank > K
    worst_gap = np.inf  # min over GD runs of (distance reached) / (Eckart-Young bound) - 1
    for K, D in shapes:
        for _ in range(20):
            W, v = rng.normal(size=(K, D)), rng.normal(size=K)
            s = np.linalg.svd(unvech(c_theta(W, v)), compute_uv=False)
            worst_rank = max(worst_rank, s[K] / s[0])
        for target in targets:
            C = target(rng, D)
            s = np.linalg.svd(C, compute_uv=False)
            ranks_ok &= bool(np.linalg.matrix_rank(C) > K)
            # Eckart-Young: no matrix of rank <= K is closer to C than this, symmetric or not.
            bound = float(np.sqrt(np.sum(s[K:] ** 2)))
            if bound <= 1e-12 * s[0]:   # C itself has rank <= K: reachable, nothing to show
                worst_gap = -np.inf
                continue
            for _ in range(starts):
                start = [rng.normal(size=(K, D)), rng.normal(size=K)]
                _, f = gradient_descent(lambda W, v: matrix_fit_loss(W, v, C), start, steps)
                worst_gap = min(worst_gap, np.sqrt(f) / bound - 1)
    ok = ranks_ok and worst_gap >= -1e-9
    return _result(check_rank_limit, "max σ_{K+1}(C_Θ)/σ_1", worst_rank, 1e-12, ok=ok,
                   notes=f"targets I_D and a random C have rank D > K: {ranks_ok}; "
                         f"GD on ‖C_Θ - C‖_F from {starts} starts: min distance/Eckart–Young "
                         f"bound - 1 = {worst_gap:.1e} (≥ -1e-9)")


def _regression_data(rng, D=3, n=40):
    """N = 40 > M = 6 Gaussian inputs; a quadratic target plus noise, so the minimum loss is > 0."""
    X = rng.normal(size=(n, D))
    y = phi(X) @ rng.normal(size=D * (D + 1) // 2) + 0.5 * rng.normal(size=n)
    return X, y


@claim("q3.4-closed-form-minimum",
       "c_hat = Phi^+ y is the global minimiser: gradient descent on Theta never gets lower")
def check_closed_form(rng, solve=closed_form, hidden_sizes=(1, 2, 3, 5), starts=3, steps=300):
    X, y = _regression_data(rng)
    Phi = phi(X)
    c_hat = solve(Phi, y)
    best = features_loss(c_hat, Phi, y)
    full_rank = bool(np.linalg.matrix_rank(Phi) == Phi.shape[1])
    # The gradient Phi^T (Phi c - y) / N vanishes at the minimiser of the convex loss.
    stationarity = float(np.max(np.abs(Phi.T @ (Phi @ c_hat - y)))) / len(y)
    D = X.shape[1]
    gaps = {True: [], False: []}   # K >= D -> L_GD - L(c_hat) of each run
    for K in hidden_sizes:
        for _ in range(starts):
            start = [0.5 * rng.normal(size=(K, D)), rng.normal(size=K)]
            _, loss = gradient_descent(lambda W, v: squared_loss(W, v, X, y), start, steps)
            gaps[K >= D].append(loss - best)
    worst = min(gaps[True] + gaps[False])
    # The loss is not convex in Theta: some runs stall at a stationary point above the minimum.
    reached = sum(g < 1e-6 for g in gaps[True])
    tol = 1e-10 * max(1.0, best)
    return _result(check_closed_form, "min(L_GD - L(ĉ))", worst, -tol, relation=">=",
                   ok=full_rank and stationarity < EXACT_TOL,
                   notes=f"L(ĉ) = {best:.4f}, Φ full column rank: {full_rank}, "
                         f"|∇L(ĉ)| = {stationarity:.1e}; K ≥ D: {reached}/{len(gaps[True])} GD "
                         f"runs reach L(ĉ) (within 1e-6); K < D: best gap "
                         f"{min(gaps[False], default=np.nan):.1e}")


@claim("q3.4-recover-minimiser",
       "K >= D: recover a Theta whose loss equals the closed-form minimum")
def check_recover_minimiser(rng, recover=recover_theta, hidden_sizes=(3, 4, 6)):
    X, y = _regression_data(rng)
    Phi = phi(X)
    c_hat = closed_form(Phi, y)
    best = features_loss(c_hat, Phi, y)
    err = 0.0
    for K in hidden_sizes:
        W, v = recover(c_hat, K)
        err = max(err, abs(squared_loss(W, v, X, y)[0] - best) / max(1.0, best))
    return _result(check_recover_minimiser, "max|L(Θ) - L(ĉ)|/max(1, L(ĉ))", err, EXACT_TOL,
                   notes=f"L(ĉ) = {best:.4f}, K in {list(hidden_sizes)}, D = {X.shape[1]}")


# ------------------------------------------------------------------------ 2024-25: g(z) = z(1-z)

def phi_bias(x):
    """phi(x) = (1, x_1, ..., x_D, phi_quadratic(x)): (..., D) -> (..., (D+1)(D+2)/2)."""
    x = np.asarray(x, dtype=float)
    return np.concatenate([np.ones(x.shape[:-1] + (1,)), x, phi(x)], axis=-1)


def A_theta_bias(W, b):
    """Rows a_k = (b_k - b_k^2, (1 - 2 b_k) w_k, -A_Theta(w_k)) for g(z) = z(1 - z).

    z = w^T x + b:  z - z^2 = (b - b^2) + (1 - 2b) w^T x - (w^T x)^2.  W: (K, D), b: (K,).
    """
    W, b = np.asarray(W, float), np.asarray(b, float)
    return np.concatenate([(b - b ** 2)[:, None], (1 - 2 * b)[:, None] * W, -A_theta(W)], axis=1)


def hidden_bias(W, b, X):
    """h = g(W x + b) with g(z) = z(1 - z): (N, D) -> (N, K)."""
    Z = np.asarray(X, float) @ np.asarray(W, float).T + b
    return Z * (1 - Z)


def c_theta_bias(W, b, v, v0):
    """c_Theta = A_Theta^T v + v0 e_1: the output bias lands on the constant feature."""
    c = A_theta_bias(W, b).T @ v
    c[0] += v0
    return c


@claim("2024-25-feature-map", "g(z) = z(1-z) with biases: h = g(W x + b) = A_Theta phi(x)")
def check_bias_feature_map(rng, feature_map=phi_bias, build_A=A_theta_bias, n=50):
    err = 0.0
    for K, D in SHAPES:
        W, b, X = rng.normal(size=(K, D)), rng.normal(size=K), rng.normal(size=(n, D))
        F = feature_map(X)
        ok_shape = F.shape == (n, (D + 1) * (D + 2) // 2)
        err = max(err, float(np.max(np.abs(hidden_bias(W, b, X) - F @ build_A(W, b).T)))
                  if ok_shape else np.inf)
    return _result(check_bias_feature_map, "max|h - A φ|", err, EXACT_TOL,
                   notes="φ = (1, x, quadratic), size (D+1)(D+2)/2")


@claim("2024-25-output", "y_hat = v^T g(W x + b) + v0 = c_Theta^T phi(x)")
def check_bias_output(rng, coefficients=c_theta_bias, n=50):
    err = 0.0
    for K, D in SHAPES:
        W, b, v, v0 = rng.normal(size=(K, D)), rng.normal(size=K), rng.normal(size=K), rng.normal()
        X = rng.normal(size=(n, D))
        y_hat = hidden_bias(W, b, X) @ v + v0
        err = max(err, float(np.max(np.abs(y_hat - phi_bias(X) @ coefficients(W, b, v, v0)))))
    return _result(check_bias_output, "max|ŷ - c_Θᵀ φ|", err, EXACT_TOL,
                   notes="with the output bias v₀")


# ---------------------------------------------------------------------- 2023-24: Boolean interval

def cube(D):
    """All 2^D vertices of {-1, +1}^D: (2^D, D) int64."""
    bits = (np.arange(2 ** D)[:, None] >> np.arange(D)) & 1
    return 2 * bits - 1


def interval_target(X, A, B):
    """f(x) = +1 iff A <= sum_i x_i <= B, else -1."""
    s = np.asarray(X).sum(axis=-1)
    return np.where((A <= s) & (s <= B), 1, -1)


def sign_mlp(D, A, B):
    """(W1, b1, w2, b2), integer weights of a 2-hidden-unit MLP with sign activations computing f.

    h1 = sign(2 sum x - 2A + 1)    (+1 iff sum x >= A),
    h2 = sign(-2 sum x + 2B + 1)   (+1 iff sum x <= B),
    f  = sign(h1 + h2 - 1)         (+1 iff both are +1).
    sum x is an integer, so the hidden pre-activations are odd integers and h1 + h2 - 1 is in
    {1, -1, -3}: sign never sees 0. The hyperplanes are sum x = A - 1/2 and sum x = B + 1/2.
    """
    ones = np.ones(D, dtype=np.int64)
    return np.stack([2 * ones, -2 * ones]), np.array([1 - 2 * A, 2 * B + 1]), np.array([1, 1]), -1


def relu_mlp(D, A, B):
    """(W1, b1, w2, b2), integer weights of a 2-hidden-unit MLP with ReLU activations computing f.

    h1 = relu(A - sum x)  (> 0 iff sum x < A),   h2 = relu(sum x - B)  (> 0 iff sum x > B),
    f  = sign(1 - 2 h1 - 2 h2).
    On the cube, h1 and h2 are integers and at most one is non-zero, so the output pre-activation is
    1 inside [A, B] and an odd integer <= -1 outside: sign never sees 0. Its zero set is
    sum x = A - 1/2 and sum x = B + 1/2, the same decision boundary as sign_mlp.
    """
    ones = np.ones(D, dtype=np.int64)
    return np.stack([-ones, ones]), np.array([A, -B]), np.array([-2, -2]), 1


ACTIVATIONS = {"sign": np.sign, "relu": lambda z: np.maximum(z, 0)}


def _stack_nets(build, D):
    """Every integer pair -D <= A <= B <= D and the nets `build(D, A, B)`, stacked along axis 0."""
    pairs = [(A, B) for A in range(-D, D + 1) for B in range(A, D + 1)]
    nets = [build(D, A, B) for A, B in pairs]
    return np.array(pairs), [np.array([net[i] for net in nets]) for i in range(4)]


def mlp_forward(nets, X, activation):
    """Outputs of P stacked nets on the rows of X: (P, N).

    Also the pre-activations that a sign function sees: the output's (P, N), and with sign
    activations the hidden layer's (P, N, 2) too.
    """
    W1, b1, w2, b2 = nets                      # (P, 2, D), (P, 2), (P, 2), (P,)
    pre = np.einsum("pkd,nd->pnk", W1, X) + b1[:, None, :]
    out = np.einsum("pnk,pk->pn", ACTIVATIONS[activation](pre), w2) + b2[:, None]
    signed = [out, pre] if activation == "sign" else [out]
    return np.sign(out), signed


def _check_mlp(fn, build, activation):
    mismatches = total = 0
    integer = two_hidden = True
    smallest = np.inf  # min |argument of a sign|: >= 1 means sign never sees 0, even rounded
    for D in range(1, MAX_BOOLEAN_D + 1):
        pairs, nets = _stack_nets(build, D)
        X = cube(D)
        y, signed = mlp_forward(nets, X, activation)
        target = interval_target(X[None], pairs[:, :1], pairs[:, 1:])
        mismatches += int(np.sum(y != target))
        total += y.size
        smallest = min([smallest] + [float(np.min(np.abs(a))) for a in signed])
        integer &= all(np.issubdtype(np.asarray(a).dtype, np.integer) for a in nets)
        two_hidden &= nets[0].shape[1] == 2
    where = "output" if activation == "relu" else "hidden and output"
    return _result(fn, "mismatches", mismatches, 0, relation="=",
                   ok=integer and two_hidden and smallest > 0,
                   notes=f"{total:,} (D, A, B, x) with D ≤ {MAX_BOOLEAN_D}; integer weights: "
                         f"{integer}; 2 hidden units: {two_hidden}; min|sign argument| "
                         f"({where}) = {smallest:g}")


@claim("2023-24-sign-mlp",
       "2 hidden sign units with integer weights compute f(x) = [A <= sum x <= B]")
def check_sign_mlp(rng, build=sign_mlp):
    return _check_mlp(check_sign_mlp, build, "sign")


@claim("2023-24-relu-mlp",
       "2 hidden ReLU units with integer weights compute f(x) = [A <= sum x <= B]")
def check_relu_mlp(rng, build=relu_mlp):
    return _check_mlp(check_relu_mlp, build, "relu")


def hidden_distances(nets, X):
    """Distance of each input to each hidden hyperplane w_k^T x + b_k = 0: (P, N, 2)."""
    W1, b1 = nets[0].astype(float), nets[1].astype(float)
    pre = np.einsum("pkd,nd->pnk", W1, X) + b1[:, None, :]
    return np.abs(pre) / np.linalg.norm(W1, axis=2)[:, None, :], pre


def robustness_margin(nets, X):
    """min over inputs and hidden hyperplanes of the distance: (P,), one margin per net.

    With sign activations the output is a function of the hidden signs, so no perturbation with
    ||delta||_2 below this distance can change it. For sign_mlp it is 1/(2 sqrt(D)).
    """
    return hidden_distances(nets, X)[0].min(axis=(1, 2))


@claim("2023-24-robustness",
       "no perturbation with ||delta|| < margin = 1/(2 sqrt D) changes the output; "
       "1.001 x margin can")
def check_robustness(rng, margin_fn=robustness_margin, directions=3, max_d=MAX_BOOLEAN_D):
    changed = tried = 0
    flips_everywhere = exact = True
    for D in range(1, max_d + 1):
        pairs, nets = _stack_nets(sign_mlp, D)
        relu_nets = _stack_nets(relu_mlp, D)[1]
        X = cube(D).astype(float)
        margin = margin_fn(nets, X)                                   # (P,)
        exact &= bool(np.allclose(margin, 1 / (2 * np.sqrt(D)), rtol=1e-12))
        clean = [mlp_forward(nets, X, "sign")[0], mlp_forward(relu_nets, X, "relu")[0]]

        def outputs(Xp):  # Xp: (P, N, D) perturbed inputs, one set per net
            W1, b1, w2, b2 = nets
            s = np.sign(Xp @ W1.transpose(0, 2, 1) + b1[:, None, :])              # (P, N, 2)
            rW1, rb1, rw2, rb2 = relu_nets
            r = np.maximum(Xp @ rW1.transpose(0, 2, 1) + rb1[:, None, :], 0)
            return [np.sign((s @ w2[:, :, None])[..., 0] + b2[:, None]),
                    np.sign((r @ rw2[:, :, None])[..., 0] + rb2[:, None])]

        def count(Xp):
            return sum(int(np.sum(o != c)) for o, c in zip(outputs(Xp), clean))

        # Random directions at 0.999 x margin.
        for _ in range(directions):
            u = rng.normal(size=(len(pairs), len(X), D))
            u /= np.linalg.norm(u, axis=2, keepdims=True)
            changed += count(X[None] + 0.999 * margin[:, None, None] * u)
            tried += 2 * u.shape[0] * u.shape[1]
        # The worst case: straight towards each input's nearest hyperplane, 0.999 x its distance.
        dist, pre = hidden_distances(nets, X)
        k = dist.argmin(axis=2)                                       # (P, N) nearest hyperplane
        W1 = nets[0].astype(float)
        normal = np.take_along_axis(W1[:, None, :, :], k[:, :, None, None], axis=2)[:, :, 0, :]
        normal /= np.linalg.norm(normal, axis=2, keepdims=True)
        side = np.sign(np.take_along_axis(pre, k[:, :, None], axis=2))  # (P, N, 1)
        towards = -side * normal                                      # (P, N, D)
        nearest = dist.min(axis=2)[:, :, None]
        changed += count(X[None] + 0.999 * nearest * towards)
        tried += 2 * towards.shape[0] * towards.shape[1]
        # Just above the margin, some input of every (A, B) changes its output.
        beyond = outputs(X[None] + 1.001 * margin[:, None, None] * towards)
        flipped = [o != c for o, c in zip(beyond, clean)]
        flips_everywhere &= bool(all(f.any(axis=1).all() for f in flipped))
    return _result(check_robustness, "outputs changed below the margin", changed, 0, relation="=",
                   ok=exact and flips_everywhere,
                   notes=f"{tried:,} perturbations of sign and ReLU nets, D ≤ {max_d}; margin = "
                         f"1/(2√D): {exact}; 1.001×margin flips an output for every (D, A, B): "
                         f"{flips_everywhere}")


def _affine(w, b):
    """'2x₁ + 2x₂ + 1' for w = (2, 2), b = 1."""
    text = ""
    for coef, var in zip((*w, b), ("x₁", "x₂", "")):
        if text:
            text += f" {'-' if coef < 0 else '+'} {abs(coef)}{var}"
        else:
            text = f"{'-' if coef < 0 else ''}{abs(coef)}{var}"
    return text


def plot_interval(output_dir, A=0, B=0):
    """Figure for D = 2: the 4 inputs coloured by f, the two hidden hyperplanes, the margin circles.

    Saves q3-2023-24-interval-D2-A=..-B=...pdf/.png in output_dir (atomically); returns the paths.
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    X = cube(2)
    W1, b1, _, _ = sign_mlp(2, A, B)
    y = mlp_forward([np.asarray(a)[None] for a in sign_mlp(2, A, B)], X, "sign")[0][0]
    margin = robustness_margin([W1[None], b1[None]], X.astype(float))[0]
    fig, ax = plt.subplots(figsize=(5, 6.2))
    t = np.linspace(-2, 2, 2)
    ax.fill_between(t, A - 0.5 - t, B + 0.5 - t, color="tab:blue", alpha=0.08,
                    label="decision region f = +1")
    for k, style in enumerate(("-", "--")):
        w, b = W1[k], b1[k]   # w1 x1 + w2 x2 + b = 0  ->  x2 = -(w1 x1 + b) / w2
        ax.plot(t, -(w[0] * t + b) / w[1], "k", linestyle=style,
                label=f"h{k + 1}: {_affine(w, b)} = 0")
    for label, colour, marker in ((1, "tab:blue", "o"), (-1, "tab:red", "s")):
        pts = X[y == label]
        ax.scatter(pts[:, 0], pts[:, 1], s=90, c=colour, marker=marker, zorder=3,
                   label=f"f(x) = {label:+d}")
    for x in X:
        ax.add_patch(plt.Circle(x, margin, fill=False, color="gray", linestyle=":"))
    ax.plot([], [], color="gray", linestyle=":", label=f"margin 1/(2√2) = {margin:.3f}")
    ax.set_xlim(-2, 2)
    ax.set_ylim(-2, 2)
    ax.set_aspect("equal")
    ax.set_xlabel("x₁")
    ax.set_ylabel("x₂")
    ax.set_title(f"f(x) = +1 iff {A} ≤ x₁ + x₂ ≤ {B} (sign MLP)")
    ax.grid(alpha=0.3)
    # Below the axes: inside, it would hide one of the four points whatever the corner.
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2, fontsize=8)
    fig.tight_layout()
    paths = []
    for suffix in (".pdf", ".png"):
        path = Path(output_dir) / f"q3-2023-24-interval-D2-A={A}-B={B}{suffix}"
        with files.atomic_path(path) as tmp:
            fig.savefig(tmp, format=suffix[1:], dpi=120)
        paths.append(path)
    plt.close(fig)
    return paths


# ----------------------------------------------------------------------------- 2021-22: derivatives

def sigmoid(z):
    """sigma(z) = 1 / (1 + e^-z), without overflow for large |z|."""
    z = np.asarray(z, dtype=float)
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1 / (1 + e), e / (1 + e))


def softmax(z):
    """p = softmax(z) along the last axis, shifted by the max for stability."""
    e = np.exp(z - np.max(z, axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def softmax_jacobian(z):
    """dp/dz = diag(p) - p p^T: (C,) -> (C, C)."""
    p = softmax(z)
    return np.diag(p) - np.outer(p, p)


def cross_entropy(z, y):
    """L(z) = -log softmax(z)_y = logsumexp(z) - z_y."""
    m = np.max(z)
    return float(m + np.log(np.sum(np.exp(z - m))) - z[y])


def cross_entropy_grad(z, y):
    """dL/dz = softmax(z) - e_y."""
    g = softmax(z)
    g[y] -= 1
    return g


def cross_entropy_hessian(z, y):
    """d^2L/dz^2 = diag(p) - p p^T, independent of y."""
    return softmax_jacobian(z)


def fd_jacobian(f, z, h=FD_STEP):
    """Centred differences: column j is (f(z + h e_j) - f(z - h e_j)) / 2h."""
    z = np.asarray(z, dtype=float)
    cols = []
    for j in range(len(z)):
        e = np.zeros_like(z)
        e[j] = h
        cols.append((np.asarray(f(z + e), float) - np.asarray(f(z - e), float)) / (2 * h))
    return np.stack(cols, axis=-1)


def _logits(rng, scales=(0.1, 1.0, 2.0)):
    """Logit vectors of sizes C = 2, 3, 5, 10 at each scale: from flat to peaked softmaxes.

    Past scale ~2 a softmax can saturate (some p ~ 1 - 1e-6), and then the rounding of
    p(z + h) - p(z - h), about 1e-16 / h = 1e-11, is no longer small next to the derivative: the
    FD checks stay at these scales, the eigenvalue check also goes to saturation.
    """
    return [scale * rng.normal(size=C) for C in (2, 3, 5, 10) for scale in scales]


@claim("2021-22-sigmoid-derivative", "sigma'(z) = sigma(z)(1 - sigma(z))")
def check_sigmoid_derivative(rng, derivative=lambda z: sigmoid(z) * (1 - sigmoid(z))):
    z = np.concatenate([np.linspace(-10, 10, 201), rng.uniform(-10, 10, size=100)])
    fd = (sigmoid(z + FD_STEP) - sigmoid(z - FD_STEP)) / (2 * FD_STEP)
    a = derivative(z)
    err = float(np.max(np.abs(fd - a) / (np.abs(fd) + np.abs(a) + 1e-12)))
    return _result(check_sigmoid_derivative, "max rel|FD - σ(1-σ)|", err, FD_TOL,
                   notes="301 points in [-10, 10], elementwise")


@claim("2021-22-softmax-jacobian", "d softmax(z)/dz = diag(p) - p p^T")
def check_softmax_jacobian(rng, jacobian=softmax_jacobian):
    err = max(rel_error(fd_jacobian(softmax, z), jacobian(z)) for z in _logits(rng))
    return _result(check_softmax_jacobian, "max rel‖FD - (diag(p) - ppᵀ)‖", err, FD_TOL,
                   notes="C in {2, 3, 5, 10}, logit scales 0.1, 1, 2")


@claim("2021-22-ce-gradient", "d(-log softmax(z)_y)/dz = softmax(z) - e_y")
def check_ce_gradient(rng, gradient=cross_entropy_grad):
    err = 0.0
    for z in _logits(rng):
        y = int(rng.integers(len(z)))
        fd = fd_jacobian(lambda t: cross_entropy(t, y), z)
        err = max(err, rel_error(fd, gradient(z, y)))
    return _result(check_ce_gradient, "max rel‖FD - (p - e_y)‖", err, FD_TOL,
                   notes="C in {2, 3, 5, 10}, logit scales 0.1, 1, 2")


@claim("2021-22-ce-hessian-psd",
       "the cross-entropy Hessian in the logits is diag(p) - p p^T, positive semi-definite")
def check_ce_hessian(rng, hessian=cross_entropy_hessian):
    fd_err, min_eig, null_err = 0.0, np.inf, 0.0
    for z in _logits(rng):
        y = int(rng.integers(len(z)))
        fd_err = max(fd_err, rel_error(fd_jacobian(lambda t: cross_entropy_grad(t, y), z),
                                       hessian(z, y)))
    for z in _logits(rng) + _logits(rng, scales=(5.0, 50.0)):   # up to saturation
        H = hessian(z, int(rng.integers(len(z))))
        # v^T H v = Var_p(v) >= 0, with H 1 = 0: the smallest eigenvalue is 0 (up to rounding).
        min_eig = min(min_eig, float(np.linalg.eigvalsh((H + H.T) / 2)[0]))
        null_err = max(null_err, float(np.max(np.abs(H @ np.ones(len(z))))))
    ok = fd_err < FD_TOL and null_err < EXACT_TOL
    return _result(check_ce_hessian, "min eigenvalue", min_eig, PSD_TOL, relation=">=", ok=ok,
                   notes=f"logit scales 0.1 to 50; max rel‖FD - H‖ = {fd_err:.1e} "
                         f"(< {FD_TOL:.0e}, scales ≤ 2); max|H 1| = {null_err:.1e}")


# ----------------------------------------------------------------------------- command line

def run_claim(name, seed, **overrides):
    """Run one claim by name with its own generator; an exception becomes a FAIL, not a crash."""
    fn, description = CLAIMS[name]
    try:
        return fn(claim_rng(seed, name), **overrides)
    except Exception as err:  # a broken claim must not hide the others' results
        return Result(name, description, f"error: {type(err).__name__}: {err}", np.nan, np.nan,
                      False)


def select_claims(text):
    """The claim named `text`, else every claim whose name contains it (case-insensitive)."""
    if text is None:
        return list(CLAIMS)
    if text in CLAIMS:
        return [text]
    return [name for name in CLAIMS if text.lower() in name.lower()]


def _epilog():
    width = max(map(len, CLAIMS))
    lines = [f"  {name:<{width}}  {desc}" for name, (_, desc) in CLAIMS.items()]
    return "claims (for -claim, a full name or any part of one, e.g. q3.3 or 2023-24):\n" + \
        "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Check every claim of Question 3 on numbers: one line per claim, PASS or FAIL "
                    "with the measured error; exit status 1 if any claim fails.",
        epilog=_epilog(), formatter_class=argparse.RawDescriptionHelpFormatter)
    flags.add_flag(parser, "seed", type=flags.seed_value, default=42,
                   help="random seed (default: %(default)s)")
    flags.add_flag(parser, "output_dir", type=Path, default=Path("results"),
                   help="where the 2023-24 figure goes (default: results/)")
    flags.add_flag(parser, "claim", metavar="NAME", default=None,
                   help="run only this claim, or the claims whose name contains NAME")
    flags.add_flag(parser, "interval", type=int, nargs=2, metavar=("A", "B"), default=(0, 0),
                   help="the interval A <= x1 + x2 <= B drawn in the D = 2 figure "
                        "(default: 0 0, XOR)")
    args = parser.parse_args(argv)
    names = select_claims(args.claim)
    if not names:
        parser.error(f"unknown claim {args.claim!r}; valid names: {', '.join(CLAIMS)}")
    A, B = args.interval
    if not -2 <= A <= B <= 2:
        parser.error(f"-interval needs -2 <= A <= B <= 2 for D = 2, got {A} {B}")
    utils.configure_seed(args.seed)
    # Claims print Greek letters; never crash on a terminal that cannot show them.
    sys.stdout.reconfigure(errors="backslashreplace")

    start = time.perf_counter()
    width = max(map(len, names))
    results = []
    for name in names:
        result = run_claim(name, args.seed)
        results.append(result)
        print(result.line(width), flush=True)
    if any(name.startswith("2023-24") for name in names):
        try:
            paths = plot_interval(args.output_dir, A, B)
        except OSError as err:
            errors.fail(f"cannot write the figure to {args.output_dir}: {err}")
        print(f"figure: {', '.join(map(str, paths))}")
    failed = sum(not r.passed for r in results)
    print(f"{len(results) - failed} passed, {failed} failed ({time.perf_counter() - start:.1f} s)")
    return 1 if failed else 0


if __name__ == "__main__":
    errors.run_command(main)
