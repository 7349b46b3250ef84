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

# A sentence encoder a user can ship (sample_models/intent_states.keras: the sample intent encoder's token states):
# its embedding table cut to the word pieces its corpus (the calibration sentences) uses (--vocab-from auto),
# shipped with its tokenizer; the bundle then embeds text from the command line and validates from text.
# TEXT_FLAGS adds build options (the integration test: a quick float build), TEXT_OUT moves the bundle.
TEXT_OUT ?= build/intent_states
TEXT_FLAGS ?=
demo-text: install
	$(BIN)/edgekiln build sample_models/intent_states.keras --target rpi4 \
	    --text sample_models/intent_calib.txt --tokenizer sample_models/intent_tokenizer.json \
	    --eval sample_models/intent_eval.txt --vocab-from auto $(TEXT_FLAGS) -o $(TEXT_OUT) --force
	cd $(TEXT_OUT) && $(abspath $(BIN))/python -m runtime embed "turn on the lights in the kitchen" \
	    "could you dim the lamp in the study"
	cd $(TEXT_OUT) && $(abspath $(BIN))/python -m runtime validate

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
