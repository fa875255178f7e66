"""Benchmarks: perf_analyzer runs and baselines, results and plots (`swaptron bench`)."""
