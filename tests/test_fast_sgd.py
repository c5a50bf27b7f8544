"""fast_sgd: the speed engines behind hw1-q1's and hw1-q2's `-impl fast`, against their oracles.

blocked.py (hw1-q1): per-example SGD a block of examples at a time must give the per-example
loop's weights and mean loss up to rounding (allclose), whatever the block size.

manual.py (hw1-q2): an epoch must give the course's DataLoader flow's numbers bit for bit.
That holds by construction (a start-up check against autograd, and a fall-back to autograd
where it fails), so it is asserted here whichever path fast_epochs picks; which path it picks
is not asserted (it depends on this CPU's BLAS kernels), nor is any bit-equality between two
different formulations of the arithmetic.

Shapes: N examples, D features, H hidden units, C classes, B examples per block or batch.
"""
import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from conftest import assert_same_training, load_script, nudge_gradient
from fast_sgd import Engine, TrainingPath, blocked, manual

q1 = load_script("hw1-q1.py")


@pytest.fixture(autouse=True)
def one_torch_thread():
    """hw1-q2's main() trains on one thread; so do these tests (restored afterwards)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def pixel_problem(N, D, C, seed, bias=True):
    """X (N, D [+1]) of pixels k/256 (a column of ones appended when `bias`), y (N,) in 0..C-1."""
    rng = np.random.RandomState(seed)
    X = rng.randint(0, 256, size=(N, D)) / 256.0
    if bias:
        X = np.hstack((X, np.ones((N, 1))))
    return X, rng.randint(0, C, size=N)


# ============================================================================= blocked.py

N, D, C, H = 50, 12, 4, 6
ORDER = np.random.RandomState(7).permutation(N)


@pytest.mark.parametrize("pixels", [True, False], ids=["pixels", "gaussian"])
@pytest.mark.parametrize("l2_penalty", [0.0, 0.3])
@pytest.mark.parametrize("block_size", [1, 3, 64, 500])  # 64 and 500: one block, > N
def test_logistic_regression_epoch_matches_the_per_example_loop(block_size, l2_penalty, pixels):
    """Two epochs of blocked SGD leave the weights (rtol 1e-9) and mean losses of
    LogisticRegression.train_epoch on X[order], whatever the block size, with and without the
    L2 penalty (whose shrinkage the blocked form applies in closed form)."""
    X, y = pixel_problem(N, D, C, seed=3)
    if not pixels:
        X[:, :-1] = np.random.RandomState(3).randn(N, D)
    W = np.zeros((C, D + 1))  # (C, D + 1), the bias column last
    reference = q1.LogisticRegression(C, D + 1)
    for order in (ORDER, ORDER[::-1]):
        loss = blocked.sgd_epoch("logistic_regression", [W], X, y, order, learning_rate=0.05,
                                 l2_penalty=l2_penalty, block_size=block_size)
        expected = reference.train_epoch(X[order], y[order], learning_rate=0.05,
                                         l2_penalty=l2_penalty)
        assert loss == pytest.approx(expected, rel=1e-9)
        np.testing.assert_allclose(W, reference.W, rtol=1e-9, atol=1e-12)
    assert np.abs(reference.W).max() > 0.01  # it did learn: not two zero matrices


@pytest.mark.parametrize("learning_rate", [1.0, 100.0, 1e4])
def test_logistic_regression_large_steps_still_match(learning_rate):
    """Large learning rates make the block's corrections to the scores large (exp of them
    would overflow unless each row is shifted): the same weights and loss as the loop."""
    X, y = pixel_problem(200, D, C, seed=4)
    order = np.random.RandomState(1).permutation(200)
    W = np.zeros((C, D + 1))
    reference = q1.LogisticRegression(C, D + 1)
    with np.errstate(over="ignore", invalid="ignore"):  # as train() calls it
        loss = blocked.sgd_epoch("logistic_regression", [W], X, y, order, learning_rate)
    expected = reference.train_epoch(X[order], y[order], learning_rate=learning_rate)
    assert loss == pytest.approx(expected, rel=1e-9)
    np.testing.assert_allclose(W, reference.W, rtol=1e-9, atol=1e-12 * learning_rate)


@pytest.mark.parametrize("block_size", [3, 7])
def test_short_last_blocks(block_size):
    """N = 50 in blocks of 3 or 7 (a last block of 2 or 1), the penalty on, and a 2-layer
    MLP: the same weights as the per-example loop, for both models."""
    X, y = pixel_problem(N, D, C, seed=5)
    W = np.zeros((C, D + 1))
    reference = q1.LogisticRegression(C, D + 1)
    blocked.sgd_epoch("logistic_regression", [W], X, y, ORDER, 0.1, 0.01, block_size)
    reference.train_epoch(X[ORDER], y[ORDER], learning_rate=0.1, l2_penalty=0.01)
    np.testing.assert_allclose(W, reference.W, rtol=1e-9, atol=1e-12)

    X = X[:, :-1]  # the MLP has its own biases
    np.random.seed(0)
    mlp = q1.MLP(C, D, H, layers=2)
    np.random.seed(0)
    reference = q1.MLP(C, D, H, layers=2)
    blocked.sgd_epoch("mlp", q1.parameters(mlp), X, y, ORDER, 0.05, block_size=block_size)
    reference.train_epoch(X[ORDER], y[ORDER], learning_rate=0.05)
    for fast, ref in zip(q1.parameters(mlp), q1.parameters(reference)):
        np.testing.assert_allclose(fast, ref, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("block_size", [1, 5, 64, 500])
def test_mlp_epoch_matches_the_per_example_loop(layers, block_size):
    """300 per-example SGD steps of the ReLU MLP (weights drawn as MLP draws them): the blocked
    epoch leaves every W and b allclose (rtol 1e-9) to MLP.train_epoch's, and its mean loss."""
    Nm = 300
    X, y = pixel_problem(Nm, D, C, seed=6, bias=False)
    order = np.random.RandomState(8).permutation(Nm)
    np.random.seed(0)
    mlp = q1.MLP(C, D, H, layers)
    np.random.seed(0)
    reference = q1.MLP(C, D, H, layers)
    start = [p.copy() for p in q1.parameters(reference)]
    loss = blocked.sgd_epoch("mlp", q1.parameters(mlp), X, y, order, 0.01, block_size=block_size)
    expected = reference.train_epoch(X[order], y[order], learning_rate=0.01)
    assert loss == pytest.approx(expected, rel=1e-9)
    for fast, ref in zip(q1.parameters(mlp), q1.parameters(reference)):
        np.testing.assert_allclose(fast, ref, rtol=1e-9, atol=1e-12)
    moved = [np.abs(p - p0).max() for p, p0 in zip(q1.parameters(reference), start)]
    assert min(moved) > 1e-4  # every layer trained


def test_sgd_epoch_updates_the_given_arrays_in_place_and_leaves_the_data():
    """The params list's own arrays change (the model's W and b, not copies); X, y and order
    are left as they were."""
    X, y = pixel_problem(N, D, C, seed=9, bias=False)
    X0, y0, order0 = X.copy(), y.copy(), ORDER.copy()
    np.random.seed(1)
    mlp = q1.MLP(C, D, H, layers=1)
    arrays = q1.parameters(mlp)
    before = [a.copy() for a in arrays]
    blocked.sgd_epoch("mlp", arrays, X, y, ORDER, 0.01)
    assert all(a is b for a, b in zip(arrays, q1.parameters(mlp)))
    assert all(not np.array_equal(a, b) for a, b in zip(arrays, before))
    np.testing.assert_array_equal(X, X0)
    np.testing.assert_array_equal(y, y0)
    np.testing.assert_array_equal(ORDER, order0)


def test_only_the_courses_models():
    """perceptron, logistic_regression and mlp; anything else is refused by name."""
    assert set(blocked.MODELS) == {"perceptron", "logistic_regression", "mlp"}
    X, y = pixel_problem(N, D, C, seed=0)
    with pytest.raises(ValueError, match="svm"):
        blocked.sgd_epoch("svm", [np.zeros((C, D + 1))], X, y, ORDER, 1.0)


def test_perceptron_epoch_is_the_per_example_loop_over_the_order():
    """sgd_epoch("perceptron") equals mistake-driven updates written out here, visiting
    X[order] in order, bit for bit (pixel data: exact arithmetic); it returns no loss and
    leaves X, y and the order untouched."""
    X, y = pixel_problem(N, D, C, seed=4)
    X0, y0, order0 = X.copy(), y.copy(), ORDER.copy()
    W = np.zeros((C, D + 1))
    assert blocked.sgd_epoch("perceptron", [W], X, y, ORDER, 1.0) is None
    expected = np.zeros((C, D + 1))
    for i in ORDER:
        scores = [sum(expected[c, j] * X[i, j] for j in range(D + 1)) for c in range(C)]
        guess = int(np.argmax(scores))
        if guess != y[i]:
            expected[y[i]] += X[i]
            expected[guess] -= X[i]
    np.testing.assert_array_equal(W, expected)
    assert np.abs(W).sum() > 0
    np.testing.assert_array_equal(X, X0)
    np.testing.assert_array_equal(y, y0)
    np.testing.assert_array_equal(ORDER, order0)


def test_logistic_regression_huge_penalty_gives_non_finite_weights_not_an_error():
    """lr * l2_penalty = 1e7: each step multiplies W by 1 - 1e7, so the weights overflow, as
    the per-example loop's do: NaN and inf, not an exception (a Python float's power would
    raise OverflowError)."""
    X, y = pixel_problem(N, D, C, seed=2)
    reference = q1.LogisticRegression(C, D + 1)
    with np.errstate(all="ignore"):
        reference.train_epoch(X[ORDER], y[ORDER], learning_rate=0.001, l2_penalty=1e10)
    assert not np.isfinite(reference.W).all()
    W = np.zeros((C, D + 1))
    with np.errstate(all="ignore"):
        blocked.sgd_epoch("logistic_regression", [W], X, y, ORDER, 0.001, 1e10)
    assert not np.isfinite(W).all()



# ============================================================================= manual.py

course_train_batch = load_script("hw1-q2.py").train_batch  # the course's step


def tiny_tensors(N=23, D=5, C=3, seed=0):
    """X (N, D) float32 in [0, 1), y (N,) int64."""
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(N, D, generator=generator), torch.randint(0, C, (N,), generator=generator)


def make_network(D, C, hidden=(), activation=nn.ReLU, dropout=0.0, seed=1):
    """(Linear, activation, Dropout) per hidden width, then Linear: hw1-q2's layout."""
    torch.manual_seed(seed)
    modules, width = [], D
    for H_l in hidden:
        modules += [nn.Linear(width, H_l), activation(), nn.Dropout(dropout)]
        width = H_l
    return nn.Sequential(*modules, nn.Linear(width, C))


def make_optimizer(model, kind="sgd", lr=0.05, **kwargs):
    if kind == "adam":
        return torch.optim.Adam(model.parameters(), lr=lr, **kwargs)
    return torch.optim.SGD(model.parameters(), lr=lr, **kwargs)


# ----------------------------------------------------------------------------- the epoch order

@pytest.mark.parametrize("n,batch_size", [(1, 1), (7, 1), (7, 3), (100, 16)])
def test_shuffled_order_draws_what_the_dataloader_draws(n, batch_size):
    """Epoch after epoch, the DataLoader's example order and the same random numbers drawn
    afterwards (as dropout draws between epochs), from the same seed."""
    def trace(next_order):
        torch.manual_seed(3)
        seen = []
        for _ in range(3):
            seen.append(next_order())
            seen.append(torch.rand(2).tolist())
        return seen

    loader = DataLoader(torch.arange(n), batch_size=batch_size, shuffle=True)
    expected = trace(lambda: torch.cat(list(loader)).tolist())
    got = trace(lambda: manual.shuffled_order(n).tolist())
    assert got == expected
    assert sorted(expected[0]) == list(range(n))


def test_dataloader_order_check_passes_and_leaves_the_random_state():
    """On this torch shuffled_order reproduces DataLoader (else every fast run would fall back
    to the DataLoader flow); the check does not move the global generator."""
    torch.manual_seed(5)
    state = torch.get_rng_state()
    assert manual.dataloader_order_matches()
    assert torch.equal(torch.get_rng_state(), state)


def test_dataloader_order_check_fails_for_another_order(monkeypatch):
    """The check compares orders: a shuffled_order that draws the same numbers but returns
    another permutation is caught."""
    original = manual.shuffled_order
    monkeypatch.setattr(manual, "shuffled_order", lambda n: original(n).flip(0))
    assert not manual.dataloader_order_matches()


@pytest.mark.parametrize("batch_size", [1, 3, 4, 23, 30])
def test_shuffled_batches_are_the_dataloader_batches(batch_size):
    """Two epochs of ShuffledBatches: the DataLoader's batches (a short last one included),
    tensor for tensor; the training tensors themselves are untouched."""
    X, y = tiny_tensors()
    X0, y0 = X.clone(), y.clone()
    dataset = torch.utils.data.TensorDataset(X, y)
    torch.manual_seed(11)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True)
    expected = [[(X_b.clone(), y_b.clone()) for X_b, y_b in loader] for _ in range(2)]
    torch.manual_seed(11)
    batches = manual.ShuffledBatches(X, y, batch_size)
    for epoch in expected:
        X_batches, y_epoch = batches()
        got = list(zip(X_batches, y_epoch.split(batch_size)))
        assert len(got) == len(epoch) == math.ceil(len(X) / batch_size)
        for (X_b, y_b), (X_e, y_e) in zip(got, epoch):
            assert torch.equal(X_b, X_e) and torch.equal(y_b, y_e)
    assert torch.equal(X, X0) and torch.equal(y, y0)


# ----------------------------------------------------------------------------- ManualSGD.build

def test_manual_sgd_builds_for_the_courses_models():
    """Linear (logistic regression) and (Linear, ReLU or Tanh, Dropout)* Linear, with
    torch.optim.SGD (momentum, weight decay, dampening) and the default CrossEntropyLoss."""
    criterion = nn.CrossEntropyLoss()
    for model in (make_network(5, 3), make_network(5, 3, (4,), nn.ReLU, 0.3),
                  make_network(5, 3, (4, 6), nn.Tanh, 0.0)):
        for kwargs in ({}, {"momentum": 0.9, "weight_decay": 0.01, "dampening": 0.1}):
            built = manual.ManualSGD.build(model, make_optimizer(model, **kwargs), criterion, 4)
            assert isinstance(built, manual.ManualSGD)


def _cases_where_manual_sgd_does_not_apply():
    ffn = make_network(5, 3, (4,), nn.ReLU, 0.3)
    sgd = make_optimizer(ffn)
    ce = nn.CrossEntropyLoss()
    no_bias = nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Dropout(0.1),
                            nn.Linear(4, 3, bias=False))
    two_groups = torch.optim.SGD([{"params": list(ffn.parameters())[:2]},
                                  {"params": list(ffn.parameters())[2:]}], lr=0.1)
    sigmoid = nn.Sequential(nn.Linear(5, 4), nn.Sigmoid(), nn.Dropout(0.1), nn.Linear(4, 3))
    inplace_relu = nn.Sequential(nn.Linear(5, 4), nn.ReLU(inplace=True), nn.Dropout(0.1),
                                 nn.Linear(4, 3))
    inplace_dropout = nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Dropout(0.1, inplace=True),
                                    nn.Linear(4, 3))
    no_dropout = nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 3))
    bilinear = nn.Sequential(nn.Bilinear(5, 5, 3))
    return {
        "adam": (ffn, make_optimizer(ffn, "adam"), ce),
        "nesterov": (ffn, make_optimizer(ffn, momentum=0.9, nesterov=True), ce),
        "maximize": (ffn, make_optimizer(ffn, maximize=True), ce),
        "foreach": (ffn, make_optimizer(ffn, foreach=True), ce),
        "lr-tensor": (ffn, make_optimizer(ffn, lr=torch.tensor(0.05)), ce),
        "frozen-bias": (ffn, torch.optim.SGD([p for n, p in ffn.named_parameters()
                                              if n != "3.bias"], lr=0.1), ce),
        "two-param-groups": (ffn, two_groups, ce),
        "label-smoothing": (ffn, sgd, nn.CrossEntropyLoss(label_smoothing=0.1)),
        "class-weights": (ffn, sgd, nn.CrossEntropyLoss(weight=torch.ones(3))),
        "reduction-sum": (ffn, sgd, nn.CrossEntropyLoss(reduction="sum")),
        "ignore-index": (ffn, sgd, nn.CrossEntropyLoss(ignore_index=0)),
        "nll-loss": (ffn, sgd, nn.NLLLoss()),
        "sigmoid": (sigmoid, make_optimizer(sigmoid), ce),
        "inplace-relu": (inplace_relu, make_optimizer(inplace_relu), ce),
        "inplace-dropout": (inplace_dropout, make_optimizer(inplace_dropout), ce),
        "no-dropout-module": (no_dropout, make_optimizer(no_dropout), ce),
        "no-bias": (no_bias, make_optimizer(no_bias), ce),
        "bilinear": (bilinear, make_optimizer(bilinear), ce),
    }


@pytest.mark.parametrize("case", list(_cases_where_manual_sgd_does_not_apply()))
def test_manual_sgd_does_not_build_where_it_does_not_apply(case):
    """build() returns None for another optimizer or SGD variant, a non-default
    CrossEntropyLoss (or another loss), and models other than (Linear, ReLU/Tanh, Dropout)*
    Linear with all their parameters in one SGD group."""
    model, optimizer, criterion = _cases_where_manual_sgd_does_not_apply()[case]
    assert manual.ManualSGD.build(model, optimizer, criterion, 4) is None


# ----------------------------------------------------------------------------- dropout noise

class _RecordingF:
    """torch.nn.functional, with F.linear's first argument recorded in `inputs`."""

    def __init__(self):
        self.inputs = []

    def linear(self, a, weight, bias=None):
        self.inputs.append(a.clone())
        return F.linear(a, weight, bias)

    def __getattr__(self, name):
        return getattr(F, name)


@pytest.mark.parametrize("p", [0.1, 0.3, 1 / 3, 0.5, 0.9])
def test_manual_sgd_dropout_draws_nn_dropouts_noise(monkeypatch, p):
    """With the hidden layer made to output ones (zero weights, bias 1: ReLU(1) = 1), the
    output layer's input in ManualSGD.step is dropout's noise itself; from the same seed it
    equals nn.Dropout(p) applied to ones on CPU (the same mask, scaled to the same bits), and
    the generator ends in the same state."""
    B, D, H, C = 6, 5, 37, 3
    model = make_network(D, C, (H,), nn.ReLU, p)
    with torch.no_grad():
        model[0].weight.zero_()
        model[0].bias.fill_(1.0)
    built = manual.ManualSGD.build(model, make_optimizer(model), nn.CrossEntropyLoss(), B)
    X, y = tiny_tensors(B, D, C)
    recording = _RecordingF()
    monkeypatch.setattr(manual, "F", recording)
    torch.manual_seed(21)
    built.step(X, torch.zeros(B, C), torch.empty(B, C))
    after_manual = torch.get_rng_state()
    noise = recording.inputs[1]  # (B, H): the output layer's input, ones times the noise

    torch.manual_seed(21)
    expected = nn.Dropout(p).train()(torch.ones(B, H))
    assert torch.equal(noise, expected)
    assert torch.equal(after_manual, torch.get_rng_state())
    assert 0 < (noise == 0).sum() < noise.numel()  # some dropped, some kept


def test_manual_sgd_in_eval_mode_draws_no_noise():
    """Dropout in eval mode returns its input and draws nothing; so does ManualSGD.step."""
    model = make_network(5, 3, (8,), nn.ReLU, 0.5).eval()
    built = manual.ManualSGD.build(model, make_optimizer(model), nn.CrossEntropyLoss(), 4)
    X, y = tiny_tensors(4, 5, 3)
    state = torch.get_rng_state()
    built.step(X, torch.zeros(4, 3), torch.empty(4, 3))
    assert torch.equal(torch.get_rng_state(), state)


# ----------------------------------------------------------------------------- the start-up check

def manual_train_batch(X, y, model, optimizer, criterion, **kwargs):
    """A train_batch that does ManualSGD's own arithmetic: one ManualSGD epoch of one batch."""
    built = manual.ManualSGD.build(model, optimizer, criterion, len(X))
    return built.epoch(lambda: ([X], y)).item()


def checked_setup(momentum):
    """A small ReLU network with dropout (B = 4, N = 23: a short last batch), its SGD and the
    CrossEntropyLoss, ready for agrees_with. The output bias starts at 0 and lr is 1/2, so that
    a one-ulp change of its gradient shows in the bias after one step (0 - g/2 is exact)."""
    model = make_network(5, 3, (6,), nn.ReLU, 0.3)
    with torch.no_grad():
        model[-1].bias.zero_()
    optimizer = make_optimizer(model, lr=0.5, momentum=momentum)
    return model, optimizer, nn.CrossEntropyLoss()


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_agrees_with_accepts_the_same_arithmetic(momentum):
    """agrees_with can say yes: against a train_batch that runs ManualSGD's own arithmetic."""
    model, optimizer, criterion = checked_setup(momentum)
    X, y = tiny_tensors()
    built = manual.ManualSGD.build(model, optimizer, criterion, 4)
    assert built.agrees_with(manual_train_batch, X, y)


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_agrees_with_rejects_a_one_ulp_difference(monkeypatch, momentum):
    """With one gradient entry (the output bias's) nudged by one ulp in ManualSGD.step,
    agrees_with says no: against the course's train_batch, and against ManualSGD's own
    unperturbed arithmetic (so the answer does not depend on this CPU's kernels)."""
    model, optimizer, criterion = checked_setup(momentum)
    X, y = tiny_tensors()

    class Unperturbed(manual.ManualSGD):
        step = manual.ManualSGD.step  # taken before the nudge below

    def unperturbed_batch(X_b, y_b, m, o, c):
        return Unperturbed.build(m, o, c, len(X_b)).epoch(lambda: ([X_b], y_b)).item()

    nudge_gradient(monkeypatch, index=-1)
    built = manual.ManualSGD.build(model, optimizer, criterion, 4)
    assert not built.agrees_with(course_train_batch, X, y)
    assert not built.agrees_with(unperturbed_batch, X, y)
    assert Unperturbed.build(model, optimizer, criterion, 4).agrees_with(unperturbed_batch, X, y)


def test_agrees_with_leaves_the_run_untouched():
    """The check trains copies, with the random state forked: the model's parameters, the
    optimizer's state and the global generator are as before."""
    model, optimizer, criterion = checked_setup(momentum=0.9)
    X, y = tiny_tensors()
    course_train_batch(X[:4], y[:4], model, optimizer, criterion)  # a momentum buffer exists
    params = [p.detach().clone() for p in model.parameters()]
    buffers = [optimizer.state[p]["momentum_buffer"].clone() for p in model.parameters()]
    state = torch.get_rng_state()
    built = manual.ManualSGD.build(model, optimizer, criterion, 4)
    built.agrees_with(course_train_batch, X, y)
    assert torch.equal(torch.get_rng_state(), state)
    for p, p0, b0 in zip(model.parameters(), params, buffers):
        assert torch.equal(p, p0) and torch.equal(optimizer.state[p]["momentum_buffer"], b0)
    assert model.training


# ----------------------------------------------------------------------------- fast_epochs

def dataloader_epochs(model, optimizer, criterion, X, y, batch_size, epochs):
    """The course's flow: DataLoader(shuffle=True) and train_batch; per-batch losses per epoch."""
    loader = DataLoader(torch.utils.data.TensorDataset(X, y), batch_size=batch_size,
                        shuffle=True)
    return [torch.tensor([course_train_batch(X_b, y_b, model, optimizer, criterion)
                          for X_b, y_b in loader], dtype=torch.float64)
            for _ in range(epochs)]


def run_both(config, epochs=3, D=8):
    """Train two copies of one setup for `epochs`: by fast_epochs and by the DataLoader flow,
    from the same seed. Returns (fast losses, path, fast model and optimizer, reference
    losses, reference model and optimizer).

    D = 8: rows of 32 bytes, so every batch, a view into one shuffled copy of X, starts on a
    16-byte boundary as the DataLoader's freshly allocated batches do (as with the real data's
    784 features); see test_fast_epochs_with_rows_off_16_byte_boundaries for other D.
    """
    C = 3
    X, y = tiny_tensors(23, D, C)
    model = make_network(D, C, config.get("hidden", ()), config.get("activation", nn.ReLU),
                         config.get("dropout", 0.0))
    runs = []
    for fast in (True, False):
        m = copy.deepcopy(model)
        o = make_optimizer(m, config.get("optimizer", "sgd"), **config.get("optim", {}))
        c = nn.CrossEntropyLoss()
        torch.manual_seed(42)
        if fast:
            epoch, path = manual.fast_epochs(m, o, c, X, y, config["batch_size"],
                                             course_train_batch)
            assert epoch is not None
            losses = [epoch() for _ in range(epochs)]
        else:
            path = None
            losses = dataloader_epochs(m, o, c, X, y, config["batch_size"], epochs)
        runs.append((losses, path, m, o))
    (fast_losses, path, fast_model, fast_optim), (ref_losses, _, ref_model, ref_optim) = runs
    return fast_losses, path, fast_model, fast_optim, ref_losses, ref_model, ref_optim


FAST_EPOCH_CASES = {
    "linear-batch1": dict(batch_size=1),
    "linear-batch7-momentum-decay": dict(batch_size=7, optim=dict(momentum=0.9,
                                                                  weight_decay=0.01)),
    "relu-dropout-batch16": dict(batch_size=16, hidden=(10,), dropout=0.3),  # 23 = 16 + 7
    "tanh-2layers-batch2-momentum": dict(batch_size=2, hidden=(6, 5), activation=nn.Tanh,
                                         dropout=0.5, optim=dict(momentum=0.5)),
    "relu-hidden1-batch1": dict(batch_size=1, hidden=(1,), dropout=0.2),
    "relu-batch22": dict(batch_size=22, hidden=(7,), dropout=0.3),  # a last batch of one
    "adam-2layers": dict(batch_size=4, hidden=(8, 8), dropout=0.3, optimizer="adam",
                         optim=dict(lr=0.01)),
}


@pytest.mark.parametrize("case", list(FAST_EPOCH_CASES))
def test_fast_epochs_give_the_dataloader_flows_numbers(case):
    """Three epochs by fast_epochs (whichever way it trains) equal the course's DataLoader
    flow bit for bit: every batch loss, the parameters and the optimizer's state."""
    fast_losses, path, fast_model, fast_optim, ref_losses, ref_model, ref_optim = run_both(
        FAST_EPOCH_CASES[case])
    assert path.engine.kind == "fast"
    assert len(fast_losses) == len(ref_losses) == 3
    for got, expected in zip(fast_losses, ref_losses):
        assert got.dtype == torch.float64
        assert torch.equal(got, expected)
    assert_same_training(fast_model, fast_optim, ref_model, ref_optim)
    assert not torch.equal(fast_losses[0], fast_losses[-1])  # it did train


def test_fast_epochs_with_adam_says_manual_sgd_does_not_apply():
    """Adam: autograd on pre-shuffled batches, and the path says why."""
    _, path = manual.fast_epochs(*_setup_for_fast_epochs(optimizer="adam"))
    assert path == TrainingPath(Engine.AUTOGRAD_PRESHUFFLED, "ManualSGD does not apply")


def _setup_for_fast_epochs(optimizer="sgd", momentum=0.0):
    model = make_network(5, 3, (6,), nn.ReLU, 0.3)
    kwargs = {} if optimizer == "adam" else {"momentum": momentum}
    X, y = tiny_tensors()
    return (model, make_optimizer(model, optimizer, **kwargs), nn.CrossEntropyLoss(), X, y, 4,
            course_train_batch)


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_fast_epochs_fall_back_to_autograd_when_manual_sgd_is_off_by_one_ulp(monkeypatch,
                                                                            momentum):
    """ManualSGD.step perturbed by one ulp in one gradient: fast_epochs trains with autograd
    on the pre-shuffled batches instead, says so in its path, and still gives the DataLoader
    flow's numbers bit for bit."""
    nudge_gradient(monkeypatch, index=-1)
    config = dict(batch_size=4, hidden=(6,), dropout=0.3, optim=dict(lr=0.5, momentum=momentum))
    fast_losses, path, fast_model, fast_optim, ref_losses, ref_model, ref_optim = run_both(
        config)
    assert path.engine is Engine.AUTOGRAD_PRESHUFFLED and "bits differ" in path.reason
    for got, expected in zip(fast_losses, ref_losses):
        assert torch.equal(got, expected)
    assert_same_training(fast_model, fast_optim, ref_model, ref_optim)


def test_fast_epochs_give_way_when_the_dataloader_order_cannot_be_reproduced(monkeypatch):
    """If shuffled_order does not reproduce this torch's DataLoader, fast_epochs returns no
    epoch function (the caller runs its DataLoader flow) and the DataLoader path, with why."""
    monkeypatch.setattr(manual, "dataloader_order_matches", lambda: False)
    epoch, path = manual.fast_epochs(*_setup_for_fast_epochs())
    assert epoch is None
    assert path.engine is Engine.DATALOADER and "DataLoader" in path.reason


@pytest.mark.parametrize("D", [5, 9])
def test_fast_epochs_with_rows_off_16_byte_boundaries(D):
    """As test_fast_epochs_give_the_dataloader_flows_numbers, with D = 5 and 9 features (rows
    of 20 and 36 bytes): the fast epochs must still be the DataLoader flow's, bit for bit."""
    for case in ("linear-batch1", "relu-dropout-batch16", "tanh-2layers-batch2-momentum",
                 "relu-batch22", "adam-2layers"):
        fast_losses, _, fast_model, fast_optim, ref_losses, ref_model, ref_optim = run_both(
            FAST_EPOCH_CASES[case], D=D)
        for got, expected in zip(fast_losses, ref_losses):
            assert torch.equal(got, expected), case
        assert_same_training(fast_model, fast_optim, ref_model, ref_optim)
