# The README's two commands. Both set up .venv first (idempotent).
.PHONY: setup run test

setup:
	bash scripts/setup.sh

# The main job on the embedded default: the live pipeline on the CPU with the bundled model and
# detector, on a real ID → OOD → ID clip assembled from ../shared/data (results/demo/).
run: setup
	.venv/bin/stream-monitor demo

# The test suite, with the Debian packages its integration tests drive (chromium, prometheus).
test:
	bash scripts/setup.sh --system
	.venv/bin/python -m pytest -q
