"""Measuring speed and memory: FLOPs and memory (`measure`, which the model-size tables call too), and the
benchmark behind `scripts/bench.py`: its timing harness (`harness`), what it times (`sections`) and its
Markdown report (`report`). Imports nothing from `odenets.reporting`."""
