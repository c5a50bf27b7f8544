"""hw1-q3.py: every claim passes, every check can fail, the pieces are right, the CLI behaves."""
import functools
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT, load_script

q3 = load_script("hw1-q3.py")

SCRIPT = ROOT / "hw1-q3.py"


def run_cli(*args, cwd):
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=cwd, capture_output=True,
                          text=True, encoding="utf-8", timeout=120)


# ----------------------------------------------------------------------------- every claim passes

@pytest.mark.parametrize("seed", [42, 7])
@pytest.mark.parametrize("name", list(q3.CLAIMS))
def test_claim_passes(name, seed):
    result = q3.run_claim(name, seed)
    assert result.passed, result.line()
    assert result.name == name


# ----------------------------------------------------------------------------- every check can fail

def _A_doubled_cross_terms(W):
    """The classic slip: the 2 of 2 x_i x_j counted in both phi and A."""
    A = q3.A_theta(W)
    A[:, W.shape[1]:] *= 2
    return A


def _recover_transposed(c, K):
    W, v = q3.recover_theta(c, K)
    D = W.shape[1]
    W[:D] = W[:D].T.copy()   # W = Q instead of Q^T
    return W, v


def _rank_one_target(rng, D):
    u = rng.normal(size=D)
    return np.outer(u, u)    # reachable with K >= 1: not a counterexample


def _ridge(Phi, y, lam=10.0):
    """Not the least-squares minimiser: gradient descent on Theta beats its loss."""
    M = Phi.shape[1]
    return np.linalg.solve(Phi.T @ Phi + lam * len(y) * np.eye(M), Phi.T @ y)


def _A_bias_without_factor(W, b):
    A = q3.A_theta_bias(W, b)
    A[:, 1:1 + W.shape[1]] = W   # forgets the (1 - 2b) of the linear part
    return A


def _sign_mlp_integer_thresholds(D, A, B):
    W1, b1, w2, b2 = q3.sign_mlp(D, A, B)
    return W1 // 2, np.array([-A, B]), w2, b2   # sign(sum x - A) is 0 on the boundary sum x = A


def _relu_mlp_unit_output(D, A, B):
    W1, b1, _, b2 = q3.relu_mlp(D, A, B)
    return W1, b1, np.array([-1, -1]), b2       # 1 - h1 - h2 is 0 at sum x = A - 1


def _softmax(z):
    return q3.softmax(z)


BROKEN = {
    "q3.1-feature-map": {"build_A": _A_doubled_cross_terms},
    "q3.2-linear-in-features": {"coefficients": lambda W, v: q3.A_theta(W).T @ np.abs(v)},
    "q3.3-surjective-k-ge-d": {"recover": _recover_transposed},
    "q3.3-rank-limit-k-lt-d": {"targets": (_rank_one_target,)},
    "q3.4-closed-form-minimum": {"solve": _ridge},
    "q3.4-recover-minimiser": {"recover": lambda c, K: q3.recover_theta(1.01 * c, K)},
    "2024-25-feature-map": {"build_A": _A_bias_without_factor},
    "2024-25-output": {"coefficients": lambda W, b, v, v0: q3.A_theta_bias(W, b).T @ v},
    "2023-24-sign-mlp": {"build": _sign_mlp_integer_thresholds},
    "2023-24-relu-mlp": {"build": _relu_mlp_unit_output},
    "2023-24-robustness": {"margin_fn": lambda nets, X: 2 * q3.robustness_margin(nets, X),
                           "max_d": 4},
    "2021-22-sigmoid-derivative": {"derivative": lambda z: q3.sigmoid(z) * (1 + q3.sigmoid(z))},
    "2021-22-softmax-jacobian": {"jacobian": lambda z: np.diag(_softmax(z))},
    "2021-22-ce-gradient": {"gradient": lambda z, y: _softmax(z)},
    "2021-22-ce-hessian-psd": {"hessian": lambda z, y: np.outer(_softmax(z), _softmax(z))
                               - np.diag(_softmax(z))},
}


def test_every_claim_has_a_broken_variant():
    assert set(BROKEN) == set(q3.CLAIMS)


@pytest.mark.parametrize("name", list(BROKEN))
def test_claim_can_fail(name):
    result = q3.run_claim(name, 42, **BROKEN[name])
    assert not result.passed, result.line()
    assert result.line().startswith("FAIL")


def test_broken_feature_map_fails_on_its_measured_error():
    result = q3.check_feature_map(np.random.default_rng(0), build_A=_A_doubled_cross_terms)
    assert result.error > 1e-3 and not result.passed


def test_rank_limit_fails_when_the_target_is_reachable():
    result = q3.check_rank_limit(np.random.default_rng(0), targets=(_rank_one_target,))
    assert "rank D > K: False" in result.notes


def test_a_claim_that_raises_is_a_fail_not_a_crash():
    def boom(W):
        raise RuntimeError("boom")
    result = q3.run_claim("q3.1-feature-map", 42, build_A=boom)
    assert not result.passed
    assert result.line() == "FAIL  q3.1-feature-map  error: RuntimeError: boom"


# ----------------------------------------------------------------------------- the pieces

def test_feature_map_by_hand():
    x, W = np.array([1.0, 2.0]), np.array([[1.0, 1.0]])
    np.testing.assert_allclose(q3.phi(x), [1, 4, 4])            # x1^2, x2^2, 2 x1 x2
    np.testing.assert_allclose(q3.A_theta(W), [[1, 1, 1]])       # w1^2, w2^2, w1 w2
    assert q3.hidden(W, x[None])[0, 0] == 9 == q3.A_theta(W)[0] @ q3.phi(x)


@pytest.mark.parametrize("D", [1, 2, 5])
def test_phi_sizes(D):
    x = np.ones(D)
    assert q3.phi(x).shape == (D * (D + 1) // 2,)
    assert q3.phi_bias(x).shape == ((D + 1) * (D + 2) // 2,)


def test_vech_unvech_round_trip():
    rng = np.random.default_rng(0)
    c = rng.normal(size=10)
    C = q3.unvech(c)
    np.testing.assert_array_equal(C, C.T)
    np.testing.assert_array_equal(q3.vech(C), c)
    x = rng.normal(size=4)
    np.testing.assert_allclose(c @ q3.phi(x), x @ C @ x)
    with pytest.raises(ValueError, match="not D\\(D\\+1\\)/2"):
        q3.unvech(np.zeros(4))


def test_recover_theta_refuses_k_below_d():
    with pytest.raises(ValueError, match="K = 2 < D = 3"):
        q3.recover_theta(np.zeros(6), 2)


def test_recover_theta_pads_to_k():
    W, v = q3.recover_theta(np.arange(6.0), 5)
    assert W.shape == (5, 3) and v.shape == (5,)
    assert not W[3:].any() and not v[3:].any()


def _fd_grads(f, params, h=1e-6):
    grads = []
    for i, p in enumerate(params):
        g = np.zeros_like(p)
        for idx in np.ndindex(p.shape):
            plus = [q.copy() for q in params]
            minus = [q.copy() for q in params]
            plus[i][idx] += h
            minus[i][idx] -= h
            g[idx] = (f(*plus) - f(*minus)) / (2 * h)
        grads.append(g)
    return grads


def test_squared_loss_gradients_match_finite_differences():
    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(12, 3)), rng.normal(size=12)
    W, v = rng.normal(size=(4, 3)), rng.normal(size=4)
    _, grads = q3.squared_loss(W, v, X, y)
    fd = _fd_grads(lambda W, v: q3.squared_loss(W, v, X, y)[0], [W, v])
    for g, f in zip(grads, fd):
        assert q3.rel_error(g, f) < 1e-7


def test_matrix_fit_gradients_match_finite_differences():
    rng = np.random.default_rng(2)
    C = q3.unvech(rng.normal(size=6))
    W, v = rng.normal(size=(2, 3)), rng.normal(size=2)
    _, grads = q3.matrix_fit_loss(W, v, C)
    fd = _fd_grads(lambda W, v: q3.matrix_fit_loss(W, v, C)[0], [W, v])
    for g, f in zip(grads, fd):
        assert q3.rel_error(g, f) < 1e-7


def test_gradient_descent_on_theta_never_beats_the_closed_form_and_can_reach_it():
    """Non-convex in Theta: a start may stall above the minimum, but never goes below it."""
    rng = np.random.default_rng(3)
    X, y = q3._regression_data(rng)
    best = q3.features_loss(q3.closed_form(q3.phi(X), y), q3.phi(X), y)
    losses = []
    for _ in range(6):
        start = [0.5 * rng.normal(size=(4, 3)), rng.normal(size=4)]
        first = q3.squared_loss(*start, X, y)[0]
        _, loss = q3.gradient_descent(lambda W, v: q3.squared_loss(W, v, X, y), start, 300)
        assert loss < first
        losses.append(loss)
    assert min(losses) >= best - 1e-10
    assert min(losses) < best + 1e-6


def test_gradient_descent_minimises_a_quadratic():
    _, loss = q3.gradient_descent(lambda x: (float(np.sum((x - 3) ** 2)), (2 * (x - 3),)),
                                  [np.zeros(4)], 50)
    assert loss < 1e-20


def test_xor_table_for_d2():
    X = q3.cube(2)
    for build, activation in ((q3.sign_mlp, "sign"), (q3.relu_mlp, "relu")):
        nets = [np.asarray(a)[None] for a in build(2, 0, 0)]
        y = q3.mlp_forward(nets, X, activation)[0][0]
        np.testing.assert_array_equal(y, np.where(X[:, 0] != X[:, 1], 1, -1))


def test_cube_lists_every_vertex_once():
    X = q3.cube(4)
    assert X.shape == (16, 4)
    assert set(np.unique(X)) == {-1, 1}
    assert len({tuple(x) for x in X}) == 16


@pytest.mark.parametrize("D", [1, 3, 10])
def test_margin_is_one_over_two_root_d(D):
    _, nets = q3._stack_nets(q3.sign_mlp, D)
    margin = q3.robustness_margin(nets, q3.cube(D).astype(float))
    np.testing.assert_allclose(margin, 1 / (2 * np.sqrt(D)))


def test_sigmoid_is_stable_for_large_inputs():
    with np.errstate(over="raise"):
        s = q3.sigmoid(np.array([-1000.0, 0.0, 1000.0]))
    np.testing.assert_allclose(s, [0, 0.5, 1])


def test_result_line_format():
    result = q3.run_claim("q3.1-feature-map", 42)
    line = result.line()
    assert line.startswith("PASS  q3.1-feature-map  max|h - A φ| = ")
    assert "(< 1e-10)" in line


# ----------------------------------------------------------------------------- command line

@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("full")
    out = cwd / "figs"
    return run_cli("--output-dir", str(out), cwd=cwd), out


def test_full_run_passes_every_claim(full_run):
    proc, _ = full_run
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    claim_lines = [line for line in lines if line.startswith(("PASS", "FAIL"))]
    assert [line.split()[1] for line in claim_lines] == list(q3.CLAIMS)
    assert all(line.startswith("PASS") for line in claim_lines)
    assert lines[-1].startswith(f"{len(q3.CLAIMS)} passed, 0 failed")


def test_full_run_writes_the_figure(full_run):
    proc, out = full_run
    pdf = out / "q3-2023-24-interval-D2-A=0-B=0.pdf"
    png = out / "q3-2023-24-interval-D2-A=0-B=0.png"
    assert pdf.read_bytes().startswith(b"%PDF")
    assert png.read_bytes().startswith(b"\x89PNG")
    assert sorted(p.name for p in out.iterdir()) == sorted([pdf.name, png.name])  # no temp files
    assert str(pdf) in proc.stdout


def test_filter_runs_one_claim_with_the_full_run_numbers(full_run, tmp_path):
    proc = run_cli("-claim", "q3.1-feature-map", "-output_dir", str(tmp_path / "out"),
                   cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 2 and lines[1].startswith("1 passed, 0 failed")
    in_full = [line for line in full_run[0].stdout.splitlines() if " q3.1-feature-map " in line]
    assert lines[0].split() == in_full[0].split()   # same seed, same numbers, alone or not
    assert not (tmp_path / "out").exists()          # the figure belongs to the 2023-24 claims


def test_filter_by_part_of_a_name(tmp_path):
    proc = run_cli("-claim", "q3.3", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    names = [line.split()[1] for line in proc.stdout.splitlines()[:-1]]
    assert names == ["q3.3-surjective-k-ge-d", "q3.3-rank-limit-k-lt-d"]


def test_unknown_claim_is_a_usage_error(tmp_path):
    proc = run_cli("-claim", "no-such-claim", cwd=tmp_path)
    assert proc.returncode == 2
    assert "unknown claim 'no-such-claim'" in proc.stderr
    assert "q3.1-feature-map" in proc.stderr and "2021-22-ce-hessian-psd" in proc.stderr
    assert proc.stdout == ""


def test_bad_interval_is_a_usage_error(tmp_path):
    proc = run_cli("-interval", "1", "0", cwd=tmp_path)
    assert proc.returncode == 2
    assert "-interval" in proc.stderr


def test_help_lists_every_claim(tmp_path):
    proc = run_cli("--help", cwd=tmp_path)
    assert proc.returncode == 0
    for name in q3.CLAIMS:
        assert name in proc.stdout
    for flag in ("-seed", "-output_dir", "--output-dir", "-claim", "-interval"):
        assert flag in proc.stdout


def test_a_failing_claim_exits_1(monkeypatch, capsys):
    name = "2021-22-sigmoid-derivative"
    broken = functools.partial(q3.check_sigmoid_derivative, derivative=lambda z: 0 * z)
    monkeypatch.setitem(q3.CLAIMS, name, (broken, q3.CLAIMS[name][1]))
    assert q3.main(["-claim", name]) == 1
    out = capsys.readouterr().out
    assert out.startswith(f"FAIL  {name}")
    assert "0 passed, 1 failed" in out


def test_interval_flag_names_the_figure(tmp_path):
    paths = q3.plot_interval(tmp_path, -1, 2)
    assert [p.name for p in paths] == ["q3-2023-24-interval-D2-A=-1-B=2.pdf",
                                       "q3-2023-24-interval-D2-A=-1-B=2.png"]
    assert all(p.stat().st_size > 0 for p in paths)
