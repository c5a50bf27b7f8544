"""hw1-q2.py: the models and the course's functions, training (`-impl fast` against the course's
DataLoader flow, the oracle), numpy's MLP against torch's, and the command line.
fast_sgd/manual.py's own contracts are in test_fast_sgd.py.

`-impl fast` must give the DataLoader flow's numbers bit for bit whichever way it trains
(ManualSGD where its start-up check passes on this CPU, autograd on pre-shuffled batches
where not): that is asserted; which way it trains is not.

Shapes: N examples, D features, H hidden units, C classes, B examples per batch.
"""
import copy
import json
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

import utils
from runkit import epoch_log, records
from conftest import (ROOT, assert_ctrl_c_ends_a_run_cleanly, assert_same_training,
                      load_script, make_tiny_dataset, nudge_gradient)
from fast_sgd import manual

q2 = load_script("hw1-q2.py")

TIMING_KEYS = ("train_seconds", "epoch_seconds")


@pytest.fixture(autouse=True)
def one_torch_thread():
    """main() sets torch to one thread; every test here trains on one, and the count is
    restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ----------------------------------------------------------------------------- the oracle

def build_run(data_path, model_name, learning_rate, optimizer="sgd", l2_decay=0.0,
              momentum=0.0, hidden_size=100, layers=1, activation="relu", dropout=0.3, seed=42,
              **_):
    """main()'s set-up, in its order: seed, dataset, model, optimizer, criterion."""
    utils.configure_seed(seed)
    data = utils.load_dataset(data_path)
    dataset = utils.ClassificationDataset(data)
    n_classes, n_features = utils.class_count(data), dataset.X.shape[1]
    if model_name == "logistic_regression":
        model = q2.LogisticRegression(n_classes, n_features)
    else:
        model = q2.FeedforwardNetwork(n_classes, n_features, hidden_size, layers, activation,
                                      dropout)
    if optimizer == "sgd":
        optim = torch.optim.SGD(model.parameters(), lr=learning_rate, weight_decay=l2_decay,
                                momentum=momentum)
    else:
        optim = torch.optim.Adam(model.parameters(), lr=learning_rate, weight_decay=l2_decay)
    return model, optim, nn.CrossEntropyLoss(), dataset


def course_flow(data_path, epochs, batch_size, **config):
    """The course's 2022-23 flow, written out: the set-up, DataLoader(shuffle=True), then per
    epoch train_batch on every batch, the mean of the epoch's batch losses, the dev loss and
    the dev accuracy. Returns the model, the optimizer and the per-epoch numbers."""
    model, optim, criterion, dataset = build_run(data_path, **config)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True)
    out = {"train_loss": [], "valid_loss": [], "valid_acc": []}
    for _ in range(epochs):
        losses = [q2.train_batch(X_b, y_b, model, optim, criterion) for X_b, y_b in loader]
        out["train_loss"].append(torch.tensor(losses, dtype=torch.float64).mean().item())
        model.eval()
        with torch.no_grad():
            out["valid_loss"].append(criterion(model(dataset.dev_X), dataset.dev_y).item())
        model.train()
        out["valid_acc"].append(q2.evaluate(model, dataset.dev_X, dataset.dev_y))
    return model, optim, out


def run_train(data_path, epochs, batch_size, impl, **config):
    """hw1-q2's train() after main()'s set-up: the model, the optimizer and the history."""
    model, optim, criterion, dataset = build_run(data_path, **config)
    history = q2.train(model, optim, criterion, dataset, epochs, batch_size, "cpu", impl)
    return model, optim, history


CURVES = ("train_loss", "valid_loss", "valid_acc")

# make_tiny_dataset: N = 60 training examples of D = 16 features (64-byte rows, as the real
# data's 784 features make 3136-byte ones), C = 3
CASES = {
    "logreg-batch1": dict(model_name="logistic_regression", batch_size=1, learning_rate=0.05),
    "logreg-batch7": dict(model_name="logistic_regression", batch_size=7,
                          learning_rate=0.05),  # 60 = 8 x 7 + 4
    "logreg-batch7-momentum-decay": dict(model_name="logistic_regression", batch_size=7,
                                         learning_rate=0.05, l2_decay=0.01, momentum=0.9),
    "mlp-defaults": dict(model_name="mlp", batch_size=16, learning_rate=0.01,
                         hidden_size=20),  # 60 = 3 x 16 + 12
    "mlp-tanh-dropout0.5-batch2": dict(model_name="mlp", batch_size=2, learning_rate=0.05,
                                       hidden_size=6, activation="tanh", dropout=0.5),
    "mlp-2layers-tanh-momentum-batch1": dict(model_name="mlp", batch_size=1, learning_rate=0.01,
                                             hidden_size=6, layers=2, activation="tanh",
                                             dropout=0.5, momentum=0.5),
    "mlp-no-dropout-batch7": dict(model_name="mlp", batch_size=7, learning_rate=0.1,
                                  hidden_size=9, dropout=0.0),
    "mlp-decay-batch5": dict(model_name="mlp", batch_size=5, learning_rate=0.1, hidden_size=9,
                             l2_decay=0.001),
    "mlp-last-batch-of-one": dict(model_name="mlp", batch_size=59, learning_rate=0.5,
                                  hidden_size=7),  # 60 = 59 + 1
    "mlp-hidden1-batch1": dict(model_name="mlp", batch_size=1, learning_rate=0.1,
                               hidden_size=1),
    "mlp-adam-2layers": dict(model_name="mlp", batch_size=4, learning_rate=0.01,
                             optimizer="adam", hidden_size=8, layers=2),
}


@pytest.mark.parametrize("case", list(CASES))
def test_fast_run_equals_reference_run(tiny_data, case):
    """Three epochs with -impl fast and with -impl reference (the course's DataLoader flow):
    every per-epoch number, the weights and the optimizer state equal, bit for bit."""
    config = CASES[case]
    fast_model, fast_optim, fast = run_train(tiny_data, epochs=3, impl="fast", **config)
    ref_model, ref_optim, ref = run_train(tiny_data, epochs=3, impl="reference", **config)
    assert fast["path"].startswith("fast: ")
    assert ref["path"] == "reference: DataLoader and autograd"
    for key in CURVES:
        assert fast[key] == ref[key], key
    assert_same_training(fast_model, fast_optim, ref_model, ref_optim)
    assert fast["diverged"] is ref["diverged"] is False
    assert len(set(fast["train_loss"])) == 3  # it trained


@pytest.mark.parametrize("case,dropout", [
    ("logreg-batch1", None), ("mlp-defaults", 0.0),
    ("mlp-defaults", 0.3),
])
@pytest.mark.parametrize("impl", ["fast", "reference"])
def test_training_is_the_courses_flow(tiny_data, case, dropout, impl):
    """train() after main()'s set-up gives the course's flow's numbers (written out in this
    file) from the same seed, bit for bit, on both paths."""
    config = dict(CASES[case])
    if dropout is not None:
        config["dropout"] = dropout
    oracle, oracle_optim, expected = course_flow(tiny_data, epochs=3, **config)
    model, optim, history = run_train(tiny_data, epochs=3, impl=impl, **config)
    for key in CURVES:
        assert history[key] == expected[key], key
    assert_same_training(model, optim, oracle, oracle_optim)


@pytest.mark.parametrize("case", ["logreg-batch1", "mlp-hidden1-batch1"])
def test_batch_of_one_biases_step_by_their_gradient_rows_bit_for_bit(tiny_data, case):
    """Plain SGD at batch 1: ManualSGD steps each bias by its gradient's one row, without
    autograd's sum over the batch. The same bits as the same steps with that sum, on any
    machine (every other kernel and operand is the same)."""
    config = CASES[case]
    model, optim, criterion, dataset = build_run(tiny_data, **config)
    trainer = manual.ManualSGD.build(model, optim, criterion, batch_size=1)
    summed = copy.deepcopy(trainer)
    batches = manual.ShuffledBatches(dataset.X, dataset.y, 1)
    X_batches, y = batches()
    rng = torch.get_rng_state()  # dropout's draws, the same for both
    losses = trainer.epoch(lambda: (X_batches, y)).tolist()

    torch.set_rng_state(rng)
    lr = optim.param_groups[0]["lr"]
    logp, gold = torch.empty(len(y), 3), summed.gold_values(len(y))
    grad_logp = torch.zeros(len(y), 3).scatter_(1, y[:, None], gold)
    with torch.inference_mode():
        for X_b, grad_b, logp_b in zip(X_batches, grad_logp.split(1), logp.split(1)):
            grads = summed.step(X_b, grad_b, logp_b, sum_bias=True)
            for param, grad in zip(summed.params, grads):
                param.add_(grad, alpha=-lr)
    assert losses == F.nll_loss(logp, y, reduction="none").tolist()
    for p, q in zip(trainer.params, summed.params):
        assert p.shape == q.shape and torch.equal(p.view(-1).view(torch.int32),
                                                  q.view(-1).view(torch.int32))


def test_manual_sgd_off_by_one_ulp_falls_back_to_autograd(tiny_data, monkeypatch, capsys):
    """With ManualSGD's arithmetic perturbed (one gradient entry one ulp off; momentum, so the
    momentum buffer shows it after one step), the start-up check refuses it: the run trains
    with autograd on the pre-shuffled batches, says so, and still gives the reference's
    numbers bit for bit."""
    nudge_gradient(monkeypatch, index=-1)
    config = dict(CASES["mlp-defaults"], momentum=0.9)
    model, optim, fast = run_train(tiny_data, epochs=3, impl="fast", **config)
    assert fast["engine"] == "AUTOGRAD_PRESHUFFLED" and "bits differ" in fast["path"]
    assert f"training path: {fast['path']}" in capsys.readouterr().out
    ref_model, ref_optim, ref = run_train(tiny_data, epochs=3, impl="reference", **config)
    for key in CURVES:
        assert fast[key] == ref[key], key
    assert_same_training(model, optim, ref_model, ref_optim)


def test_unreproducible_dataloader_order_runs_the_dataloader_flow(tiny_data, monkeypatch):
    """Where shuffled_order cannot reproduce this torch's DataLoader, -impl fast runs the
    DataLoader flow itself, its path says why, and its numbers are the reference's."""
    monkeypatch.setattr(manual, "dataloader_order_matches", lambda: False)
    monkeypatch.setattr(manual, "ShuffledBatches",
                        lambda *a: pytest.fail("pre-shuffled batches built"))
    config = CASES["mlp-tanh-dropout0.5-batch2"]
    _, _, fast = run_train(tiny_data, epochs=2, impl="fast", **config)
    _, _, ref = run_train(tiny_data, epochs=2, impl="reference", **config)
    assert fast["engine"] == "DATALOADER" and "shuffled_order does not reproduce" in fast["path"]
    for key in CURVES:
        assert fast[key] == ref[key], key


def test_fast_epochs_are_used_on_the_fast_path_only(tiny_data, monkeypatch):
    """-impl reference never calls fast_sgd; -impl fast does."""
    calls = []
    original = manual.fast_epochs
    monkeypatch.setattr(manual, "fast_epochs", lambda *a: calls.append(1) or original(*a))
    run_train(tiny_data, epochs=1, impl="reference", **CASES["mlp-defaults"])
    assert calls == []
    run_train(tiny_data, epochs=1, impl="fast", **CASES["mlp-defaults"])
    assert calls == [1]


# ----------------------------------------------------------------------------- numpy == torch

def test_numpy_mlp_and_torch_network_agree(tiny_data):
    """hw1-q1.py's hand-written MLP and FeedforwardNetwork here (dropout 0, float64, the same
    initial weights, batch 1, the same example order) reach the same weights and losses after
    300 per-example SGD steps (rtol 1e-10): two implementations of the same SGD."""
    q1 = load_script("hw1-q1.py")
    X, y = utils.load_dataset(tiny_data)["train"]
    N, D, H, C, layers, lr, epochs = len(X), X.shape[1], 8, 3, 2, 0.05, 5
    np.random.seed(0)
    mlp = q1.MLP(C, D, hidden_size=H, layers=layers)
    start = [W.copy() for W in mlp.W]
    ffn = q2.FeedforwardNetwork(C, D, H, layers, "relu", 0.0).double()
    linears = list(ffn.layers)[0::3]
    with torch.no_grad():
        for linear, W, b in zip(linears, mlp.W, mlp.b):
            linear.weight.copy_(torch.from_numpy(W))
            linear.bias.copy_(torch.from_numpy(b))
    optimizer, criterion = torch.optim.SGD(ffn.parameters(), lr=lr), nn.CrossEntropyLoss()
    X_t, y_t = torch.from_numpy(X), torch.from_numpy(y)
    orders = [np.random.RandomState(e).permutation(N) for e in range(epochs)]
    assert N * epochs == 300
    for order in orders:
        numpy_loss = mlp.train_epoch(X[order], y[order], learning_rate=lr)
        torch_losses = [q2.train_batch(X_t[i:i + 1], y_t[i:i + 1], ffn, optimizer, criterion)
                        for i in order.tolist()]
        assert numpy_loss == pytest.approx(np.mean(torch_losses), rel=1e-10)
    for W, b, linear in zip(mlp.W, mlp.b, linears):
        np.testing.assert_allclose(W, linear.weight.detach().numpy(), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(b, linear.bias.detach().numpy(), rtol=1e-10, atol=1e-12)
    assert np.abs(mlp.W[0] - start[0]).max() > 1e-3  # the weights moved


# ----------------------------------------------------------------------------- pieces

def test_feedforward_network_layout_and_initialisation_order():
    """(Linear, activation, Dropout) per hidden layer, then Linear; the layers' initial weights
    drawn in creation order, input layer first."""
    torch.manual_seed(1)
    model = q2.FeedforwardNetwork(10, 784, 32, 3, "tanh", 0.2)
    assert [type(m) for m in model.layers] == [nn.Linear, nn.Tanh, nn.Dropout] * 3 + [nn.Linear]
    assert all(m.p == 0.2 for m in model.layers if isinstance(m, nn.Dropout))
    linears = list(model.layers)[0::3]
    assert [tuple(m.weight.shape) for m in linears] == [(32, 784), (32, 32), (32, 32), (10, 32)]
    torch.manual_seed(1)
    expected = [nn.Linear(784, 32), nn.Linear(32, 32), nn.Linear(32, 32), nn.Linear(32, 10)]
    for linear, reference in zip(linears, expected):
        assert torch.equal(linear.weight, reference.weight)
        assert torch.equal(linear.bias, reference.bias)
    assert [type(m) for m in q2.FeedforwardNetwork(3, 4, 5, 1, "relu", 0.0).layers] == \
        [nn.Linear, nn.ReLU, nn.Dropout, nn.Linear]


def test_logistic_regression_is_one_linear_layer():
    """W (C, D) and b (C,); forward gives the scores x W^T + b (the loss applies softmax)."""
    model = q2.LogisticRegression(10, 784)
    assert [tuple(p.shape) for p in model.parameters()] == [(10, 784), (10,)]
    X = torch.rand(5, 784)
    assert torch.allclose(model(X), X @ model.linear.weight.T + model.linear.bias, atol=1e-6)


def test_train_batch_takes_one_sgd_step_and_returns_the_loss():
    """train_batch returns the batch's loss (a float) before the step and moves each parameter
    by -lr times its gradient; the next call does not reuse the old gradient."""
    torch.manual_seed(0)
    model = q2.LogisticRegression(3, 4)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    criterion = nn.CrossEntropyLoss()
    X, y = torch.rand(6, 4), torch.tensor([0, 1, 2, 0, 1, 2])
    for _ in range(2):
        reference = copy.deepcopy(model)
        before = criterion(reference(X), y)
        before.backward()
        loss = q2.train_batch(X, y, model, optimizer, criterion)
        assert isinstance(loss, float) and loss == before.item()
        for p, q in zip(model.parameters(), reference.parameters()):
            assert torch.allclose(p, q - 0.5 * q.grad, rtol=0, atol=1e-7)
            assert not torch.equal(p, q)
    assert criterion(model(X), y).item() < before.item()


def test_evaluate_and_evaluate_with_loss_use_eval_mode_and_restore_training():
    """evaluate and evaluate_with_loss: dropout off (no random numbers drawn, the same answer
    twice), no gradients, the model back in training mode, and the same accuracy."""
    torch.manual_seed(0)
    model = q2.FeedforwardNetwork(3, 4, 50, 1, "relu", 0.5)
    X, y = torch.rand(40, 4), torch.randint(0, 3, (40,))
    state = torch.get_rng_state()
    accuracy = q2.evaluate(model, X, y)
    loss, accuracy_too = q2.evaluate_with_loss(model, X, y, nn.CrossEntropyLoss())
    assert torch.equal(torch.get_rng_state(), state)
    assert model.training
    assert q2.evaluate(model, X, y) == accuracy == accuracy_too
    model.eval()
    with torch.no_grad():
        scores = model(X)
    model.train()
    assert accuracy == (scores.argmax(dim=-1) == y).sum().item() / 40
    assert loss == nn.CrossEntropyLoss()(scores, y).item()
    model.eval()
    with torch.no_grad():
        assert torch.equal(q2.predict(model, X), scores.argmax(dim=-1))


# ----------------------------------------------------------------------------- command line

def run_main(argv, capsys):
    """hw1-q2.main in this process: (record, stdout, stderr)."""
    record = q2.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return record, captured.out, captured.err


def exit_of_main(argv, capsys):
    """(exit code, stdout, stderr) of a main() that exits."""
    with pytest.raises(SystemExit) as exit_info:
        q2.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


def test_cli_outputs_on_tiny_data(tiny_data, tmp_path, capsys):
    """The figures and the record (its keys, config and curves), the printed lines (the path,
    one per epoch, the final accuracies, the time), nothing on stderr."""
    record, out, err = run_main(["mlp", "-data_path", tiny_data, "-output_dir", tmp_path,
                                 "-epochs", 3, "-hidden_size", 12], capsys)
    name = "q2-mlp-data_path=tiny-epochs=3-hidden_size=12"
    for suffix in ("-loss.pdf", "-loss.png", "-accuracy.pdf", "-accuracy.png", ".json"):
        assert (tmp_path / f"{name}{suffix}").is_file(), suffix
    saved = records.read_record(tmp_path / f"{name}.json")
    assert list(saved) == ["model", "config", *epoch_log.RECORD_KEYS]
    assert saved == json.loads(json.dumps(record, default=str))
    assert saved["epochs"] == [1, 2, 3]
    for key in CURVES:
        assert len(saved[key]) == 3 and all(isinstance(v, float) for v in saved[key])
    assert saved["model"] == "mlp" and saved["diverged"] is False
    assert set(saved["config"]) == {"model", "epochs", "batch_size", "learning_rate", "l2_decay",
                                    "hidden_size", "layers", "dropout", "activation",
                                    "optimizer", "momentum", "seed", "data_path", "output_dir",
                                    "device", "impl"}
    assert saved["config"]["batch_size"] == 16 and saved["config"]["device"] == "cpu"
    lines = out.splitlines()
    assert lines[0] == f"training path: {saved['path']}" and saved["path"].startswith("fast: ")
    assert saved["engine"] == "MANUAL_SGD"
    epoch_lines = [line for line in lines if line.startswith("epoch ")]
    assert len(epoch_lines) == 3
    assert re.fullmatch(r"epoch   3 \| train loss \d+\.\d{4} \| dev loss \d+\.\d{4} \| "
                        r"dev acc \d\.\d{4} \| \d+\.\d\d s", epoch_lines[-1])
    assert f"Final train acc: {saved['final_train_acc']:.4f}" in lines
    assert f"Final test acc: {saved['test_acc']:.4f}" in lines
    assert re.search(r"^Training time: \d+\.\d\d s$", out, re.M)
    assert err == ""


def test_final_train_accuracy_is_that_of_the_final_weights(tiny_data, tmp_path, capsys):
    """final_train_acc: evaluate() on the whole training set with the trained weights (the
    course's numbers, computed here from a reference run of the same settings)."""
    record, _, _ = run_main(["mlp", "-data_path", tiny_data, "-output_dir", tmp_path,
                             "-epochs", 2, "-hidden_size", 12, "-dropout", 0], capsys)
    model, _, _ = run_train(tiny_data, 2, 16, "reference", model_name="mlp",
                            learning_rate=0.01, hidden_size=12, dropout=0.0)
    dataset = utils.ClassificationDataset(utils.load_dataset(tiny_data))
    assert record["final_train_acc"] == q2.evaluate(model, dataset.X, dataset.y)
    assert record["test_acc"] == q2.evaluate(model, dataset.test_X, dataset.test_y)


def test_double_dash_aliases_give_the_same_config():
    """--learning-rate is -learning_rate, and so on."""
    single, _ = q2.parse_args(["mlp", "-learning_rate", "0.05", "-batch_size", "4",
                               "-hidden_size", "5", "-l2_decay", "0.1", "-data_path", "x.npz",
                               "-momentum", "0.5", "-dropout", "0.1", "-output_dir", "o"])
    double, _ = q2.parse_args(["mlp", "--learning-rate", "0.05", "--batch-size", "4",
                               "--hidden-size", "5", "--l2-decay", "0.1", "--data-path", "x.npz",
                               "--momentum", "0.5", "--dropout", "0.1", "--output-dir", "o"])
    assert vars(single) == vars(double)
    assert single.learning_rate == 0.05 and single.batch_size == 4 and single.momentum == 0.5


@pytest.mark.parametrize("spelling", ["-hidden_sizes", "--hidden-sizes"])
def test_hidden_sizes_is_an_alias_of_hidden_size(spelling):
    """The skeleton's -hidden_sizes sets -hidden_size (one flag, one name in the run's name)."""
    args, defaults = q2.parse_args(["mlp", spelling, "37"])
    assert args.hidden_size == 37 and not hasattr(args, "hidden_sizes")
    assert records.run_name("mlp", vars(args), defaults) == "mlp-hidden_size=37"


@pytest.mark.parametrize("argv,batch_size,name", [
    (["logistic_regression"], 1, "logistic_regression"),
    (["mlp"], 16, "mlp"),
    (["mlp", "-batch_size", "16"], 16, "mlp"),  # the resolved default is not a change
    (["logistic_regression", "-batch_size", "16"], 16, "logistic_regression-batch_size=16"),
    (["mlp", "-batch_size", "1", "-device", "cpu"], 1, "mlp-batch_size=1"),
    (["mlp", "-layers", "2", "-impl", "reference"], 16, "mlp-impl=reference-layers=2"),
])
def test_batch_size_default_and_run_names(argv, batch_size, name):
    """-batch_size defaults to 1 for logistic regression (Q2.1) and 16 for the mlp (Table 1);
    a run's name lists only the flags that differ from the resolved defaults."""
    args, defaults = q2.parse_args(argv)
    assert args.batch_size == batch_size
    assert records.run_name(args.model, vars(args), defaults) == name


@pytest.mark.parametrize("argv,flag", [
    (["-dropout", "1"], "-dropout"),
    (["-dropout", "-0.1"], "-dropout"),
    (["-hidden_size", "0"], "-hidden_size"),
    (["-layers", "0"], "-layers"),
    (["-batch_size", "0"], "-batch_size"),
    (["-epochs", "0"], "-epochs"),
    (["-learning_rate", "0"], "-learning_rate"),
    (["--learning-rate", "-1"], "-learning_rate"),
    (["-learning_rate", "nan"], "-learning_rate"),
    (["-learning_rate", "1e39"], "-learning_rate"),  # beyond float32: torch's step would fail
    (["-l2_decay", "-0.1"], "-l2_decay"),
    (["-l2_decay", "1e39"], "-l2_decay"),
    (["-momentum", "1"], "-momentum"),
    (["-optimizer", "adam", "-momentum", "0.9"], "-momentum"),
    (["-seed", "-1"], "-seed"),
    (["-activation", "sigmoid"], "-activation"),
    (["-optimizer", "rmsprop"], "-optimizer"),
    (["-device", "nonsense"], "-device"),
    (["-impl", "slow"], "-impl"),
])
def test_invalid_flags_are_argparse_errors_naming_the_flag(argv, flag, capsys):
    """A bad value is an argparse error (exit 2) naming the flag."""
    with pytest.raises(SystemExit) as exit_info:
        q2.parse_args(["mlp"] + argv)
    assert exit_info.value.code == 2
    assert f"argument {flag}" in capsys.readouterr().err


def test_cuda_requested_without_cuda_is_an_argparse_error(capsys):
    """-device cuda on a machine without CUDA: exit 2, naming -device."""
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(SystemExit) as exit_info:
        q2.parse_args(["mlp", "-device", "cuda"])
    assert exit_info.value.code == 2
    assert "argument -device" in capsys.readouterr().err


def test_meta_device_is_an_argparse_error(capsys):
    """torch.device() parses `meta`, but it holds no data: rejected when parsing."""
    with pytest.raises(SystemExit) as exit_info:
        q2.parse_args(["mlp", "-device", "meta"])
    assert exit_info.value.code == 2
    assert "argument -device/--device: meta" in capsys.readouterr().err


def test_bad_output_dir_fails_before_training(tiny_data, tmp_path, capsys, monkeypatch):
    """A -output_dir behind a file: exit 1 in one line, before training."""
    blocker = tmp_path / "afile"
    blocker.write_text("")
    monkeypatch.setattr(q2, "train", lambda *a, **k: pytest.fail("trained"))
    code, _, err = exit_of_main(["mlp", "-data_path", tiny_data, "-output_dir",
                                 blocker / "out"], capsys)
    assert code == 1
    assert err.startswith(f"error: {blocker / 'out'}: ") and len(err.splitlines()) == 1


def test_missing_data_file_fails_cleanly(tmp_path, capsys):
    """A missing data file: exit 1, one `error:` line naming it, nothing written."""
    code, _, err = exit_of_main(["mlp", "-data_path", tmp_path / "absent.npz", "-output_dir",
                                 tmp_path / "out"], capsys)
    assert code == 1
    assert err.startswith("error: ") and "absent.npz" in err and len(err.splitlines()) == 1
    assert not list(tmp_path.iterdir())


def test_too_large_a_network_fails_in_one_line(tiny_data, tmp_path, capsys):
    """-hidden_size 1000000000: one `error:` line saying how much memory it needs, exit 1,
    before training and before any folder is made."""
    out = tmp_path / "out"
    code, stdout, err = exit_of_main(["mlp", "-hidden_size", 1000000000, "-data_path",
                                      tiny_data, "-output_dir", out], capsys)
    assert code == 1
    assert re.fullmatch(r"error: -hidden_size 1000000000 needs about .+\n", err), err
    assert "epoch" not in stdout and not out.exists()


def test_exploding_run_warns_once_completes_and_is_flagged(tiny_data, tmp_path, capsys):
    """-learning_rate 1000: one warning, all epochs run, the record flagged."""
    record, out, err = run_main(["logistic_regression", "-learning_rate", 1000, "-epochs", 3,
                                 "-data_path", tiny_data, "-output_dir", tmp_path], capsys)
    assert record["diverged"] is True
    assert err.count("warning: training diverged") == 1 and err.count("\n") == 1
    assert len(record["train_loss"]) == 3 and "Final test acc" in out
    assert records.read_record(next(tmp_path.glob("*.json")))["diverged"] is True


def test_largest_accepted_learning_rate_diverges_without_a_crash(tiny_data, tmp_path, capsys):
    """At the flag's upper bound (3.4e38) torch can still step: the run completes, flagged."""
    record, out, err = run_main(["logistic_regression", "-learning_rate", "3.4e38", "-epochs",
                                 2, "-batch_size", 8, "-data_path", tiny_data,
                                 "-output_dir", tmp_path], capsys)
    assert record["diverged"] is True and "Final test acc" in out
    assert err.count("warning: training diverged") == 1


def test_non_finite_run_is_flagged_and_saved_as_strict_json(tiny_data, tmp_path, capsys):
    """A huge weight decay overflows the weights: NaN losses, saved as null (strict JSON)."""
    record, _, err = run_main(["logistic_regression", "-learning_rate", 1, "-l2_decay", "1e30",
                               "-epochs", 2, "-data_path", tiny_data, "-output_dir", tmp_path],
                              capsys)
    assert record["diverged"] is True and "non-finite" in err
    text = next(tmp_path.glob("*.json")).read_text()
    saved = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-strict JSON: {c}"))
    assert saved["train_loss"] == [None, None] and saved["diverged"] is True


def test_same_seed_gives_identical_records(tiny_data, tmp_path, capsys):
    """Two runs with one seed: the same record (timings and folder aside); another seed,
    other losses."""
    def run(out_dir, *extra):
        record, _, _ = run_main(["mlp", "-epochs", 3, "-hidden_size", 10, "-data_path",
                                 tiny_data, "-output_dir", tmp_path / out_dir, *extra], capsys)
        for key in TIMING_KEYS:
            record.pop(key)
        record["config"].pop("output_dir")
        return record

    first = run("a")
    assert run("b") == first
    assert run("c", "-seed", 43)["train_loss"] != first["train_loss"]


def test_reference_impl_from_the_command_line_gives_the_same_numbers(tiny_data, tmp_path,
                                                                     capsys):
    """`-impl fast` and `-impl reference` write the same numbers; the path says which ran."""
    def run(impl):
        record, out, _ = run_main(["mlp", "-epochs", 2, "-batch_size", 4, "-data_path",
                                   tiny_data, "-output_dir", tmp_path, "-impl", impl], capsys)
        assert f"training path: {record['path']}" in out.splitlines()
        return record

    fast, reference = run("fast"), run("reference")
    assert fast["path"].startswith("fast: ")
    assert reference["path"] == "reference: DataLoader and autograd"
    numbers = ("train_loss", "valid_loss", "valid_acc", "final_train_acc", "test_acc",
               "diverged")
    assert {k: fast[k] for k in numbers} == {k: reference[k] for k in numbers}


def test_script_runs_as_a_program(tiny_data, tmp_path):
    """`python hw1-q2.py logistic_regression --epochs 2 ...`: exit 0, the record saved; --help
    lists every flag."""
    result = subprocess.run([sys.executable, str(ROOT / "hw1-q2.py"), "logistic_regression",
                             "--epochs", "2", "--data-path", str(tiny_data), "--output-dir",
                             str(tmp_path / "out")], capture_output=True, text=True,
                            cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "Final test acc: " in result.stdout
    assert (tmp_path / "out" / "q2-logistic_regression-data_path=tiny-epochs=2.json").is_file()
    help_text = q2.build_parser().format_help()
    for flag in ("-epochs", "-batch_size", "-learning_rate", "-l2_decay", "-hidden_size",
                 "-hidden_sizes", "-layers", "-dropout", "-activation", "-optimizer",
                 "-momentum", "-seed", "-data_path", "-output_dir", "-device", "-impl",
                 "--learning-rate"):
        assert flag in help_text


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child process")
def test_ctrl_c_ends_a_run_cleanly(tmp_path):
    """Ctrl-C mid-run: `interrupted` on stderr, exit code 130, no traceback, no files."""
    path = make_tiny_dataset(tmp_path / "d.npz", n_train=2000, side=28)
    assert_ctrl_c_ends_a_run_cleanly("hw1-q2.py", ["mlp", "-data_path", path, "-epochs", 100000, "-batch_size", 1], tmp_path / "out")


# ----------------------------------------------------------------------------- real data

@pytest.mark.parametrize("config", [
    dict(model_name="logistic_regression", batch_size=1, learning_rate=0.001),  # Q2.1
    dict(model_name="mlp", batch_size=16, learning_rate=0.01),  # Table 1's defaults
], ids=["logistic_regression", "mlp"])
def test_real_data_fast_run_equals_reference_run(real_data_path, config):
    """The first epoch of the course's runs on the real data (784 features, 50000 examples):
    -impl fast gives -impl reference's numbers, weights and optimizer state bit for bit."""
    fast_model, fast_optim, fast = run_train(real_data_path, epochs=1, impl="fast", **config)
    ref_model, ref_optim, ref = run_train(real_data_path, epochs=1, impl="reference", **config)
    for key in CURVES:
        assert fast[key] == ref[key], key
    assert_same_training(fast_model, fast_optim, ref_model, ref_optim)
    assert fast["valid_acc"][0] > 0.6  # a working model, not two equal broken ones
