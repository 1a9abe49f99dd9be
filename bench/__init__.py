"""Benchmarks of the search service (see bench/README.md); scripts, not tests."""
