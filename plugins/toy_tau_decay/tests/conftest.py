import math

import numpy as np
import pytest


@pytest.fixture
def log_det():
    """log |det| of a map's Jacobian at x0, by central differences of step h: ``log_det(mapped,
    x0, h)``, ``mapped(x)`` giving the image first (the moves' and jumps' Jacobian tests)."""
    def log_det(mapped, x0, h):
        jacobian = np.stack([(mapped(x0 + h * e)[0] - mapped(x0 - h * e)[0]) / (2 * h)
                             for e in np.eye(len(x0))], axis=1)
        return math.log(abs(np.linalg.det(jacobian)))
    return log_det
