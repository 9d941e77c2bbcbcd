# The README's two commands. Both set up .venv first (idempotent).
.PHONY: setup run test

setup:
	bash scripts/setup.sh

# The main job on the embedded default: CPU, bundled model, real data in ../shared/data.
run: setup
	.venv/bin/stream-monitor eval --dev-benchmark --out results/dev-benchmark

test: setup
	.venv/bin/python -m pytest -q
