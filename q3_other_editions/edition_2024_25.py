"""Question 3 (2024-25): the activation g(z) = z(1 - z), with biases, is still a linear model in a
fixed feature map; each claim checked on numbers.

    h = g(W x + b),   y_hat = v^T h + v0,   W: (K, D), b: (K,), v: (K,), v0 a scalar.
With z = w^T x + b, z - z^2 = (b - b^2) + (1 - 2b) w^T x - (w^T x)^2: each hidden unit is
a_k^T phi(x) with phi(x) = (1, x, the 2022-23 features), and y_hat = c_Theta^T phi(x) with
c_Theta = A_Theta^T v + v0 e_1. The quadratic part is the 2022-23 answer's (`hw1-q3.py`).

Shapes: D input dimension, K hidden units, N examples; phi has (D+1)(D+2)/2 entries.
"""
import numpy as np

import utils
from q3_claims import EXACT_TOL, Claims, result

hw1_q3 = utils.load_script("hw1-q3.py")   # the 2022-23 answer: phi, A_theta, SHAPES

CLAIMS = Claims()  # in the order of the question


def phi_bias(x):
    """phi(x) = (1, x_1, ..., x_D, the 2022-23 phi(x)): (..., D) -> (..., (D+1)(D+2)/2)."""
    x = np.asarray(x, dtype=float)
    return np.concatenate([np.ones(x.shape[:-1] + (1,)), x, hw1_q3.phi(x)], axis=-1)


def A_theta_bias(W, b):
    """Rows a_k = (b_k - b_k^2, (1 - 2 b_k) w_k, -(2022-23 a_k)): g(w_k^T x + b_k) = a_k^T phi(x).

    z = w^T x + b:  z - z^2 = (b - b^2) + (1 - 2b) w^T x - (w^T x)^2.  W: (K, D), b: (K,).
    """
    W, b = np.asarray(W, float), np.asarray(b, float)
    return np.concatenate([(b - b ** 2)[:, None], (1 - 2 * b)[:, None] * W, -hw1_q3.A_theta(W)],
                          axis=1)


def hidden_bias(W, b, X):
    """h = g(W x + b) with g(z) = z(1 - z): (N, D) -> (N, K)."""
    Z = np.asarray(X, float) @ np.asarray(W, float).T + b
    return Z * (1 - Z)


def c_theta_bias(W, b, v, v0):
    """c_Theta = A_Theta^T v + v0 e_1: the output bias lands on the constant feature."""
    c = A_theta_bias(W, b).T @ v
    c[0] += v0
    return c


@CLAIMS.claim("2024-25-feature-map", "g(z) = z(1-z) with biases: h = g(W x + b) = A_Theta phi(x)")
def check_bias_feature_map(rng, feature_map=phi_bias, build_A=A_theta_bias, n=50):
    err = 0.0
    for K, D in hw1_q3.SHAPES:
        W, b, X = rng.normal(size=(K, D)), rng.normal(size=K), rng.normal(size=(n, D))
        F = feature_map(X)
        ok_shape = F.shape == (n, (D + 1) * (D + 2) // 2)
        err = max(err, float(np.max(np.abs(hidden_bias(W, b, X) - F @ build_A(W, b).T)))
                  if ok_shape else np.inf)
    return result(check_bias_feature_map, "max|h - A φ|", err, EXACT_TOL,
                  notes="φ = (1, x, quadratic), size (D+1)(D+2)/2")


@CLAIMS.claim("2024-25-output", "y_hat = v^T g(W x + b) + v0 = c_Theta^T phi(x)")
def check_bias_output(rng, coefficients=c_theta_bias, n=50):
    err = 0.0
    for K, D in hw1_q3.SHAPES:
        W, b, v, v0 = rng.normal(size=(K, D)), rng.normal(size=K), rng.normal(size=K), rng.normal()
        X = rng.normal(size=(n, D))
        y_hat = hidden_bias(W, b, X) @ v + v0
        err = max(err, float(np.max(np.abs(y_hat - phi_bias(X) @ coefficients(W, b, v, v0)))))
    return result(check_bias_output, "max|ŷ - c_Θᵀ φ|", err, EXACT_TOL,
                  notes="with the output bias v₀")
