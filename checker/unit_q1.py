"""Unit checks of hw1-q1.py, run inside the sandbox: tiny inputs, the student's code against this
project's answer (`ref`), no dataset.

Shapes: N examples, D features, H hidden units, C classes. Each check returns one line saying
what it verified (the JSON's output lists it) and raises probe.CheckFailed with the line that
names the problem when it fails.
"""
import numpy as np

from checker.probe import CheckFailed, construct, find_weights, need

SCRIPT = "hw1-q1.py"
# float64 updates computed in another order (np.outer against a loop, a fused expression) agree
# to about 1e-15; these bounds leave room for that and catch any real difference
RTOL, ATOL = 1e-6, 1e-9
LEARNING_RATE = 0.05  # large enough that one step moves the weights well above ATOL

# the assignment's initialisation of the MLP: weights N(0.1, 0.1^2), biases 0
INIT_MEAN, INIT_SD = 0.1, 0.1
INIT_Z = 6.0  # how many standard errors a correct draw's mean or sd may be off (p ~ 2e-9)


def _close(a, b):
    return np.allclose(a, b, rtol=RTOL, atol=ATOL)


def _linear(module, name, n_classes, n_features):
    """A student's linear model (C classes, D features) and the slot of its W (C, D)."""
    cls = need(module, name, SCRIPT)
    model = construct(cls, (n_classes, n_features))
    slot = find_weights(model, {"W": (n_classes, n_features)}, {"W": ("w",)})["W"]
    return model, slot


def _no_tie_case(seed, n_classes=4, n_features=7, steps=8):
    """Integer W0 (C, D), X (steps, D), labels y (steps,) such that the reference perceptron meets
    no tied scores on the way (so the tie rule never decides) and makes mistakes and correct
    predictions both; integers, so every update is exact."""
    rng = np.random.RandomState(seed)
    while True:
        W0 = rng.randint(-4, 5, size=(n_classes, n_features)).astype(np.float64)
        X = rng.randint(-3, 4, size=(steps, n_features)).astype(np.float64)
        y = rng.randint(0, n_classes, size=steps)
        W, ok, outcomes = W0.copy(), True, set()
        for x_i, y_i in zip(X, y):
            scores = W @ x_i
            if len(set(scores.tolist())) < n_classes:
                ok = False
                break
            y_hat = scores.argmax()
            outcomes.add(y_hat == y_i)
            if y_hat != y_i:
                W[y_i] += x_i
                W[y_hat] -= x_i
        if ok and outcomes == {True, False}:
            return W0, X, y


def perceptron_update(student, ref):
    C, D = 4, 7
    W0, X, y = _no_tie_case(0, C, D)
    x_i = X[0]
    scores = W0 @ x_i
    order = np.argsort(scores)
    gold, predicted = int(order[0]), int(order[-1])  # a mistake: the lowest score is gold

    model, slot = _linear(student, "Perceptron", C, D)
    slot.set(model, W0)
    # the skeleton's train_epoch passes main's learning_rate on to every model
    model.update_weight(x_i.copy(), np.int64(gold), learning_rate=0.001)
    got = slot.get(model)
    expected = W0.copy()
    expected[gold] += x_i
    expected[predicted] -= x_i
    if not np.array_equal(got, expected):
        moved = [c for c in range(C) if not np.array_equal(got[c], W0[c])]
        if not moved:
            raise CheckFailed(f"W did not change after a mistake (gold class {gold}, predicted "
                              f"{predicted})")
        if moved == [gold] and np.array_equal(got[gold], expected[gold]):
            raise CheckFailed("after a mistake only the gold class's row moved; the predicted "
                              "class's row must move away from x_i too (W[y_hat] -= x_i)")
        if moved == [predicted] and np.array_equal(got[predicted], expected[predicted]):
            raise CheckFailed("after a mistake only the predicted class's row moved; the gold "
                              "class's row must move towards x_i too (W[y_i] += x_i)")
        if np.array_equal(got - W0, W0 - expected):
            raise CheckFailed("after a mistake the rows move the wrong way: the gold row must "
                              "gain x_i and the predicted row lose it")
        raise CheckFailed(f"after a mistake W differs from the perceptron rule in rows {moved} "
                          f"(expected rows {sorted({gold, predicted})} to change, by +x_i and "
                          f"-x_i)")

    model, slot = _linear(student, "Perceptron", C, D)
    slot.set(model, W0)
    model.update_weight(x_i.copy(), np.int64(predicted), learning_rate=0.001)
    if not np.array_equal(slot.get(model), W0):
        raise CheckFailed("W changed after a correct prediction; the perceptron updates only on "
                          "mistakes")

    model, slot = _linear(student, "Perceptron", C, D)
    slot.set(model, W0)
    reference = ref.Perceptron(C, D)
    reference.W = W0.copy()
    for x_i, y_i in zip(X, y):
        model.update_weight(x_i.copy(), y_i, learning_rate=0.001)
        reference.update_weight(x_i, y_i)
    if not np.array_equal(slot.get(model), reference.W):
        raise CheckFailed(f"after {len(y)} updates W differs from the reference's, though each "
                          f"single update matched")
    return "exact after a mistake, unchanged after a correct prediction, exact over 8 updates"


def _lr_steps(student, ref, W0, X, y, learning_rate):
    """The student's and the reference's W after update_weight on each (x_i, y_i), in order."""
    C, D = W0.shape
    model, slot = _linear(student, "LogisticRegression", C, D)
    slot.set(model, W0)
    reference = ref.LogisticRegression(C, D)
    reference.W = W0.copy()
    with np.errstate(all="ignore"):
        for x_i, y_i in zip(X, y):
            # passed as the skeleton's train_epoch passes it: a keyword, from main's flag
            model.update_weight(x_i.copy(), y_i, learning_rate=learning_rate)
            reference.update_weight(x_i, y_i, learning_rate=learning_rate)
    return slot.get(model), reference.W


def _lr_diagnosis(got, expected, W0, what):
    if not np.isfinite(got).all():
        return f"{what}: W holds NaN or inf"
    change, expected_change = got - W0, expected - W0
    if np.allclose(change, 0, atol=ATOL):
        return f"{what}: W did not change"
    if _close(change, -expected_change):
        return (f"{what}: the step goes up the gradient; W must move by -learning_rate "
                f"(p - onehot(y)) x_i^T")
    ratio = np.sum(change * expected_change) / np.sum(expected_change ** 2)
    if _close(change, ratio * expected_change):
        return (f"{what}: the step is {ratio:.3g} times the expected one; is the "
                f"learning_rate passed in used as the step size?")
    error = np.abs(got - expected).max()
    return f"{what}: W differs from the reference's by up to {error:.2g} (rtol {RTOL}, atol {ATOL})"


def logistic_update(student, ref):
    rng = np.random.RandomState(1)
    C, D = 4, 7
    W0 = rng.normal(0, 0.5, size=(C, D))
    X = rng.normal(0, 1, size=(6, D))
    y = rng.randint(0, C, size=6)
    for steps, learning_rate in ((1, LEARNING_RATE), (6, LEARNING_RATE), (6, 0.2)):
        got, expected = _lr_steps(student, ref, W0, X[:steps], y[:steps], learning_rate)
        if not _close(got, expected):
            what = (f"after {'one step' if steps == 1 else f'{steps} steps'} at learning_rate "
                    f"{learning_rate}")
            raise CheckFailed(_lr_diagnosis(got, expected, W0, what))
    return f"one step and 6 steps at two learning rates match (rtol {RTOL}, atol {ATOL})"


def logistic_large_scores(student, ref):
    C, D = 4, 5
    x_i = np.array([1.0, 2.0, 0.5, 1.0, 1.0])
    W0 = np.zeros((C, D))
    W0[:, 0] = [1000.0, 990.0, -5.0, 0.0]  # scores near 1000: exp overflows float64 there
    got, expected = _lr_steps(student, ref, W0, x_i[None, :], np.array([1]), LEARNING_RATE)
    if not np.isfinite(got).all():
        raise CheckFailed("with scores near 1000 one step leaves NaN or inf in W: exp overflows; "
                          "subtract the largest score before exp (the softmax is unchanged)")
    if not _close(got, expected):
        raise CheckFailed(_lr_diagnosis(got, expected, W0, "with scores near 1000"))
    return "a step on scores near 1000 stays finite and matches"


# ----------------------------------------------------------------------------- MLP

MLP_ROLES_HINT = {"W1": ("w", "1", "0"), "b1": ("b", "1", "0"), "W2": ("w", "2", "1"),
                  "b2": ("b", "2", "1")}


def _mlp(student, n_classes, n_features, hidden):
    """A student's MLP and the slots of W1 (H, D), b1 (H,), W2 (C, H), b2 (C,)."""
    cls = need(student, "MLP", SCRIPT)
    model = construct(cls, (n_classes, n_features, hidden), {"layer": 1})
    roles = {"W1": (hidden, n_features), "b1": (hidden,), "W2": (n_classes, hidden),
             "b2": (n_classes,)}
    return model, find_weights(model, roles, MLP_ROLES_HINT)


def mlp_init(student, ref):
    C, D, H = 10, 784, 200  # the course's sizes: 156,800 and 2,000 weights to test
    np.random.seed(3)
    model, slots = _mlp(student, C, D, H)
    for role in ("b1", "b2"):
        value = slots[role].get(model)
        if np.any(value != 0):
            raise CheckFailed(f"{role} starts at non-zero values (mean {value.mean():.4g}); the "
                              f"assignment starts the biases at 0")
    for role in ("W1", "W2"):
        value = slots[role].get(model).ravel()
        n = value.size
        mean, sd = value.mean(), value.std()
        if abs(sd - INIT_SD) > INIT_Z * INIT_SD / np.sqrt(2 * n) or \
                abs(mean - INIT_MEAN) > INIT_Z * INIT_SD / np.sqrt(n):
            raise CheckFailed(f"{role} is drawn with mean {mean:.4f} and sd {sd:.4f}; the "
                              f"assignment says N(0.1, 0.1^2): mean 0.1, sd 0.1")
        # a uniform draw of the same mean and sd puts 58% within one sd, a normal 68%
        inside = np.mean(np.abs(value - INIT_MEAN) < INIT_SD)
        p = 0.6827
        if abs(inside - p) > INIT_Z * np.sqrt(p * (1 - p) / n):
            raise CheckFailed(f"{role} has mean 0.1 and sd 0.1 but is not normal: "
                              f"{inside:.0%} of it within one sd of the mean, a normal has 68%")
    return "weights N(0.1, 0.1^2), biases 0"


def _mlp_case(seed=4, C=3, D=6, H=5, N=4):
    rng = np.random.RandomState(seed)
    params = {"W1": rng.normal(0.1, 0.5, size=(H, D)), "b1": rng.normal(0, 0.3, size=H),
              "W2": rng.normal(0, 0.5, size=(C, H)), "b2": rng.normal(0, 0.3, size=C)}
    X = rng.normal(0, 1, size=(N, D))
    y = rng.randint(0, C, size=N)
    return params, X, y


def _reference_mlp(ref, params):
    C, H = params["W2"].shape
    D = params["W1"].shape[1]
    model = ref.MLP(C, D, H)
    model.W = [params["W1"].copy(), params["W2"].copy()]
    model.b = [params["b1"].copy(), params["b2"].copy()]
    return model


def mlp_train_epoch(student, ref):
    params, X, y = _mlp_case()
    C, H = params["W2"].shape
    D = X.shape[1]
    for steps in (1, len(y)):
        model, slots = _mlp(student, C, D, H)
        for role, slot in slots.items():
            slot.set(model, params[role])
        with np.errstate(all="ignore"):
            model.train_epoch(X[:steps].copy(), y[:steps].copy(), learning_rate=LEARNING_RATE)
        reference = _reference_mlp(ref, params)
        reference.train_epoch(X[:steps], y[:steps], learning_rate=LEARNING_RATE)
        expected = {"W1": reference.W[0], "b1": reference.b[0], "W2": reference.W[1],
                    "b2": reference.b[1]}
        got = {role: slot.get(model) for role, slot in slots.items()}
        wrong = [role for role in ("W1", "b1", "W2", "b2") if not _close(got[role], expected[role])]
        if wrong:
            what = "after one step" if steps == 1 else f"after {steps} steps"
            step = (X[0], y[0], LEARNING_RATE) if steps == 1 else None
            raise CheckFailed(f"{what}: {_mlp_diagnosis(got, expected, params, wrong, step)}")
    return f"weights after one and {len(y)} SGD steps match (rtol {RTOL}, atol {ATOL})"


def _one_step(params, x, y, learning_rate, slip):
    """One SGD step of the one-hidden-layer MLP with a classic slip, to name the one a student's
    update matches: "relu_on_output" (the output scores masked by a ReLU derivative),
    "activation_as_derivative" (the hidden gradient multiplied by the activation h, not by
    1[z > 0]), "w2_updated_first" (the hidden gradient taken through W2 after its update)."""
    W1, b1, W2, b2 = (params[k].copy() for k in ("W1", "b1", "W2", "b2"))
    z1 = W1 @ x + b1
    h = np.maximum(z1, 0)
    z2 = W2 @ h + b2
    p = np.exp(z2 - z2.max())
    p /= p.sum()
    dz2 = p.copy()
    dz2[y] -= 1
    if slip == "relu_on_output":
        dz2 = dz2 * (z2 > 0)
    W2_new, b2_new = W2 - learning_rate * np.outer(dz2, h), b2 - learning_rate * dz2
    dh = (W2_new if slip == "w2_updated_first" else W2).T @ dz2
    dz1 = dh * (h if slip == "activation_as_derivative" else (z1 > 0))
    return {"W1": W1 - learning_rate * np.outer(dz1, x), "b1": b1 - learning_rate * dz1,
            "W2": W2_new, "b2": b2_new}


SLIPS = {
    "relu_on_output": "the output scores go through a ReLU derivative in the backward pass; the "
                      "output layer has no ReLU: its gradient is softmax(z) - onehot(y)",
    "activation_as_derivative": "the hidden gradient is multiplied by the activation h; the "
                                "ReLU's derivative is 1 where the pre-activation is positive, "
                                "0 elsewhere",
    "w2_updated_first": "the hidden layer's gradient goes through W2 after W2's update; compute "
                        "every gradient before changing any weight",
}


def _mlp_diagnosis(got, expected, start, wrong, step=None):
    names = ", ".join(wrong)
    if step is not None:
        change = np.concatenate([(got[r] - start[r]).ravel() for r in got])
        expected_change = np.concatenate([(expected[r] - start[r]).ravel() for r in got])
        ratio = change @ expected_change / (expected_change @ expected_change)
        if not np.isclose(ratio, 1) and _close(change, ratio * expected_change):
            return (f"the step is {ratio:.3g} times the expected one; is the learning_rate "
                    f"passed to train_epoch used as the step size?")
        for slip, text in SLIPS.items():
            variant = _one_step(start, *step, slip)
            if all(_close(got[r], variant[r]) for r in got):
                return text
    if any(not np.isfinite(got[role]).all() for role in got):
        return f"NaN or inf in {names}"
    frozen = [role for role in wrong if np.array_equal(got[role], start[role])]
    if frozen == wrong:
        if set(wrong) <= {"b1", "b2"}:
            return f"{names} never change: the biases are not updated"
        return f"{names} never change: they are not updated"
    if all(_close(got[r] - start[r], -(expected[r] - start[r])) for r in wrong):
        return f"{names} move up the gradient: the update must subtract learning_rate * gradient"
    if set(wrong) <= {"W1", "b1"}:
        return ("the output layer's update is right, the hidden layer's (W1, b1) is not: check "
                "the gradient through the ReLU (1 where the hidden pre-activation is positive, "
                "0 elsewhere) and that it uses W2 from before this step's update")
    if "W2" in wrong or "b2" in wrong:
        return (f"{names} differ from the reference's: check the output layer's gradient "
                f"(softmax(z) - onehot(y), with no ReLU on the output scores) and dW2 = "
                f"dz h^T, db2 = dz")
    return f"{names} differ from the reference's (rtol {RTOL}, atol {ATOL})"


def mlp_predict(student, ref):
    params, X, y = _mlp_case(seed=5, N=12)
    C, H = params["W2"].shape
    model, slots = _mlp(student, C, X.shape[1], H)
    for role, slot in slots.items():
        slot.set(model, params[role])
    reference = _reference_mlp(ref, params)
    expected = reference.predict(X)
    got = np.asarray(model.predict(X.copy()))
    if got.shape != expected.shape or not np.array_equal(got.astype(np.int64), expected):
        raise CheckFailed(f"predict(X) for {len(X)} examples returns {got.ravel()[:12].tolist()}"
                          f"; expected the labels of the highest scores, "
                          f"{expected.tolist()}")
    accuracy = float(model.evaluate(X.copy(), y.copy()))
    if not np.isclose(accuracy, np.mean(expected == y)):
        raise CheckFailed(f"evaluate returns {accuracy:.4f}; the accuracy of predict is "
                          f"{np.mean(expected == y):.4f}")
    return "predict and evaluate match"


CHECKS = {
    "Q1.1a": {"update_weight": perceptron_update},
    "Q1.1b": {"update_weight": logistic_update, "large_scores": logistic_large_scores},
    "Q1.2b": {"init": mlp_init, "train_epoch": mlp_train_epoch, "predict": mlp_predict},
}
