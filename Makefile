# vigil — the two commands that matter are `make demo` and `make test`.
CARGO ?= cargo
# The native build of ggml is ~1.5x faster (see FIELD-NOTES); set
# RUSTFLAGS= to build a binary for any x86-64.
export CARGO_TERM_COLOR ?= never

.PHONY: all setup build release test lint units demo probe-demo clean

all: build

setup:
	@scripts/setup.sh

build: setup
	$(CARGO) build --locked

release: setup
	$(CARGO) build --locked --release

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --all-targets -- -D warnings

units: build
	scripts/check-units.sh

# Everything CI runs: setup, formatting and lints, the build, every test
# (real GStreamer pipelines, RTSP and HTTP servers on loopback, the daemon
# as a process), and the systemd unit check.
test: setup lint
	$(CARGO) build --locked --all-targets
	$(CARGO) test --locked
	scripts/check-units.sh

# Runs the daemon on the bundled demo config (real footage, replayed as
# live cameras). Stop it with Ctrl-C.
demo: release
	./target/release/vigil check-config config/demo.toml
	./target/release/vigil run --config config/demo.toml

clean:
	$(CARGO) clean
