# The README's two commands. Both set up .venv first (idempotent).
.PHONY: setup run test

setup:
	bash scripts/setup.sh

# The main job on the embedded default: CPU, bundled model, real data in ../shared/data.
run: setup
	.venv/bin/stream-monitor eval --dev-benchmark --out results/dev-benchmark

# The test suite, with the Debian packages its integration tests drive (chromium, prometheus).
test:
	bash scripts/setup.sh --system
	.venv/bin/python -m pytest -q
