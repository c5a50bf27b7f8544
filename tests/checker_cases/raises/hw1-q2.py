"""A hw1-q2.py that raises at import: it reads a file the student had on their machine."""
import torch

import utils

STATS = torch.load("my_mean_and_std.pt")


class LogisticRegression(torch.nn.Module):
    pass
