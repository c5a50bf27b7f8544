"""Command-line flags: the course's single-dash names with double-dash aliases, and argparse
types that refuse values a run cannot use, naming the flag and the range."""
import argparse
import math


def add_flag(parser, name, *other_names, **kwargs):
    """Add the course's single-dash flag `-name` with a double-dash alias `--name-with-dashes`,
    and the same for each of `other_names` (other spellings of the flag)."""
    aliases = []
    for spelling in (name, *other_names):
        aliases += [f"-{spelling}", f"--{spelling.replace('_', '-')}"]
    return parser.add_argument(*aliases, dest=name, **kwargs)


def checked(convert, ok, requirement):
    """An argparse type: convert(text), which must satisfy ok(value) ("must be <requirement>")."""
    def parse(text):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {convert.__name__}, got {text!r}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"must be {requirement}, got {text}")
        return value
    parse.__name__ = convert.__name__  # argparse names the type in its messages
    return parse


positive_int = checked(int, lambda v: v >= 1, ">= 1")
positive_float = checked(float, lambda v: math.isfinite(v) and v > 0, "> 0")
nonnegative_float = checked(float, lambda v: math.isfinite(v) and v >= 0, ">= 0")
probability = checked(float, lambda v: 0 <= v < 1, "in [0, 1)")
seed_value = checked(int, lambda v: 0 <= v < 2 ** 32, "in [0, 2**32)")  # numpy's seed range
# torch keeps an optimizer's hyperparameters in the parameters' type (float32) in its update: a
# larger value cannot be converted, and fails in the first step
FLOAT32_MAX = 3.4e38
float32_positive = checked(float, lambda v: 0 < v <= FLOAT32_MAX, "> 0 and at most 3.4e38")
float32_nonnegative = checked(float, lambda v: 0 <= v <= FLOAT32_MAX, ">= 0 and at most 3.4e38")


def torch_device(text):
    """argparse type for -device: auto, or a device this torch build can train on (a small
    tensor is put there and read back, as training does)."""
    if text == "auto":
        return text
    import torch
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise argparse.ArgumentTypeError(f"not a torch device: {text!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise argparse.ArgumentTypeError(f"{text} requested but CUDA is not available")
    if device.type == "meta":
        raise argparse.ArgumentTypeError(f"{text} holds no data (a meta device cannot train)")
    try:
        torch.ones(1, device=device).sum().item()
    except Exception as err:  # torch raises RuntimeError, AssertionError, ... by backend
        reason = (str(err).strip() or type(err).__name__).splitlines()[0].split(". ")[0]
        raise argparse.ArgumentTypeError(
            f"{text}: not usable with this torch build ({reason[:120]})") from None
    return text


def resolve_device(name):
    """auto -> cuda when available, else cpu; any other name as it is."""
    if name != "auto":
        return name
    import torch
    return "cuda" if torch.cuda.is_available() else "cpu"

