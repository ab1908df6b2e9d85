"""Command-line tools beside the package (benchmarks, reports, checks); importable by the tests."""
