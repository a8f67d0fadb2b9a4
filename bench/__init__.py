"""Benchmarks: each prints its numbers; docs/benchmarks.md records them with the machine they ran on."""
