"""JSON for the files every stage writes (evaluations, manifests, benchmark results)."""
from __future__ import annotations

import numpy as np


def json_default(value):
    """`json.dumps(..., default=json_default)`: numpy scalars and arrays as numbers and lists,
    sets as lists, anything else (paths, dtypes) as its str."""
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (set, tuple)):
        return list(value)
    return str(value)
