# The two commands of the README. Each installs what it needs first (scripts/setup.sh).
.PHONY: setup demo test lint

setup:
	@bash scripts/setup.sh

# The main job: PPO trained only inside the shipped CartPole world model, then played in the real game
# (CPU, about 20 s after the install, no network).
demo: setup
	MUJOCO_GL=egl .venv/bin/wmsim quickstart --env CartPole --out runs/quickstart

lint: setup
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy

# Lint, type-check, then the whole test suite (slow learning tests included).
test: lint
	MUJOCO_GL=egl .venv/bin/python -m pytest
