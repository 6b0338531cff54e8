"""Benchmarks of the RobustDiCE core: partitioning, failure evaluation and s3 scoring.

Scripts, not tests: ``python -m benchmarks.run_all [--quick]`` or one of
``python -m benchmarks.bench_partition``, ``bench_failure_eval``, ``bench_s3``. Each writes
``benchmarks/results/<name>.json`` and prints a short table.
"""
