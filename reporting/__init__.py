"""The machinery behind report.py, a module each: the plan of runs (plan), the cache (cache),
the processes (launcher, runner), the scheduler (scheduler), the seeds' statistics (seeds),
the tables (tables), the figures (figures), results.md and results.tex (results), and what the
report's process holds: its output, its folder's lock, its signals (session)."""
