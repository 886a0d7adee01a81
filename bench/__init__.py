"""Benchmarks against named references, run from the repository root: `python -m bench.proxy`,
`python -m bench.sync` (or `make bench`)."""
