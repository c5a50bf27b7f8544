"""Tests of hw1-q2.py: the models and course functions, the fast flow against the course's
DataLoader flow (the oracle), numpy against torch, reproducibility, and the command line."""
import copy
import json
import math
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

import utils
from conftest import ROOT, load_script, make_tiny_dataset

q2 = load_script("hw1-q2.py")

RECORD_KEYS = {"model", "config", "epochs", "train_loss", "valid_loss", "valid_acc", "test_acc",
               "train_seconds", "diverged"}
TIMING_KEYS = ("train_seconds", "epoch_seconds")


# ----------------------------------------------------------------------------- the oracle

def course_flow(data_path, model_name, epochs, batch_size, learning_rate, optimizer="sgd",
                l2_decay=0.0, momentum=0.0, hidden_size=100, layers=1, activation="relu",
                dropout=0.3, seed=42):
    """The course's 2022-23 flow, the oracle: seed, dataset of float32 tensors,
    DataLoader(shuffle=True), model, optimizer, CrossEntropyLoss, then per epoch train_batch on
    every batch of the loader and a dev evaluation. Returns the model and per-epoch numbers."""
    utils.configure_seed(seed=seed)
    data = utils.load_dataset(data_path)
    dataset = q2.ClassificationDataset(data)
    train_dataloader = DataLoader(dataset, batch_size=batch_size, shuffle=True)
    dev_X, dev_y = dataset.dev_X, dataset.dev_y
    n_classes = torch.unique(dataset.y).shape[0]
    n_feats = dataset.X.shape[1]
    if model_name == "logistic_regression":
        model = q2.LogisticRegression(n_classes, n_feats)
    else:
        model = q2.FeedforwardNetwork(n_classes, n_feats, hidden_size, layers, activation,
                                      dropout)
    if optimizer == "sgd":
        optim = torch.optim.SGD(model.parameters(), lr=learning_rate, weight_decay=l2_decay,
                                momentum=momentum)
    else:
        optim = torch.optim.Adam(model.parameters(), lr=learning_rate, weight_decay=l2_decay)
    criterion = nn.CrossEntropyLoss()

    out = {"train_loss": [], "valid_loss": [], "valid_acc": []}
    for _ in range(epochs):
        losses = []
        for X_batch, y_batch in train_dataloader:
            losses.append(q2.train_batch(X_batch, y_batch, model, optim, criterion))
        # the mean over this epoch's batches (the skeleton's running mean is over all epochs)
        out["train_loss"].append(torch.tensor(losses, dtype=torch.float64).mean().item())
        model.eval()
        with torch.no_grad():
            out["valid_loss"].append(criterion(model(dev_X), dev_y).item())
        model.train()
        out["valid_acc"].append(q2.evaluate(model, dev_X, dev_y))
    out["last_losses"] = torch.tensor(losses, dtype=torch.float64)
    return model, optim, out


def fast_flow(data_path, model_name, epochs, batch_size, learning_rate, optimizer="sgd",
              l2_decay=0.0, momentum=0.0, hidden_size=100, layers=1, activation="relu",
              dropout=0.3, seed=42, impl="fast"):
    """hw1-q2.py's own flow, as main() runs it."""
    utils.configure_seed(seed=seed)
    dataset = q2.ClassificationDataset(utils.load_dataset(data_path))
    n_classes = torch.unique(dataset.y).shape[0]
    model = q2.build_model(model_name, n_classes, dataset.X.shape[1], hidden_size, layers,
                           activation, dropout)
    optim = q2.build_optimizer(optimizer, model.parameters(), learning_rate, l2_decay, momentum)
    criterion = nn.CrossEntropyLoss()
    manual = q2.manual_sgd_applies(model, optim, criterion, "cpu")
    history = q2.train(model, optim, criterion, dataset, epochs, batch_size, "cpu", impl=impl,
                       log=lambda line: None)
    return model, optim, history, manual


def assert_same_parameters(a, b):
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        assert torch.equal(p, q), f"{name} differs by {(p - q).abs().max().item():.3g}"


# ----------------------------------------------------------------------------- the epoch order

@pytest.mark.parametrize("n,batch_size", [(1, 1), (7, 1), (7, 3), (100, 16)])
def test_shuffled_order_draws_what_the_dataloader_draws(n, batch_size):
    """Same example order and the same global random state afterwards, epoch after epoch,
    with other draws (as dropout makes) in between."""
    def trace(next_order):
        torch.manual_seed(3)
        seen = []
        for _ in range(3):
            seen.append(next_order())
            seen.append(torch.rand(2).tolist())  # e.g. dropout masks during the epoch
        return seen

    loader = DataLoader(torch.arange(n), batch_size=batch_size, shuffle=True)
    expected = trace(lambda: torch.cat(list(loader)).tolist())
    got = trace(lambda: q2.shuffled_order(n).tolist())
    assert got == expected
    assert q2.dataloader_order_matches()


@pytest.mark.parametrize("batch_size", [1, 3, 4])  # cut from an epoch copy, or gathered
def test_epoch_batches_are_the_dataloader_batches(batch_size):
    torch.manual_seed(0)
    X, y = torch.rand(23, 5), torch.randint(0, 4, (23,))
    dataset = torch.utils.data.TensorDataset(X, y)
    torch.manual_seed(11)
    expected = [list(DataLoader(dataset, batch_size=batch_size, shuffle=True))
                for _ in range(2)]
    torch.manual_seed(11)
    batches = q2.EpochBatches(X, y, batch_size)
    for epoch in expected:
        X_batches, y_batches = batches()
        X_batches = list(X_batches)
        assert len(X_batches) == len(epoch) == math.ceil(23 / batch_size)
        for (X_b, y_b), (X_e, y_e) in zip(zip(X_batches, y_batches), epoch):
            assert torch.equal(X_b, X_e) and torch.equal(y_b, y_e)


# ----------------------------------------------------------------------------- fast == oracle

# name: (flow settings, the training loop the fast flow must run)
LOGREG, MLP, MLP_T, GENERAL = ("plain logistic regression", "plain one-hidden-layer network",
                               "plain one-hidden-layer network, first layer transposed",
                               "general")
# MLP_T where transposed_first_layer_matches accepts the shapes on this machine, else MLP
MLP_T_IF_EXACT = "transposed if exact"
SYNTHETIC_CASES = {
    # single-example shortcuts: bias rows, losses read after the epoch
    "logreg-batch1": (dict(model_name="logistic_regression", batch_size=1,
                           learning_rate=0.05), LOGREG),
    "logreg-batch7": (dict(model_name="logistic_regression", batch_size=7,
                           learning_rate=0.05), LOGREG),  # a smaller last batch: 60 = 8*7 + 4
    "logreg-batch7-decay-momentum": (dict(model_name="logistic_regression", batch_size=7,
                                          learning_rate=0.05, l2_decay=0.01, momentum=0.9),
                                     GENERAL),
    "mlp-defaults": (dict(model_name="mlp", batch_size=16, learning_rate=0.01, hidden_size=20),
                     MLP_T),  # a smaller last batch: 60 = 3*16 + 12
    "mlp-tanh-batch2": (dict(model_name="mlp", batch_size=2, learning_rate=0.05, hidden_size=6,
                             activation="tanh", dropout=0.5), MLP_T_IF_EXACT),
    # here MKL adds a one-row product in another order when transposed: the usual loop runs
    "mlp-last-batch-of-one": (dict(model_name="mlp", batch_size=59, learning_rate=0.5,
                                   hidden_size=7), MLP_T_IF_EXACT),  # 60 = 59 + 1
    "mlp-batch1-tanh": (dict(model_name="mlp", batch_size=1, learning_rate=0.05, hidden_size=6,
                             activation="tanh", dropout=0.2), MLP),
    "mlp-no-dropout-batch7": (dict(model_name="mlp", batch_size=7, learning_rate=0.1,
                                   hidden_size=9, dropout=0.0), MLP_T_IF_EXACT),
    "mlp-hidden1-batch4": (dict(model_name="mlp", batch_size=4, learning_rate=0.1,
                                hidden_size=1), MLP),  # one unit: not transposed
    # a (1, 1) hidden activation is "column-major": autograd's other mm for the input
    "mlp-hidden1-batch1": (dict(model_name="mlp", batch_size=1, learning_rate=0.1,
                                hidden_size=1), MLP),
    "mlp-batch1-tanh-2layers-momentum": (dict(model_name="mlp", batch_size=1,
                                              learning_rate=0.01, hidden_size=6, layers=2,
                                              activation="tanh", dropout=0.5, momentum=0.5),
                                         GENERAL),
    "mlp-batch1-2layers": (dict(model_name="mlp", batch_size=1, learning_rate=0.05,
                                hidden_size=5, layers=2), GENERAL),
    "mlp-hidden1-3layers": (dict(model_name="mlp", batch_size=3, learning_rate=0.1,
                                 hidden_size=1, layers=3), GENERAL),
    "mlp-decay-batch5": (dict(model_name="mlp", batch_size=5, learning_rate=0.1, hidden_size=9,
                              l2_decay=0.001), GENERAL),
    # autograd with sliced tensors instead of a DataLoader
    "mlp-adam": (dict(model_name="mlp", batch_size=4, learning_rate=0.01, optimizer="adam",
                      hidden_size=8, layers=2), "fast, autograd"),
    "logreg-adam-batch1": (dict(model_name="logistic_regression", batch_size=1,
                                learning_rate=0.01, optimizer="adam"), "fast, autograd"),
}


@pytest.mark.parametrize("side", [4, 3], ids=["16-features", "9-features"])
@pytest.mark.parametrize("case", list(SYNTHETIC_CASES))
def test_fast_flow_equals_course_flow_bit_for_bit(tmp_path, case, side):
    """On synthetic data every number of the fast flow equals the DataLoader flow's exactly:
    weights, optimizer state, every batch loss, the per-epoch means, dev loss and accuracy."""
    path = make_tiny_dataset(tmp_path / "tiny.npz", side=side)
    kwargs, loop = SYNTHETIC_CASES[case]
    with q2.num_threads(1):
        oracle, oracle_optim, expected = course_flow(path, epochs=3, **kwargs)
    model, optim, history, _ = fast_flow(path, epochs=3, **kwargs)

    if loop == MLP_T_IF_EXACT:
        batch_size, n = kwargs["batch_size"], 60  # make_tiny_dataset's training set
        exact = q2.transposed_first_layer_matches(sorted({batch_size, n % batch_size or
                                                          batch_size}),
                                                  side * side, kwargs["hidden_size"],
                                                  torch.float32)
        loop = MLP_T if exact else MLP
    assert history["loop"] == loop  # the case tests the loop it is meant to
    assert_same_parameters(model, oracle)
    assert torch.equal(history["last_losses"], expected["last_losses"])
    for key in ("train_loss", "valid_loss", "valid_acc"):
        assert history[key] == expected[key], key
    for p, q in zip(model.parameters(), oracle.parameters()):
        for key, value in oracle_optim.state[q].items():
            assert torch.equal(optim.state[p][key], value), key


@pytest.mark.parametrize("batch_size,chunk_rows", [(3, 8), (7, 15), (4, 4)])
@pytest.mark.parametrize("probe", [True, False], ids=["transposed", "probe-fails"])
def test_transposed_loop_across_chunks_equals_course_flow(tiny_data, monkeypatch, batch_size,
                                                          chunk_rows, probe):
    """_transposed_mlp_epoch with chunks of a few batches (rows gathered and dropout noise
    drawn per chunk; a smaller last chunk, and with batch 7 a smaller last batch in it) gives
    the DataLoader flow's numbers bit for bit; when the run-time check of MKL's transposed
    products fails, the usual loop runs instead, with the same numbers."""
    monkeypatch.setattr(q2.ManualSGD, "CHUNK_ROWS", chunk_rows)
    if not probe:
        monkeypatch.setattr(q2, "transposed_first_layer_matches", lambda *args: False)
    kwargs = dict(model_name="mlp", batch_size=batch_size, learning_rate=0.05, hidden_size=10,
                  dropout=0.3)
    with q2.num_threads(1):
        oracle, _, expected = course_flow(tiny_data, epochs=3, **kwargs)
    model, _, history, _ = fast_flow(tiny_data, epochs=3, **kwargs)
    assert history["loop"] == (MLP_T if probe else MLP)
    assert_same_parameters(model, oracle)
    assert torch.equal(history["last_losses"], expected["last_losses"])
    for key in ("train_loss", "valid_loss", "valid_acc"):
        assert history[key] == expected[key], key


def test_transposed_first_layer_check_leaves_the_random_state_alone():
    """The check draws from its own generator; on this machine MKL's transposed products
    are exact for Table 1's shapes (else the mlp runs the slower loop: see bench_q2.py)."""
    torch.manual_seed(4)
    state = torch.get_rng_state()
    assert q2.transposed_first_layer_matches([16], 784, 100, torch.float32)
    assert torch.equal(torch.get_rng_state(), state)


def test_dropout_noise_drawn_for_many_batches_at_once_is_the_per_batch_noise():
    """One bernoulli_ over a chunk of batches draws what one call per batch draws, in the
    same order, and leaves the generator in the same state."""
    torch.manual_seed(2)
    per_batch = torch.cat([torch.empty(16, 37).bernoulli_(0.7) for _ in range(5)]
                          + [torch.empty(3, 37).bernoulli_(0.7)])
    state = torch.get_rng_state()
    torch.manual_seed(2)
    assert torch.equal(torch.empty(83, 37).bernoulli_(0.7), per_batch)
    assert torch.equal(torch.get_rng_state(), state)


def test_momentum_state_left_by_manual_sgd_works_with_autograd(tiny_data):
    """After ManualSGD epochs the optimizer state is ordinary: train_batch can carry on, and
    the result equals the oracle's one more step."""
    kwargs = dict(model_name="mlp", batch_size=4, learning_rate=0.05, hidden_size=5,
                  momentum=0.9)
    with q2.num_threads(1):
        oracle, oracle_optim, _ = course_flow(tiny_data, epochs=2, **kwargs)
        model, optim, _, manual = fast_flow(tiny_data, epochs=2, **kwargs)
        assert manual
        X, y = torch.rand(3, 16), torch.tensor([0, 1, 2])
        for m, o in ((oracle, oracle_optim), (model, optim)):
            torch.manual_seed(5)
            q2.train_batch(X, y, m, o, nn.CrossEntropyLoss())
    assert_same_parameters(model, oracle)


def test_reference_impl_in_train_is_the_course_flow(tiny_data):
    kwargs = dict(model_name="mlp", batch_size=8, learning_rate=0.05, hidden_size=10)
    with q2.num_threads(1):
        oracle, _, expected = course_flow(tiny_data, epochs=2, **kwargs)
    model, _, history, _ = fast_flow(tiny_data, epochs=2, impl="reference", **kwargs)
    assert_same_parameters(model, oracle)
    assert history["valid_acc"] == expected["valid_acc"]


def compare_on_real_data(path, threads, **kwargs):
    with q2.num_threads(threads):
        oracle, _, expected = course_flow(path, **kwargs)
    model, _, history, manual = fast_flow(path, **kwargs)
    assert manual
    for key in ("train_loss", "valid_loss", "valid_acc"):
        assert [round(v, 4) for v in history[key]] == [round(v, 4) for v in expected[key]], key
    for p, q in zip(model.parameters(), oracle.parameters()):
        assert torch.allclose(p, q, rtol=0, atol=1e-6)
    return model, oracle, history


def test_real_data_logistic_regression_matches_course_flow(real_data_path):
    """`logistic_regression -learning_rate 0.001`, batch 1, first epoch: the unchanged course
    flow (torch's default threads) against the fast flow (one thread), to the fourth decimal."""
    _, _, history = compare_on_real_data(real_data_path, threads=None,
                                         model_name="logistic_regression", epochs=1,
                                         batch_size=1, learning_rate=0.001)
    assert history["valid_acc"][0] > 0.75  # a working model, not two equal broken ones


def test_real_data_mlp_matches_course_flow(real_data_path):
    """The default mlp, first epoch, both flows on one thread (MKL's products round
    differently with two): equal to the fourth decimal, and here bit for bit too."""
    model, oracle, history = compare_on_real_data(real_data_path, threads=1, model_name="mlp",
                                                  epochs=1, batch_size=16, learning_rate=0.01)
    assert history["loop"] == MLP_T
    assert history["valid_acc"][0] > 0.75
    assert_same_parameters(model, oracle)


def test_real_data_cli_logistic_regression_20_epochs(real_data_path, tmp_path, capsys):
    """The full `python hw1-q2.py logistic_regression -learning_rate 0.001` run on real data."""
    record = q2.main(["logistic_regression", "-learning_rate", "0.001",
                      "-data_path", str(real_data_path), "-output_dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert record["epochs"] == list(range(1, 21))
    assert not record["diverged"]
    assert 0.80 < record["valid_acc"][-1] < 0.95
    assert 0.60 < record["test_acc"] < 0.85  # the test set is harder than dev on KMNIST
    assert record["train_loss"][-1] < record["train_loss"][0]
    assert f"Final test acc: {record['test_acc']:.4f}" in out
    saved = utils.read_record(
        tmp_path / "q2-logistic_regression-learning_rate=0.001.json")  # the default file name
    assert saved["test_acc"] == record["test_acc"]


# ----------------------------------------------------------------------------- numpy == torch

def test_numpy_mlp_and_torch_ffn_agree(tiny_data):
    """hw1-q1.py's hand-written MLP and the FFN here (dropout 0, float64, the same initial
    weights and example order) reach the same weights after 300 per-example SGD steps, by
    autograd and by ManualSGD; and those two torch paths agree bit for bit."""
    q1 = load_script("hw1-q1.py")
    data = utils.load_dataset(tiny_data)
    X, y = data["train"]
    n_classes, n_features, hidden, layers, lr, epochs = 3, X.shape[1], 8, 2, 0.05, 5

    np.random.seed(0)
    mlp = q1.MLP(n_classes, n_features, hidden_size=hidden, layers=layers)
    ffns = [q2.FeedforwardNetwork(n_classes, n_features, hidden, layers, "relu", 0.0).double()
            for _ in range(2)]
    for ffn in ffns:
        for linear, W, b in zip(ffn.linears(), mlp.W, mlp.b):
            with torch.no_grad():
                linear.weight.copy_(torch.from_numpy(W))
                linear.bias.copy_(torch.from_numpy(b))
    X_t, y_t = torch.from_numpy(X), torch.from_numpy(y)

    torch.manual_seed(9)
    orders = [q2.shuffled_order(len(X)) for _ in range(epochs)]
    numpy_losses = [mlp.train_epoch(X, y, learning_rate=lr, order=order.numpy(), fast=False)
                    for order in orders]

    criterion = nn.CrossEntropyLoss()
    autograd_optim = torch.optim.SGD(ffns[0].parameters(), lr=lr)
    manual_optim = torch.optim.SGD(ffns[1].parameters(), lr=lr)
    assert q2.manual_sgd_applies(ffns[1], manual_optim, criterion, "cpu")
    torch.manual_seed(9)  # both torch paths draw the same orders
    batches = q2.EpochBatches(X_t, y_t, 1)
    autograd_losses = [q2.train_epoch_fast(batches, ffns[0], autograd_optim, criterion)
                       for _ in range(epochs)]
    torch.manual_seed(9)
    manual = q2.ManualSGD(ffns[1], manual_optim, X_t, y_t, 1)
    manual_losses = [manual.train_epoch() for _ in range(epochs)]

    assert len(X) * epochs == 300
    for W, b, linear in zip(mlp.W, mlp.b, ffns[0].linears()):
        assert np.allclose(W, linear.weight.detach().numpy(), rtol=1e-10, atol=1e-10)
        assert np.allclose(b, linear.bias.detach().numpy(), rtol=1e-10, atol=1e-10)
    assert_same_parameters(ffns[1], ffns[0])
    assert np.allclose(numpy_losses, [l.mean().item() for l in autograd_losses], rtol=1e-10)
    assert all(torch.equal(a, m) for a, m in zip(autograd_losses, manual_losses))
    # the weights moved: the comparison is not of two untouched copies
    first = ffns[0].linears()[0].weight.detach().numpy()
    np.random.seed(0)
    assert np.abs(first - q1.MLP(n_classes, n_features, hidden, layers).W[0]).max() > 1e-3


# ----------------------------------------------------------------------------- pieces

def test_feedforward_network_layout_and_initialisation_order():
    torch.manual_seed(1)
    model = q2.FeedforwardNetwork(10, 784, 32, 3, "tanh", 0.2)
    kinds = [type(m) for m in model.layers]
    assert kinds == [nn.Linear, nn.Tanh, nn.Dropout] * 3 + [nn.Linear]
    assert all(m.p == 0.2 for m in model.layers if isinstance(m, nn.Dropout))
    shapes = [tuple(m.weight.shape) for m in model.linears()]
    assert shapes == [(32, 784), (32, 32), (32, 32), (10, 32)]
    # initial weights drawn in creation order: input layer first
    torch.manual_seed(1)
    expected = [nn.Linear(784, 32), nn.Linear(32, 32), nn.Linear(32, 32), nn.Linear(32, 10)]
    for linear, reference in zip(model.linears(), expected):
        assert torch.equal(linear.weight, reference.weight)
        assert torch.equal(linear.bias, reference.bias)
    assert [type(m) for m in q2.FeedforwardNetwork(3, 4, 5, 1, "relu", 0.0).layers] == \
        [nn.Linear, nn.ReLU, nn.Dropout, nn.Linear]


def test_logistic_regression_is_one_linear_layer():
    model = q2.LogisticRegression(10, 784)
    assert [tuple(p.shape) for p in model.parameters()] == [(10, 784), (10,)]
    X = torch.rand(5, 784)
    assert torch.equal(model(X), X @ model.linear.weight.T + model.linear.bias)


def test_train_batch_takes_one_sgd_step_and_returns_the_loss():
    torch.manual_seed(0)
    model = q2.LogisticRegression(3, 4)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    criterion = nn.CrossEntropyLoss()
    X, y = torch.rand(6, 4), torch.tensor([0, 1, 2, 0, 1, 2])
    for _ in range(2):  # the second step must not reuse the first one's gradient
        reference = copy.deepcopy(model)
        before = criterion(reference(X), y)
        before.backward()
        loss = q2.train_batch(X, y, model, optimizer, criterion)
        assert isinstance(loss, float) and loss == before.item()
        for p, q in zip(model.parameters(), reference.parameters()):
            assert torch.allclose(p, q - 0.5 * q.grad, rtol=0, atol=1e-7)
            assert not torch.equal(p, q)
    assert criterion(model(X), y).item() < before.item()


def test_evaluate_uses_eval_mode_without_gradients_and_restores_training():
    torch.manual_seed(0)
    model = q2.FeedforwardNetwork(3, 4, 50, 1, "relu", 0.5)
    X, y = torch.rand(40, 4), torch.randint(0, 3, (40,))
    state = torch.get_rng_state()
    first = q2.evaluate(model, X, y)
    assert torch.equal(torch.get_rng_state(), state)  # no dropout masks drawn
    assert q2.evaluate(model, X, y) == first
    assert model.training
    model.eval()
    expected = (model(X).argmax(dim=-1) == y).float().mean().item()
    model.train()
    assert first == pytest.approx(expected)
    loss, accuracy = q2.evaluate_with_loss(model, X, y, nn.CrossEntropyLoss())
    assert accuracy == first and model.training and math.isfinite(loss)
    assert torch.equal(torch.get_rng_state(), state)
    with torch.enable_grad():
        assert not q2.predict(model, X).requires_grad


@pytest.mark.parametrize("p", [0.05, 0.1, 1 / 3, 0.3, 0.5, 0.7, 0.9, 0.99])
def test_manual_dropout_equals_torch_dropout(p):
    """ManualSGD's dropout: the same mask from the same draws, scaled to the same bits."""
    h = torch.randn(16, 37)
    scale = q2.ManualSGD._dropout_scale(p, 16, 37, torch.float32)
    assert scale is not None
    torch.manual_seed(1)
    expected = torch.nn.functional.dropout(h, p, training=True)
    state = torch.get_rng_state()
    torch.manual_seed(1)
    noise = torch.empty(16, 37).bernoulli_(1 - p).mul_(scale)
    assert torch.equal(h * noise, expected)
    assert torch.equal(torch.get_rng_state(), state)


def test_manual_sgd_applies_only_where_it_is_exact():
    criterion = nn.CrossEntropyLoss()
    ffn = q2.FeedforwardNetwork(3, 4, 5, 2, "relu", 0.1)
    logreg = q2.LogisticRegression(3, 4)
    sgd = lambda m, **kw: torch.optim.SGD(m.parameters(), lr=0.1, **kw)  # noqa: E731
    assert q2.manual_sgd_applies(ffn, sgd(ffn), criterion, "cpu")
    assert q2.manual_sgd_applies(logreg, sgd(logreg, momentum=0.9, weight_decay=0.1),
                                 criterion, "cpu")
    assert not q2.manual_sgd_applies(ffn, torch.optim.Adam(ffn.parameters()), criterion, "cpu")
    assert not q2.manual_sgd_applies(ffn, sgd(ffn, momentum=0.9, nesterov=True), criterion,
                                     "cpu")
    assert not q2.manual_sgd_applies(ffn, sgd(ffn), nn.CrossEntropyLoss(label_smoothing=0.1),
                                     "cpu")
    assert not q2.manual_sgd_applies(ffn, sgd(ffn), criterion, "cuda")
    assert not q2.manual_sgd_applies(nn.Sequential(nn.Linear(4, 3)), sgd(logreg), criterion,
                                     "cpu")
    frozen = torch.optim.SGD([logreg.linear.weight], lr=0.1)  # the bias not trained
    assert not q2.manual_sgd_applies(logreg, frozen, criterion, "cpu")


def test_divergence_criteria():
    model = q2.LogisticRegression(10, 4)
    assert q2.divergence(2.2, model, 10) is None
    assert "non-finite training loss" in q2.divergence(float("nan"), model, 10)
    assert "worse than guessing" in q2.divergence(30.0, model, 10)
    with torch.no_grad():
        model.linear.weight[0, 0] = float("inf")
    assert "non-finite weights" in q2.divergence(1.0, model, 10)


# ----------------------------------------------------------------------------- command line

def run_main(argv, capsys):
    record = q2.main(argv)
    captured = capsys.readouterr()
    return record, captured.out, captured.err


def test_cli_outputs_on_tiny_data(tiny_data, tmp_path, capsys):
    record, out, err = run_main(["mlp", "-data_path", str(tiny_data), "-output_dir",
                                 str(tmp_path), "-epochs", "3", "-hidden_size", "12"], capsys)
    name = "q2-mlp-data_path=tiny-epochs=3-hidden_size=12"
    for suffix in ("-loss.pdf", "-loss.png", "-accuracy.pdf", "-accuracy.png", ".json"):
        assert (tmp_path / f"{name}{suffix}").is_file(), suffix
    saved = utils.read_record(tmp_path / f"{name}.json")
    assert RECORD_KEYS <= set(saved)
    assert saved["epochs"] == [1, 2, 3]
    for key in ("train_loss", "valid_loss", "valid_acc"):
        assert len(saved[key]) == 3 and all(isinstance(v, float) for v in saved[key])
    assert saved["model"] == "mlp" and saved["diverged"] is False
    # the final training accuracy: evaluate() on the training set with the final weights
    model, _, _, _ = fast_flow(tiny_data, "mlp", 3, 16, 0.01, hidden_size=12)
    dataset = q2.ClassificationDataset(utils.load_dataset(tiny_data))
    assert saved["final_train_acc"] == q2.evaluate(model, dataset.X, dataset.y)
    assert f"Final train acc: {saved['final_train_acc']:.4f}" in out
    config = saved["config"]
    assert set(config) == {"model", "epochs", "batch_size", "learning_rate", "l2_decay",
                           "hidden_size", "layers", "dropout", "activation", "optimizer",
                           "momentum", "seed", "data_path", "output_dir", "device", "impl"}
    assert config["batch_size"] == 16 and config["device"] == "cpu"
    epoch_lines = [line for line in out.splitlines() if line.startswith("Epoch ")]
    assert len(epoch_lines) == 3
    assert re.fullmatch(r"Epoch 3/3 \| train loss \d+\.\d{4} \| dev loss \d+\.\d{4} \| "
                        r"dev acc \d\.\d{4} \| \d+\.\d\d s", epoch_lines[-1])
    assert re.search(r"^Final test acc: \d\.\d{4}$", out, re.M)
    assert f"Final test acc: {saved['test_acc']:.4f}" in out
    assert re.search(r"^Training time: \d+\.\d\d s$", out, re.M)
    assert saved["train_seconds"] >= sum(saved["epoch_seconds"]) > 0
    assert saved == json.loads(json.dumps(record, default=str))
    assert err == ""


def test_double_dash_aliases_give_the_same_config():
    single, _ = q2.parse_args(["mlp", "-learning_rate", "0.05", "-batch_size", "4",
                               "-hidden_size", "5", "-l2_decay", "0.1", "-data_path", "x.npz"])
    double, _ = q2.parse_args(["mlp", "--learning-rate", "0.05", "--batch-size", "4",
                               "--hidden-size", "5", "--l2-decay", "0.1", "--data-path", "x.npz"])
    assert vars(single) == vars(double)
    assert single.learning_rate == 0.05 and single.batch_size == 4


@pytest.mark.parametrize("argv,batch_size,name", [
    (["logistic_regression"], 1, "logistic_regression"),
    (["mlp"], 16, "mlp"),
    (["mlp", "-batch_size", "16"], 16, "mlp"),  # the resolved default is not a change
    (["logistic_regression", "-batch_size", "16"], 16, "logistic_regression-batch_size=16"),
    (["mlp", "-batch_size", "1", "-device", "cpu"], 1, "mlp-batch_size=1"),
    (["mlp", "-layers", "2", "-impl", "reference"], 16, "mlp-impl=reference-layers=2"),
])
def test_batch_size_default_and_run_names(argv, batch_size, name):
    args, defaults = q2.parse_args(argv)
    assert args.batch_size == batch_size
    assert utils.run_name(args.model, vars(args), defaults) == name


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
    (["-momentum", "1"], "-momentum"),
    (["-optimizer", "adam", "-momentum", "0.9"], "-momentum"),
    (["-seed", "-1"], "-seed"),
    (["-activation", "sigmoid"], "-activation"),
    (["-optimizer", "rmsprop"], "-optimizer"),
    (["-device", "nonsense"], "-device"),
    (["-impl", "slow"], "-impl"),
])
def test_invalid_flags_are_argparse_errors_naming_the_flag(argv, flag, capsys):
    with pytest.raises(SystemExit) as exit_info:
        q2.parse_args(["mlp"] + argv)
    assert exit_info.value.code == 2
    assert f"argument {flag}" in capsys.readouterr().err


def test_cuda_requested_without_cuda_is_an_error(capsys):
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(SystemExit):
        q2.parse_args(["mlp", "-device", "cuda"])
    assert "argument -device" in capsys.readouterr().err


@pytest.mark.parametrize("device", ["meta", "xpu", "ipu"])
def test_devices_this_torch_cannot_use_are_argparse_errors(device, capsys):
    """torch.device() parses these, but this CPU build cannot put a tensor there (meta holds
    none): rejected when parsing, not with a traceback at the first step."""
    if device != "meta" and q2.device_problem(torch.device(device)) is None:
        pytest.skip(f"{device} works with this torch build")
    with pytest.raises(SystemExit) as exit_info:
        q2.parse_args(["mlp", "-device", device])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"argument -device/--device: {device}: " in err
    assert len(err.strip().splitlines()[-1]) < 300  # torch's long backend list is cut


def test_bad_output_dir_fails_before_training(tiny_data, tmp_path, capsys, monkeypatch):
    blocker = tmp_path / "afile"
    blocker.write_text("")
    monkeypatch.setattr(q2, "train", lambda *a, **k: pytest.fail("trained"))
    with pytest.raises(SystemExit) as exit_info:
        q2.main(["mlp", "-data_path", str(tiny_data), "-output_dir", str(blocker / "out")])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {blocker / 'out'}: ") and "Traceback" not in err


def test_missing_data_file_fails_cleanly(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        q2.main(["mlp", "-data_path", str(tmp_path / "absent.npz"), "-output_dir",
                 str(tmp_path)])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "absent.npz" in err and "Traceback" not in err
    assert not list(tmp_path.iterdir())


def test_exploding_run_warns_once_completes_and_is_flagged(tiny_data, tmp_path, capsys):
    record, out, err = run_main(["logistic_regression", "-learning_rate", "1000", "-epochs", "3",
                                 "-data_path", str(tiny_data), "-output_dir", str(tmp_path)],
                                capsys)
    assert record["diverged"] is True
    assert err.count("warning: training diverged") == 1
    assert len(record["train_loss"]) == 3 and "Final test acc" in out
    assert utils.read_record(next(tmp_path.glob("*.json")))["diverged"] is True


def test_largest_accepted_learning_rate_diverges_without_a_crash(tiny_data, tmp_path, capsys):
    """At the flag's upper bound torch can still step (the step overflows, the run is flagged)."""
    record, out, err = run_main(["logistic_regression", "-learning_rate", "3.4e38", "-epochs",
                                 "2", "-batch_size", "8", "-data_path", str(tiny_data),
                                 "-output_dir", str(tmp_path)], capsys)
    assert record["diverged"] is True and "Final test acc" in out
    assert err.count("warning: training diverged") == 1


def test_non_finite_run_is_flagged_and_saved_as_strict_json(tiny_data, tmp_path, capsys):
    # a huge weight decay makes the weights overflow within the first steps
    record, _, err = run_main(["logistic_regression", "-learning_rate", "1", "-l2_decay", "1e30",
                               "-epochs", "2", "-data_path", str(tiny_data), "-output_dir",
                               str(tmp_path)], capsys)
    assert record["diverged"] is True and "non-finite" in err
    text = next(tmp_path.glob("*.json")).read_text()
    saved = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-strict JSON: {c}"))
    assert saved["train_loss"] == [None, None] and saved["diverged"] is True


def test_same_seed_gives_identical_records(tiny_data, tmp_path, capsys):
    def run(out_dir, *extra):
        record, _, _ = run_main(["mlp", "-epochs", "3", "-hidden_size", "10",
                                 "-data_path", str(tiny_data), "-output_dir",
                                 str(tmp_path / out_dir), *extra], capsys)
        for key in TIMING_KEYS:
            record.pop(key)
        record["config"].pop("output_dir")
        return record

    first, second = run("a"), run("b")
    assert first == second
    other = run("c", "-seed", "43")
    assert other["train_loss"] != first["train_loss"]


def test_reference_impl_from_the_command_line_gives_the_same_numbers(tiny_data, tmp_path,
                                                                     capsys):
    def run(impl):
        record, _, _ = run_main(["mlp", "-epochs", "2", "-batch_size", "4", "-data_path",
                                 str(tiny_data), "-output_dir", str(tmp_path), "-impl", impl],
                                capsys)
        return {key: record[key] for key in ("train_loss", "valid_loss", "valid_acc",
                                             "test_acc")}

    assert run("fast") == run("reference")


def test_script_runs_as_a_program(tmp_path):
    data = make_tiny_dataset(tmp_path / "tiny.npz")
    result = subprocess.run([sys.executable, str(ROOT / "hw1-q2.py"), "logistic_regression",
                             "--epochs", "2", "--data-path", str(data), "--output-dir",
                             str(tmp_path / "out")], capture_output=True, text=True,
                            cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "Final test acc: " in result.stdout
    assert (tmp_path / "out" / "q2-logistic_regression-data_path=tiny-epochs=2.json").is_file()
    help_text = q2.make_parser().format_help()
    for flag in ("-epochs", "-batch_size", "-learning_rate", "-l2_decay", "-hidden_size",
                 "-layers", "-dropout", "-activation", "-optimizer", "-momentum", "-seed",
                 "-data_path", "-output_dir", "-device", "-impl", "--learning-rate"):
        assert flag in help_text
