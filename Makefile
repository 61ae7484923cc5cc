# The two commands of the README. Each installs what it needs first (scripts/setup.sh).
.PHONY: setup demo test lint

setup:
	@bash scripts/setup.sh

# The main job: PPO trained only inside the shipped Pong world model, then played in the real game
# (CPU, a few minutes after the install, no network). `--env CartPole` tells the same story in 20 s.
demo: setup
	MUJOCO_GL=egl .venv/bin/wmsim quickstart --env Pong --seed 1 --out runs/quickstart

# Lint, types, and the direction of imports (hub <- wmsim <- agents; import-linter's contracts in
# pyproject.toml).
lint: setup
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy
	.venv/bin/lint-imports

# Lint, type-check, then the whole test suite (slow learning tests included), with the torch-free
# venv that setup builds (wmsim[onnx] only) for the install test.
test: lint
	WMSIM_ONNX_PYTHON=.venv-onnx/bin/python MUJOCO_GL=egl .venv/bin/python -m pytest
