"""Helpers shared by the test suites and the benchmarks (imported as `tests.support.<module>`)."""
