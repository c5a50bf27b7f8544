#!/usr/bin/env python
"""Homework 1, Question 2: logistic regression and a feedforward network with PyTorch autodiff.

    python hw1-q2.py logistic_regression -learning_rate 0.001     # Q2.1, batch size 1
    python hw1-q2.py mlp                          # Table 1's defaults, batch size 16
    python hw1-q2.py mlp -layers 2 -activation tanh -optimizer adam -learning_rate 0.001

Training follows the course's flow: seed, dataset of float32 tensors, DataLoader(shuffle=True),
model, optimizer, CrossEntropyLoss, then per epoch train_batch on every batch and a dev
evaluation. `-impl reference` runs exactly that. The default, `-impl fast`, computes the same
numbers faster: `shuffled_order` draws the random numbers a DataLoader draws, in the same order,
so batches can be slices of pre-made tensors; and with SGD on the CPU, ManualSGD runs the
forward, backward and update with the very kernels autograd and the optimizer call, without
their per-step overhead (for Table 1's network the first layer's weight is stored transposed,
which halves the time of its forward product; a run-time check confirms that MKL's kernels
for that layout give the same bits). tests/test_q2.py checks the two flows agree bit for bit
on synthetic data and to the fourth decimal on the real data; bench_q2.py times them.

Per epoch it prints the mean training loss (over that epoch's batches; the skeleton's running
mean spans all epochs so far), the dev loss and accuracy and the seconds; then `Final test acc`
and the training time. Under -output_dir it saves the loss and dev-accuracy figures and a JSON
record, named from the model and every flag that differs from its default (as hw1-q1.py).
Training and evaluation use one intra-op thread: see `train`.
"""
import argparse
import contextlib
import math
import sys
import time
import warnings

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

import utils

MODELS = ("logistic_regression", "mlp")
IMPLS = ("fast", "reference")
# -batch_size, when not given: Q2.1 asks for 1 with logistic regression, Table 1 gives 16.
DEFAULT_BATCH_SIZE = {"logistic_regression": 1, "mlp": 16}


class ClassificationDataset(Dataset):
    """The course's dataset: float32 features, int64 labels; dev and test as whole tensors."""

    def __init__(self, data):
        train_X, train_y = data["train"]
        dev_X, dev_y = data["dev"]
        test_X, test_y = data["test"]
        self.X = torch.tensor(train_X, dtype=torch.float32)
        self.y = torch.tensor(train_y, dtype=torch.long)
        self.dev_X = torch.tensor(dev_X, dtype=torch.float32)
        self.dev_y = torch.tensor(dev_y, dtype=torch.long)
        self.test_X = torch.tensor(test_X, dtype=torch.float32)
        self.test_y = torch.tensor(test_y, dtype=torch.long)

    def __len__(self):
        return len(self.X)

    def __getitem__(self, idx):
        return self.X[idx], self.y[idx]


class LogisticRegression(nn.Module):
    def __init__(self, n_classes, n_features):
        super().__init__()
        self.linear = nn.Linear(n_features, n_classes)

    def forward(self, x):
        """x (batch, n_features) -> scores (batch, n_classes); the loss applies the softmax."""
        return self.linear(x)


class FeedforwardNetwork(nn.Module):
    """`layers` hidden blocks Linear -> activation -> Dropout, then a Linear output layer.

    The layers are created input to output, so the initial weights draw random numbers in the
    course's order.
    """

    ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh}

    def __init__(self, n_classes, n_features, hidden_size, layers, activation_type, dropout):
        super().__init__()
        blocks = []
        width = n_features
        for _ in range(layers):
            blocks += [nn.Linear(width, hidden_size), self.ACTIVATIONS[activation_type](),
                       nn.Dropout(dropout)]
            width = hidden_size
        blocks.append(nn.Linear(width, n_classes))
        self.layers = nn.Sequential(*blocks)

    def forward(self, x):
        return self.layers(x)

    def linears(self):
        """The Linear layers, input to output."""
        return [m for m in self.layers if isinstance(m, nn.Linear)]


def train_batch(X, y, model, optimizer, criterion):
    """One optimizer step on the batch (X, y); returns the batch's loss as a float."""
    optimizer.zero_grad()
    loss = criterion(model(X), y)
    loss.backward()
    optimizer.step()
    return loss.item()


def predict(model, X):
    """X (n_examples, n_features) -> predicted labels (n_examples,)."""
    scores = model(X)
    return scores.argmax(dim=-1)


def evaluate(model, X, y):
    """Accuracy on (X, y): eval mode (no dropout), no gradients, then back to train mode."""
    model.eval()
    with torch.no_grad():
        y_hat = predict(model, X)
    model.train()
    return (y == y_hat).sum().item() / y.shape[0]


def evaluate_with_loss(model, X, y, criterion):
    """(mean loss, accuracy) on (X, y) from one forward pass, with evaluate's mode handling.

    Eval mode draws no random numbers, so adding the dev loss leaves the training run unchanged.
    """
    model.eval()
    with torch.no_grad():
        scores = model(X)
        loss = criterion(scores, y).item()
        accuracy = (y == scores.argmax(dim=-1)).sum().item() / y.shape[0]
    model.train()
    return loss, accuracy


# ----------------------------------------------------------------------------- the epoch order

def shuffled_order(n):
    """The example order of one epoch of `DataLoader(dataset, shuffle=True)`, as an int64 tensor.

    Draws from the global generator exactly what iterating such a DataLoader draws (torch 2.13,
    no workers, no generator given): `_BaseDataLoaderIter.__init__` first draws a base seed (for
    workers; unused without them), then `RandomSampler.__iter__` draws the seed of a private
    generator that makes the permutation. `dataloader_order_matches` checks this at run time.
    """
    torch.empty((), dtype=torch.int64).random_()  # the iterator's _base_seed
    seed = int(torch.empty((), dtype=torch.int64).random_().item())
    generator = torch.Generator()
    generator.manual_seed(seed)
    return torch.randperm(n, generator=generator)


def dataloader_order_matches(n=7, epochs=2):
    """Whether `shuffled_order` reproduces this torch's DataLoader: same orders, same draws.

    Runs both on a forked global generator (the caller's random state is left untouched) and
    compares the orders and the next random number drawn after them.
    """
    def trace(order):
        torch.manual_seed(12345)
        seen = [order() for _ in range(epochs)]
        return seen, torch.rand(3).tolist()

    indices = torch.arange(n)
    loader = DataLoader(indices, batch_size=1, shuffle=True)
    with torch.random.fork_rng(devices=[]):
        expected = trace(lambda: [int(i) for batch in loader for i in batch])
        got = trace(lambda: shuffled_order(n).tolist())
    return expected == got


class EpochBatches:
    """One epoch's batches in DataLoader order per call: (X batches, y batches), the same
    tensors a DataLoader would collate.

    Batches of a few examples or more are gathered one by one as they are used (small fresh
    copies, still in cache when the step reads them). Smaller ones are cut from a shuffled copy
    of X made at once into a buffer kept across epochs: per-batch calls would cost more than
    the copy, and a fresh 150 MB tensor per epoch more in page faults than the copy itself.
    Views into the buffers are made once (50,000 views cost a tenth of a second); their
    contents change at the next call.
    """

    def __init__(self, X, y, batch_size):
        self.X, self.y = X, y
        self.order = torch.empty(len(X), dtype=torch.long, device=X.device)
        self.y_epoch = torch.empty_like(y)
        self.order_views = self.order.split(batch_size)
        self.y_views = self.y_epoch.split(batch_size)
        self.per_batch = batch_size >= 4
        if not self.per_batch:
            self.X_epoch = torch.empty_like(X)
            self.X_views = self.X_epoch.split(batch_size)

    def shuffle(self):
        """Draw the epoch's order (`order`) and gather its labels (`y_epoch`, `y_views`)."""
        self.order.copy_(shuffled_order(len(self.X)))
        torch.index_select(self.y, 0, self.order, out=self.y_epoch)

    def __call__(self):
        self.shuffle()
        if self.per_batch:
            X = self.X
            return (X.index_select(0, index) for index in self.order_views), self.y_views
        torch.index_select(self.X, 0, self.order, out=self.X_epoch)
        return self.X_views, self.y_views


# ----------------------------------------------------------------------------- training flows

def train_epoch_dataloader(loader, model, optimizer, criterion, device):
    """The course's loop: train_batch on every batch of the DataLoader; per-batch losses."""
    losses = [train_batch(X_batch.to(device), y_batch.to(device), model, optimizer, criterion)
              for X_batch, y_batch in loader]
    return torch.tensor(losses, dtype=torch.float64)


def train_epoch_fast(batches, model, optimizer, criterion):
    """train_batch on the batches of `batches()` (an EpochBatches); per-batch losses."""
    losses = [train_batch(X_batch, y_batch, model, optimizer, criterion)
              for X_batch, y_batch in zip(*batches())]
    return torch.tensor(losses, dtype=torch.float64)


def manual_blocks(model):
    """The model as [(Linear, activation name or None, dropout p)], input to output, when it is
    a LogisticRegression or the plain FeedforwardNetwork stack; None otherwise."""
    if type(model) is LogisticRegression:
        return [(model.linear, None, 0.0)]
    if type(model) is not FeedforwardNetwork:
        return None
    modules = list(model.layers)
    if len(modules) % 3 != 1 or not all(type(m) is nn.Linear for m in modules[::3]):
        return None
    blocks = []
    for linear, activation, dropout in zip(modules[0::3], modules[1::3], modules[2::3]):
        if type(activation) is nn.ReLU and not activation.inplace:
            name = "relu"
        elif type(activation) is nn.Tanh:
            name = "tanh"
        else:
            return None
        if type(dropout) is not nn.Dropout or dropout.inplace:
            return None
        blocks.append((linear, name, dropout.p))
    return blocks + [(modules[-1], None, 0.0)]


def manual_sgd_applies(model, optimizer, criterion, device):
    """Whether ManualSGD reproduces train_batch exactly for this run: one of our two models,
    plain, momentum or weight-decay SGD through its single-tensor (CPU) path, the default
    cross-entropy loss."""
    blocks = manual_blocks(model)
    if blocks is None or type(optimizer) is not torch.optim.SGD or type(criterion) is not \
            nn.CrossEntropyLoss or torch.device(device).type != "cpu":
        return False
    if len(optimizer.param_groups) != 1:
        return False
    group = optimizer.param_groups[0]
    expected = [p for linear, _, _ in blocks for p in (linear.weight, linear.bias)]
    return (len(group["params"]) == len(expected)
            and all(p is q for p, q in zip(group["params"], expected))
            and all(p.dtype.is_floating_point and p.is_contiguous() for p in expected)
            and not group["nesterov"] and not group["maximize"] and not group["foreach"]
            and not group.get("fused") and not group.get("differentiable")
            and not isinstance(group["lr"], torch.Tensor)
            and criterion.weight is None and criterion.reduction == "mean"
            and criterion.ignore_index == -100 and criterion.label_smoothing == 0.0)


def transposed_first_layer_matches(rows, n_features, hidden, dtype, trials=3):
    """Whether a first layer kept transposed, (n_features, hidden), gives the same bits as the
    usual one for batches of each size in `rows`: addmm(b, X, W.t().contiguous()) as
    addmm(b, X, W.t()), and X.t() @ g as (g.t() @ X).t().

    MKL computes these with other kernels ("NN" instead of "TN", ...) that add the same
    products in the same order here, but nothing promises it for every shape and CPU; a
    difference in order changes the last bits of almost every entry of random operands, so a
    few random trials tell. Draws from a private generator: the run's random numbers are
    untouched.
    """
    generator = torch.Generator().manual_seed(0)

    def draw(*shape):
        return torch.randn(*shape, generator=generator, dtype=dtype)

    for size in rows:
        for _ in range(trials):
            W, b, X, g = draw(hidden, n_features), draw(hidden), draw(size, n_features), \
                draw(size, hidden)
            if not (torch.equal(torch.addmm(b, X, W.t()), torch.addmm(b, X, W.t().contiguous()))
                    and torch.equal(g.t().mm(X).t(), X.t().mm(g))):
                return False
    return True


class FlatParameters:
    """An MLP's [W1.t(), b1, W2, b2] as views into one buffer, and their gradients at the same
    places in another, so SGD's update of all four is one elementwise `add_` (the same bits
    as four). The first layer's weight is stored transposed; W2 starts 64-byte aligned, as a
    tensor of its own would."""

    def __init__(self, n_features, hidden, n_classes, dtype):
        first = n_features * hidden + hidden
        second = -(-first // 16) * 16  # 16 floats or more = 64 bytes
        size = second + n_classes * hidden + n_classes
        self.params, self.grads = torch.zeros(size, dtype=dtype), torch.zeros(size, dtype=dtype)
        self.param_views, self.grad_views = (
            (flat[:first - hidden].view(n_features, hidden), flat[first - hidden:first],
             flat[second:size - n_classes].view(n_classes, hidden), flat[size - n_classes:])
            for flat in (self.params, self.grads))

    def load(self, W1, b1, W2, b2):
        for view, value in zip(self.param_views, (W1.t(), b1, W2, b2)):
            view.copy_(value)

    def store(self, W1, b1, W2, b2):
        for value, view in zip((W1.t(), b1, W2, b2), self.param_views):
            value.copy_(view)


class ManualSGD:
    """SGD epochs without autograd whose every step equals train_batch's, bit for bit.

    For our two models, SGD on the CPU and the default cross-entropy, train_batch runs these
    kernels, and so does this class, on the same operands. Forward, per hidden block: addmm
    (F.linear), relu or tanh, and in training mode dropout's bernoulli_(1 - p), div_(1 - p) and
    mul (the same random numbers: one bernoulli_ call per block and step, or per chunk of
    steps, which draws the same); then addmm,
    _log_softmax and nll_loss. Backward: nll_loss_backward (-1/batch at the gold class),
    _log_softmax_backward_data, then per Linear autograd's addmm formulas: mm for the weight,
    sum over the batch for the bias, mm for the input; back through dropout (mul by the same
    noise) and threshold_backward or tanh_backward. Last, SGD's single-tensor update: weight
    decay, momentum, `param.add_(grad, alpha=-lr)`. Skipping autograd's graph and the
    optimizer's Python bookkeeping is what makes small batches fast.

    Three shortcuts are exact by construction: the noise's div_ is a mul_ by the value div_
    gives a 1 (see _dropout_scale); with one example per batch the bias gradient's sum over the
    batch is that row itself (added through a (1, H) view of the bias); and the losses, needed
    only for reporting, are read after the epoch from the saved log-probabilities when batches
    hold one example (nll_loss of one example is -logp[gold] / 1). One more is checked at run
    time: the loop for one hidden block and batches of two or more keeps the first layer's
    weight transposed (see _transposed_mlp_epoch). tests/test_q2.py checks the whole against
    the DataLoader flow.
    """

    FORWARD = {"relu": torch.relu, "tanh": torch.tanh}
    # ReLU's backward is threshold_backward(grad, output, 0); Tanh's, tanh_backward(grad, output)
    BACKWARD = {"relu": (torch.ops.aten.threshold_backward.default, (0,)),
                "tanh": (torch.ops.aten.tanh_backward.default, ())}

    def __init__(self, model, optimizer, X, y, batch_size):
        self.model = model
        self.optimizer = optimizer
        self.loop = None  # which loop the last epoch ran (for tests)
        blocks = manual_blocks(model)
        self.params = [p for linear, _, _ in blocks for p in (linear.weight, linear.bias)]
        self.hidden = [(linear.weight, linear.bias, self.FORWARD[activation],
                        self.BACKWARD[activation], p,
                        self._dropout_scale(p, batch_size, linear.weight.shape[0],
                                            linear.weight.dtype))
                       for linear, activation, p in blocks[:-1]]
        self.output = (blocks[-1][0].weight, blocks[-1][0].bias)
        self.batches = EpochBatches(X, y, batch_size)
        self.batch_size = batch_size
        dtype = self.params[0].dtype
        n, n_classes = len(X), self.output[0].shape[0]
        self.logp = torch.empty(n, n_classes, dtype=dtype)
        self.grad_logp = torch.zeros(n, n_classes, dtype=dtype)
        self.views = (self.grad_logp.split(batch_size), self.logp.split(batch_size))
        self.gold_values = self._gold_gradients(n, batch_size, dtype)[:, None]
        # dropout noise, one reused tensor per block: bernoulli_ overwrites all of it
        self.noise = [torch.empty(batch_size, weight.shape[0], dtype=dtype)
                      for weight, *_ in self.hidden]
        self.transposed = self._transposed_applies(n, batch_size, dtype)
        if self.transposed:  # buffers of _transposed_mlp_epoch
            (W1, *_), = self.hidden
            hidden, n_features = W1.shape
            self.flat = FlatParameters(n_features, hidden, n_classes, dtype)
            self.chunk_batches = max(1, self.CHUNK_ROWS // batch_size)
            rows = self.chunk_batches * batch_size
            self.X_chunk = torch.empty(rows, n_features, dtype=dtype)
            self.noise_chunk = torch.empty(rows, hidden, dtype=dtype)
            self.chunk_views = self._chunk_views(rows)  # those of a full chunk, made once

    @staticmethod
    def _dropout_scale(p, batch_size, width, dtype):
        """What dropout's noise.div_(1 - p) makes of a kept unit (a 1), as a 0-dim tensor.

        The noise holds only 0s and 1s, so noise.mul_(this) gives the same bits as div_ by the
        Python float, whose conversion of the scalar costs a few microseconds each step. None
        (keep div_) if the kernel did not give every entry the same value.
        """
        if p <= 0:
            return None
        ones = torch.ones(batch_size, width, dtype=dtype).div_(1 - p)
        scale = ones[0, 0].clone()
        return scale if bool((ones == scale).all()) else None

    @staticmethod
    def _gold_gradient(batch_size, dtype):
        """nll_loss_backward's value at the gold class of a batch: -1/batch_size, its rounding."""
        logp = torch.zeros(batch_size, 1, dtype=dtype)
        gold = torch.zeros(batch_size, dtype=torch.long)
        total = torch.tensor(float(batch_size), dtype=dtype)
        grad = torch.ops.aten.nll_loss_backward(torch.ones((), dtype=dtype), logp, gold, None,
                                                1, -100, total)
        return grad[0, 0].item()

    @classmethod
    def _gold_gradients(cls, n, batch_size, dtype):
        """That value for each of n examples in epoch order; a smaller last batch has its own."""
        full, rest = divmod(n, batch_size)
        values = torch.full((n,), cls._gold_gradient(batch_size, dtype), dtype=dtype)
        if rest:
            values[full * batch_size:] = cls._gold_gradient(rest, dtype)
        return values

    def step(self, X, grad_logp, logp, sum_bias=True):
        """Forward and backward on the batch X; returns the gradients in parameter order.

        grad_logp is d(loss)/d(log-probabilities); logp receives the log-probabilities.
        With sum_bias False (batches of one) the bias gradients keep their (1, H) shape.
        """
        training, rows = self.model.training, X.shape[0]
        inputs, outputs, noises = [], [], []  # per hidden block, for backward
        a = X
        for (weight, bias, activation, _, p, scale), noise in zip(self.hidden, self.noise):
            inputs.append(a)
            h = activation(F.linear(a, weight, bias))
            outputs.append(h)
            if p > 0 and training:  # otherwise dropout returns its input and draws nothing
                if rows != noise.shape[0]:
                    noise = noise[:rows]
                noise.bernoulli_(1 - p)
                if scale is None:
                    noise.div_(1 - p)
                else:
                    noise.mul_(scale)
                noises.append(noise)
                a = h * noise
            else:
                noises.append(None)
                a = h
        weight, bias = self.output
        torch.log_softmax(F.linear(a, weight, bias), 1, out=logp)

        g = torch._log_softmax_backward_data(grad_logp, logp, 1, logp.dtype)
        grads = [g.sum(0) if sum_bias else g, g.t().mm(a)]  # in reverse parameter order
        for i in range(len(self.hidden) - 1, -1, -1):
            # autograd's mm_mat1_backward for addmm(bias, a, weight.t()), a column-major or not
            if a.stride(0) == 1 and a.stride(1) == a.shape[0]:
                g = weight.t().mm(g.t()).t()
            else:
                g = g.mm(weight)
            if noises[i] is not None:
                g = g * noises[i]
            weight, _, _, (activation_backward, extra), _, _ = self.hidden[i]
            g = activation_backward(g, outputs[i], *extra)
            a = inputs[i]
            grads += [g.sum(0) if sum_bias else g, g.t().mm(a)]
        grads.reverse()
        return grads

    def _plain_logreg_epoch(self, batches, lr, single):
        """step() and the update for logistic regression with plain SGD, written out: Q2.1's
        case, with as little Python per example as possible. Returns nll_loss per batch
        (none when `single`)."""
        weight, bias = self.output
        bias_target = bias.view(1, -1) if single else bias
        dtype = weight.dtype
        linear, log_softmax, nll_loss = F.linear, torch.log_softmax, F.nll_loss
        log_softmax_backward = torch._log_softmax_backward_data
        losses = []
        for X_b, y_b, g_b, logp_b in batches:
            log_softmax(linear(X_b, weight, bias), 1, out=logp_b)
            if not single:
                losses.append(nll_loss(logp_b, y_b))
            grad = log_softmax_backward(g_b, logp_b, 1, dtype)
            weight.add_(grad.t().mm(X_b), alpha=-lr)
            bias_target.add_(grad if single else grad.sum(0), alpha=-lr)
        return losses

    def _plain_mlp_epoch(self, batches, lr, single):
        """step() and the update for one hidden block with plain SGD, written out: Table 1's
        network, with less Python per step. Returns nll_loss per batch (none when `single`)."""
        (W1, b1, activation, (activation_backward, extra), p, scale), = self.hidden
        W2, b2 = self.output
        # with one example per batch, biases take their gradient rows (see step's sum_bias)
        b1_target, b2_target = (b1.view(1, -1), b2.view(1, -1)) if single else (b1, b2)
        dropout = p > 0 and self.model.training
        noise_full = self.noise[0]
        keep, dtype = 1 - p, W1.dtype
        linear, log_softmax, nll_loss = F.linear, torch.log_softmax, F.nll_loss
        log_softmax_backward = torch._log_softmax_backward_data
        losses = []
        for X_b, y_b, g_b, logp_b in batches:
            h = activation(linear(X_b, W1, b1))
            a = h
            if dropout:
                noise = noise_full if h.shape[0] == noise_full.shape[0] else \
                    noise_full[:h.shape[0]]
                noise.bernoulli_(keep)
                if scale is None:
                    noise.div_(keep)
                else:
                    noise.mul_(scale)
                a = h * noise
            log_softmax(linear(a, W2, b2), 1, out=logp_b)
            if not single:
                losses.append(nll_loss(logp_b, y_b))
            g = log_softmax_backward(g_b, logp_b, 1, dtype)
            grad_W2, grad_b2 = g.t().mm(a), (g if single else g.sum(0))
            if a.stride(0) == 1 and a.stride(1) == a.shape[0]:  # as in step()
                g = W2.t().mm(g.t()).t()
            else:
                g = g.mm(W2)
            if dropout:
                g = g * noise
            g = activation_backward(g, h, *extra)
            W1.add_(g.t().mm(X_b), alpha=-lr)
            b1_target.add_(g if single else g.sum(0), alpha=-lr)
            W2.add_(grad_W2, alpha=-lr)
            b2_target.add_(grad_b2, alpha=-lr)
        return losses

    # examples whose rows _transposed_mlp_epoch gathers, and whose dropout noise it draws, in
    # one call each (3 MB of Kuzushiji-MNIST rows); 64 to 4096 measured the same
    CHUNK_ROWS = 1024

    def _transposed_applies(self, n, batch_size, dtype):
        """Whether _transposed_mlp_epoch can run: one hidden block of two units or more (so
        the activation is never "column-major", see step), batches of two examples or more
        (batches of one have their own shortcuts), and MKL's transposed products exact for
        these shapes (transposed_first_layer_matches)."""
        if len(self.hidden) != 1 or batch_size < 2:
            return False
        (W1, *_), = self.hidden
        hidden, n_features = W1.shape
        rows = {batch_size, n % batch_size or batch_size}  # the last batch may be smaller
        return hidden >= 2 and transposed_first_layer_matches(sorted(rows), n_features,
                                                              hidden, dtype)

    def _chunk_views(self, rows):
        """The batches of X_chunk[:rows], their transposes, and those of noise_chunk[:rows]."""
        X_views = self.X_chunk[:rows].split(self.batch_size)
        return (X_views, [X_b.t() for X_b in X_views],
                self.noise_chunk[:rows].split(self.batch_size))

    def _transposed_mlp_epoch(self, lr):
        """_plain_mlp_epoch for batches of two or more, with the same kernels on the same
        numbers (so the same bits) but less work per step; Table 1's network spends its time
        here. Returns nll_loss per batch. The differences:

        - The first layer's weight is kept transposed during the epoch (in FlatParameters):
          MKL's product of X_b with it takes about half the time of the product with
          W1.t(), and gives the same bits (transposed_first_layer_matches checks this at run
          time); its gradient is computed transposed to match, X_b.t() @ g.
        - The gradients go into the preallocated FlatParameters buffer (mm and sum with
          out=), instead of a fresh (hidden, features) tensor per step, and the four
          parameters take their SGD step in one add_.
        - The rows of CHUNK_ROWS examples are gathered at once, and their dropout noise
          drawn at once: bernoulli_ draws element by element from the global generator, and
          nothing else draws during an epoch, so one call for many batches draws exactly what
          one call per batch draws.
        """
        (W1, b1, activation, (activation_backward, extra), p, scale), = self.hidden
        W2, b2 = self.output
        flat = self.flat
        flat.load(W1, b1, W2, b2)
        W1T, b1_, W2_, b2_ = flat.param_views
        W2_t = W2_.t()  # F.linear(a, W2, b2) is addmm(b2, a, W2.t()): one call, not three
        grad_W1T, grad_b1, grad_W2, grad_b2 = flat.grad_views
        params, grads = flat.params, flat.grads
        dropout = p > 0 and self.model.training
        keep, dtype = 1 - p, W1.dtype
        addmm, mm, log_softmax, nll_loss, sum_ = (
            torch.addmm, torch.mm, torch.log_softmax, F.nll_loss, torch.sum)
        log_softmax_backward = torch._log_softmax_backward_data
        X, order, y_views = self.batches.X, self.batches.order, self.batches.y_views
        g_views, logp_views = self.views
        n, batch_size, step = len(order), self.batch_size, self.chunk_batches
        losses = []
        for first in range(0, len(y_views), step):
            last = min(first + step, len(y_views))
            start, stop = first * batch_size, min(last * batch_size, n)
            rows = stop - start
            torch.index_select(X, 0, order[start:stop], out=self.X_chunk[:rows])
            X_views, XT_views, noise_views = self.chunk_views if rows == len(self.X_chunk) \
                else self._chunk_views(rows)
            if dropout:  # as dropout does, for all the chunk's batches at once
                noise_chunk = self.noise_chunk[:rows]
                noise_chunk.bernoulli_(keep)
                if scale is None:
                    noise_chunk.div_(keep)
                else:
                    noise_chunk.mul_(scale)
            for X_b, XT_b, noise, y_b, g_b, logp_b in zip(
                    X_views, XT_views, noise_views, y_views[first:last], g_views[first:last],
                    logp_views[first:last]):
                h = activation(addmm(b1_, X_b, W1T))
                a = h * noise if dropout else h
                log_softmax(addmm(b2_, a, W2_t), 1, out=logp_b)
                losses.append(nll_loss(logp_b, y_b))
                g = log_softmax_backward(g_b, logp_b, 1, dtype)
                mm(g.t(), a, out=grad_W2)
                sum_(g, 0, out=grad_b2)
                g = g.mm(W2_)  # a has two columns or more: never "column-major" (see step)
                if dropout:
                    g = g * noise
                g = activation_backward(g, h, *extra)
                mm(XT_b, g, out=grad_W1T)
                sum_(g, 0, out=grad_b1)
                params.add_(grads, alpha=-lr)
        flat.store(W1, b1, W2, b2)
        return losses

    def _epoch(self, batches, single, buffers, lr, weight_decay, momentum, dampening):
        """step() then torch.optim.SGD's _single_tensor_sgd, line for line, per batch.
        Returns nll_loss per batch (none when `single`); updates `buffers` (momentum)."""
        params, step = self.params, self.step
        plain = weight_decay == 0 and momentum == 0
        # with one example per batch and plain SGD, biases take their gradient rows through
        # (1, H) views (see step's sum_bias)
        sum_bias = not (single and plain)
        targets = [p if sum_bias or p.dim() != 1 else p.view(1, -1) for p in params]
        losses = []
        for X_b, y_b, g_b, logp_b in batches:
            grads = step(X_b, g_b, logp_b, sum_bias)
            if not single:
                losses.append(F.nll_loss(logp_b, y_b))
            if plain:
                for param, grad in zip(targets, grads):
                    param.add_(grad, alpha=-lr)
                continue
            for i, (param, grad) in enumerate(zip(params, grads)):
                if weight_decay != 0:
                    grad = grad.add(param, alpha=weight_decay)
                if momentum != 0:
                    if buffers[i] is None:
                        buffers[i] = grad.detach().clone()
                    else:
                        buffers[i].mul_(momentum).add_(grad, alpha=1 - dampening)
                    grad = buffers[i]
                param.add_(grad, alpha=-lr)
        return losses

    def train_epoch(self):
        """One epoch; returns the per-batch losses as float64, like the other flows."""
        group = self.optimizer.param_groups[0]
        sgd = {key: group[key] for key in ("lr", "weight_decay", "momentum", "dampening")}
        state = [self.optimizer.state[p] for p in self.params]
        buffers = [s.get("momentum_buffer") for s in state]
        single = self.batch_size == 1
        plain = sgd["weight_decay"] == 0 and sgd["momentum"] == 0
        transposed = plain and self.transposed
        if transposed:
            self.batches.shuffle()  # the loop gathers its own rows
        else:
            X_batches, y_batches = self.batches()
        gold = self.batches.y_epoch
        with torch.inference_mode():
            self.grad_logp.zero_().scatter_(1, gold[:, None], self.gold_values)
            batches = None if transposed else zip(X_batches, y_batches, *self.views)
            if transposed:
                self.loop = "plain one-hidden-layer network, first layer transposed"
                losses = self._transposed_mlp_epoch(sgd["lr"])
            elif plain and not self.hidden:
                self.loop = "plain logistic regression"
                losses = self._plain_logreg_epoch(batches, sgd["lr"], single)
            elif plain and len(self.hidden) == 1:
                self.loop = "plain one-hidden-layer network"
                losses = self._plain_mlp_epoch(batches, sgd["lr"], single)
            else:
                self.loop = "general"
                losses = self._epoch(batches, single, buffers, **sgd)
            # one example per batch: nll_loss's mean is -logp[gold] / 1, that very value
            losses = F.nll_loss(self.logp, gold, reduction="none") if single else \
                torch.stack(losses)
        if sgd["momentum"] != 0:  # the optimizer's state as train_batch would leave it
            for s, buffer in zip(state, buffers):
                s["momentum_buffer"] = buffer.clone()  # a normal tensor, not an inference one
        return losses.to(torch.float64, copy=True)  # a normal tensor, not an inference one


@contextlib.contextmanager
def num_threads(n):
    """Run the block with `n` intra-op threads (None: leave as is), then restore the setting."""
    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def divergence(train_loss, model, n_classes):
    """Why the run counts as diverged after an epoch, or None.

    Diverged: a non-finite training loss or weight, or a mean training loss above twice
    log(n_classes), the loss of the uniform guess (where a fresh model starts). Losses rarely
    become non-finite here (log_softmax is stable), so an exploding run is caught by its size:
    logistic regression with -learning_rate 1 ends its first epoch near 30.
    """
    if not math.isfinite(train_loss):
        return "non-finite training loss"
    if not all(torch.isfinite(p).all() for p in model.parameters()):
        return "non-finite weights"
    if train_loss > 2 * math.log(n_classes):
        return f"training loss {train_loss:.4g} > 2 log({n_classes}), worse than guessing"
    return None


def train(model, optimizer, criterion, dataset, epochs, batch_size, device, impl="fast",
          threads=1, log=print):
    """Train for `epochs`, evaluating on dev after each; returns the history as a dict.

    impl: "reference" is the course's loop over a DataLoader; "fast" gives the same numbers
    without it, and without autograd where ManualSGD applies.
    threads: intra-op threads while training and evaluating (None: leave torch's setting).
    MKL's matrix products round differently with 1 and 2 threads, so the thread count is part
    of what fixes a run's numbers; 1 is the count every machine has, and the fastest here: the
    training steps are small, and a second thread costs more in synchronisation than it gains.
    The history: per-epoch mean training loss (over the epoch's batches), dev loss and
    accuracy, seconds (training pass plus dev evaluation); `train_seconds`, all of it with the
    set-up (buffers, DataLoader); `diverged`; `last_losses`, the last epoch's per-batch
    losses; and `loop`, the training loop that ran. Divergence (see `divergence`) warns once,
    on stderr.
    """
    if impl not in IMPLS:
        raise ValueError(f"unknown impl {impl!r}")
    started = time.perf_counter()
    manual = None
    with num_threads(threads):
        if impl == "fast" and not dataloader_order_matches():
            warnings.warn("shuffled_order does not reproduce this torch version's DataLoader; "
                          "using the reference (DataLoader) flow")
            impl = "reference"
        dev_X, dev_y = dataset.dev_X.to(device), dataset.dev_y.to(device)
        if impl == "reference":
            loader = DataLoader(dataset, batch_size=batch_size, shuffle=True)
            run_epoch = lambda: train_epoch_dataloader(loader, model, optimizer, criterion,
                                                       device)
        else:
            X, y = dataset.X.to(device), dataset.y.to(device)
            if manual_sgd_applies(model, optimizer, criterion, device):
                manual = ManualSGD(model, optimizer, X, y, batch_size)
                run_epoch = manual.train_epoch
            else:
                batches = EpochBatches(X, y, batch_size)
                run_epoch = lambda: train_epoch_fast(batches, model, optimizer, criterion)

        n_classes = torch.unique(dataset.y).numel()
        history = {"train_loss": [], "valid_loss": [], "valid_acc": [], "seconds": [],
                   "diverged": False}
        for epoch in range(1, epochs + 1):
            start = time.perf_counter()
            losses = run_epoch()
            valid_loss, valid_acc = evaluate_with_loss(model, dev_X, dev_y, criterion)
            seconds = time.perf_counter() - start
            train_loss = losses.mean().item()
            for key, value in (("train_loss", train_loss), ("valid_loss", valid_loss),
                               ("valid_acc", valid_acc), ("seconds", seconds)):
                history[key].append(value)
            history["last_losses"] = losses
            log(f"Epoch {epoch}/{epochs} | train loss {train_loss:.4f} | dev loss "
                f"{valid_loss:.4f} | dev acc {valid_acc:.4f} | {seconds:.2f} s")
            problem = divergence(train_loss, model, n_classes)
            if problem and not history["diverged"]:
                history["diverged"] = True
                print(f"warning: training diverged at epoch {epoch} ({problem}); try a smaller "
                      f"-learning_rate. The run continues; its record is flagged.",
                      file=sys.stderr)
    history["train_seconds"] = time.perf_counter() - started
    history["loop"] = manual.loop if manual is not None else f"{impl}, autograd"
    return history


# ----------------------------------------------------------------------------- the script

def build_model(model_name, n_classes, n_features, hidden_size, layers, activation, dropout):
    if model_name == "logistic_regression":
        return LogisticRegression(n_classes, n_features)
    return FeedforwardNetwork(n_classes, n_features, hidden_size, layers, activation, dropout)


def build_optimizer(name, parameters, learning_rate, l2_decay, momentum):
    if name == "sgd":
        return torch.optim.SGD(parameters, lr=learning_rate, weight_decay=l2_decay,
                               momentum=momentum)
    return torch.optim.Adam(parameters, lr=learning_rate, weight_decay=l2_decay)


# torch keeps the optimizer's learning rate as a float32 (the parameters' type) in its update:
# a larger one cannot be converted, and fails in the first step
learning_rate_value = utils.checked(float, lambda v: 0 < v <= 3.4e38, "> 0 and at most 3.4e38")


def device_name(text):
    """argparse type for -device: auto, cpu, cuda, cuda:N, ... (anything torch.device parses)."""
    if text == "auto":
        return text
    try:
        torch.device(text)
    except (RuntimeError, ValueError):
        raise argparse.ArgumentTypeError(f"not a torch device: {text!r}") from None
    return text


def device_problem(device):
    """Why this torch build cannot train on `device`, or None if it can: a small tensor is
    put there and read back, as training does."""
    if device.type == "meta":
        return "holds no data (a meta device cannot train)"
    try:
        torch.ones(1, device=device).sum().item()
    except Exception as err:  # torch raises RuntimeError, AssertionError, ... by backend
        reason = (str(err).strip() or type(err).__name__).splitlines()[0]
        reason = reason.split(". ")[0]  # torch's first sentence; the rest lists its backends
        return f"not usable with this torch build ({reason[:120]})"
    return None


def resolve_device(name):
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def make_parser():
    parser = argparse.ArgumentParser(
        description="Homework 1, Question 2: logistic regression or a feedforward network "
                    "on Kuzushiji-MNIST, with PyTorch.")
    parser.add_argument("model", choices=MODELS, help="which model to train")
    utils.add_flag(parser, "epochs", type=utils.positive_int, default=20,
                   help="number of training epochs (default: %(default)s)")
    utils.add_flag(parser, "batch_size", type=utils.positive_int, default=None,
                   help="examples per batch (default: 1 for logistic_regression as Q2.1 asks, "
                        "16 for mlp as Table 1 gives)")
    utils.add_flag(parser, "learning_rate", type=learning_rate_value, default=0.01,
                   help="learning rate (default: %(default)s)")
    utils.add_flag(parser, "l2_decay", type=utils.nonnegative_float, default=0.0,
                   help="L2 weight decay, the optimizer's weight_decay (default: %(default)s)")
    utils.add_flag(parser, "hidden_size", type=utils.positive_int, default=100,
                   help="mlp: units per hidden layer (default: %(default)s)")
    utils.add_flag(parser, "layers", type=utils.positive_int, default=1,
                   help="mlp: number of hidden layers (default: %(default)s)")
    utils.add_flag(parser, "dropout", type=utils.probability, default=0.3,
                   help="mlp: dropout probability, in [0, 1) (default: %(default)s)")
    utils.add_flag(parser, "activation", choices=("relu", "tanh"), default="relu",
                   help="mlp: hidden activation (default: %(default)s)")
    utils.add_flag(parser, "optimizer", choices=("sgd", "adam"), default="sgd",
                   help="optimizer (default: %(default)s)")
    utils.add_flag(parser, "momentum", type=utils.probability, default=0.0,
                   help="SGD momentum, in [0, 1) (2024-25 edition; default: %(default)s)")
    utils.add_flag(parser, "seed", type=utils.seed_value, default=42,
                   help="seeds Python, numpy and torch (default: %(default)s)")
    utils.add_flag(parser, "data_path", default=utils.DEFAULT_DATA_PATH,
                   help="the dataset .npz built by download_kuzushiji_mnist.py "
                        "(default: %(default)s)")
    utils.add_flag(parser, "output_dir", default="results",
                   help="where figures and the JSON record go (default: %(default)s)")
    utils.add_flag(parser, "device", type=device_name, default="auto",
                   help="torch device; auto picks cuda when available (default: %(default)s)")
    utils.add_flag(parser, "impl", choices=IMPLS, default="fast",
                   help="fast: DataLoader's batches and random numbers without DataLoader, and "
                        "SGD without autograd where exact (default); reference: the course's "
                        "DataLoader + train_batch loop. Both compute the same numbers.")
    return parser


def parse_args(argv=None):
    """Parse and resolve the flags; returns (args, defaults) with the per-model defaults filled.

    -batch_size and -device are resolved (per model; auto -> cpu/cuda) in both, so the run name
    lists a flag only when its resolved value differs from the resolved default: `mlp
    -batch_size 16` is the run `mlp`, and `logistic_regression -batch_size 16` is
    `logistic_regression-batch_size=16`.
    """
    parser = make_parser()
    args = parser.parse_args(argv)
    defaults = {key: parser.get_default(key) for key in vars(args) if key != "model"}
    if args.optimizer != "sgd" and args.momentum != 0:
        parser.error("argument -momentum/--momentum: applies to -optimizer sgd only")
    if args.device != "auto":
        device = torch.device(args.device)
        if device.type == "cuda" and not torch.cuda.is_available():
            parser.error(f"argument -device/--device: {args.device} requested but CUDA is "
                         f"not available")
        problem = device_problem(device)
        if problem:
            parser.error(f"argument -device/--device: {args.device}: {problem}")
    defaults["batch_size"] = DEFAULT_BATCH_SIZE[args.model]
    if args.batch_size is None:
        args.batch_size = defaults["batch_size"]
    defaults["device"] = resolve_device("auto")
    args.device = resolve_device(args.device)
    return args, defaults


def main(argv=None):
    args, defaults = parse_args(argv)

    utils.configure_seed(seed=args.seed)
    try:
        data = utils.load_dataset(args.data_path)
        utils.writable_dir(args.output_dir)  # now, not after training
    except (utils.DataError, utils.OutputError) as err:
        utils.fail(str(err))
    dataset = ClassificationDataset(data)
    n_classes = torch.unique(dataset.y).shape[0]
    n_features = dataset.X.shape[1]

    model = build_model(args.model, n_classes, n_features, args.hidden_size, args.layers,
                        args.activation, args.dropout).to(args.device)
    optimizer = build_optimizer(args.optimizer, model.parameters(), args.learning_rate,
                                args.l2_decay, args.momentum)
    criterion = nn.CrossEntropyLoss()

    history = train(model, optimizer, criterion, dataset, args.epochs, args.batch_size,
                    args.device, impl=args.impl)
    train_seconds = history["train_seconds"]
    with num_threads(1):  # as in training: the thread count can change MKL's last bits
        # once, after training: per epoch it would add a pass over 50,000 examples each time
        final_train_acc = evaluate(model, dataset.X.to(args.device), dataset.y.to(args.device))
        test_acc = evaluate(model, dataset.test_X.to(args.device),
                            dataset.test_y.to(args.device))
    print(f"Final train acc: {final_train_acc:.4f}")
    print(f"Final test acc: {test_acc:.4f}")
    print(f"Training time: {train_seconds:.2f} s")

    config = vars(args)
    name = utils.run_name(f"q2-{args.model}", config, defaults)  # q2-: apart from hw1-q1's
    record = {
        "model": args.model,
        "config": config,
        "epochs": list(range(1, args.epochs + 1)),
        "train_loss": history["train_loss"],
        "valid_loss": history["valid_loss"],
        "valid_acc": history["valid_acc"],
        "final_train_acc": final_train_acc,
        "test_acc": test_acc,
        "train_seconds": train_seconds,
        "epoch_seconds": history["seconds"],
        "diverged": history["diverged"],
    }
    figures = {
        "loss": ("Loss", {"train": history["train_loss"], "dev": history["valid_loss"]}),
        "accuracy": ("Dev accuracy", {"dev": history["valid_acc"]}),
    }
    try:
        paths = utils.save_run(args.output_dir, name, record, figures)
    except utils.OutputError as err:
        utils.fail(str(err))
    print(f"Saved {', '.join(str(p) for p in paths)}")
    return record


if __name__ == "__main__":
    utils.run_command(main)
