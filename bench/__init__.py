"""Benchmarks: `make bench` / `make bench-quick` regenerate docs/BENCHMARKS.md from measured figures."""
