"""Unit checks of hw1-q2.py, run inside the sandbox: tiny inputs, the student's code against this
project's answer (`ref`), no dataset.

Shapes: N examples (B in a batch), D features, H hidden units, C classes. Parameters go from the
reference's model to the student's by shape, in the order each model registers them (a (out, in)
weight may be stored (in, out): then all the student's matrices are taken as transposed).
`evaluate` without torch.no_grad() is not penalised: the course's skeleton gives it that way,
and it computes the same accuracy; the check asks that it leave no gradients and no change.
"""
import numpy as np
import torch
from torch import nn

from checker.probe import CheckFailed, construct, need

SCRIPT = "hw1-q2.py"
# float32 forward passes and SGD steps computed in another order agree to ~1e-7 relative
RTOL, ATOL = 1e-5, 1e-6
C, D, H = 3, 6, 5  # distinct, so every weight's shape says which it is


def _close(a, b):
    return a.shape == b.shape and torch.allclose(a, b, rtol=RTOL, atol=ATOL)


def _known_values(model, seed):
    """Set the reference `model`'s parameters to fixed values: weights N(0, 0.5^2), biases
    N(0, 0.2^2)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=generator) * (0.5 if p.dim() == 2 else 0.2))
    return model


def _shapes(params):
    return "[" + ", ".join("(" + ", ".join(map(str, p.shape)) + ")" for p in params) + "]"


def copy_parameters(source, target, what):
    """Copy `source`'s parameters (the reference's) into `target` (the student's) by shape."""
    if not isinstance(target, nn.Module):
        raise CheckFailed(f"{what} is not an nn.Module")
    src, dst = list(source.parameters()), list(target.parameters())
    transposed = any(d.dim() == 2 and d.shape[0] != d.shape[1] and
                     any(tuple(d.shape) == tuple(s.shape[::-1]) for s in src) and
                     not any(d.shape == s.shape for s in src) for d in dst)
    free = list(range(len(dst)))
    pairs = []
    for s in src:
        want = tuple(s.shape[::-1]) if transposed and s.dim() == 2 else tuple(s.shape)
        match = next((i for i in free if tuple(dst[i].shape) == want), None)
        if match is None:
            break
        free.remove(match)
        pairs.append((s, dst[match]))
    if len(pairs) != len(src) or free:
        raise CheckFailed(f"{what} has parameters shaped {_shapes(dst)}; expected "
                          f"{_shapes(src)} (registered with nn.Linear, nn.Parameter or "
                          f"nn.ModuleList, so the optimizer sees them)")
    with torch.no_grad():
        for s, d in pairs:
            d.copy_(s.t() if transposed and s.dim() == 2 else s)
    return lambda: [d.detach().t() if transposed and d.dim() == 2 else d.detach()
                    for _, d in pairs]


def _data(seed, n):
    generator = torch.Generator().manual_seed(seed)
    X = torch.rand(n, D, generator=generator)  # pixels in [0, 1), as the course's
    y = torch.randint(0, C, (n,), generator=generator)
    return X, y


def _logistic(student):
    cls = need(student, "LogisticRegression", SCRIPT)
    return construct(cls, (C, D))


def logistic_model(student, ref):
    model = _logistic(student)
    reference = _known_values(ref.LogisticRegression(C, D), 10)
    copy_parameters(reference, model, "LogisticRegression(n_classes, n_features)")
    X, _ = _data(11, 8)
    with torch.no_grad():
        got, expected = model(X), reference(X)
    if not isinstance(got, torch.Tensor) or got.shape != expected.shape:
        raise CheckFailed(f"forward(X) for X {tuple(X.shape)} returns "
                          f"{getattr(got, 'shape', type(got).__name__)}; expected scores shaped "
                          f"{tuple(expected.shape)}")
    if not _close(got, expected):
        for name, fn in (("probabilities", torch.softmax), ("log-probabilities",
                                                             torch.log_softmax)):
            if _close(got, fn(expected, dim=-1)):
                raise CheckFailed(f"forward returns {name}; return the scores X W^T + b: "
                                  f"nn.CrossEntropyLoss applies the log-softmax itself")
        raise CheckFailed("forward(X) differs from X W^T + b with the same W and b")
    return "one linear layer; forward gives the scores"


class PlainSGD:
    """What train_batch may ask of torch.optim.SGD (zero_grad, step), without it: its first
    step imports torch._dynamo, over a second of a check that otherwise takes a tenth."""

    def __init__(self, params, lr):
        self.params, self.lr = list(params), lr
        self.param_groups = [{"params": self.params, "lr": lr}]

    def zero_grad(self, set_to_none=True):
        for p in self.params:
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.zero_()

    @torch.no_grad()
    def step(self, closure=None):
        for p in self.params:
            if p.grad is not None:
                p.add_(p.grad, alpha=-self.lr)


def _sgd_steps(step, model, batches, lr=0.1):
    optimizer = PlainSGD(model.parameters(), lr=lr)
    criterion = nn.CrossEntropyLoss()
    return [step(X, y, model, optimizer, criterion) for X, y in batches]


def train_batch(student, ref):
    fn = need(student, "train_batch", SCRIPT)
    batches = [_data(20 + i, 4) for i in range(3)]
    start = _known_values(ref.LogisticRegression(C, D), 12)
    reference = _known_values(ref.LogisticRegression(C, D), 12)
    model = _known_values(ref.LogisticRegression(C, D), 12)
    expected_losses = _sgd_steps(ref.train_batch, reference, batches)
    losses = _sgd_steps(fn, model, batches)
    got, expected = list(model.parameters()), list(reference.parameters())
    if not all(_close(g.detach(), e.detach()) for g, e in zip(got, expected)):
        one = _known_values(ref.LogisticRegression(C, D), 12)
        _sgd_steps(fn, one, batches[:1])
        one_ref = _known_values(ref.LogisticRegression(C, D), 12)
        _sgd_steps(ref.train_batch, one_ref, batches[:1])
        first_ok = all(_close(g.detach(), e.detach())
                       for g, e in zip(one.parameters(), one_ref.parameters()))
        if all(torch.equal(g, s) for g, s in zip(got, start.parameters())):
            raise CheckFailed("train_batch leaves the parameters unchanged: call loss.backward() "
                              "and optimizer.step()")
        if first_ok:
            raise CheckFailed("the first step matches but later ones do not: the gradients "
                              "accumulate across batches; call optimizer.zero_grad() before "
                              "loss.backward()")
        raise CheckFailed("after one SGD step the parameters differ from the reference's: "
                          "train_batch should do zero_grad, loss = criterion(model(X), y), "
                          "backward, step")
    for got_loss, expected_loss in zip(losses, expected_losses):
        value = got_loss.item() if isinstance(got_loss, torch.Tensor) and \
            got_loss.numel() == 1 else got_loss
        if not isinstance(value, (float, int)):
            raise CheckFailed(f"train_batch returns {type(got_loss).__name__}; return the "
                              f"batch's loss as a number (loss.item())")
        if not np.isclose(value, expected_loss, rtol=RTOL, atol=ATOL):
            raise CheckFailed(f"train_batch returns {value:.6f}; the batch's loss before the "
                              f"step is {expected_loss:.6f}")
    return f"3 SGD steps match (rtol {RTOL}, atol {ATOL}); returns the batch's loss"


# ----------------------------------------------------------------------------- the network

def _network(student, layers, activation, dropout):
    cls = need(student, "FeedforwardNetwork", SCRIPT)
    # positional, as the skeleton's main passes them
    return construct(cls, (C, D, H, layers, activation, dropout))


def _reference_network(ref, layers, activation, dropout, seed):
    return _known_values(ref.FeedforwardNetwork(C, D, H, layers, activation, dropout), seed)


def _activated_after(reference, X, activation, hidden):
    """The reference network's output (eval mode) with `activation` after the hidden layers
    numbered in `hidden` (0 the first) only."""
    linears = [m for m in reference.modules() if isinstance(m, nn.Linear)]
    h = X
    for i, linear in enumerate(linears):
        h = linear(h)
        if i < len(linears) - 1 and i in hidden:
            h = activation(h)
    return h


def _structure(student, ref, layers, activations):
    """Parameters, layout and forward pass of the student's network with `layers` hidden layers,
    for each activation in `activations`."""
    for activation in activations:
        model = _network(student, layers, activation, 0.3)
        reference = _reference_network(ref, layers, activation, 0.3, 30 + layers)
        what = f"FeedforwardNetwork(..., layers={layers}, activation_type='{activation}')"
        copy_parameters(reference, model, what)
        dropouts = [m for m in model.modules() if isinstance(m, nn.Dropout)]
        if dropouts and (len(dropouts) != layers or any(m.p != 0.3 for m in dropouts)):
            raise CheckFailed(f"{what} with dropout=0.3 has {len(dropouts)} Dropout module(s) "
                              f"with p {sorted({m.p for m in dropouts})}; expected {layers}, one "
                              f"per hidden layer, with p 0.3")
        X, _ = _data(40, 64)
        model.eval()
        reference.eval()
        with torch.no_grad():
            got, expected = model(X), reference(X)
            if not _close(got, expected):
                other = {"relu": "tanh", "tanh": "relu"}[activation]
                mixed = _reference_network(ref, layers, other, 0.3, 30 + layers).eval()
                if _close(got, mixed(X)):
                    raise CheckFailed(f"{what} computes {other}: activation_type "
                                      f"'{activation}' is ignored")
                function = {"relu": torch.relu, "tanh": torch.tanh}[activation]
                if _close(got, _activated_after(reference, X, function, ())):
                    raise CheckFailed(f"{what} has no activation between its layers: it is "
                                      f"one linear map")
                if layers > 1 and _close(got, _activated_after(reference, X, function, (0,))):
                    raise CheckFailed(f"{what}: only the first hidden layer has an activation; "
                                      f"each hidden layer needs one (Linear -> {activation} -> "
                                      f"Dropout)")
                if _close(got, torch.softmax(expected, dim=-1)):
                    raise CheckFailed(f"{what} returns probabilities; return the scores")
                raise CheckFailed(f"{what}: forward in eval mode differs from Linear -> "
                                  f"{activation} -> Dropout per hidden layer, then Linear")
        model.train()
        torch.manual_seed(0)
        with torch.no_grad():
            if torch.equal(model(X), got):
                raise CheckFailed(f"{what} with dropout=0.3 gives the same output in train "
                                  f"mode as in eval mode: no dropout")
    return (f"{layers} hidden layer{'s' if layers > 1 else ''} "
            f"({', '.join(activations)}), dropout, forward matches")


def _step(student, ref, layers):
    model = _network(student, layers, "relu", 0.0)  # no dropout: the step is deterministic
    reference = _reference_network(ref, layers, "relu", 0.0, 50 + layers)
    what = f"FeedforwardNetwork(..., layers={layers})"
    student_params = copy_parameters(reference, model, what)
    batches = [_data(60 + i, 8) for i in range(2)]
    _sgd_steps(ref.train_batch, reference, batches)
    _sgd_steps(ref.train_batch, model, batches)
    got, expected = student_params(), [p.detach() for p in reference.parameters()]
    wrong = [i for i, (g, e) in enumerate(zip(got, expected)) if not _close(g, e)]
    if wrong:
        raise CheckFailed(f"{what}: after 2 SGD steps parameters {wrong} (in the order "
                          f"Linear weight, bias, ... from the input) differ from the "
                          f"reference's; do gradients reach every layer?")
    return f"2 SGD steps with {layers} hidden layer{'s' if layers > 1 else ''} match"


def network_structure(student, ref):
    return _structure(student, ref, 1, ("relu", "tanh"))


def network_step(student, ref):
    return _step(student, ref, 1)


def deep_structure(student, ref):
    return "; ".join(_structure(student, ref, layers, ("relu",)) for layers in (2, 3))


def deep_step(student, ref):
    return "; ".join(_step(student, ref, layers) for layers in (2, 3))


def evaluate(student, ref):
    """The module-level predict / evaluate, on the reference's network with dropout 0.5."""
    fn = need(student, "evaluate", SCRIPT)
    # the skeleton gives evaluate: it earns its points only with the network it evaluates
    _network(student, 1, "relu", 0.5)
    reference = _reference_network(ref, 1, "relu", 0.5, 70)
    X, y = _data(71, 400)
    reference.eval()
    with torch.no_grad():
        expected = (reference(X).argmax(dim=-1) == y).float().mean().item()
    reference.train()
    before = [p.detach().clone() for p in reference.parameters()]
    for seed in range(3):
        torch.manual_seed(seed)
        accuracy = fn(reference, X, y)
        if isinstance(accuracy, torch.Tensor) and accuracy.numel() == 1:
            accuracy = accuracy.item()
        if not isinstance(accuracy, (float, int)):
            raise CheckFailed(f"evaluate returns {type(accuracy).__name__}; return the "
                              f"accuracy as a number")
        if not reference.training:
            raise CheckFailed("evaluate leaves the model in eval mode: call model.train() "
                              "before returning, or dropout stays off for the rest of training")
        if not np.isclose(accuracy, expected, atol=1e-6):
            raise CheckFailed(f"evaluate returns {accuracy:.4f}, the accuracy in eval mode is "
                              f"{expected:.4f}: call model.eval() first (dropout must be off "
                              f"when evaluating)")
    if any(p.grad is not None for p in reference.parameters()):
        raise CheckFailed("evaluate leaves gradients in the parameters; it must not call "
                          "backward")
    if not all(torch.equal(a, b) for a, b in zip(before, reference.parameters())):
        raise CheckFailed("evaluate changes the model's parameters")
    return "eval mode, same accuracy each call, model left in train mode"


CHECKS = {
    "Q2.1": {"model": logistic_model, "train_batch": train_batch},
    "Q2.2": {"structure": network_structure, "forward_backward": network_step,
             "evaluate": evaluate},
    "Q2.3": {"structure": deep_structure, "forward_backward": deep_step},
}
