"""Measuring speed and memory: the benchmark (`bench`, JSON out) and tensor-memory accounting (`memory`)."""
