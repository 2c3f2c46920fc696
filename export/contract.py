"""Names of the wire contract that later stages share, and its one rule on ensembles.

Imports nothing: serving and clients read it without pulling in torch or onnx."""
from __future__ import annotations

from typing import Iterable

# The reconstruct ensemble's output. It cannot be called `video` like its input: in an
# ensemble both names denote ONE tensor, the step graph becomes a cycle (decode's output
# re-triggers encode) and Triton 2.51 loads it, then loops and crashes on a request.
RECONSTRUCT_OUTPUT = "reconstruction"


def ensemble_loops(input_names: Iterable[str], output_names: Iterable[str]) -> list[str]:
    """The ensemble outputs named like one of its inputs (sorted; empty when there are none):
    both names denote one tensor, so the steps form a cycle and requests never complete."""
    return sorted(set(input_names) & set(output_names))
