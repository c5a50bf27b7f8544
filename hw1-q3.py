"""Question 3 (2022-23): a network with the quadratic activation g(z) = z^2 is a linear model in a
fixed feature map; every claim of the answer, checked on numbers.

    python hw1-q3.py                      # check every claim, one line each, then a summary
    python hw1-q3.py -claim q3.3          # only the claims whose name contains "q3.3"
    python hw1-q3.py -seed 7              # other random draws, the same claims

The network has one hidden layer and no biases,
    h = g(W x),   y_hat = v^T h,   W: (K, D), v: (K,),   Theta = (W, v).
The answer, step by step; the claims are named after the steps, and the functions that compute
each step are in parentheses:
  q3.1  h = A_Theta phi(x), with the feature map phi(x) = (x_i^2, 2 x_i x_j for i < j) in R^M,
        M = D(D+1)/2, which does not depend on Theta (`phi`, `A_theta`);
  q3.2  y_hat = c_Theta^T phi(x) with c_Theta = A_Theta^T v = vech(W^T diag(v) W): the model is
        linear in the features, though not in Theta (`c_theta`);
  q3.3  if K >= D, every c in R^M is some c_Theta (eigendecomposition of the symmetric matrix
        of c: `recover_theta`), so the model is exactly linear regression on phi(x); if K < D,
        W^T diag(v) W has rank at most K and the c whose matrix has a larger rank are out of reach;
  q3.4  the squared loss is convex in c, minimised in closed form by c_hat = Phi^+ y
        (`closed_form`); with K >= D a Theta with c_Theta = c_hat reaches that global minimum,
        which gradient descent on the non-convex loss in Theta never goes below.

Each claim prints PASS or FAIL, the measured error and its threshold; the exit status is 1 if any
claim fails. No dataset is needed. The claim machinery is `q3_claims.py`; the other editions'
versions of the question (2024-25, 2023-24, 2021-22) are checked by `python -m q3_other_editions`.

Shapes: D input dimension, K hidden units, N examples, M = D(D+1)/2 features.
"""
import numpy as np

from q3_claims import EXACT_TOL, Claims, check, parser, result, selected
from runkit import errors

CLAIMS = Claims()  # the answer's claims, in the order of the question


# ------------------------------------------------------------------------ the model, linear in phi

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


# ----------------------------------------------------------------------------- the claims

SHAPES = [(1, 1), (2, 3), (3, 2), (5, 4), (8, 8)]  # (K, D)


@CLAIMS.claim("q3.1-feature-map", "h = g(W x) = A_Theta phi(x), with phi independent of Theta")
def check_feature_map(rng, feature_map=phi, build_A=A_theta, n=50):
    err = 0.0
    for K, D in SHAPES:
        W, X = rng.normal(size=(K, D)), rng.normal(size=(n, D))
        F = feature_map(X)
        ok_shape = F.shape == (n, D * (D + 1) // 2)
        gap = np.max(np.abs(hidden(W, X) - F @ build_A(W).T)) if ok_shape else np.inf
        err = max(err, float(gap))
    return result(check_feature_map, "max|h - A φ|", err, EXACT_TOL,
                  notes=f"(K, D) in {SHAPES}, {n} inputs each")


@CLAIMS.claim("q3.2-linear-in-features", "c_Theta = A_Theta^T v and y_hat = c_Theta^T phi(x)")
def check_linear_in_features(rng, coefficients=c_theta, n=50):
    err_c = err_y = 0.0
    for K, D in SHAPES:
        W, v, X = rng.normal(size=(K, D)), rng.normal(size=K), rng.normal(size=(n, D))
        c = coefficients(W, v)
        err_c = max(err_c, float(np.max(np.abs(c - A_theta(W).T @ v))))
        err_y = max(err_y, float(np.max(np.abs(predict(W, v, X) - phi(X) @ c))))
    return result(check_linear_in_features, "max|ŷ - c_Θᵀ φ|", err_y, EXACT_TOL,
                  ok=err_c < EXACT_TOL, notes=f"max|c_Θ - A_Θᵀ v| = {err_c:.1e}")


@CLAIMS.claim("q3.3-surjective-k-ge-d",
              "K >= D: every c is c_Theta for some Theta (eigendecomposition)")
def check_surjective(rng, recover=recover_theta):
    shapes = [(1, 1), (2, 2), (3, 2), (4, 3), (6, 4), (8, 8)]
    err = 0.0
    for K, D in shapes:
        c = rng.normal(size=D * (D + 1) // 2)
        W, v = recover(c, K)
        ok_shape = W.shape == (K, D) and v.shape == (K,)
        # A_Theta^T v is the feature-map definition, independent of the vech route to W, v
        err = max(err, float(np.max(np.abs(A_theta(W).T @ v - c))) if ok_shape else np.inf)
    return result(check_surjective, "max|c_Θ - c|", err, EXACT_TOL,
                  notes=f"random c, (K, D) in {shapes}")


def _identity_target(rng, D):
    return np.eye(D)


def _random_target(rng, D):
    """A random symmetric matrix with eigenvalues of both signs, |lambda| >= 0.5: full rank."""
    Q, _ = np.linalg.qr(rng.normal(size=(D, D)))
    lam = rng.choice([-1, 1], size=D) * rng.uniform(0.5, 2, size=D)
    return (Q * lam) @ Q.T


@CLAIMS.claim("q3.3-rank-limit-k-lt-d",
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
    return result(check_rank_limit, "max σ_{K+1}(C_Θ)/σ_1", worst_rank, 1e-12, ok=ok,
                  notes=f"targets I_D and a random C have rank D > K: {ranks_ok}; "
                        f"GD on ‖C_Θ - C‖_F from {starts} starts: min distance/Eckart–Young "
                        f"bound - 1 = {worst_gap:.1e} (≥ -1e-9)")


def _regression_data(rng, D=3, n=40):
    """N = 40 > M = 6 Gaussian inputs; a quadratic target plus noise, so the minimum loss is > 0."""
    X = rng.normal(size=(n, D))
    y = phi(X) @ rng.normal(size=D * (D + 1) // 2) + 0.5 * rng.normal(size=n)
    return X, y


@CLAIMS.claim("q3.4-closed-form-minimum",
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
    return result(check_closed_form, "min(L_GD - L(ĉ))", worst, -tol, relation=">=",
                  ok=full_rank and stationarity < EXACT_TOL,
                  notes=f"L(ĉ) = {best:.4f}, Φ full column rank: {full_rank}, "
                        f"|∇L(ĉ)| = {stationarity:.1e}; K ≥ D: {reached}/{len(gaps[True])} GD "
                        f"runs reach L(ĉ) (within 1e-6); K < D: best gap "
                        f"{min(gaps[False], default=np.nan):.1e}")


@CLAIMS.claim("q3.4-recover-minimiser",
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
    return result(check_recover_minimiser, "max|L(Θ) - L(ĉ)|/max(1, L(ĉ))", err, EXACT_TOL,
                  notes=f"L(ĉ) = {best:.4f}, K in {list(hidden_sizes)}, D = {X.shape[1]}")


# ----------------------------------------------------------------------------- command line

OTHER_EDITIONS = ("the 2024-25, 2023-24 and 2021-22 versions of Question 3 are checked by "
                  "'python -m q3_other_editions'")


def main(argv=None):
    """The command line: check the claims that -claim selects (all by default); 1 if one fails."""
    command = parser(CLAIMS, "Check every claim of Question 3 (2022-23, g(z) = z^2) on numbers: "
                             "one line per claim, PASS or FAIL with the measured error; exit "
                             "status 1 if any claim fails.",
                     example="q3.3", see_also=OTHER_EDITIONS)
    args = command.parse_args(argv)
    return check(CLAIMS, selected(command, CLAIMS, args.claim, OTHER_EDITIONS), args.seed)


if __name__ == "__main__":
    errors.run_command(main)
