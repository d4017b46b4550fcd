# vigil — the two commands that matter are `make demo` and `make test`.
CARGO ?= cargo
# Builds use the build host's CPU flags (.cargo/config.toml); set
# RUSTFLAGS= to build a binary for any x86-64 (docs/building.md).
export CARGO_TERM_COLOR ?= never

.PHONY: all setup models fixtures extra-lms build release test test-all lint units deb demo train eval bench-vision bench-lm bench-daemon clean

all: build

setup:
	@scripts/setup.sh

# The vision models, exported by the model kit (tools/vigil_kit) from the
# weights setup fetched. Cached by the kit's hash: cheap when unchanged.
models: setup
	@scripts/models.sh
	@scripts/demo-model.sh scenario

# Rewrites the golden fixtures in tests/fixtures/vision (commit the result).
fixtures: setup
	@scripts/models.sh fixtures

build: setup
	$(CARGO) build --locked

release: setup
	$(CARGO) build --locked --release

# Formatting, clippy (with the [lints] of Cargo.toml), the API docs with
# their intra-doc links, and no import cycle between the files of a module
# (src/ and tools/).
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --all-targets -- -D warnings
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --locked --no-deps --document-private-items
	python3 scripts/check-cycles.py

units: build
	scripts/check-units.sh

# The Debian package (cargo-deb, installed on first use): target/debian/
# vigil_<version>_amd64.deb with the stripped binary, the hardened units,
# the default config (/etc/vigil/vigil.toml, a conffile) and the demo
# model; the release build's debug symbols go to vigil-dbgsym_*.ddeb.
deb: models release
	scripts/install-cargo-deb.sh 3.8.0
	$(CARGO) deb --no-build --dbgsym

# Everything CI runs: setup, formatting and lints, the build, every test
# (real GStreamer pipelines, RTSP and HTTP servers on loopback, the daemon
# as a process), the systemd unit check, and the Debian package installed,
# upgraded, removed and purged for real (root only; skipped otherwise).
test: setup models lint
	$(CARGO) build --locked --all-targets
	VIGIL_BIN=target/debug/vigil scripts/demo-model.sh subset
	$(CARGO) test --locked
	scripts/check-units.sh
	scripts/check-deb.sh

# make test, plus the cross-attention tests on the qwen2 and gemma3 GGUFs
# (~750 MB more downloads).
test-all: test extra-lms
	$(CARGO) test --locked --test lm_hook --test lm_xattn -- --ignored

extra-lms:
	scripts/fetch-lms.sh

# Runs the daemon on the bundled demo config (real footage, replayed as
# live cameras). Stop it with Ctrl-C.
demo: models release
	./target/release/vigil check-config config/demo.toml
	./target/release/vigil run --config config/demo.toml

# Retrains the demo model (models/demo/) from scratch: data from real
# footage and photos, the frozen encoder and LM, Debian's python3-torch on
# the CPU. Commit models/demo/ afterwards.
train: models release
	scripts/demo-model.sh train

# The demo model on the full held-out set, through the Rust runtime: one
# `name: value` line per figure (accuracy per family, few-shot gain,
# agreement with the Python reference).
eval: models release
	scripts/demo-model.sh eval

# tract vs onnxruntime on the same models, threads and machine, same run.
# Plain llama.cpp against the same LM with 4 random gated cross-attention
# blocks (SmolLM2-135M Q4_1), same process, same threads.
bench-lm: models release
	./target/release/vigil bench lm --lm models/smollm2-135m-instruct-q4_1.gguf \
	  --adapter models/xattn-smollm2-random.gguf --threads $${THREADS:-2} --runs $${RUNS:-7}

# The daemon through its socket: yes/no ask latency (p50/p95) and the most
# test-pattern cameras with 3 standing questions every 5 s it sustains.
bench-daemon: models release
	./target/release/vigil bench daemon --lm models/smollm2-135m-instruct-q4_1.gguf \
	  --adapter models/xattn-smollm2-random.gguf --encoder models/efficientnet-lite0.onnx \
	  --resampler models/resampler.onnx --threads $${THREADS:-2}

bench-vision: models release
	@KIT_PYTHON=$$(scripts/models.sh --python) benches/vision.sh

clean:
	$(CARGO) clean
