# seamcut: `make demo` (set up + main job), `make test` (set up + test suite).
.PHONY: setup setup-test demo test test-slow soak lint protos image clean

setup:
	@scripts/setup.sh

setup-test:
	@scripts/setup.sh --test

demo: setup
	@scripts/demo.sh

test: setup-test
	.venv/bin/ruff check server client bench seamcut tests scripts
	scripts/typecheck.sh
	.venv/bin/python -m pytest -q

test-slow: setup-test
	.venv/bin/python -m pytest -q -m slow

# Just the memory soak (10 min of churn + a 3 min leaking control; SOAK_S and
# SOAK_CONTROL_S change the durations); prints the RSS figures.
soak: setup-test
	.venv/bin/python -m pytest -q -m slow -s tests/test_soak.py

lint: setup
	.venv/bin/ruff check server client bench seamcut tests scripts
	scripts/typecheck.sh

protos: setup
	.venv/bin/python scripts/gen_protos.py

# The server image (Dockerfile, docs/DEPLOY.md). IMAGE_ARGS go to scripts/build_image.sh,
# e.g. IMAGE_ARGS="--flavour gpu", or "--debootstrap --isolation chroot" on a host that
# reaches Debian's mirror but no image registry (docs/DEPLOY.md, "Tried here").
image:
	scripts/build_image.sh $(IMAGE_ARGS)

clean:
	rm -rf .venv out build *.egg-info tests/.cache
