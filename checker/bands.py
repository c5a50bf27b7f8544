"""The reference numbers of the end-to-end runs: this project's own runs over seeds, and for
each epoch the band where a correct implementation's dev accuracy falls (and the final test
accuracy's band), by reporting/seeds.py's rule. Deterministic runs keep seed 42 alone.

    python -m checker.bands --seeds 10               # runs this project's scripts (~20 min)
    python -m checker.bands --records DIR [DIR ...]  # reads run records already made

writes checker/bands.json. A record is a JSON file of hw1-q1.py / hw1-q2.py (any folder depth)
with `config` (its flags and `seed`), `valid_acc` (dev accuracy per epoch) and `test_acc`.
"""
import argparse
import json
import math
import subprocess
import sys
import tempfile
from pathlib import Path

from checker.endtoend import EPOCHS, RUNS
from reporting import seeds

ROOT = Path(__file__).resolve().parent.parent
BANDS_PATH = Path(__file__).resolve().parent / "bands.json"
SEED_ORDER = (42, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19)


def load(path=BANDS_PATH):
    with open(path) as f:
        return json.load(f)


def _same(a, b):
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-12)
    return str(a) == str(b)


def run_of(record):
    """The Run a record belongs to, or None: its script, model and every flag of the course's
    command (a flag the record lacks counts as matching, e.g. q1's batch size)."""
    config = record.get("config") or {}
    script = record.get("script") or ("hw1-q2.py" if "batch_size" in config else "hw1-q1.py")
    model = record.get("model", config.get("model"))
    if config.get("epochs", EPOCHS) < EPOCHS:
        return None
    for run in RUNS:
        if run.script == script and run.model == model and all(
                _same(config[flag], value) for flag, value in run.relevant_flags()
                if flag in config):
            return run
    return None


def read_records(folders):
    """{run key: {seed: (dev per epoch, test)}} from every record under `folders`."""
    found = {}
    for folder in folders:
        for path in sorted(Path(folder).rglob("*.json")):
            try:
                record = json.loads(path.read_text())
                run = run_of(record)
                seed = record["config"]["seed"]
                dev, test = [float(v) for v in record["valid_acc"]], float(record["test_acc"])
            except (ValueError, KeyError, TypeError, AttributeError):
                continue
            if run is not None and len(dev) >= EPOCHS:
                found.setdefault(run.key, {})[seed] = (dev[:EPOCHS], test)
    return found


def build(found, count):
    """The bands file's content from `found` (read_records), `count` seeds per chaotic run."""
    runs = {}
    for run in RUNS:
        by_seed = found.get(run.key, {})
        wanted = [42] if run.deterministic else list(SEED_ORDER[:count])
        chosen = [s for s in wanted if s in by_seed] or (
            [] if run.deterministic else sorted(by_seed)[:count])
        if not chosen:
            continue
        dev = [by_seed[s][0] for s in chosen]
        test = [by_seed[s][1] for s in chosen]
        per_epoch = [[d[e] for d in dev] for e in range(EPOCHS)]
        if run.deterministic:
            band_dev = [[v[0], v[0]] for v in per_epoch]
            band_test = [test[0], test[0]]
        else:
            band_dev = [list(seeds.band(v)) for v in per_epoch]
            band_test = list(seeds.band(test))
        runs[run.key] = {
            "command": run.command(), "deterministic": run.deterministic, "seeds": chosen,
            "valid_acc": [[round(v, 6) for v in d] for d in dev],
            "test_acc": [round(v, 6) for v in test],
            "band_dev": [[round(lo, 6), round(hi, 6)] for lo, hi in band_dev],
            "band_test": [round(v, 6) for v in band_test]}
    return {"rule": ("deterministic runs: seed 42's numbers, matched to the fourth decimal; "
                     f"chaotic runs: {seeds.BAND_RULE}"),
            "generated_by": "python -m checker.bands", "epochs": EPOCHS, "runs": runs}


def dumps(content):
    """The bands file's text: one line per field of a run, so that a diff shows which moved."""
    lines = ["{"]
    for key in ("rule", "generated_by", "epochs"):
        lines.append(f" {json.dumps(key)}: {json.dumps(content[key], ensure_ascii=False)},")
    lines.append(' "runs": {')
    for i, (name, entry) in enumerate(content["runs"].items()):
        lines.append(f"  {json.dumps(name)}: {{")
        fields = [f"   {json.dumps(k)}: {json.dumps(v)}" for k, v in entry.items()]
        lines.append(",\n".join(fields))
        lines.append("  }" + ("," if i < len(content["runs"]) - 1 else ""))
    lines += [" }", "}", ""]
    return "\n".join(lines)


def run_seeds(count, folder, data_path=None, runs=RUNS):
    """Run this project's scripts: each deterministic run with seed 42, each chaotic run with
    `count` seeds, records under `folder`. Raises RuntimeError naming a run that fails."""
    for run in runs:
        for seed in [42] if run.deterministic else SEED_ORDER[:count]:
            out = Path(folder) / f"{run.key}-seed{seed}"
            command = [sys.executable, str(ROOT / run.script), *run.argv(EPOCHS), "-seed",
                       str(seed), "-output_dir", str(out)]
            if data_path is not None:
                command += ["-data_path", str(Path(data_path).resolve())]
            print(" ".join(command[1:]), flush=True)
            process = subprocess.run(command, cwd=ROOT, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True)
            if process.returncode != 0:
                last = (process.stderr.strip().splitlines() or ["no message"])[-1]
                raise RuntimeError(f"{' '.join(command[1:])} failed: {last}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=10,
                        help="seeds per chaotic run: 42, then 1, 2, ... (default: %(default)s)")
    parser.add_argument("--records", nargs="+", type=Path, default=None, metavar="DIR",
                        help="read run records from these folders instead of running "
                             "(default: run this project's scripts)")
    parser.add_argument("--data", type=Path, default=None,
                        help="the dataset the runs train on (default: the scripts' own, "
                             "Kuzushiji-MNIST.npz beside them)")
    parser.add_argument("--output", type=Path, default=BANDS_PATH,
                        help="the bands file to write (default: checker/bands.json)")
    args = parser.parse_args(argv)
    if not 1 <= args.seeds <= len(SEED_ORDER):
        parser.error(f"argument --seeds: between 1 and {len(SEED_ORDER)}")
    if args.records:
        missing = [str(p) for p in args.records if not p.is_dir()]
        if missing:
            print(f"error: no such folder: {', '.join(missing)}", file=sys.stderr)
            return 1
        found = read_records(args.records)
    else:
        with tempfile.TemporaryDirectory(prefix="bands-") as folder:
            try:
                run_seeds(args.seeds, folder, args.data)
            except RuntimeError as err:
                print(f"error: {err}", file=sys.stderr)
                return 1
            found = read_records([folder])
    content = build(found, args.seeds)
    given = sys.argv[1:] if argv is None else argv
    content["generated_by"] = " ".join(["python -m checker.bands", *given])
    missing = [run.key for run in RUNS if run.key not in content["runs"]]
    args.output.write_text(dumps(content))
    for key, entry in content["runs"].items():
        print(f"{key}: {len(entry['seeds'])} seed(s), final dev band "
              f"[{entry['band_dev'][-1][0]:.4f}, {entry['band_dev'][-1][1]:.4f}], test band "
              f"[{entry['band_test'][0]:.4f}, {entry['band_test'][1]:.4f}]")
    if missing:
        print(f"warning: no records for {', '.join(missing)}", file=sys.stderr)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
