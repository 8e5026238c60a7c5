"""Traffic generator and benchmarks (README.md, "Benchmarks"); what they share is in ``load_tests.harness``."""
