"""Evaluation: how good a compiled model is, and how that is measured; imports nothing from the search, pruning
or the sweep, which all use it.

metrics.py    accuracy, fidelity (SQNR, top-1 agreement, cosine), golden tolerance: pure numpy
quality.py    Quality, the one record of a model's figures, and its one wording (describe)
criterion.py  Criterion: when a model is accurate enough; fidelity_key / rank: which of two is more faithful
reference.py  Reference: the source model's outputs, computed once per dataset per build
runner.py     a compiled model opened in the bundle's runtime, and its outputs
judge.py      Judge: a compiled model's Quality against the Reference, through the runtime
timing.py     host latency side by side, the host's identity, the build's thread count
"""
