# The two commands a new machine needs: `make demo` (the main job) and `make test`.
# Both bootstrap first (venv, PostgreSQL binaries, Kafka jars); that is quick once done.
.PHONY: demo test lint bootstrap stack

bootstrap:
	@scripts/bootstrap.sh

demo: bootstrap
	.venv/bin/python -m orchestrator.devstack smoke

test: bootstrap lint
	.venv/bin/pytest --durations=15

lint: bootstrap
	.venv/bin/ruff check .
	.venv/bin/mypy

stack: bootstrap
	.venv/bin/python -m orchestrator.devstack up
