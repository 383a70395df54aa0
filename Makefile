# seamcut: `make demo` (set up + main job), `make test` (set up + test suite).
.PHONY: setup setup-test demo test test-slow lint protos clean

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

lint: setup
	.venv/bin/ruff check server client bench seamcut tests scripts
	scripts/typecheck.sh

protos: setup
	.venv/bin/python scripts/gen_protos.py

clean:
	rm -rf .venv out build *.egg-info tests/.cache
