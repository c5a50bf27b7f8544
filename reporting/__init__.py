"""The machinery behind report.py: the plan of runs, the cache, the process launcher, the
scheduler, seed statistics, tables and figures; one module each."""
