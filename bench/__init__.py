"""videogan's benchmark stage: every serving path of a model, and training, measured against each other.

Top level on purpose: it measures train/, export/, serving/ and clients/ against one another,
so it is the one package besides tests/ that imports them all, and nothing imports it.
`python -m bench` runs it (bench/__main__.py); BENCHMARKS.md holds the results. Modules:
machine (the machine, its ISA and FP32/BF16 peaks), measure (measurement loops, ratios),
paths (eager, the served sessions in-process, inputs, comparison), triton (the exported
repository and the server as production runs it, Triton's statistics), profiles (FLOP
counting, ONNX Runtime and OpenVINO per-operator profiles), training, run (one run, in order),
report (JSON and the markdown section).
"""
