"""hw1-q3.py (the 2022-23 Q3) and the claim machinery: every claim passes, every check can fail,
the pieces are right, the command line behaves."""
import functools
import subprocess
import sys

import numpy as np
import pytest

import q3_claims
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
    result = q3.CLAIMS.run(name, seed)
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


BROKEN = {
    "q3.1-feature-map": {"build_A": _A_doubled_cross_terms},
    "q3.2-linear-in-features": {"coefficients": lambda W, v: q3.A_theta(W).T @ np.abs(v)},
    "q3.3-surjective-k-ge-d": {"recover": _recover_transposed},
    "q3.3-rank-limit-k-lt-d": {"targets": (_rank_one_target,)},
    "q3.4-closed-form-minimum": {"solve": _ridge},
    "q3.4-recover-minimiser": {"recover": lambda c, K: q3.recover_theta(1.01 * c, K)},
}


def test_every_claim_has_a_broken_variant():
    assert set(BROKEN) == set(q3.CLAIMS)


@pytest.mark.parametrize("name", list(BROKEN))
def test_claim_can_fail(name):
    result = q3.CLAIMS.run(name, 42, **BROKEN[name])
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
    result = q3.CLAIMS.run("q3.1-feature-map", 42, build_A=boom)
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
    assert q3.phi(np.ones(D)).shape == (D * (D + 1) // 2,)


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
        assert q3_claims.rel_error(g, f) < 1e-7


def test_matrix_fit_gradients_match_finite_differences():
    rng = np.random.default_rng(2)
    C = q3.unvech(rng.normal(size=6))
    W, v = rng.normal(size=(2, 3)), rng.normal(size=2)
    _, grads = q3.matrix_fit_loss(W, v, C)
    fd = _fd_grads(lambda W, v: q3.matrix_fit_loss(W, v, C)[0], [W, v])
    for g, f in zip(grads, fd):
        assert q3_claims.rel_error(g, f) < 1e-7


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


# ----------------------------------------------------------------------------- the claim machinery

def test_result_line_format():
    result = q3.CLAIMS.run("q3.1-feature-map", 42)
    line = result.line()
    assert line.startswith("PASS  q3.1-feature-map  max|h - A φ| = ")
    assert "(< 1e-10)" in line


def test_select_takes_a_full_name_else_every_name_that_contains_it():
    claims = q3_claims.Claims({"a-1": None, "a-10": None, "b-1": None})
    assert claims.select(None) == ["a-1", "a-10", "b-1"]
    assert claims.select("a-1") == ["a-1"]
    assert claims.select("-1") == ["a-1", "a-10", "b-1"]
    assert claims.select("A-") == ["a-1", "a-10"]
    assert claims.select("c") == []


def test_a_claims_generator_depends_on_the_seed_and_the_name_only():
    draw = [q3_claims.claim_rng(seed, name).normal() for seed, name in
            ((42, "q3.1"), (42, "q3.1"), (7, "q3.1"), (42, "q3.2"))]
    assert draw[0] == draw[1] and len(set(draw)) == 3


# ----------------------------------------------------------------------------- command line

@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("full")
    return run_cli(cwd=cwd), cwd


def test_full_run_passes_every_claim(full_run):
    proc, _ = full_run
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    claim_lines = [line for line in lines if line.startswith(("PASS", "FAIL"))]
    assert [line.split()[1] for line in claim_lines] == list(q3.CLAIMS)
    assert all(line.startswith("PASS") for line in claim_lines)
    assert lines[-1].startswith(f"{len(q3.CLAIMS)} passed, 0 failed")


def test_full_run_writes_nothing(full_run):
    proc, cwd = full_run
    assert proc.returncode == 0
    assert not any(cwd.iterdir())   # the 2023-24 figure belongs to q3_other_editions


def test_filter_runs_one_claim_with_the_full_run_numbers(full_run, tmp_path):
    proc = run_cli("-claim", "q3.1-feature-map", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 2 and lines[1].startswith("1 passed, 0 failed")
    in_full = [line for line in full_run[0].stdout.splitlines() if " q3.1-feature-map " in line]
    assert lines[0].split() == in_full[0].split()   # same seed, same numbers, alone or not


def test_filter_by_part_of_a_name(tmp_path):
    proc = run_cli("-claim", "q3.3", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    names = [line.split()[1] for line in proc.stdout.splitlines()[:-1]]
    assert names == ["q3.3-surjective-k-ge-d", "q3.3-rank-limit-k-lt-d"]


def test_unknown_claim_is_a_usage_error(tmp_path):
    proc = run_cli("-claim", "2023-24", cwd=tmp_path)
    assert proc.returncode == 2
    assert "unknown claim '2023-24'" in proc.stderr
    assert "q3.1-feature-map" in proc.stderr and "q3.4-recover-minimiser" in proc.stderr
    assert "python -m q3_other_editions" in proc.stderr   # where the other editions' claims are
    assert proc.stdout == ""


@pytest.mark.parametrize("args", [["-interval", "0", "0"], ["-output_dir", "out"]])
def test_the_other_editions_flags_are_usage_errors(args, tmp_path):
    proc = run_cli(*args, cwd=tmp_path)
    assert proc.returncode == 2
    assert "unrecognized arguments" in proc.stderr
    assert not any(tmp_path.iterdir())


def test_help_lists_every_claim(tmp_path):
    proc = run_cli("--help", cwd=tmp_path)
    assert proc.returncode == 0
    for name in q3.CLAIMS:
        assert name in proc.stdout
    for flag in ("-seed", "--seed", "-claim", "--claim"):
        assert flag in proc.stdout
    assert "-interval" not in proc.stdout and "-output_dir" not in proc.stdout
    assert "python -m q3_other_editions" in proc.stdout


def test_a_failing_claim_exits_1(monkeypatch, capsys):
    name = "q3.1-feature-map"
    broken = functools.partial(q3.check_feature_map, build_A=_A_doubled_cross_terms)
    monkeypatch.setitem(q3.CLAIMS, name, (broken, q3.CLAIMS[name][1]))
    assert q3.main(["-claim", name]) == 1
    out = capsys.readouterr().out
    assert out.startswith(f"FAIL  {name}")
    assert "0 passed, 1 failed" in out
