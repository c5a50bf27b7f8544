"""A hw1-q1.py that never finishes importing: a training loop left at module level."""
import numpy as np

import utils

weights = np.zeros(3)
while True:
    weights += 1
