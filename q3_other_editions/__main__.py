"""`python -m q3_other_editions`: check Question 3 of the 2024-25, 2023-24 and 2021-22 editions."""
from q3_other_editions import main
from runkit import errors

errors.run_command(main)
