"""SGD epochs for hw1-q2 without DataLoader and without autograd, checked against them.

The course's flow draws each epoch's order from a DataLoader, then per batch builds autograd's
graph, runs backward and the optimizer's step. For small batches that bookkeeping costs far
more than the arithmetic. Here:

- `shuffled_order` draws what DataLoader(shuffle=True) draws, so each epoch's batches are
  slices of one shuffled copy of the data (`dataloader_order_matches` checks it at run time);
- `ManualSGD` runs the forward, backward and SGD update with the very kernels autograd and
  torch.optim.SGD call, on the same operands, without their per-step overhead.

`fast_epochs` is the entry point. Before training it runs the run's own shapes through both
the course's flow and ManualSGD on a few rows and compares every bit; where they differ (a CPU
whose BLAS picks another kernel for one of the calls) it falls back to autograd on the
pre-shuffled batches. See README.md beside this file.

Shapes: N examples, D features, H hidden units, C classes, B examples per batch.
"""
import copy

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from fast_sgd import Engine, TrainingPath

ACTIVATIONS = {nn.ReLU: (torch.relu, torch.ops.aten.threshold_backward.default, (0,)),
               nn.Tanh: (torch.tanh, torch.ops.aten.tanh_backward.default, ())}


def fast_epochs(model, optimizer, criterion, X, y, batch_size, train_batch):
    """(epoch, path): epoch() trains one epoch in the course's DataLoader order and returns the
    per-batch losses (float64); path, a TrainingPath, says which way it trains. epoch is None
    where the DataLoader's order cannot be reproduced: the caller then runs its own DataLoader
    flow.

    train_batch(X_b, y_b, model, optimizer, criterion) is the course's step.
    """
    if not dataloader_order_matches():
        return None, TrainingPath(Engine.DATALOADER,
                                  "shuffled_order does not reproduce this torch's DataLoader")
    batches = ShuffledBatches(X, y, batch_size)
    manual = ManualSGD.build(model, optimizer, criterion, batch_size)
    if manual is not None and manual.agrees_with(train_batch, X, y):
        return lambda: manual.epoch(batches), TrainingPath(Engine.MANUAL_SGD)
    reason = ("ManualSGD does not apply" if manual is None else
              "ManualSGD's bits differ from autograd's on this machine")
    return (lambda: autograd_epoch(batches, train_batch, model, optimizer, criterion),
            TrainingPath(Engine.AUTOGRAD_PRESHUFFLED, reason))


# ----------------------------------------------------------------------------- the epoch order

def shuffled_order(n):
    """One epoch's example order for `DataLoader(dataset, shuffle=True)`, as an int64 tensor.

    Draws from the global generator what iterating such a DataLoader draws (no workers, no
    generator given): the iterator's base seed (used by workers only), then the seed of the
    RandomSampler's private generator, which makes the permutation.
    """
    torch.empty((), dtype=torch.int64).random_()  # the iterator's _base_seed
    seed = int(torch.empty((), dtype=torch.int64).random_().item())
    generator = torch.Generator()
    generator.manual_seed(seed)
    return torch.randperm(n, generator=generator)


def dataloader_order_matches(n=7, epochs=2):
    """Whether `shuffled_order` reproduces this torch's DataLoader: the same orders and the same
    random numbers drawn after them. The caller's random state is left as it was."""
    def trace(order):
        torch.manual_seed(12345)
        orders = [order() for _ in range(epochs)]
        return orders, torch.rand(3).tolist()

    loader = DataLoader(torch.arange(n), batch_size=1, shuffle=True)
    with torch.random.fork_rng(devices=[]):
        expected = trace(lambda: [int(i) for batch in loader for i in batch])
        got = trace(lambda: shuffled_order(n).tolist())
    return expected == got


def views_start_aligned(X, batch_size):
    """Whether the batches of one contiguous copy of X all start 64-byte aligned, as the freshly
    allocated batches of a DataLoader do: a BLAS kernel may round otherwise on other addresses."""
    return batch_size * X[0].numel() * X.element_size() % 64 == 0


class ShuffledBatches:
    """Per call, one epoch in DataLoader order: (its X batches, its labels y (N,)). Where
    views_start_aligned, the rows are gathered at once into a buffer kept across epochs and
    each batch is a view of it (valid until the next call); otherwise each batch is gathered
    into a fresh tensor."""

    def __init__(self, X, y, batch_size):
        self.X, self.y, self.batch_size = X, y, batch_size
        self.y_epoch = torch.empty_like(y)
        self.X_views = None
        if views_start_aligned(X, batch_size):
            self.X_epoch = torch.empty_like(X)
            self.X_views = self.X_epoch.split(batch_size)

    def __call__(self):
        order = shuffled_order(len(self.X)).to(self.X.device)
        torch.index_select(self.y, 0, order, out=self.y_epoch)
        if self.X_views is None:
            return [self.X.index_select(0, rows) for rows in order.split(self.batch_size)], \
                self.y_epoch
        torch.index_select(self.X, 0, order, out=self.X_epoch)
        return self.X_views, self.y_epoch


def autograd_epoch(batches, train_batch, model, optimizer, criterion):
    """The course's step on each pre-shuffled batch; the per-batch losses (float64)."""
    X_batches, y = batches()
    y_batches = y.split(len(X_batches[0]))
    return torch.tensor([train_batch(X_b, y_b, model, optimizer, criterion)
                         for X_b, y_b in zip(X_batches, y_batches)], dtype=torch.float64)


# ----------------------------------------------------------------------------- ManualSGD

class ManualSGD:
    """SGD steps written out with the kernels autograd and torch.optim.SGD call.

    Forward, per hidden layer: F.linear (addmm), relu or tanh, and in training mode dropout's
    bernoulli_(1 - p), div_(1 - p) and mul; then F.linear, log_softmax and nll_loss. Backward:
    nll_loss's gradient (-1/B at the gold class), _log_softmax_backward_data, then per Linear
    autograd's addmm formulas (mm for the weight, a sum over the batch for the bias, mm for the
    input), dropout's mul by the same noise, threshold_backward or tanh_backward. Last,
    torch.optim.SGD's single-tensor update: weight decay, momentum, param.add_(grad, alpha=-lr).
    """

    def __init__(self, model, optimizer, criterion, layers, output, params, batch_size):
        self.model, self.optimizer, self.criterion = model, optimizer, criterion
        self.layers = layers  # [(weight, bias, activation, its backward, extra args, dropout p)]
        self.output = output  # (weight, bias)
        self.params = params
        self.batch_size = batch_size
        self.views = None  # see epoch

    @classmethod
    def build(cls, model, optimizer, criterion, batch_size):
        """A ManualSGD for this run, or None where it does not apply: a model other than
        Linear, (activation, Dropout, Linear)*, plain torch.optim.SGD on those parameters in
        one group, the default CrossEntropyLoss."""
        modules = [m for m in model.modules() if not list(m.children())]
        if (len(modules) % 3 != 1 or type(optimizer) is not torch.optim.SGD
                or type(criterion) is not nn.CrossEntropyLoss or len(optimizer.param_groups) != 1):
            return None
        layers = []
        for linear, activation, dropout in zip(modules[0::3], modules[1::3], modules[2::3]):
            if (type(linear) is not nn.Linear or type(activation) not in ACTIVATIONS
                    or getattr(activation, "inplace", False) or type(dropout) is not nn.Dropout
                    or dropout.inplace):
                return None
            forward, backward, extra = ACTIVATIONS[type(activation)]
            layers.append((linear.weight, linear.bias, forward, backward, extra, dropout.p))
        if type(modules[-1]) is not nn.Linear:
            return None
        output = (modules[-1].weight, modules[-1].bias)
        params = [p for m in modules[0::3] for p in (m.weight, m.bias)]
        group = optimizer.param_groups[0]
        if (len(group["params"]) != len(params)
                or any(p is not q for p, q in zip(group["params"], params))
                or group["nesterov"] or group["maximize"] or group["foreach"]
                or group.get("fused") or group.get("differentiable")
                or isinstance(group["lr"], torch.Tensor)
                or criterion.weight is not None or criterion.reduction != "mean"
                or criterion.ignore_index != -100 or criterion.label_smoothing != 0.0):
            return None
        return cls(model, optimizer, criterion, layers, output, params, batch_size)

    def agrees_with(self, train_batch, X, y):
        """Whether a few steps on the first rows of (X, y), with the run's batch sizes (a short
        last batch included), give train_batch's bits: parameters, momentum and losses.

        Runs on copies of the model and optimizer, with the random state forked, so the run
        itself is untouched."""
        rows = 3 * self.batch_size + len(X) % self.batch_size
        X_batches, y_small = list(X[:rows].split(self.batch_size)), y[:rows]
        if not views_start_aligned(X, self.batch_size):  # as ShuffledBatches gives them
            X_batches = [X_b.clone() for X_b in X_batches]
        results = []
        for use_manual in (False, True):
            trainer = copy.deepcopy(self)  # one copy of all keeps the links between them
            with torch.random.fork_rng(devices=[X.device] if X.is_cuda else []):
                torch.manual_seed(0)
                if use_manual:
                    losses = trainer.epoch(lambda: (X_batches, y_small)).tolist()
                else:
                    losses = [train_batch(X_b, y_b, trainer.model, trainer.optimizer,
                                          trainer.criterion)
                              for X_b, y_b in zip(X_batches, y_small.split(self.batch_size))]
            state = [trainer.optimizer.state[p].get("momentum_buffer") for p in trainer.params]
            results.append((losses, trainer.params, state))
        (losses_a, params_a, state_a), (losses_b, params_b, state_b) = results
        same = lambda a, b: (a is None and b is None) or (
            a is not None and b is not None and torch.equal(a, b))
        return (losses_a == losses_b and all(map(same, params_a, params_b))
                and all(map(same, state_a, state_b)))

    def epoch(self, batches):
        """One epoch over batches(), which gives (X batches, the epoch's labels y (N,));
        returns the per-batch losses (float64)."""
        X_batches, y = batches()
        B = self.batch_size
        group = self.optimizer.param_groups[0]
        lr, weight_decay = group["lr"], group["weight_decay"]
        momentum, dampening = group["momentum"], group["dampening"]
        states = [self.optimizer.state[p] for p in self.params]
        buffers = [s.get("momentum_buffer") for s in states]
        if self.views is None or self.views[0] is not y:  # made once for the run's labels
            logp = torch.empty(len(y), len(self.output[1]), dtype=self.output[1].dtype,
                               device=y.device)  # (N, C), filled batch by batch
            grad_logp = torch.empty_like(logp)  # (N, C) d(loss)/d(log-probabilities)
            self.views = (y, logp, grad_logp, self.gold_values(len(y)),
                          y.split(B) if B > 1 else None, logp.split(B), grad_logp.split(B))
        _, logp, grad_logp, gold, y_views, logp_views, grad_views = self.views
        grad_logp.zero_().scatter_(1, y[:, None], gold)
        plain = weight_decay == 0 and momentum == 0
        # Plain SGD with batches of one: each bias steps by its gradient's (1, H) row through
        # a (1, H) view, where autograd first sums the batch's one row: the same values (the
        # sum only turns -0.0 into 0.0, and a parameter plus -lr times either zero is the same
        # unless it is -0.0 itself, which no parameter is). See README.md.
        sum_bias = not (plain and B == 1)
        targets = self.params if sum_bias else \
            [p.view(1, -1) if p.dim() == 1 else p for p in self.params]
        step, losses = self.step, []
        # inference mode: no autograd bookkeeping at all (cheaper per call than no_grad)
        with torch.inference_mode():
            for k, (X_b, grad_b, logp_b) in enumerate(zip(X_batches, grad_views, logp_views)):
                grads = step(X_b, grad_b, logp_b, sum_bias)
                if B > 1:
                    losses.append(F.nll_loss(logp_b, y_views[k]))
                if plain:
                    for param, grad in zip(targets, grads):
                        param.add_(grad, alpha=-lr)
                    continue
                for i, (param, grad) in enumerate(zip(self.params, grads)):
                    if weight_decay != 0:
                        grad = grad.add(param, alpha=weight_decay)
                    if momentum != 0:
                        if buffers[i] is None:
                            buffers[i] = torch.clone(grad).detach()
                        else:
                            buffers[i].mul_(momentum).add_(grad, alpha=1 - dampening)
                        grad = buffers[i]
                    param.add_(grad, alpha=-lr)
            # a batch of one: its mean loss, divided by 1, is that example's, the very bits
            losses = F.nll_loss(logp, y, reduction="none") if B == 1 else torch.stack(losses)
        if momentum != 0:  # the optimizer's state, as its own steps would leave it
            for state, buffer in zip(states, buffers):
                state["momentum_buffer"] = buffer.clone()  # a normal tensor, not an inference one
        return losses.to(torch.float64, copy=True)  # likewise

    def gold_values(self, n):
        """(n, 1): for each of an epoch's n examples, nll_loss_backward's value at its gold
        class (-1/B as the kernel rounds it, B its batch's size: the last may be shorter)."""
        dtype, device = self.output[1].dtype, self.output[1].device
        values = torch.empty(n, 1, dtype=dtype, device=device)
        last = n - (n - 1) % self.batch_size - 1  # where the last batch starts
        for start, rows in ((0, self.batch_size), (last, n - last)):
            grad = torch.ops.aten.nll_loss_backward(
                torch.ones((), dtype=dtype, device=device),
                torch.zeros(rows, 1, dtype=dtype, device=device),
                torch.zeros(rows, dtype=torch.long, device=device), None, 1, -100,
                torch.tensor(float(rows), dtype=dtype, device=device))
            values[start:] = grad[0, 0]
        return values

    def step(self, X, grad_logp, logp, sum_bias=True):
        """Forward and backward on the batch X (B, D), given d(loss)/d(log-probabilities)
        grad_logp (B, C); writes the log-probabilities into logp (B, C) and returns the
        gradients in parameter order (a bias's as the (B, H) rows to sum if not sum_bias)."""
        saved = []  # per hidden layer: its input, its output, dropout's noise
        a = X
        for weight, bias, activation, _, _, p in self.layers:
            h = activation(F.linear(a, weight, bias))  # (B, H)
            noise = None
            if p > 0 and self.model.training:  # eval mode: dropout returns its input, draws nothing
                noise = torch.empty_like(h).bernoulli_(1 - p)
                noise.div_(1 - p)
            saved.append((a, h, noise))
            a = h if noise is None else h * noise
        weight, bias = self.output
        torch.log_softmax(F.linear(a, weight, bias), 1, out=logp)  # (B, C)
        g = torch._log_softmax_backward_data(grad_logp, logp, 1, logp.dtype)  # (B, C)
        grads = [g.sum(0) if sum_bias else g, g.t().mm(a)]  # bias, weight: reverse order
        for layer, (layer_input, h, noise) in zip(reversed(self.layers), reversed(saved)):
            # autograd's gradient of addmm(bias, a, weight.t()) with respect to a
            if a.stride(0) == 1 and a.stride(1) == a.shape[0]:  # a column-major a (one column)
                g = weight.t().mm(g.t()).t()
            else:
                g = g.mm(weight)
            if noise is not None:
                g = g * noise
            weight, _, _, backward, extra, _ = layer
            g = backward(g, h, *extra)
            a = layer_input
            grads += [g.sum(0) if sum_bias else g, g.t().mm(a)]
        grads.reverse()
        return grads
