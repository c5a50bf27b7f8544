"""Question 3 (2021-22): the derivatives that backpropagation uses, each checked on numbers against
centred finite differences (FD).

  - the sigmoid: sigma'(z) = sigma(z)(1 - sigma(z));
  - the softmax: d softmax(z)/dz = diag(p) - p p^T;
  - the cross-entropy in the logits, L(z) = -log softmax(z)_y: dL/dz = p - e_y, and its Hessian
    diag(p) - p p^T, positive semi-definite (v^T H v is the variance of v under p).

Shapes: C classes (the logits z and the probabilities p are (C,)).
"""
import numpy as np

from q3_claims import EXACT_TOL, Claims, rel_error, result

FD_STEP = 1e-5          # centred finite differences in float64
FD_TOL = 1e-6           # relative error allowed between an analytic derivative and its FD estimate
PSD_TOL = -1e-12        # smallest eigenvalue allowed for a positive semi-definite matrix

CLAIMS = Claims()  # in the order of the question


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


@CLAIMS.claim("2021-22-sigmoid-derivative", "sigma'(z) = sigma(z)(1 - sigma(z))")
def check_sigmoid_derivative(rng, derivative=lambda z: sigmoid(z) * (1 - sigmoid(z))):
    z = np.concatenate([np.linspace(-10, 10, 201), rng.uniform(-10, 10, size=100)])
    fd = (sigmoid(z + FD_STEP) - sigmoid(z - FD_STEP)) / (2 * FD_STEP)
    a = derivative(z)
    err = float(np.max(np.abs(fd - a) / (np.abs(fd) + np.abs(a) + 1e-12)))
    return result(check_sigmoid_derivative, "max rel|FD - σ(1-σ)|", err, FD_TOL,
                  notes="301 points in [-10, 10], elementwise")


@CLAIMS.claim("2021-22-softmax-jacobian", "d softmax(z)/dz = diag(p) - p p^T")
def check_softmax_jacobian(rng, jacobian=softmax_jacobian):
    err = max(rel_error(fd_jacobian(softmax, z), jacobian(z)) for z in _logits(rng))
    return result(check_softmax_jacobian, "max rel‖FD - (diag(p) - ppᵀ)‖", err, FD_TOL,
                  notes="C in {2, 3, 5, 10}, logit scales 0.1, 1, 2")


@CLAIMS.claim("2021-22-ce-gradient", "d(-log softmax(z)_y)/dz = softmax(z) - e_y")
def check_ce_gradient(rng, gradient=cross_entropy_grad):
    err = 0.0
    for z in _logits(rng):
        y = int(rng.integers(len(z)))
        fd = fd_jacobian(lambda t: cross_entropy(t, y), z)
        err = max(err, rel_error(fd, gradient(z, y)))
    return result(check_ce_gradient, "max rel‖FD - (p - e_y)‖", err, FD_TOL,
                  notes="C in {2, 3, 5, 10}, logit scales 0.1, 1, 2")


@CLAIMS.claim("2021-22-ce-hessian-psd",
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
    return result(check_ce_hessian, "min eigenvalue", min_eig, PSD_TOL, relation=">=", ok=ok,
                  notes=f"logit scales 0.1 to 50; max rel‖FD - H‖ = {fd_err:.1e} "
                        f"(< {FD_TOL:.0e}, scales ≤ 2); max|H 1| = {null_err:.1e}")
