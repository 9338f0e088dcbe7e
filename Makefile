# The few commands a newcomer needs. Every tool beyond Rust and Python 3 comes from pinned
# PyPI packages installed into local virtualenvs: .venv for the tests' AWS emulator (moto)
# and API tester (schemathesis), .venv-tools for Lambda builds and template checks
# (cargo-lambda, zig, SAM CLI, cfn-lint).
SHELL := /bin/bash
VENV := .venv
MOTO := $(VENV)/bin/moto_server
SCHEMATHESIS := $(VENV)/bin/schemathesis
TOOLS := .venv-tools
TOOLS_STAMP := $(TOOLS)/.installed
TEMPLATE := infra/template.yaml
LAMBDA_TARGET := aarch64-unknown-linux-gnu
export SAM_CLI_TELEMETRY := 0
# cargo-lambda finds zig through the first python3 on PATH: the tools' virtualenv.
WITH_TOOLS := PATH="$(CURDIR)/$(TOOLS)/bin:$$PATH"

.PHONY: run migrate admin test browser fault lint build sam-build bench fmt

## run: the config API and POST /v1/events on 127.0.0.1:3000, on a local file store (.local/)
run:
	cargo run --locked -p local-runner --bin local-runner -- $(ARGS)

## migrate: move an AWS deployment's old per-project secrets into the state table (idempotent;
## ARGS="--table NAME [--prefix PREFIX]", AWS credentials from the usual places); with
## ARGS="... --to kms-envelope|secrets-manager [--kms-key-id KEY] [--delete-old]", move every
## stream's credential to the other adapter (docs/operations.md, "Credential stores")
migrate:
	cargo run --locked -p local-runner --bin migrate -- $(ARGS)

## admin: the operators' command (ARGS="keys list", "dlq summary", "dlq redrive --reason R",
## "stream show PROJECT", "--stack NAME ...", "--local keys ..."; docs/operations.md, "Admin command")
admin:
	cargo run --locked -p els-admin -- $(ARGS)

## test: install the AWS emulator (moto), the API tester (schemathesis) and the browser if
## needed, then run every test
test: $(MOTO) $(SCHEMATHESIS) browser
	cargo test --workspace --locked

# The page test drives Debian's Chromium over WebDriver (or the binaries CHROMIUM and
# CHROMEDRIVER name). Installed here when missing (as root, as CI runs); otherwise the one
# command that installs it is printed and the run stops.
BROWSER_PACKAGES := chromium chromium-driver
browser:
	@if [ -x "$${CHROMIUM:-/usr/bin/chromium}" ] && [ -x "$${CHROMEDRIVER:-/usr/bin/chromedriver}" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(BROWSER_PACKAGES); \
	else \
		echo "The page test needs Chromium and ChromeDriver: sudo apt-get install -y $(BROWSER_PACKAGES)"; exit 1; \
	fi

## screenshot: the Stream Settings page as the README shows it (docs/stream-settings.png), made
## by the page test in Chromium; run it when the page changes (a test in make test says when)
SCREENSHOTS := target/page-screenshots
screenshot: $(MOTO) browser
	rm -rf $(SCREENSHOTS)
	PAGE_SCREENSHOTS=$(CURDIR)/$(SCREENSHOTS) cargo test --locked -p integration-tests --test e2e \
		page::a_customer_configures
	cp $(SCREENSHOTS)/readme.png docs/stream-settings.png
	cat functions/config-api/assets/* | sha256sum | cut -d' ' -f1 > docs/stream-settings.png.page-sha256

## fault: the fault run at the issue's size (10,000 events through a failing destination
## while the streamer's SQS, DynamoDB and Secrets Manager calls fail or stall; make test runs
## it with 600)
fault: $(MOTO)
	FAULT_EVENTS=10000 cargo test --locked -p integration-tests --test e2e faults::under_faults -- --nocapture

$(MOTO):
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check 'moto[server]==5.2.5'

# The config API's contract test drives it from openapi.json. Hypothesis is pinned too: the
# test's fixed seed gives the same cases only with the same generator.
$(SCHEMATHESIS): $(MOTO)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check 'schemathesis==4.32.5' \
		'hypothesis==6.170.17' 'jsonschema_rs==0.60.3'

$(TOOLS_STAMP):
	python3 -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check \
		'cargo-lambda==1.9.2' 'ziglang==0.17.1' 'aws-sam-cli==1.170.0' 'cfn-lint==1.58.0'
	touch $@

## lint: formatting, clippy (warnings are errors) and three independent template checks
lint: $(TOOLS_STAMP)
	rustup component add rustfmt clippy
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets --locked -- -D warnings
	$(TOOLS)/bin/sam validate --template-file $(TEMPLATE) --region us-east-1
	$(TOOLS)/bin/sam validate --lint --template-file $(TEMPLATE) --region us-east-1
	$(TOOLS)/bin/cfn-lint $(TEMPLATE)

## build: arm64 Lambda artifacts in target/lambda/{streamer,config-api}/bootstrap
build: $(TOOLS_STAMP)
	rustup target add $(LAMBDA_TARGET)
	$(WITH_TOOLS) cargo lambda build --release --arm64 --locked -p streamer -p config-api

## sam-build: what `sam deploy` uploads, built by SAM with cargo-lambda
sam-build: $(TOOLS_STAMP)
	rustup target add $(LAMBDA_TARGET)
	$(WITH_TOOLS) sam build

## bench: encoding, gzip, stream controls, end-to-end delivery, and the release streamer driven as Lambda
## drives it (see docs/performance.md)
bench: $(MOTO)
	cargo build --release --locked -p streamer
	cargo bench -p event-log-streaming --bench gzip --locked
	cargo bench -p event-log-streaming --bench controls --locked
	cargo bench -p integration-tests --bench delivery --locked
	cargo bench -p integration-tests --bench lambda --locked

fmt:
	cargo fmt --all
