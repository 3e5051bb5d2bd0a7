"""Developer tooling: the test runner and its pytest plugin, the coverage and performance gates, benchmarks."""
