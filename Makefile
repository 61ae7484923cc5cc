# The two commands of the README. Each installs what it needs first (scripts/setup.sh).
.PHONY: setup demo test lint

setup:
	@bash scripts/setup.sh

# The main job: a short real DreamerV2 run on CartPole (CPU, about 2.5 minutes).
demo: setup
	.venv/bin/wmsim train --preset small --env CartPole-v1 --steps 4000 --logdir runs/quickstart

lint: setup
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy

# Lint, type-check, then the whole test suite (slow learning tests included).
test: lint
	MUJOCO_GL=egl .venv/bin/python -m pytest
