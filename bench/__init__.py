"""Benchmarks against named references, run from the repository root: `python -m bench.proxy`,
`python -m bench.sync`, `python -m bench.jobs`, `python -m bench.scale` (or `make bench`)."""
