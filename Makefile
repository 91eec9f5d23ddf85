# Two commands do everything on a fresh machine (Debian, Python 3.11, root for apt):
#   make demo   - install, build the sample collection, pretrain (<= ~5 min on CPU), index, cluster,
#                 report, serve the search page; `make demo DATA=/path/to/photos` does it for your folder
#   make test   - install, then lint (ruff, configured in pyproject.toml) and run the test suite
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# pytest-xdist workers: one more than the cores, as many tests wait on a server, a browser or a CLI
# they started (bench/results/test_workers.json; docs/design.md, Checks)
TEST_WORKERS ?= $(shell echo $$(( $$(nproc 2>/dev/null || getconf _NPROCESSORS_ONLN) + 1 )))

.PHONY: setup setup-gpu sysdeps test demo bench clean

$(STAMP): requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(PY) -c "import torchvision, faiss, streamlit; torchvision.ops.nms; print('venv ok: torch', __import__('torch').__version__)"
	touch $(STAMP)

setup: $(STAMP) sysdeps

# faiss on CUDA instead of faiss-cpu (Linux + NVIDIA driver; see requirements-gpu.txt)
setup-gpu: setup
	$(PY) -m pip uninstall --quiet -y faiss-cpu
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-gpu.txt
	$(PY) -c "import faiss; print('faiss', faiss.__version__, 'GPUs:', faiss.get_num_gpus())"

sysdeps:
	@bash .ci/sysdeps.sh

test: setup
	$(PY) -m ruff check .
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile tests

DATA    ?=
MINUTES ?=
PRETRAIN_ARGS ?=

demo: setup
	$(PY) -m pipelines.demo $(if $(DATA),--data "$(DATA)") $(if $(MINUTES),--minutes $(MINUTES)) \
	    $(if $(PRETRAIN_ARGS),--pretrain-args "$(PRETRAIN_ARGS)")

bench: setup
	$(PY) bench/train_step_speed.py

clean:
	rm -rf runs/demo data/sample indexes/demo
