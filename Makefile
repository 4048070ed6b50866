# WHAGO — the two commands: `make run` and `make test`.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: run test bench lint messages simulator-image clean

run:
	@scripts/setup.sh venv
	@scripts/run.sh

test:
	@scripts/setup.sh all
	@scripts/test.sh $(ARGS)

bench:
	@scripts/setup.sh all
	@scripts/test.sh --bench

lint:
	@scripts/setup.sh venv
	@$(VENV)/bin/ruff check .

messages:
	@scripts/setup.sh venv
	$(PY) manage.py makemessages -l pt_BR -l en --ignore=.venv --ignore=var --ignore=tests --no-obsolete
	$(PY) manage.py compilemessages --ignore=.venv

simulator-image:
	@scripts/setup.sh simulator-image

clean:
	rm -rf var/broker var/cache tests/artifacts
