# The two commands a new machine needs: `make demo` (the main job) and `make test`.
# Both bootstrap first (venv, PostgreSQL binaries, Kafka jars); that is quick once done.
.PHONY: demo test lint bootstrap stack smoke bench bench-peers

bootstrap:
	@scripts/bootstrap.sh

demo: bootstrap
	.venv/bin/python -m sagas.demo

smoke: bootstrap
	.venv/bin/python -m orchestrator.devstack smoke

bench: bootstrap
	.venv/bin/python bench/engine_bench.py --sagas 3000 --workflow bench.three_step --task-queue-workers 1

# ours and the peers (DBOS on PostgreSQL, Celery on Redis), 3 runs each: docs/benchmarks.md
bench-peers: bootstrap
	.venv/bin/pip install -q -e '.[bench]'
	command -v redis-server >/dev/null || $$( [ "$$(id -u)" = 0 ] || echo sudo ) apt-get install -y redis-server
	bench/peers/run_all.sh

test: bootstrap lint
	.venv/bin/pytest --durations=15

lint: bootstrap
	.venv/bin/ruff check .
	.venv/bin/mypy

stack: bootstrap
	.venv/bin/python -m orchestrator.devstack up
