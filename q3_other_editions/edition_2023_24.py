"""Question 3 (2023-24): the Boolean interval function, computed by small MLPs; each claim checked
on numbers, for every D <= 10 and every integer interval.

On the cube {-1, +1}^D, f(x) = +1 iff A <= sum_i x_i <= B (integers -D <= A <= B <= D), else -1;
with D = 2 and A = B = 0 it is XOR, which no perceptron computes. The claims:
  - an MLP with 2 hidden sign units and integer weights computes f (`sign_mlp`);
  - so does one with 2 hidden ReLU units and a sign output (`relu_mlp`);
  - the sign MLP is robust: no perturbation of an input with ||delta||_2 < 1/(2 sqrt D) changes
    its output, and a perturbation just above that can (`robustness_margin`);
and a figure for D = 2 (`plot_interval`): the 4 inputs, the two hidden hyperplanes, the margins.

Shapes: D input dimension, N inputs (the 2^D vertices), P nets stacked, one per (A, B).
"""
from pathlib import Path

import numpy as np

from q3_claims import Claims, result
from runkit import files

MAX_BOOLEAN_D = 10  # every D up to this one is checked exhaustively: 2^D inputs, all (A, B)

CLAIMS = Claims()  # in the order of the question


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


def _check_mlp(check, build, activation):
    """The Result of `check`: the nets `build(D, A, B)` compute f on every input of the cube, for
    every D <= MAX_BOOLEAN_D and every (A, B), with integer weights and 2 hidden units."""
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
    return result(check, "mismatches", mismatches, 0, relation="=",
                  ok=integer and two_hidden and smallest > 0,
                  notes=f"{total:,} (D, A, B, x) with D ≤ {MAX_BOOLEAN_D}; integer weights: "
                        f"{integer}; 2 hidden units: {two_hidden}; min|sign argument| "
                        f"({where}) = {smallest:g}")


@CLAIMS.claim("2023-24-sign-mlp",
              "2 hidden sign units with integer weights compute f(x) = [A <= sum x <= B]")
def check_sign_mlp(rng, build=sign_mlp):
    return _check_mlp(check_sign_mlp, build, "sign")


@CLAIMS.claim("2023-24-relu-mlp",
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


@CLAIMS.claim("2023-24-robustness",
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
    return result(check_robustness, "outputs changed below the margin", changed, 0, relation="=",
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
