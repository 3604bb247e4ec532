"""Peer benchmarks (DBOS, Celery) run side by side with bench/engine_bench.py."""
