# l2announcer: `make test` and `make demo` bootstrap everything they need on a fresh Debian 12
# machine (as root), then run. The bootstrap is idempotent: a second run only checks.
VENV := .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: bootstrap controlplane test lint typecheck pytest unit bench demo clean lock

bootstrap:
	@scripts/bootstrap.sh

# The real Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager, kubectl,
# helm) from the pinned Go modules in lab/go/, cached outside the work tree by version: the first
# build takes about 8 minutes on 2 cores, a second run a fraction of a second.
controlplane:
	@scripts/controlplane-build.sh >/dev/null

# The layers and which package may talk to which outside system: .importlinter.
lint: bootstrap
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports --no-cache

typecheck: bootstrap
	$(VENV)/bin/mypy

pytest: bootstrap controlplane
	$(PY) -m pytest $(PYTEST_ARGS)

unit: bootstrap
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

# The steps above, in this order (make runs prerequisites left to right and stops at the first
# failure); bootstrap runs once.
test: lint typecheck pytest

bench: bootstrap
	$(PY) bench/statedb.py

# The embedded lab (docs/lab.md): brings it up, walks through it with narration, measures a
# failover, and leaves it up (`l2lab down` removes it). Needs root.
demo: bootstrap controlplane
	@$(PY) -m lab.demo

# The container image (Dockerfile) from Debian packages and requirements.lock, checked; see
# scripts/image.sh. Its test (tests/e2e/test_image.py: the agent from the image in a lab node)
# is part of `make test` where podman, buildah and mmdebstrap are installed (bootstrap installs
# them); the build is skipped when its inputs have not changed.
.PHONY: image
image:
	@scripts/image.sh

# requirements.lock (the image) and requirements-test.lock (.venv) from pyproject.toml, with
# hashes; existing pins are kept unless LOCK_ARGS=--upgrade (or --upgrade-package NAME).
lock: bootstrap
	@scripts/lock.sh $(LOCK_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
