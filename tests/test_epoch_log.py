"""runkit.epoch_log: the bookkeeping both scripts share (timing, epoch lines, divergence, the
record), and the one record format both scripts write."""
import json
from types import SimpleNamespace

import numpy as np
import pytest

from conftest import load_script
from fast_sgd import Engine, TrainingPath
from runkit import epoch_log

q1 = load_script("hw1-q1.py")


def fake_clock(monkeypatch):
    now = [0.0]
    monkeypatch.setattr(epoch_log, "time", SimpleNamespace(perf_counter=lambda: now[0]))
    return now


def test_epoch_seconds_span_training_and_evaluation(monkeypatch, capsys):
    """epoch_seconds[i] runs from the end of the epoch before to this epoch's log call
    (training and evaluations); train_seconds from the start to the last epoch, not the test
    evaluation after it; each line prints its own seconds."""
    now = fake_clock(monkeypatch)
    log = epoch_log.EpochLog(TrainingPath(Engine.PER_EXAMPLE), n_classes=3)
    for seconds in (1.0, 2.5, 4.0):
        now[0] += seconds
        log.epoch(True, train_loss=0.5, valid_acc=0.75)
    now[0] += 100  # the test evaluation
    record = log.finish(test_acc=0.7)
    assert record["epoch_seconds"] == [1.0, 2.5, 4.0]
    assert record["train_seconds"] == 7.5
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "training path: reference: per-example loop"
    assert lines[2] == "epoch   2 | train loss 0.5000 | dev acc 0.7500 | 2.50 s"


def test_the_record_has_every_key_and_none_for_curves_never_measured(monkeypatch):
    fake_clock(monkeypatch)
    log = epoch_log.EpochLog(TrainingPath(Engine.MANUAL_SGD), n_classes=3)
    log.epoch(True, train_loss=0.25, valid_loss=0.5, valid_acc=0.75)
    record = log.finish(test_acc=0.5, final_train_acc=0.875)
    assert tuple(record) == epoch_log.RECORD_KEYS
    assert record["train_acc"] is None and record["weight_norm"] is None
    assert record["valid_loss"] == [0.5] and record["final_train_acc"] == 0.875
    assert record["engine"] == "MANUAL_SGD" and record["record_version"] == epoch_log.RECORD_VERSION
    assert record["path"] == "fast: ManualSGD (no autograd), pre-shuffled batches"


def test_final_train_acc_defaults_to_the_last_epochs(monkeypatch):
    fake_clock(monkeypatch)
    log = epoch_log.EpochLog(TrainingPath(Engine.BLOCKED), n_classes=3)
    log.epoch(True, train_acc=0.5, valid_acc=0.25)
    log.epoch(True, train_acc=0.625, valid_acc=0.25)
    assert log.finish(test_acc=0.5)["final_train_acc"] == 0.625


def test_an_unknown_curve_is_refused():
    log = epoch_log.EpochLog(TrainingPath(Engine.BLOCKED), n_classes=3)
    with pytest.raises(TypeError, match="dev_acc"):
        log.epoch(True, dev_acc=0.5)


def test_the_training_path_sentence_is_made_from_its_data():
    path = TrainingPath(Engine.AUTOGRAD_PRESHUFFLED, "ManualSGD does not apply")
    assert str(path) == "fast: autograd on pre-shuffled batches (ManualSGD does not apply)"
    assert str(TrainingPath(Engine.DATALOADER)) == "reference: DataLoader and autograd"
    assert Engine.BLOCKED.kind == "fast" and Engine.PER_EXAMPLE.kind == "reference"


def test_divergence_rule_and_its_single_warning(capsys):
    """A mean loss above 2 log C is divergence unless bound_loss is off (hw1-q1's MLP's first
    epoch: its N(0.1, 0.1^2) start is far above it); a non-finite loss or weight always is; it
    warns only when not already flagged, with learning-rate advice only when asked."""
    bound = 2 * np.log(10)
    assert not epoch_log.diverged(1, bound * 0.99, True, 10, False)
    assert not epoch_log.diverged(1, bound * 2, True, 10, False, bound_loss=False)
    assert capsys.readouterr().err == ""
    assert epoch_log.diverged(2, bound * 1.01, True, 10, False)
    err = capsys.readouterr().err
    assert err.startswith("warning: training diverged at epoch 2 (training loss ")
    assert "try a smaller -learning_rate" in err and err.count("\n") == 1
    assert epoch_log.diverged(3, float("nan"), True, 10, True, bound_loss=False)
    assert epoch_log.diverged(3, 0.1, False, 10, True)
    assert capsys.readouterr().err == ""  # already flagged: no second warning
    assert epoch_log.diverged(1, None, False, 10, False, advice=False)
    err = capsys.readouterr().err
    assert "non-finite weights" in err and "learning_rate" not in err


def test_the_log_flags_a_run_once_and_spares_the_unbounded_first_epochs(monkeypatch, capsys):
    fake_clock(monkeypatch)
    log = epoch_log.EpochLog(TrainingPath(Engine.BLOCKED), n_classes=10, unbounded_epochs=1)
    log.epoch(True, train_loss=50.0)  # epoch 1: not held to the bound
    assert not log.record["diverged"]
    log.epoch(True, train_loss=50.0)
    log.epoch(False, train_loss=1.0)
    assert log.finish(test_acc=0.1)["diverged"] is True
    assert capsys.readouterr().err.count("warning: training diverged") == 1


@pytest.mark.parametrize("script,args", [
    ("hw1-q1.py", ["perceptron"]),
    ("hw1-q1.py", ["mlp", "-hidden_size", "3"]),
    ("hw1-q2.py", ["logistic_regression"]),
    ("hw1-q2.py", ["mlp", "-hidden_size", "3"]),
])
def test_both_scripts_write_the_same_record_keys(script, args, tiny_data, tmp_path):
    """One record format: the same keys from every script and model, in the same order."""
    module = load_script(script)
    record = module.main([*args, "-epochs", "2", "-data_path", str(tiny_data),
                          "-output_dir", str(tmp_path)])
    (saved,) = tmp_path.glob("*.json")
    on_disk = json.loads(saved.read_text())
    assert list(on_disk) == ["model", "config", *epoch_log.RECORD_KEYS]
    assert on_disk["epochs"] == [1, 2] and len(on_disk["valid_acc"]) == 2
    assert on_disk["test_acc"] == record["test_acc"]
    assert 0 <= on_disk["final_train_acc"] <= 1
