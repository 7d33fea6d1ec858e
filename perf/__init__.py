"""Benchmarks and simulators; run each as ``python -m perf.<name>``."""
