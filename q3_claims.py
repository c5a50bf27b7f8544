"""Claims checked on numbers: the machinery of Question 3's checks, shared by `hw1-q3.py` (the
2022-23 question) and `q3_other_editions/` (the 2024-25, 2023-24 and 2021-22 questions).

A claim is a function `check(rng, **overrides) -> Result` registered under a name in a `Claims`
registry; the overrides let the tests hand it a wrong implementation, which must then fail. Each
claim draws from its own generator, seeded by (seed, claim name), so a filtered run prints the same
numbers as the full run. A command prints one line per claim, PASS or FAIL with the measured error
and its threshold, then a summary, and exits with status 1 if any claim fails.
"""
import argparse
import sys
import time
import zlib
from dataclasses import dataclass

import numpy as np

import utils
from runkit import flags

EXACT_TOL = 1e-10   # identities that hold exactly up to rounding


@dataclass
class Result:
    """One claim's outcome: `quantity` was measured as `error` and compared with `threshold`."""
    name: str
    description: str
    quantity: str
    error: float
    threshold: float
    passed: bool
    relation: str = "<"
    notes: str = ""

    def line(self, width=0):
        """`PASS  name  quantity = error (relation threshold); notes`, the name padded to width."""
        status = "PASS" if self.passed else "FAIL"
        if np.isnan(self.threshold):  # the claim crashed before measuring anything
            return f"{status}  {self.name:<{width}}  {self.quantity}"
        text = (f"{status}  {self.name:<{width}}  {self.quantity} = {_fmt(self.error)} "
                f"({self.relation} {_fmt(self.threshold, 0)})")
        return f"{text}; {self.notes}" if self.notes else text


def _fmt(x, digits=1):
    """Counts as integers, everything else in scientific notation."""
    if isinstance(x, (int, np.integer)):
        return f"{int(x):,}"
    return f"{x:.{digits}e}"


_COMPARE = {"<": lambda e, t: e < t, ">=": lambda e, t: e >= t, "=": lambda e, t: e == t}


def result(check, quantity, error, threshold, relation="<", ok=True, notes=""):
    """The Result of the registered claim `check`: passed iff `error relation threshold` and `ok`
    (the claim's other checks).

    A NaN error fails every relation (NaN comparisons are False).
    """
    passed = bool(_COMPARE[relation](error, threshold) and ok)
    return Result(check.claim_name, check.claim_description, quantity, error, threshold, passed,
                  relation, notes)


def claim_rng(seed, name):
    """The generator of one claim: the same numbers whether it runs alone or with the others."""
    return np.random.default_rng([seed, zlib.crc32(name.encode())])


def rel_error(a, b, eps=1e-12):
    """||a - b|| / (||a|| + ||b|| + eps): the usual gradient-check error, scale free."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.linalg.norm(a - b) / (np.linalg.norm(a) + np.linalg.norm(b) + eps))


class Claims(dict):
    """A question's claims, name -> (check, description), in the order of the question."""

    def claim(self, name, description):
        """Register `check(rng, **overrides) -> Result` under `name`."""
        def register(check):
            self[name] = (check, description)
            check.claim_name, check.claim_description = name, description
            return check
        return register

    def run(self, name, seed, **overrides):
        """Run one claim with its own generator; an exception becomes a FAIL, not a crash."""
        check, description = self[name]
        try:
            return check(claim_rng(seed, name), **overrides)
        except Exception as err:  # a broken claim must not hide the others' results
            return Result(name, description, f"error: {type(err).__name__}: {err}", np.nan,
                          np.nan, False)

    def select(self, text):
        """The claim named `text`, else every claim whose name contains it (case-insensitive)."""
        if text is None:
            return list(self)
        if text in self:
            return [text]
        return [name for name in self if text.lower() in name.lower()]


def parser(claims, description, example, see_also=""):
    """The command line of a question's checks: -seed, -claim NAME, --help listing the claims.

    `example` is a part of a claim's name shown in the help; `see_also`, a line after the list.
    """
    width = max(map(len, claims))
    epilog = "\n".join(
        [f"claims (for -claim, a full name or any part of one, e.g. {example}):"]
        + [f"  {name:<{width}}  {desc}" for name, (_, desc) in claims.items()]
        + ([f"\n{see_also}"] if see_also else []))
    parser = argparse.ArgumentParser(description=description, epilog=epilog,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    flags.add_flag(parser, "seed", type=flags.seed_value, default=42,
                   help="random seed (default: %(default)s)")
    flags.add_flag(parser, "claim", metavar="NAME", default=None,
                   help="run only this claim, or the claims whose name contains NAME")
    return parser


def selected(parser, claims, text, see_also=""):
    """The names that `-claim text` selects; if none, a usage error (exit 2) listing the names."""
    names = claims.select(text)
    if not names:
        parser.error(f"unknown claim {text!r}; valid names: {', '.join(claims)}"
                     + (f"; {see_also}" if see_also else ""))
    return names


def check(claims, names, seed, after=None):
    """Run the claims `names` in order and print one line each, then call `after(names)` (which
    may print), then print the summary. Returns the exit status: 1 if any claim failed, else 0."""
    utils.configure_seed(seed)
    # Claims print Greek letters; never crash on a terminal that cannot show them.
    sys.stdout.reconfigure(errors="backslashreplace")
    start = time.perf_counter()
    width = max(map(len, names))
    results = []
    for name in names:
        results.append(claims.run(name, seed))
        print(results[-1].line(width), flush=True)
    if after is not None:
        after(names)
    failed = sum(not r.passed for r in results)
    print(f"{len(results) - failed} passed, {failed} failed ({time.perf_counter() - start:.1f} s)")
    return 1 if failed else 0
