# The two set-up commands of the README: `make demo` and `make test`.
# Each creates .venv (once) with everything the project needs, then runs.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
SAMPLE ?= mnist_resnet

.PHONY: install system-packages demo demo-text test lint docs clean

$(BIN)/edgekiln: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev,ray]'
	# onnx2tf and tf-keras pin plain tensorflow and old numpy; they work with our set (FACTS.md).
	$(BIN)/pip install -q --no-deps onnx2tf==1.29.24 tf-keras==2.21.0
	touch $(BIN)/edgekiln

install: $(BIN)/edgekiln

# The main job: build an int8 bundle for a Raspberry Pi 4 from a sample model, then validate it
# with the bundle's own runtime, from inside the bundle.
demo: install
	$(BIN)/edgekiln build sample_models/$(SAMPLE).keras --target rpi4 \
	    --calib sample_models/mnist_calib.npz --eval sample_models/mnist_eval.npz \
	    -o build/$(SAMPLE) --force
	cd build/$(SAMPLE) && ../../$(BIN)/python -m runtime validate

# The sample transformer: an intent classifier over sentences (tokenized with its tokenizer.json), its last
# encoder block dropped and half of each attention layer's heads removed, re-fitted by least squares.
demo-text: install
	$(BIN)/edgekiln build sample_models/intent_encoder.keras --target rpi4 \
	    --text sample_models/intent_calib.txt --eval sample_models/intent_eval.txt \
	    --tokenizer sample_models/intent_tokenizer.json --drop-layers 1 --prune-heads 0.5 \
	    -o build/intent_encoder --force
	cd build/intent_encoder && ../../$(BIN)/python -m runtime validate

# Debian packages the tests need: a real sshd on loopback (deploy), QEMU user mode (emulated Pi),
# headless Chromium (the report page opened in a real browser).
# Installed when this user can (root, or sudo without a password); else the tests needing them are
# skipped, each with a line saying what to install (CI requires them: EDGEKILN_REQUIRE_SYSTEM=1).
SYSTEM_PACKAGES := openssh-server openssh-client qemu-user-static qemu-user chromium

system-packages:
	@sh tests/system_packages.sh $(SYSTEM_PACKAGES)

# The docs extra too: the suite builds the documentation site strictly (tests/unit/test_docs_site.py).
test: install system-packages $(BIN)/mkdocs
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

# ruff (style, and no bare `compiler` / `runtime` / `targets` imports) and mypy (pyproject.toml [tool.mypy]).
lint: install
	$(BIN)/ruff check compiler edgekiln runtime targets tests bench sample_models
	$(BIN)/mypy

# The documentation site (mkdocs.yml over docs/) into site/, strictly: a link to a missing page or anchor fails,
# and so does a docstring the API reference cannot read. Its packages (the `docs` extra) go into .venv, here and
# for `make test`, whose suite builds the site the same way.
$(BIN)/mkdocs: pyproject.toml $(BIN)/edgekiln
	$(BIN)/pip install -q -e '.[docs]'
	touch $(BIN)/mkdocs

docs: $(BIN)/mkdocs
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

clean:
	rm -rf build site $(VENV)
