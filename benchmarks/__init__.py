"""Speed benchmarks (not part of the test suite; a smoke run of them is)."""
