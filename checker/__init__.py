"""The checker of a student's hw1-q1.py / hw1-q2.py (check_solution.py): unit checks against
this project's answers, end-to-end runs against its numbers, one verdict per question.

Modules: points (the questions and the points of each check), sandbox (the subprocess each
check runs in), harness (what runs inside it), probe (finding a student's weights), unit_q1 and
unit_q2 (the unit checks), endtoend (the course's runs and their comparison), bands (the
seeds' bands and their generator), grade (verdicts and points), output (table, Gradescope JSON,
CSV)."""
