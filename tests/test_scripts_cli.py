"""The scripts' command line on bad input and on a standard output that cannot be written:
one `error:` line, a non-zero exit, nothing written or lost."""
import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT
from runkit import errors, flags
from test_loader import labels, write_split

Q1 = ROOT / "hw1-q1.py"


def _negative_label(path):
    ytrain = labels(30, [0, 1, 2])
    ytrain[3] = -1
    write_split(path, ytrain=ytrain)
    return f"{path.name}: 'ytrain' has negative labels (-1); class labels must be 0, 1, ..., C-1"


def _nan_pixels(path):
    X = np.random.RandomState(3).rand(12, 16)
    X[1, 2] = np.nan
    write_split(path, Xtest=X)
    return (f"{path.name}: 'Xtest' has 1 non-finite values (NaN or inf); the data is damaged: "
            f"rebuild it with: python download_kuzushiji_mnist.py --output {path.name} --force")


def _empty_dev(path):
    write_split(path, Xdev=np.zeros((0, 16), np.uint8), ydev=np.zeros(0, np.uint8))
    return (f"{path.name}: the dev split is empty ('Xdev' has 0 rows); rebuild it with: "
            f"python download_kuzushiji_mnist.py --output {path.name} --force")


@pytest.mark.parametrize("damage", [_negative_label, _nan_pixels, _empty_dev])
def test_the_script_stops_on_bad_data_with_one_line(tmp_path, damage):
    """The command line: `error: ...`, exit code 1, no output folder, the data file untouched."""
    data = tmp_path / "bad.npz"
    message = damage(data)
    before = data.read_bytes()
    result = subprocess.run([sys.executable, str(Q1), "perceptron", "-data_path", data.name,
                             "-output_dir", "out", "-epochs", "1"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr == f"error: {message}\n"
    assert result.stdout == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.npz"]
    assert data.read_bytes() == before


# ----------------------------------------------------------------------------- -output_dir ''



def test_the_script_refuses_an_empty_output_dir(tmp_path):
    write_split(tmp_path / "d.npz")
    result = subprocess.run([sys.executable, str(Q1), "perceptron", "-data_path", "d.npz",
                             "-output_dir", "", "-epochs", "1"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr == ("error: the output folder is '' (empty): name a folder, or '.' for "
                             "the current one\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.npz"]


# ----------------------------------------------------------------------------- folders of failed runs


def test_unscaled_float_pixels_stop_both_scripts_with_one_line(tmp_path):
    X = np.random.RandomState(0).randint(0, 256, size=(30, 16)).astype(np.float64)
    write_split(tmp_path / "d.npz", Xtrain=X)
    for script, model in (("hw1-q1.py", "mlp"), ("hw1-q2.py", "mlp")):
        result = subprocess.run([sys.executable, str(ROOT / script), model, "-data_path",
                                 "d.npz", "-output_dir", "out", "-epochs", "1"], cwd=tmp_path,
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 1, script
        assert result.stderr.startswith("error: d.npz: 'Xtrain' has float pixels up to 255")
        assert result.stderr.count("\n") == 1
        assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------- standard output

def _run_q1(tmp_path, **popen):
    write_split(tmp_path / "d.npz")
    return subprocess.Popen([sys.executable, str(Q1), "perceptron", "-data_path", "d.npz",
                             "-output_dir", "out", "-epochs", "3"], cwd=tmp_path,
                            stderr=subprocess.PIPE, text=True, **popen)


def test_a_closed_pipe_ends_quietly_and_keeps_the_record(tmp_path):
    """`hw1-q1.py perceptron | head -1`: the reader goes after one line; the run completes,
    saves its files, and says nothing on stderr (no BrokenPipeError)."""
    process = _run_q1(tmp_path, stdout=subprocess.PIPE)
    assert process.stdout.readline().startswith("training path: ")
    process.stdout.close()
    stderr = process.stderr.read()
    assert process.wait(timeout=120) == 0
    assert stderr == ""
    assert (tmp_path / "out" / "q1-perceptron-data_path=d-epochs=3.json").is_file()


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_full_stdout_is_one_line_and_keeps_the_record(tmp_path):
    with open("/dev/full", "w") as full:
        process = _run_q1(tmp_path, stdout=full)
        stderr = process.stderr.read()
        assert process.wait(timeout=120) == 1
    assert stderr == ("error: cannot write to standard output (No space left on device); the "
                      "run went on and its files are saved\n")
    assert (tmp_path / "out" / "q1-perceptron-data_path=d-epochs=3.json").is_file()


# ----------------------------------------------------------------------------- flags and exit codes

def test_ctrl_c_is_interrupted_not_a_traceback(capsys):
    def interrupted():
        raise KeyboardInterrupt

    with pytest.raises(SystemExit) as exc:
        errors.run_command(interrupted)
    assert exc.value.code == 130
    assert capsys.readouterr().err.strip() == "interrupted"
    with pytest.raises(SystemExit) as exc:
        errors.run_command(lambda: 3)
    assert exc.value.code == 3


def test_flags_have_aliases_and_named_errors(capsys):
    parser = argparse.ArgumentParser()
    flags.add_flag(parser, "learning_rate", type=flags.positive_float, default=0.1)
    flags.add_flag(parser, "epochs", type=flags.positive_int, default=2)
    flags.add_flag(parser, "dropout", type=flags.probability, default=0.3)
    args = parser.parse_args(["-learning_rate", "0.5", "--epochs", "3", "--dropout", "0"])
    assert (args.learning_rate, args.epochs, args.dropout) == (0.5, 3, 0.0)
    assert parser.parse_args(["--learning-rate", "2"]).learning_rate == 2.0
    for argv, flag in ((["-learning_rate", "0"], "-learning_rate"), (["-epochs", "0"], "-epochs"),
                       (["-epochs", "x"], "-epochs"), (["-dropout", "1"], "-dropout"),
                       (["-learning_rate", "nan"], "-learning_rate")):
        with pytest.raises(SystemExit) as exc:
            parser.parse_args(argv)
        assert exc.value.code == 2
        assert f"argument {flag}" in capsys.readouterr().err
