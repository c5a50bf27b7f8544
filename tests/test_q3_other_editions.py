"""q3_other_editions (Q3 of 2024-25, 2023-24 and 2021-22): every claim passes, every check can
fail, the pieces are right, `python -m q3_other_editions` behaves."""
import functools
import os
import subprocess
import sys

import numpy as np
import pytest

import q3_other_editions as others
from conftest import ROOT, load_script
from q3_other_editions import edition_2021_22 as e2021, edition_2023_24 as e2023
from q3_other_editions import edition_2024_25 as e2024


def run_cli(*args, cwd):
    """`python -m q3_other_editions ...` in `cwd`, away from the checkout (so that nothing it
    writes by default lands there), with the repository importable."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else []))}
    return subprocess.run([sys.executable, "-m", "q3_other_editions", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, encoding="utf-8", timeout=120)


def test_the_editions_claims_in_order_each_once_beside_2022_23():
    editions = [e2024.CLAIMS, e2023.CLAIMS, e2021.CLAIMS]
    assert list(others.CLAIMS) == [name for claims in editions for name in claims]
    assert not set(others.CLAIMS) & set(load_script("hw1-q3.py").CLAIMS)


# ----------------------------------------------------------------------------- every claim passes

@pytest.mark.parametrize("seed", [42, 7])
@pytest.mark.parametrize("name", list(others.CLAIMS))
def test_claim_passes(name, seed):
    result = others.CLAIMS.run(name, seed)
    assert result.passed, result.line()
    assert result.name == name


# ----------------------------------------------------------------------------- every check can fail

def _A_bias_without_factor(W, b):
    A = e2024.A_theta_bias(W, b)
    A[:, 1:1 + W.shape[1]] = W   # forgets the (1 - 2b) of the linear part
    return A


def _sign_mlp_integer_thresholds(D, A, B):
    W1, b1, w2, b2 = e2023.sign_mlp(D, A, B)
    return W1 // 2, np.array([-A, B]), w2, b2   # sign(sum x - A) is 0 on the boundary sum x = A


def _relu_mlp_unit_output(D, A, B):
    W1, b1, _, b2 = e2023.relu_mlp(D, A, B)
    return W1, b1, np.array([-1, -1]), b2       # 1 - h1 - h2 is 0 at sum x = A - 1


def _softmax(z):
    return e2021.softmax(z)


BROKEN = {
    "2024-25-feature-map": {"build_A": _A_bias_without_factor},
    "2024-25-output": {"coefficients": lambda W, b, v, v0: e2024.A_theta_bias(W, b).T @ v},
    "2023-24-sign-mlp": {"build": _sign_mlp_integer_thresholds},
    "2023-24-relu-mlp": {"build": _relu_mlp_unit_output},
    "2023-24-robustness": {"margin_fn": lambda nets, X: 2 * e2023.robustness_margin(nets, X),
                           "max_d": 4},
    "2021-22-sigmoid-derivative": {"derivative": lambda z: e2021.sigmoid(z)
                                   * (1 + e2021.sigmoid(z))},
    "2021-22-softmax-jacobian": {"jacobian": lambda z: np.diag(_softmax(z))},
    "2021-22-ce-gradient": {"gradient": lambda z, y: _softmax(z)},
    "2021-22-ce-hessian-psd": {"hessian": lambda z, y: np.outer(_softmax(z), _softmax(z))
                               - np.diag(_softmax(z))},
}


def test_every_claim_has_a_broken_variant():
    assert set(BROKEN) == set(others.CLAIMS)


@pytest.mark.parametrize("name", list(BROKEN))
def test_claim_can_fail(name):
    result = others.CLAIMS.run(name, 42, **BROKEN[name])
    assert not result.passed, result.line()
    assert result.line().startswith("FAIL")


# ----------------------------------------------------------------------------- the pieces

@pytest.mark.parametrize("D", [1, 2, 5])
def test_phi_bias_sizes(D):
    assert e2024.phi_bias(np.ones(D)).shape == ((D + 1) * (D + 2) // 2,)


def test_xor_table_for_d2():
    X = e2023.cube(2)
    for build, activation in ((e2023.sign_mlp, "sign"), (e2023.relu_mlp, "relu")):
        nets = [np.asarray(a)[None] for a in build(2, 0, 0)]
        y = e2023.mlp_forward(nets, X, activation)[0][0]
        np.testing.assert_array_equal(y, np.where(X[:, 0] != X[:, 1], 1, -1))


def test_cube_lists_every_vertex_once():
    X = e2023.cube(4)
    assert X.shape == (16, 4)
    assert set(np.unique(X)) == {-1, 1}
    assert len({tuple(x) for x in X}) == 16


@pytest.mark.parametrize("D", [1, 3, 10])
def test_margin_is_one_over_two_root_d(D):
    _, nets = e2023._stack_nets(e2023.sign_mlp, D)
    margin = e2023.robustness_margin(nets, e2023.cube(D).astype(float))
    np.testing.assert_allclose(margin, 1 / (2 * np.sqrt(D)))


def test_sigmoid_is_stable_for_large_inputs():
    with np.errstate(over="raise"):
        s = e2021.sigmoid(np.array([-1000.0, 0.0, 1000.0]))
    np.testing.assert_allclose(s, [0, 0.5, 1])


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
    assert [line.split()[1] for line in claim_lines] == list(others.CLAIMS)
    assert all(line.startswith("PASS") for line in claim_lines)
    assert lines[-1].startswith(f"{len(others.CLAIMS)} passed, 0 failed")


def test_full_run_writes_the_figure(full_run):
    proc, out = full_run
    pdf = out / "q3-2023-24-interval-D2-A=0-B=0.pdf"
    png = out / "q3-2023-24-interval-D2-A=0-B=0.png"
    assert pdf.read_bytes().startswith(b"%PDF")
    assert png.read_bytes().startswith(b"\x89PNG")
    assert sorted(p.name for p in out.iterdir()) == sorted([pdf.name, png.name])  # no temp files
    assert str(pdf) in proc.stdout


def test_filter_runs_one_claim_with_the_full_run_numbers(full_run, tmp_path):
    proc = run_cli("-claim", "2024-25-feature-map", "-output_dir", str(tmp_path / "out"),
                   cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 2 and lines[1].startswith("1 passed, 0 failed")
    in_full = [line for line in full_run[0].stdout.splitlines() if " 2024-25-feature-map " in line]
    assert lines[0].split() == in_full[0].split()   # same seed, same numbers, alone or not
    assert not (tmp_path / "out").exists()          # the figure belongs to the 2023-24 claims


def test_filter_by_edition(tmp_path):
    proc = run_cli("-claim", "2023-24", "-output_dir", str(tmp_path), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    names = [line.split()[1] for line in proc.stdout.splitlines() if line.startswith("PASS")]
    assert names == list(e2023.CLAIMS)
    assert "figure: " in proc.stdout


def test_unknown_claim_is_a_usage_error(tmp_path):
    proc = run_cli("-claim", "no-such-claim", cwd=tmp_path)
    assert proc.returncode == 2
    assert "unknown claim 'no-such-claim'" in proc.stderr
    assert "2024-25-feature-map" in proc.stderr and "2021-22-ce-hessian-psd" in proc.stderr
    assert proc.stdout == ""


def test_bad_interval_is_a_usage_error(tmp_path):
    proc = run_cli("-interval", "1", "0", cwd=tmp_path)
    assert proc.returncode == 2
    assert "python -m q3_other_editions: error: -interval" in proc.stderr


def test_help_lists_every_claim(tmp_path):
    proc = run_cli("--help", cwd=tmp_path)
    assert proc.returncode == 0
    for name in others.CLAIMS:
        assert name in proc.stdout
    for flag in ("-seed", "-output_dir", "--output-dir", "-claim", "-interval"):
        assert flag in proc.stdout
    assert "python hw1-q3.py" in proc.stdout   # where the 2022-23 claims are


def test_a_failing_claim_exits_1(monkeypatch, capsys):
    name = "2021-22-sigmoid-derivative"
    broken = functools.partial(e2021.check_sigmoid_derivative, derivative=lambda z: 0 * z)
    monkeypatch.setitem(others.CLAIMS, name, (broken, others.CLAIMS[name][1]))
    assert others.main(["-claim", name]) == 1
    out = capsys.readouterr().out
    assert out.startswith(f"FAIL  {name}")
    assert "0 passed, 1 failed" in out


def test_interval_flag_names_the_figure(tmp_path):
    paths = e2023.plot_interval(tmp_path, -1, 2)
    assert [p.name for p in paths] == ["q3-2023-24-interval-D2-A=-1-B=2.pdf",
                                       "q3-2023-24-interval-D2-A=-1-B=2.png"]
    assert all(p.stat().st_size > 0 for p in paths)
