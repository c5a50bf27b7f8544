"""What every training script needs besides its model, a module per concern:

- `errors`: the errors that end a run, `fail` and `run_command` (exit codes, Ctrl-C);
- `flags`: the course's single-dash flags and the argparse types that check them;
- `files`: output folders, files written atomically, temporary files of killed runs;
- `figures`: curves per epoch saved as PDF and PNG;
- `records`: the run's JSON record, its name, and its saving with the figures;
- `epoch_log`: the bookkeeping of training (epoch lines, timing, divergence, the record).
"""
