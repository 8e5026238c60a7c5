"""Traffic generator and end-to-end benchmarks (docs/performance.md says how to run each)."""
