"""Traffic generator and end-to-end benchmarks (see load_tests/README.md)."""
