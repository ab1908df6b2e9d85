# Set-up, test and main-job targets; README.md quotes these.
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
PY ?= python3
VENV ?= .venv
BIN = $(VENV)/bin
DATA ?= ../shared/data

.PHONY: install ops test mtop-en mtop-all pqrnn-en teacher-en mtop-en-kd clean bilstm-en transformer-en pqrnn-2mb-en massive-en massive-all

ALL_LANGS = en,es,fr,de,hi,th
TIME = /usr/bin/time -v

install:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.txt
	$(BIN)/pip install -q --no-deps -r requirements-nodeps.txt
	$(BIN)/pip install -q --no-deps --no-build-isolation -e .

ops:
	$(BIN)/python tools/build_ops.py

test:
	$(BIN)/python -m pytest -q tests

# The real runs recorded in README.md (wall time and peak memory from /usr/bin/time -v).
mtop-en:
	mkdir -p runs && $(TIME) $(BIN)/ondevice-nlp build --dataset mtop --data-dir $(DATA)/mtop --languages en \
	    --model pnlp_mixer --out runs/mtop-en 2>&1 | tee runs/mtop-en.log

mtop-all:
	mkdir -p runs && $(TIME) $(BIN)/ondevice-nlp build --dataset mtop --data-dir $(DATA)/mtop --languages $(ALL_LANGS) \
	    --model pnlp_mixer --epochs 25 --qat-epochs 2 --dropout 0.1 --weight-decay 0.01 --out runs/mtop-all 2>&1 | tee runs/mtop-all.log

pqrnn-en:
	mkdir -p runs && $(TIME) $(BIN)/ondevice-nlp build --dataset mtop --data-dir $(DATA)/mtop --languages en \
	    --model pqrnn --out runs/pqrnn-en 2>&1 | tee runs/pqrnn-en.log

pqrnn-2mb-en:
	mkdir -p runs && $(TIME) $(BIN)/ondevice-nlp build --dataset mtop --data-dir $(DATA)/mtop --languages en \
	    --model pqrnn --size 2mb --out runs/pqrnn-2mb-en 2>&1 | tee runs/pqrnn-2mb-en.log

massive-en:
	mkdir -p runs && $(TIME) $(BIN)/ondevice-nlp build --dataset massive --data-dir $(DATA)/massive --languages en \
	    --model pnlp_mixer --out runs/massive-en 2>&1 | tee runs/massive-en.log

massive-all:
	mkdir -p runs && $(TIME) $(BIN)/ondevice-nlp build --dataset massive --data-dir $(DATA)/massive --languages $(ALL_LANGS) \
	    --model pnlp_mixer --epochs 20 --qat-epochs 1 --dropout 0.1 --weight-decay 0.01 --out runs/massive-all 2>&1 | tee runs/massive-all.log

# Baselines (issue 3): same data, metrics and export path as the pNLP-Mixer.
bilstm-en:
	mkdir -p runs && $(TIME) $(BIN)/ondevice-nlp build --dataset mtop --data-dir $(DATA)/mtop --languages en \
	    --model bilstm --out runs/bilstm-en 2>&1 | tee runs/bilstm-en.log

transformer-en:
	mkdir -p runs && $(TIME) $(BIN)/ondevice-nlp build --dataset mtop --data-dir $(DATA)/mtop --languages en \
	    --model transformer --out runs/transformer-en 2>&1 | tee runs/transformer-en.log

# Distillation (README "Teacher and distillation"): a ~10 M-parameter pNLP-Mixer teacher on
# MTOP en writes its soft targets, then the base student trains on them.
teacher-en:
	mkdir -p runs && $(TIME) $(BIN)/ondevice-nlp teacher --dataset mtop --data-dir $(DATA)/mtop --languages en \
	    --teacher-model pnlp_mixer --out runs/teacher-en 2>&1 | tee runs/teacher-en.log

mtop-en-kd:
	mkdir -p runs && $(TIME) $(BIN)/ondevice-nlp build --dataset mtop --data-dir $(DATA)/mtop --languages en \
	    --model pnlp_mixer --teacher runs/teacher-en --distill-temperature 2.0 --distill-weight 0.5 \
	    --out runs/mtop-en-kd 2>&1 | tee runs/mtop-en-kd.log

clean:
	rm -rf build ondevice_nlp/_lib/*.so *.egg-info
