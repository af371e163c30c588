# sirst5k: set-up, the demo pipeline, tests, recipes and benchmarks.
# `make demo` and `make test` each install everything into .venv first if needed.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
DATA    ?= data/demo-source
STORE   ?= data/sirst5k.h5
# target-free frames of the deployment sensor for `make dataset` (the demo's own by default)
BACKGROUNDS ?= $(if $(filter data/demo-source,$(DATA)),data/demo-source/frames)
BG_CROP ?= $(if $(filter data/demo-source,$(DATA)),128,256)
NUDT    ?= ../shared/data/NUDT-SIRST
# Where pip finds torch's CPU build. Empty: pip's own configuration (this project's machines
# serve the CPU build of torch 2.13.0 from a local file). Elsewhere set
# TORCH_INDEX=https://download.pytorch.org/whl/cpu, or PyPI's default build pulls CUDA wheels.
TORCH_INDEX ?=

.PHONY: install demo demo-data dataset train-demo eval-demo test test-fast lint format \
        bench-synth bench-store bench-metrics bench-train bench-infer bench-methods bench-models train-nudt-cpu train-real-cpu \
        train-nudt-gpu ablation-cpu bundle clean

install: $(STAMP)
$(STAMP): setup.cfg pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first and pinned, from the CPU build (see TORCH_INDEX), so no CUDA wheels come in
	$(BIN)/python -m pip install -q torch==2.13.0 $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

# The main job on the embedded demo data: generate, synthesize, train, evaluate, predict.
demo: install demo-data dataset train-demo eval-demo

demo-data: install
	$(BIN)/sirst5k demo-data data/demo-source --frames 12 --force

# Build the store from DATA (default: the demo source made by `make demo-data`), with the
# target-free frames of BACKGROUNDS implanted (default: the demo's own frames; empty: none).
dataset: install
	@if [ "$(DATA)" = "data/demo-source" ] && [ ! -d data/demo-source/frames ]; then \
	  $(BIN)/sirst5k demo-data data/demo-source --frames 12 --force; fi
	$(BIN)/sirst5k synth $(DATA) -o $(STORE) --alpha 0.1 --s 3 --force \
	  $(if $(BACKGROUNDS),--backgrounds $(BACKGROUNDS) --bg-crop $(BG_CROP))
	$(BIN)/sirst5k inspect $(STORE) --gallery $(basename $(STORE))-gallery.png

train-demo: install
	$(BIN)/sirst5k train $(STORE) --out runs/demo --preset demo --device cpu --force

eval-demo: install
	$(BIN)/sirst5k eval $(STORE) --checkpoint runs/demo/best.pt --out runs/demo/eval
	# the demo images are small: Top-Hat's default k (tuned on 256 px NUDT-SIRST) finds nothing
	$(BIN)/sirst5k eval $(STORE) --method tophat --k 3 --out runs/demo/eval-tophat
	$(BIN)/sirst5k predict data/demo-source/images --checkpoint runs/demo/best.pt \
	  -o runs/demo/predict --limit 8 --force

test: install
	$(BIN)/python -m pytest -q tests

# the edit loop: the suite without the tests marked slow (training runs, torchrun, compile,
# ONNX export, killed processes)
test-fast: install
	$(BIN)/python -m pytest -q -m "not slow" tests

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench-synth: install
	$(BIN)/python benchmarks/bench_synth.py --source $(NUDT)

bench-store: install
	$(BIN)/python benchmarks/bench_store.py --nudt $(NUDT)

bench-metrics: install
	$(BIN)/python benchmarks/bench_metrics.py --source $(NUDT)

bench-infer: install
	$(BIN)/python benchmarks/bench_infer.py

bench-methods: install
	$(BIN)/python benchmarks/bench_methods.py --source $(NUDT)

bench-models: install
	$(BIN)/python benchmarks/bench_models.py

bench-train: install
	$(BIN)/sirst5k synth $(NUDT) -o data/nudt.h5 --force
	$(BIN)/python benchmarks/bench_train.py --store data/nudt.h5

# CPU recipe on NUDT-SIRST (about 30 minutes on 2 cores): see docs/results.md. It trains without
# flips, so `eval --tta` would be the plain eval again (one view).
train-nudt-cpu: install
	$(BIN)/sirst5k synth $(NUDT) -o data/nudt.h5 --force
	$(BIN)/sirst5k train data/nudt.h5 --out runs/nudt-cpu30 --preset cpu30 --device cpu --force
	$(BIN)/sirst5k eval $(NUDT) --checkpoint runs/nudt-cpu30/best.pt --out runs/nudt-cpu30/eval

# The CPU recipe for real frames of your sensor: NUDT (the labelled set) with FRAMES, a folder of
# your sensor's target-free frames, implanted (docs/synthesis.md); scored on NUDT's test split
# and, when REAL (a labelled set of your sensor's frames) exists, on it.
FRAMES ?= ../shared/data/SIRST-V2-backgrounds
REAL   ?= ../shared/data/SIRST-V2-extra
train-real-cpu: install
	$(BIN)/sirst5k synth $(NUDT) -o data/real.h5 --backgrounds $(FRAMES) --implants 3000 \
	  --bg-negatives 750 --force
	$(BIN)/sirst5k inspect data/real.h5 --gallery data/real-gallery.png
	$(BIN)/sirst5k train data/real.h5 --out runs/real-cpu30 --preset cpu30 --device cpu --force
	$(BIN)/sirst5k eval $(NUDT) --checkpoint runs/real-cpu30/best.pt --out runs/real-cpu30/eval
	@if [ -d "$(REAL)" ]; then $(BIN)/sirst5k eval $(REAL) --checkpoint runs/real-cpu30/best.pt \
	  --out runs/real-cpu30/eval-real; fi

# GPU recipe on NUDT-SIRST (one H100, about 10 minutes a run): with and without negatives,
# the same number of samples seen.
train-nudt-gpu: install
	$(BIN)/sirst5k synth $(NUDT) -o data/nudt.h5 --force
	$(BIN)/sirst5k train data/nudt.h5 --out runs/gpu-neg --preset gpu10 --force
	$(BIN)/sirst5k train data/nudt.h5 --out runs/gpu-orig --preset gpu10 --originals-only \
	  --epochs 360 --val-every 6 --force
	$(BIN)/sirst5k eval $(NUDT) --checkpoint runs/gpu-neg/best.pt --out runs/gpu-neg/eval
	$(BIN)/sirst5k eval $(NUDT) --checkpoint runs/gpu-orig/best.pt --out runs/gpu-orig/eval

# The gate of the negatives (docs/results.md): originals only, the store as plain data, the
# store with the pooled L_Neg, on-the-fly synthesis; 3 seeds, two runs at a time on one thread
# each (about 22 min a run and 4 min of evaluation on NUDT-SIRST and SIRST-V2-extra); runs
# already in runs/gate are reused, so an interrupted ablation resumes.
ablation-cpu: install
	@[ -f data/nudt.h5 ] || $(BIN)/sirst5k synth $(NUDT) -o data/nudt.h5
	$(BIN)/python benchmarks/ablation_negatives.py --store data/nudt.h5 --source $(NUDT) \
	  --variants orig,off,group,fresh --seeds 42,43,44

# A bundled model (sirst5k/inference/weights/NAME.pt, NAME real by default) from a training run: RUN=runs/DIR.
bundle: install
	$(BIN)/python benchmarks/bundle_model.py $(RUN) --source $(NUDT) --name $(or $(NAME),real)

clean:
	rm -rf data runs benchmarks/out
