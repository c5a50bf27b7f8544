"""What the checks share inside the sandbox: the failure they raise, one-line descriptions of a
student's exceptions, constructing a student's class, and finding a model's weights by shape.

Students keep their weights in different places (self.W / self.b lists, W1 / W2, a dict of
parameters, self.B), shaped (out, in) or (in, out). The checks find them by shape, in the object's
attributes, lists, tuples and dicts, and reach them again by the same path after training, since
an update may replace an array rather than change it in place.
"""
import inspect
import os
import traceback

import numpy as np


class CheckFailed(Exception):
    """A check's verdict: the student's code ran and is wrong; the message says how."""


def describe_exception(exc, student_path=None):
    """One line: the exception and the student's innermost line that raised it."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = ""
    if student_path is not None:
        mine = [f for f in frames if os.path.abspath(f.filename) == os.path.abspath(student_path)]
        if mine:
            function = "" if mine[-1].name == "<module>" else f", in {mine[-1].name}"
            where = f" ({os.path.basename(student_path)}, line {mine[-1].lineno}{function})"
    message = " ".join(str(exc).split())
    if len(message) > 160:
        message = message[:157] + "..."
    return f"{type(exc).__name__}: {message}{where}" if message else f"{type(exc).__name__}{where}"


def need(module, name, script):
    """module.name, or a failure naming what is missing."""
    value = getattr(module, name, None)
    if value is None:
        raise CheckFailed(f"{script} has no {name}")
    return value


def construct(cls, positional, extra=None):
    """cls(*positional), filling any further required constructor argument from `extra`
    (name -> value, e.g. a layer count), as a student's own main would."""
    extra = extra or {}
    try:
        signature = inspect.signature(cls)
    except (TypeError, ValueError):
        return cls(*positional)
    kwargs = {}
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    names = [p for p in signature.parameters.values() if p.kind in kinds]
    if len(names) < len(positional) and not any(
            p.kind == inspect.Parameter.VAR_POSITIONAL for p in signature.parameters.values()):
        raise CheckFailed(f"{cls.__name__}{signature} takes fewer arguments than the course's "
                          f"main passes ({len(positional)})")
    for parameter in names[len(positional):]:
        if parameter.default is inspect.Parameter.empty:
            value = next((v for key, v in extra.items() if key in parameter.name.lower()), None)
            if value is None:
                raise CheckFailed(f"{cls.__name__}{signature} requires '{parameter.name}', which "
                                  f"the course's main does not pass")
            kwargs[parameter.name] = value
    return cls(*positional, **kwargs)


# ----------------------------------------------------------------------------- numpy weights

def _arrays(obj, path=(), depth=0, seen=None):
    """(path, array) for every numpy array reachable from obj's attributes, lists, tuples and
    dicts, three levels deep at most; a path is a tuple of ("attr", name) / ("item", key)."""
    seen = set() if seen is None else seen
    if id(obj) in seen or depth > 3:
        return
    seen.add(id(obj))
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind == "f":
            yield path, obj
        return
    if isinstance(obj, dict):
        items = [(("item", key), value) for key, value in obj.items()]
    elif isinstance(obj, (list, tuple)):
        items = [(("item", i), value) for i, value in enumerate(obj)]
    elif hasattr(obj, "__dict__") and not isinstance(obj, type) and depth == 0:
        items = [(("attr", key), value) for key, value in vars(obj).items()]
    else:
        return
    for step, value in items:
        yield from _arrays(value, path + (step,), depth + 1, seen)


def path_text(path):
    text = "self"
    for kind, key in path:
        text += f".{key}" if kind == "attr" else f"[{key!r}]"
    return text


def get_path(obj, path):
    for kind, key in path:
        obj = getattr(obj, key) if kind == "attr" else obj[key]
    return obj


def set_path(obj, path, value):
    *head, (kind, key) = path
    parent = get_path(obj, head)
    if kind == "attr":
        setattr(parent, key, value)
    elif isinstance(parent, tuple):
        raise CheckFailed(f"{path_text(head)} is a tuple; the checker cannot set its weights")
    else:
        parent[key] = value


class Slot:
    """Where one weight lives in a student's model, and whether it is stored transposed."""

    def __init__(self, path, shape, transposed, bias=False):
        self.path, self.shape, self.transposed, self.bias = path, shape, transposed, bias

    def get(self, model):
        """The weight in the reference's layout: (out, in) for a matrix, (out,) for a bias."""
        value = np.asarray(get_path(model, self.path), dtype=np.float64)
        if value.shape != self.shape:
            raise CheckFailed(f"{path_text(self.path)} changed shape from {self.shape} to "
                              f"{value.shape} during training")
        if self.bias:
            return value.reshape(-1)
        return value.T if self.transposed else value

    def set(self, model, value):
        """Store `value` (the reference's layout) as a fresh float64 array in the student's."""
        value = np.array(value, dtype=np.float64)
        if self.bias:
            value = value.reshape(self.shape)
        elif self.transposed:
            value = np.ascontiguousarray(value.T)
        set_path(model, self.path, value)


def find_weights(model, roles, names_hint=None):
    """Find each role's array by shape. `roles`: name -> (rows, cols) for a matrix, which may be
    stored as (rows, cols) or (cols, rows), or (n,) for a bias, stored as (n,), (n, 1) or (1, n).
    Returns name -> Slot; a failure lists the arrays found when a role has none."""
    found = list(_arrays(model))
    slots, used = {}, set()
    for role, shape in roles.items():
        candidates = []
        for path, array in found:
            if path in used:
                continue
            if len(shape) == 2:
                if array.shape == shape:
                    candidates.append(Slot(path, array.shape, False))
                elif array.shape == shape[::-1]:
                    candidates.append(Slot(path, array.shape, True))
            elif array.shape in ((shape[0],), (shape[0], 1), (1, shape[0])):
                candidates.append(Slot(path, array.shape, False, bias=True))
        if not candidates:
            listing = ", ".join(f"{path_text(p)} {a.shape}" for p, a in found) or "no arrays"
            wanted = (f"{shape} or {shape[::-1]}" if len(shape) == 2 else f"({shape[0]},)")
            raise CheckFailed(f"cannot find the {role} weights shaped {wanted} among the model's "
                              f"attributes (found: {listing})")
        # several arrays of one shape (a weight and a cache of it): prefer the name that says so
        hint = (names_hint or {}).get(role, ())
        candidates.sort(key=lambda s: not any(h in path_text(s.path).lower() for h in hint))
        slots[role] = candidates[0]
        used.add(candidates[0].path)
    return slots
