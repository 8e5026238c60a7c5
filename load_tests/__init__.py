"""Traffic generator and benchmarks (docs/performance.md says how to run each); what they share is in ``load_tests.harness``."""
