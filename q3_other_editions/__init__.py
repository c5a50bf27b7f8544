"""Question 3 of the course's other editions, each claim checked on numbers, one module per edition:

- `edition_2024_25`: g(z) = z(1 - z) with biases, still a linear model in a fixed feature map;
- `edition_2023_24`: the Boolean interval function, computed by MLPs with 2 hidden sign or ReLU
  units, the sign MLP's robustness margin, and a figure for D = 2;
- `edition_2021_22`: the derivatives that backpropagation uses (sigmoid, softmax, cross-entropy).

    python -m q3_other_editions                     # every claim, one line each, then a summary
    python -m q3_other_editions -claim 2023-24      # one edition's claims (any part of a name)
    python -m q3_other_editions -seed 7 -interval -1 1 -output_dir results/

The 2022-23 question, this repository's, is `hw1-q3.py`; both commands print the same way and exit
with status 1 if a claim fails (`q3_claims.py`).
"""
from pathlib import Path

from q3_claims import Claims, check, parser, selected
from runkit import errors, flags

from . import edition_2021_22, edition_2023_24, edition_2024_25

# Newest edition first.
CLAIMS = Claims({**edition_2024_25.CLAIMS, **edition_2023_24.CLAIMS, **edition_2021_22.CLAIMS})


def main(argv=None):
    """The command line: check the claims that -claim selects (all by default), then draw the
    2023-24 figure if any of that edition's claims ran; 1 if a claim fails."""
    command = parser(CLAIMS, "Check every claim of Question 3 of the 2024-25, 2023-24 and 2021-22 "
                             "editions on numbers: one line per claim, PASS or FAIL with the "
                             "measured error; exit status 1 if any claim fails.",
                     example="2023-24 or hessian",
                     see_also="the 2022-23 question is checked by 'python hw1-q3.py'")
    command.prog = "python -m q3_other_editions"   # argparse would say __main__.py
    flags.add_flag(command, "output_dir", type=Path, default=Path("results"),
                   help="where the 2023-24 figure goes (default: results/)")
    flags.add_flag(command, "interval", type=int, nargs=2, metavar=("A", "B"), default=(0, 0),
                   help="the interval A <= x1 + x2 <= B drawn in the 2023-24 figure, D = 2 "
                        "(default: 0 0, XOR)")
    args = command.parse_args(argv)
    names = selected(command, CLAIMS, args.claim)
    A, B = args.interval
    if not -2 <= A <= B <= 2:
        command.error(f"-interval needs -2 <= A <= B <= 2 for D = 2, got {A} {B}")

    def figure(names):
        if not any(name in edition_2023_24.CLAIMS for name in names):
            return
        try:
            paths = edition_2023_24.plot_interval(args.output_dir, A, B)
        except OSError as err:
            errors.fail(f"cannot write the figure to {args.output_dir}: {err}")
        print(f"figure: {', '.join(map(str, paths))}")

    return check(CLAIMS, names, args.seed, after=figure)
