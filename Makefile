# The few commands a newcomer needs. Tools the tests use are installed into .venv from pinned
# PyPI packages, so a fresh machine needs only Rust and Python 3.
SHELL := /bin/bash
VENV := .venv
MOTO := $(VENV)/bin/moto_server
MOTO_VERSION := 5.2.5

.PHONY: test lint bench fmt

## test: install the AWS emulator (moto) if needed, then run every test
test: $(MOTO)
	cargo test --workspace --locked

$(MOTO):
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check 'moto[server]==$(MOTO_VERSION)'

## lint: formatting and clippy, warnings are errors
lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets --locked -- -D warnings

## bench: gzip and encoding throughput (see README, "Performance")
bench:
	cargo bench -p event-log-streaming --bench gzip --locked

fmt:
	cargo fmt --all
