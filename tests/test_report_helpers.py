"""Helpers shared by the report's tests (no tests here): records in the scripts' format, the
tables of results.md, and a tiny report made once per test module that asks for it."""
import contextlib
import io

from runkit import epoch_log


def record(model="perceptron", seed=42, dev=0.5, test=0.4, train=0.6, epochs=2, **extra):
    """A whole record of the scripts' format (runkit/epoch_log.py), final accuracies as given."""
    curve = lambda last: [last / 2] * (epochs - 1) + [last]
    made = {"model": model, "config": {"seed": seed}, "record_version": epoch_log.RECORD_VERSION,
            "path": "fast (test)", "engine": "test", "epochs": list(range(1, epochs + 1)),
            "train_loss": [1.0] * epochs, "train_acc": curve(train), "valid_loss": None,
            "valid_acc": curve(dev), "weight_norm": None, "epoch_seconds": [0.5] * epochs,
            "train_seconds": 0.5 * epochs, "final_train_acc": train, "test_acc": test,
            "diverged": False}
    assert set(epoch_log.RECORD_KEYS) <= set(made)
    made.update(extra)
    return made


def table_rows(text, title):
    """(header, {description: cells}) of the Markdown table under `## title`."""
    section = text.split(f"## {title}\n")[1].split("\n## ")[0]
    rows = [line for line in section.splitlines() if line.startswith("|")]
    split = lambda line: [c.strip() for c in line.strip().strip("|").split("|")]
    return split(rows[0]), {split(line)[0].split("`")[1]: split(line) for line in rows[2:]}


def run_report(argv):
    """report.main(argv) in this process: (exit code, stdout)."""
    import report
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = report.main(argv)
    return code, stdout.getvalue()
