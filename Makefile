# Set-up, test and main-job targets; README.md quotes these.
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
PY ?= python3
VENV ?= .venv
BIN = $(VENV)/bin
DATA ?= ../shared/data

.PHONY: install ops test mtop-en mtop-all pqrnn-en teacher-en mtop-en-kd clean bilstm-en transformer-en pqrnn-2mb-en massive-en massive-all pqrnn-all bilstm-all transformer-all pqrnn-2mb-all massive-pqrnn-all \
	massive-bilstm-all massive-transformer-all massive-pqrnn-2mb-all mtop-en-crf mtop-all-crf pqrnn-en-crf massive-en-crf massive-all-crf
.PHONY: teacher-en-ens9-aug mtop-en-crf-kd9-aug-40 teacher-en-ens9-aug2 mtop-en-crf-kd9-aug2-24 mtop-en-crf-kd9-aug2-24-w8 teacher-en-ens9-aug3 mtop-en-crf-kd9-aug3-24
.PHONY: mtop-en-xlarge-crf mtop-en-crf-ema teacher-en-ens-aug mtop-en-crf-kd-aug teacher-en-ens mtop-en-crf-kd mtop-en-kd-ens pqrnn-en-crf-kd mtop-en-aug teacher-all-ens mtop-all-crf-kd massive-teacher-all-ens massive-all-crf-kd mtop-en-crf-seed1 teacher-en-crfens-aug mtop-en-crf-kd-crfens-aug teacher-en-mix-aug mtop-en-crf-kd-mix-aug teacher-en-ens3

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
# $(call run,SUBCOMMAND ARGS): output folder runs/<target>, log runs/<target>.log.
run = mkdir -p runs && $(TIME) $(BIN)/ondevice-nlp $(1) --out runs/$@ 2>&1 | tee runs/$@.log
MTOP_EN = --dataset mtop --data-dir $(DATA)/mtop --languages en
MTOP_ALL = --dataset mtop --data-dir $(DATA)/mtop --languages $(ALL_LANGS)
MASSIVE_DATA = --dataset massive --data-dir $(DATA)/massive --languages $(ALL_LANGS)
# the multilingual runs: longer and less regularised than the English-only defaults (README)
MULTI = --dropout 0.1 --weight-decay 0.01

mtop-en:
	$(call run,build $(MTOP_EN) --model pnlp_mixer --no-crf)

mtop-all:
	$(call run,build $(MTOP_ALL) --model pnlp_mixer --no-crf --epochs 25 --qat-epochs 2 $(MULTI))

# linear-chain CRF over the slot tags (README "Slot CRF"): same network and file, CRF loss and decoding
mtop-en-crf:
	$(call run,build $(MTOP_EN) --model pnlp_mixer --crf)

mtop-all-crf:
	$(call run,build $(MTOP_ALL) --model pnlp_mixer --crf --epochs 25 --qat-epochs 2 $(MULTI))

# one model per language (six files), each with the English recipe and the slot CRF;
# mtop-en-crf above is the English one
# EACH_LANGS: the languages other than English; LANG_DATA: the MTOP data of the one a static
# pattern rule's stem ($*) names
EACH_LANGS = es fr de hi th
LANG_DATA = --dataset mtop --data-dir $(DATA)/mtop --languages $*
EACH_LANG_CRF = $(foreach l,$(EACH_LANGS),mtop-$(l)-crf)
$(EACH_LANG_CRF): mtop-%-crf:
	$(call run,build $(LANG_DATA) --model pnlp_mixer --crf)

.PHONY: mtop-each-crf $(EACH_LANG_CRF)
mtop-each-crf: mtop-en-crf $(EACH_LANG_CRF)

# the same with the wider window of size base-w3 (README "Thai with a wider window")
EACH_LANG_CRF_W3 = $(foreach l,$(EACH_LANGS),mtop-$(l)-crf-w3)
$(EACH_LANG_CRF_W3): mtop-%-crf-w3:
	$(call run,build $(LANG_DATA) --model pnlp_mixer --size base-w3 --crf)

.PHONY: $(EACH_LANG_CRF_W3)

# the same with letter n-gram units in the projection, size base-ng4 (README "Thai with letter n-grams")
EACH_LANG_CRF_NG4 = $(foreach l,$(EACH_LANGS),mtop-$(l)-crf-ng4)
$(EACH_LANG_CRF_NG4): mtop-%-crf-ng4:
	$(call run,build $(LANG_DATA) --model pnlp_mixer --size base-ng4 --crf)

.PHONY: $(EACH_LANG_CRF_NG4)

# one language's base + CRF (the mtop-LANG-crf recipe) starting from the float weights of
# the six-language CRF model, its heads and CRF transitions matched label by label
# (build --init-from; README "Warm start"). Needs runs/mtop-all-crf (make mtop-all-crf) first.
EACH_LANG_CRF_INIT = $(foreach l,en $(EACH_LANGS),mtop-$(l)-crf-init)
$(EACH_LANG_CRF_INIT): mtop-%-crf-init:
	$(call run,build $(LANG_DATA) --model pnlp_mixer --crf --init-from runs/mtop-all-crf)

.PHONY: $(EACH_LANG_CRF_INIT)

# the same with a moving average of the weights in the float phase (README "Slot CRF")
mtop-en-crf-ema:
	$(call run,build $(MTOP_EN) --model pnlp_mixer --crf --ema 0.998)

pqrnn-en-crf:
	$(call run,build $(MTOP_EN) --model pqrnn --crf)

pqrnn-en:
	$(call run,build $(MTOP_EN) --model pqrnn --no-crf)

pqrnn-2mb-en:
	$(call run,build $(MTOP_EN) --model pqrnn --no-crf --size 2mb)

pqrnn-all:
	$(call run,build $(MTOP_ALL) --model pqrnn --no-crf --epochs 25 --qat-epochs 2 $(MULTI))

massive-en:
	$(call run,build --dataset massive --data-dir $(DATA)/massive --languages en --model pnlp_mixer --no-crf)

massive-en-crf:
	$(call run,build --dataset massive --data-dir $(DATA)/massive --languages en --model pnlp_mixer --crf)

massive-all:
	$(call run,build $(MASSIVE_DATA) --model pnlp_mixer --no-crf --epochs 20 --qat-epochs 1 $(MULTI))

massive-all-crf:
	$(call run,build $(MASSIVE_DATA) --model pnlp_mixer --crf --epochs 20 --qat-epochs 1 $(MULTI))

massive-pqrnn-all:
	$(call run,build $(MASSIVE_DATA) --model pqrnn --no-crf --epochs 20 --qat-epochs 1 $(MULTI))

# the other models on the six MASSIVE locales, with the massive-all settings
MASSIVE_ALL = $(MASSIVE_DATA) --epochs 20 --qat-epochs 1 $(MULTI)

massive-pqrnn-2mb-all:
	$(call run,build $(MASSIVE_ALL) --model pqrnn --no-crf --size 2mb)

massive-bilstm-all:
	$(call run,build $(MASSIVE_ALL) --model bilstm --no-crf)

massive-transformer-all:
	$(call run,build $(MASSIVE_ALL) --model transformer --no-crf)

# Baselines (issue 3): same data, metrics and export path as the pNLP-Mixer.
bilstm-en:
	$(call run,build $(MTOP_EN) --model bilstm --no-crf)

transformer-en:
	$(call run,build $(MTOP_EN) --model transformer --no-crf)

# the six MTOP languages, with the mtop-all / pqrnn-all settings
bilstm-all:
	$(call run,build $(MTOP_ALL) --model bilstm --no-crf --epochs 25 --qat-epochs 2 $(MULTI))

transformer-all:
	$(call run,build $(MTOP_ALL) --model transformer --no-crf --epochs 25 --qat-epochs 2 $(MULTI))

pqrnn-2mb-all:
	$(call run,build $(MTOP_ALL) --model pqrnn --no-crf --size 2mb --epochs 25 --qat-epochs 2 $(MULTI))

# Distillation (README "Teacher and distillation"): a ~10 M-parameter pNLP-Mixer teacher on
# MTOP en writes its soft targets, then the base student trains on them.
teacher-en:
	$(call run,teacher $(MTOP_EN) --teacher-model pnlp_mixer)

mtop-en-kd:
	$(call run,build $(MTOP_EN) --model pnlp_mixer --no-crf --teacher runs/teacher-en \
	    --distill-temperature 2.0 --distill-weight 0.5)

mtop-en-aug:
	$(call run,build $(MTOP_EN) --model pnlp_mixer --no-crf --augment-slots 1.0)

# the ensemble teacher averages five English runs that must exist first (make mtop-en
# mtop-en-aug mtop-en-crf pqrnn-en-crf pqrnn-2mb-en); it trains nothing
EN_MEMBERS = runs/mtop-en,runs/mtop-en-aug,runs/mtop-en-crf,runs/pqrnn-en-crf,runs/pqrnn-2mb-en
teacher-en-ens:
	$(call run,teacher $(MTOP_EN) --teacher-model ensemble --members $(EN_MEMBERS))

mtop-en-crf-kd:
	$(call run,build $(MTOP_EN) --model pnlp_mixer --crf --teacher runs/teacher-en-ens \
	    --distill-temperature 2.0 --distill-weight 0.5)

# the same teacher also labels build --augment-slots 1.0's substituted copies; the student
# distils on both (same seed, so the same copies)
teacher-en-ens-aug:
	$(call run,teacher $(MTOP_EN) --teacher-model ensemble --members $(EN_MEMBERS) --augment-slots 1.0)

mtop-en-crf-kd-aug:
	$(call run,build $(MTOP_EN) --model pnlp_mixer --crf --augment-slots 1.0 \
	    --teacher runs/teacher-en-ens-aug --distill-temperature 2.0 --distill-weight 0.5)

# the same student with early stopping off (patience 40 = all 40 epochs): its cosine learning rate
# decays to the end instead of stopping at a noisy eval peak halfway (mtop-en-crf-kd-aug stopped
# at epoch 23 of 40); the best eval epoch is still the one kept
mtop-en-crf-kd-aug-40:
	$(call run,build $(MTOP_EN) --model pnlp_mixer --crf --augment-slots 1.0 --patience 40 \
	    --teacher runs/teacher-en-ens-aug --distill-temperature 2.0 --distill-weight 0.5)

# a second-generation teacher: every English run at hand (the seven single runs above and both
# distilled students); all nine is the best of tools/ensemble_subsets.py's subsets of eight or
# more by eval EM (README "Teacher and distillation"); its student keeps early stopping off
EN9_MEMBERS = $(EN_MEMBERS),runs/mtop-en-crf-ema,runs/mtop-en-crf-seed1,runs/mtop-en-crf-kd-aug,runs/mtop-en-crf-kd-aug-40
teacher-en-ens9-aug:
	$(call run,teacher $(MTOP_EN) --teacher-model ensemble --members $(EN9_MEMBERS) --augment-slots 1.0)

mtop-en-crf-kd9-aug-40:
	$(call run,build $(MTOP_EN) --model pnlp_mixer --crf --augment-slots 1.0 --patience 40 \
	    --teacher runs/teacher-en-ens9-aug --distill-temperature 2.0 --distill-weight 0.5)

# the same teacher labelling two slot-substituted copies of each utterance (the first one is
# the copy above), and its student on the three-times-larger set: 24 epochs of it are 89% of
# the steps of the 40 above (one QAT epoch, 1.5 times the steps of one above)
teacher-en-ens9-aug2:
	$(call run,teacher $(MTOP_EN) --teacher-model ensemble --members $(EN9_MEMBERS) --augment-slots 2.0)

# three copies per utterance (for a three-copy student; 28 min on 2 cores, half of it shared with a CI run)
teacher-en-ens9-aug3:
	$(call run,teacher $(MTOP_EN) --teacher-model ensemble --members $(EN9_MEMBERS) --augment-slots 3.0)

# its student: the two-copy student's settings on three copies (1.3 times the steps per epoch)
mtop-en-crf-kd9-aug3-24:
	$(call run,build $(MTOP_EN) --model pnlp_mixer --crf --augment-slots 3.0 --epochs 24 --patience 24 --qat-epochs 1 \
	    --teacher runs/teacher-en-ens9-aug3 --distill-temperature 2.0 --distill-weight 0.5)

mtop-en-crf-kd9-aug2-24:
	$(call run,build $(MTOP_EN) --model pnlp_mixer --crf --augment-slots 2.0 --epochs 24 --patience 24 --qat-epochs 1 \
	    --teacher runs/teacher-en-ens9-aug2 --distill-temperature 2.0 --distill-weight 0.5)

# the same student with the teacher's term weighted 0.8 instead of 0.5 (the first weight sweep)
mtop-en-crf-kd9-aug2-24-w8:
	$(call run,build $(MTOP_EN) --model pnlp_mixer --crf --augment-slots 2.0 --epochs 24 --patience 24 --qat-epochs 1 \
	    --teacher runs/teacher-en-ens9-aug2 --distill-temperature 2.0 --distill-weight 0.8)

# a larger member for the English teachers: the paper's X-Large depth and width (4 blocks, H=512,
# --size xlarge, 4.29 M parameters, not a ~1 MB model) with the slot CRF; 30 epochs
# and one QAT epoch (a member is read as float weights)
mtop-en-xlarge-crf:
	$(call run,build $(MTOP_EN) --model pnlp_mixer --size xlarge --crf --epochs 30 --qat-epochs 1)

# an all-CRF ensemble: three base + CRF runs (two seeds, one with --ema) and pQRNN 1mb + CRF;
# its student distils on the training set plus the slot-substituted copies, like mtop-en-crf-kd-aug
mtop-en-crf-seed1:
	$(call run,build $(MTOP_EN) --model pnlp_mixer --crf --seed 1)

EN_CRF_MEMBERS = runs/mtop-en-crf,runs/mtop-en-crf-ema,runs/mtop-en-crf-seed1,runs/pqrnn-en-crf
teacher-en-crfens-aug:
	$(call run,teacher $(MTOP_EN) --teacher-model ensemble --members $(EN_CRF_MEMBERS) --augment-slots 1.0)

# five members: the four above plus the softmax run on augmented text of the five-member teacher
# (the member that differs most from them)
EN_MIX_MEMBERS = $(EN_CRF_MEMBERS),runs/mtop-en-aug
teacher-en-mix-aug:
	$(call run,teacher $(MTOP_EN) --teacher-model ensemble --members $(EN_MIX_MEMBERS) --augment-slots 1.0)

# three members, one of each kind (base + CRF, base on augmented text, pQRNN 1mb + CRF): does
# leaving out the near-copies (seed 1, --ema) cost anything? Test figures only (no --augment-slots)
EN3_MEMBERS = runs/mtop-en-crf,runs/mtop-en-aug,runs/pqrnn-en-crf
teacher-en-ens3:
	$(call run,teacher $(MTOP_EN) --teacher-model ensemble --members $(EN3_MEMBERS))

mtop-en-crf-kd-mix-aug:
	$(call run,build $(MTOP_EN) --model pnlp_mixer --crf --augment-slots 1.0 \
	    --teacher runs/teacher-en-mix-aug --distill-temperature 2.0 --distill-weight 0.5)

mtop-en-crf-kd-crfens-aug:
	$(call run,build $(MTOP_EN) --model pnlp_mixer --crf --augment-slots 1.0 \
	    --teacher runs/teacher-en-crfens-aug --distill-temperature 2.0 --distill-weight 0.5)

# a one-session English chain (2026-12-06): two new base + CRF recipes as members (batch 64:
# twice the steps; word dropout 0.1, build --token-dropout), the softmax run on augmented text and
# pQRNN 1mb + CRF (the four trained side by side, TF_NUM_INTRAOP_THREADS=1 each), their average
# labelling two slot-substituted copies per utterance, and the two-copy CRF student
mtop-en-crf-bs64:
	$(call run,build $(MTOP_EN) --model pnlp_mixer --crf --batch-size 64)

mtop-en-crf-td10:
	$(call run,build $(MTOP_EN) --model pnlp_mixer --crf --token-dropout 0.1)

EN4_MEMBERS = runs/mtop-en-crf-bs64,runs/mtop-en-crf-td10,runs/mtop-en-aug,runs/pqrnn-en-crf
teacher-en-ens4-aug2:
	$(call run,teacher $(MTOP_EN) --teacher-model ensemble --members $(EN4_MEMBERS) --augment-slots 2.0)

# the two students of that teacher share its distillation flags
EN4_KD = --teacher runs/teacher-en-ens4-aug2 --distill-temperature 2.0 --distill-weight 0.5
mtop-en-crf-kd4-aug2-24:
	$(call run,build $(MTOP_EN) --model pnlp_mixer --crf --augment-slots 2.0 --epochs 24 --patience 24 --qat-epochs 1 $(EN4_KD))

# the same student at batch 64 (the better member recipe above), 16 epochs to fit the session
mtop-en-crf-kd4-aug2-16-bs64:
	$(call run,build $(MTOP_EN) --model pnlp_mixer --crf --augment-slots 2.0 --epochs 16 --patience 16 --qat-epochs 1 \
	    --batch-size 64 $(EN4_KD))

# a six-member teacher: the four members above and both of their students (the nine-member teacher
# also counted its students), labelling three substituted copies of each utterance; then its students
EN6_MEMBERS = $(EN4_MEMBERS),runs/mtop-en-crf-kd4-aug2-24,runs/mtop-en-crf-kd4-aug2-16-bs64
teacher-en-ens6-aug3:
	$(call run,teacher $(MTOP_EN) --teacher-model ensemble --members $(EN6_MEMBERS) --augment-slots 3.0)

EN6_KD = --teacher runs/teacher-en-ens6-aug3 --distill-temperature 2.0 --distill-weight 0.5
EN6_KD_T1 = --teacher runs/teacher-en-ens6-aug3 --distill-temperature 1.0 --distill-weight 0.5
mtop-en-crf-kd6-aug3-16:
	$(call run,build $(MTOP_EN) --model pnlp_mixer --crf --augment-slots 3.0 --epochs 16 --patience 16 --qat-epochs 1 $(EN6_KD))

# the same student at distillation temperature 1 instead of 2
mtop-en-crf-kd6-aug3-16-t1:
	$(call run,build $(MTOP_EN) --model pnlp_mixer --crf --augment-slots 3.0 --epochs 16 --patience 16 --qat-epochs 1 $(EN6_KD_T1))

# temperature 1 for 24 epochs
mtop-en-crf-kd6-aug3-24-t1:
	$(call run,build $(MTOP_EN) --model pnlp_mixer --crf --augment-slots 3.0 --epochs 24 --patience 24 --qat-epochs 1 $(EN6_KD_T1))

# temperature 1, 16 epochs, the teacher's term weighted 0.3 instead of 0.5
mtop-en-crf-kd6-aug3-16-t1-w3:
	$(call run,build $(MTOP_EN) --model pnlp_mixer --crf --augment-slots 3.0 --epochs 16 --patience 16 --qat-epochs 1 \
	    --teacher runs/teacher-en-ens6-aug3 --distill-temperature 1.0 --distill-weight 0.3)

# temperature 1, 24 epochs on two copies (the 2026-12-02 best student's schedule; the rate-3 file
# holds the rate-2 copies)
mtop-en-crf-kd6-aug2-24-t1:
	$(call run,build $(MTOP_EN) --model pnlp_mixer --crf --augment-slots 2.0 --epochs 24 --patience 24 --qat-epochs 1 $(EN6_KD_T1))

.PHONY: teacher-en-ens6-aug3 mtop-en-crf-kd6-aug3-16 mtop-en-crf-kd6-aug3-16-t1 mtop-en-crf-kd6-aug3-24-t1
.PHONY: mtop-en-crf-kd6-aug3-16-t1-w3 mtop-en-crf-kd6-aug2-24-t1

# 2026-12-06, second session: the 24-epoch temperature-1 student with the teacher's term at
# weight 0.3, and four substituted copies (the rate-4 copies start with the rate-3 ones)
mtop-en-crf-kd6-aug3-24-t1-w3:
	$(call run,build $(MTOP_EN) --model pnlp_mixer --crf --augment-slots 3.0 --epochs 24 --patience 24 --qat-epochs 1 \
	    --teacher runs/teacher-en-ens6-aug3 --distill-temperature 1.0 --distill-weight 0.3)

teacher-en-ens6-aug4:
	$(call run,teacher $(MTOP_EN) --teacher-model ensemble --members $(EN6_MEMBERS) --augment-slots 4.0)

mtop-en-crf-kd6-aug4-24-t1:
	$(call run,build $(MTOP_EN) --model pnlp_mixer --crf --augment-slots 4.0 --epochs 24 --patience 24 --qat-epochs 1 \
	    --teacher runs/teacher-en-ens6-aug4 --distill-temperature 1.0 --distill-weight 0.5)

.PHONY: mtop-en-crf-kd6-aug3-24-t1-w3 teacher-en-ens6-aug4 mtop-en-crf-kd6-aug4-24-t1

# the 79.7 student's recipe again at seed 1: other substituted copies (the teacher labels them
# with the same --seed), other initial weights and batch order
teacher-en-ens6-aug3-seed1:
	$(call run,teacher $(MTOP_EN) --teacher-model ensemble --members $(EN6_MEMBERS) --augment-slots 3.0 --seed 1)

mtop-en-crf-kd6-aug3-24-t1-seed1:
	$(call run,build $(MTOP_EN) --model pnlp_mixer --crf --augment-slots 3.0 --epochs 24 --patience 24 --qat-epochs 1 --seed 1 \
	    --teacher runs/teacher-en-ens6-aug3-seed1 --distill-temperature 1.0 --distill-weight 0.5)

.PHONY: teacher-en-ens6-aug3-seed1 mtop-en-crf-kd6-aug3-24-t1-seed1

mtop-en-kd-ens:
	$(call run,build $(MTOP_EN) --model pnlp_mixer --no-crf --teacher runs/teacher-en-ens \
	    --distill-temperature 2.0 --distill-weight 0.5)

pqrnn-en-crf-kd:
	$(call run,build $(MTOP_EN) --model pqrnn --crf --teacher runs/teacher-en-ens \
	    --distill-temperature 2.0 --distill-weight 0.5)

# six languages: the five six-language models of README "MTOP, six languages, every model" (make
# mtop-all mtop-all-crf pqrnn-all bilstm-all transformer-all), and MASSIVE's four
ALL_MEMBERS = runs/mtop-all,runs/mtop-all-crf,runs/pqrnn-all,runs/bilstm-all,runs/transformer-all
teacher-all-ens:
	$(call run,teacher $(MTOP_ALL) --teacher-model ensemble --members $(ALL_MEMBERS))

# the six-language students run all their epochs (--patience = --epochs), as the English student
# of make mtop-en-crf-kd-aug-40 gained from it (README "Teacher and distillation")
mtop-all-crf-kd:
	$(call run,build $(MTOP_ALL) --model pnlp_mixer --crf --epochs 25 --patience 25 --qat-epochs 2 $(MULTI) \
	    --teacher runs/teacher-all-ens --distill-temperature 2.0 --distill-weight 0.5)

MASSIVE_MEMBERS = runs/massive-all,runs/massive-pqrnn-all,runs/massive-bilstm-all,runs/massive-transformer-all
massive-teacher-all-ens:
	$(call run,teacher $(MASSIVE_DATA) --teacher-model ensemble --members $(MASSIVE_MEMBERS))

massive-all-crf-kd:
	$(call run,build $(MASSIVE_DATA) --model pnlp_mixer --crf --epochs 20 --patience 20 --qat-epochs 1 $(MULTI) \
	    --teacher runs/massive-teacher-all-ens --distill-temperature 2.0 --distill-weight 0.5)

# a two-member MASSIVE teacher, the two projection runs (make massive-all massive-pqrnn-all, which
# can run side by side, TF_NUM_INTRAOP_THREADS=1 each), and its softmax student with the
# massive-all settings: a "base distilled" chain that fits one session (massive-all-best's
# four members and CRF student do not)
MASSIVE_MEMBERS2 = runs/massive-all,runs/massive-pqrnn-all
massive-teacher-all-ens2:
	$(call run,teacher $(MASSIVE_DATA) --teacher-model ensemble --members $(MASSIVE_MEMBERS2))

massive-all-kd2:
	$(call run,build $(MASSIVE_DATA) --model pnlp_mixer --no-crf --epochs 20 --patience 20 --qat-epochs 1 $(MULTI) \
	    --teacher runs/massive-teacher-all-ens2 --distill-temperature 2.0 --distill-weight 0.5)

# the same teacher labelling one slot-substituted copy of each utterance with slots, and its student
# on both (46,117 copies: 1.67 times the steps per epoch, so 15 epochs are 1.25 times the steps of
# massive-all-kd2's 20; 44 min on 2 cores)
massive-teacher-all-ens2-aug:
	$(call run,teacher $(MASSIVE_DATA) --teacher-model ensemble --members $(MASSIVE_MEMBERS2) --augment-slots 1.0)

MASSIVE_KD2_AUG = --augment-slots 1.0 --epochs 15 --patience 15 --qat-epochs 1 $(MULTI) \
    --teacher runs/massive-teacher-all-ens2-aug --distill-temperature 2.0 --distill-weight 0.5
massive-all-kd2-aug:
	$(call run,build $(MASSIVE_DATA) --model pnlp_mixer --no-crf $(MASSIVE_KD2_AUG))

# the same student with the slot CRF
massive-all-crf-kd2-aug:
	$(call run,build $(MASSIVE_DATA) --model pnlp_mixer --crf $(MASSIVE_KD2_AUG))

# the MASSIVE two-member chain's recipe on the six MTOP languages: the two projection runs (make
# mtop-all pqrnn-all, side by side with TF_NUM_INTRAOP_THREADS=1 each) label the training set and
# one slot-substituted copy of each utterance with slots; the softmax student trains on both with
# the mtop-all settings but 12 epochs and one QAT epoch (68,491 copies: 1.93 times mtop-all's data,
# so 12 epochs are 0.92 times the steps of mtop-all's 25, and the chain fits one 3-hour session)
ALL_MEMBERS2 = runs/mtop-all,runs/pqrnn-all
teacher-all-ens2-aug:
	$(call run,teacher $(MTOP_ALL) --teacher-model ensemble --members $(ALL_MEMBERS2) --augment-slots 1.0)

ALL_KD2_AUG = --augment-slots 1.0 --epochs 12 --patience 12 --qat-epochs 1 $(MULTI) \
    --teacher runs/teacher-all-ens2-aug --distill-temperature 2.0 --distill-weight 0.5
mtop-all-kd2-aug:
	$(call run,build $(MTOP_ALL) --model pnlp_mixer --no-crf $(ALL_KD2_AUG))

# the same student with the slot CRF
mtop-all-crf-kd2-aug:
	$(call run,build $(MTOP_ALL) --model pnlp_mixer --crf $(ALL_KD2_AUG))

# Whole distillation chains from nothing, one step after the other: the ensemble's member runs,
# the teacher, the student. A step whose run folder is complete (metrics.json, or teacher.json
# for a teacher) is skipped, so an interrupted chain picks up at the first missing step.
# $(call chain,STEPS)
chain = @for t in $(1); do \
	  if [ -f runs/$$t/metrics.json ] || [ -f runs/$$t/teacher.json ]; then echo "== $$t: done, skipped"; \
	  else $(MAKE) --no-print-directory -f $(firstword $(MAKEFILE_LIST)) $$t || exit 1; fi; done

# the distilled English chain of README "Results" (79.3 EM): 3 to 5 h on 2 cores (its two runs);
# the best one (79.6, mtop-en-crf-kd9-aug2-24) also needs the nine-member teacher's extra members
.PHONY: mtop-en-best mtop-all-best massive-all-best massive-all-kd2-best massive-teacher-all-ens2 massive-all-kd2 massive-teacher-all-ens2-aug massive-all-kd2-aug massive-all-crf-kd2-aug
.PHONY: teacher-all-ens2-aug mtop-all-kd2-aug mtop-all-crf-kd2-aug mtop-all-kd2-best mtop-all-crf-kd2-best
mtop-en-best:
	$(call chain,mtop-en mtop-en-aug mtop-en-crf pqrnn-en-crf pqrnn-2mb-en teacher-en-ens-aug mtop-en-crf-kd-aug)

# the one-session English chain above, from nothing
.PHONY: mtop-en-crf-bs64 mtop-en-crf-td10 teacher-en-ens4-aug2 mtop-en-crf-kd4-aug2-24 mtop-en-kd4-best mtop-en-crf-kd4-aug2-16-bs64
EN4_CHAIN = mtop-en-crf-bs64 mtop-en-crf-td10 mtop-en-aug pqrnn-en-crf teacher-en-ens4-aug2 mtop-en-crf-kd4-aug2-24
mtop-en-kd4-best:
	$(call chain,$(EN4_CHAIN))

# the 79.7 student (README "Six members, three copies"): the chain above, the second
# student, the six-member teacher and its 24-epoch temperature-1 student (about 3 h 30 min on 2 cores)
.PHONY: mtop-en-kd6-best mtop-en-kd6-aug4-best mtop-en-kd6-seed1-best
EN6_MEMBER_CHAIN = $(EN4_CHAIN) mtop-en-crf-kd4-aug2-16-bs64
mtop-en-kd6-best:
	$(call chain,$(EN6_MEMBER_CHAIN) teacher-en-ens6-aug3 mtop-en-crf-kd6-aug3-24-t1)

# the four-copy student (80.0, README "Four copies; seed 1"): the same with four substituted copies
# (about 4 h on 2 cores)
mtop-en-kd6-aug4-best:
	$(call chain,$(EN6_MEMBER_CHAIN) teacher-en-ens6-aug4 mtop-en-crf-kd6-aug4-24-t1)

# the three-copy recipe at seed 1 (80.1, README "Four copies; seed 1")
mtop-en-kd6-seed1-best:
	$(call chain,$(EN6_MEMBER_CHAIN) teacher-en-ens6-aug3-seed1 mtop-en-crf-kd6-aug3-24-t1-seed1)

# One language's distillation chain (README "MTOP, one language distilled"): the English teacher
# recipe cut to four members of the same kinds (batch 64, word dropout 0.1, pQRNN, the plain
# per-language recipe mtop-LANG-crf), their ensemble labelling three slot-substituted copies, and
# the 24-epoch temperature-1 student of the 80.1 English run. `make mtop-LANG-kd4-best`,
# LANG one of es fr de hi th (Spanish: about 2 h 15 min on 2 cores, members two at a time).
LANG_MEMBERS = runs/mtop-$*-crf-bs64,runs/mtop-$*-crf-td10,runs/pqrnn-$*-crf,runs/mtop-$*-crf
LANG_BS64 = $(foreach l,$(EACH_LANGS),mtop-$(l)-crf-bs64)
LANG_TD10 = $(foreach l,$(EACH_LANGS),mtop-$(l)-crf-td10)
LANG_PQRNN = $(foreach l,$(EACH_LANGS),pqrnn-$(l)-crf)
LANG_TEACHER = $(foreach l,$(EACH_LANGS),teacher-$(l)-ens4-aug3)
LANG_STUDENT = $(foreach l,$(EACH_LANGS),mtop-$(l)-crf-kd4-aug3-24-t1)
LANG_CHAIN = $(foreach l,$(EACH_LANGS),mtop-$(l)-kd4-best)
.PHONY: $(LANG_BS64) $(LANG_TD10) $(LANG_PQRNN) $(LANG_TEACHER) $(LANG_STUDENT) $(LANG_CHAIN)
$(LANG_BS64): mtop-%-crf-bs64:
	$(call run,build $(LANG_DATA) --model pnlp_mixer --crf --batch-size 64)

$(LANG_TD10): mtop-%-crf-td10:
	$(call run,build $(LANG_DATA) --model pnlp_mixer --crf --token-dropout 0.1)

$(LANG_PQRNN): pqrnn-%-crf:
	$(call run,build $(LANG_DATA) --model pqrnn --crf)

$(LANG_TEACHER): teacher-%-ens4-aug3:
	$(call run,teacher $(LANG_DATA) --teacher-model ensemble --members $(LANG_MEMBERS) --augment-slots 3.0)

$(LANG_STUDENT): mtop-%-crf-kd4-aug3-24-t1:
	$(call run,build $(LANG_DATA) --model pnlp_mixer --crf --augment-slots 3.0 --epochs 24 --patience 24 --qat-epochs 1 \
	    --teacher runs/teacher-$*-ens4-aug3 --distill-temperature 1.0 --distill-weight 0.5)

# pQRNN 1mb + CRF, the best Thai member, at batch 64 (the base's batch-64 member was ahead of
# the base on Thai) and at seed 1 (how far apart two runs of the same recipe land)
LANG_PQRNN_BS64 = $(foreach l,$(EACH_LANGS),pqrnn-$(l)-crf-bs64)
LANG_PQRNN_SEED1 = $(foreach l,$(EACH_LANGS),pqrnn-$(l)-crf-seed1)
.PHONY: $(LANG_PQRNN_BS64) $(LANG_PQRNN_SEED1)
$(LANG_PQRNN_BS64): pqrnn-%-crf-bs64:
	$(call run,build $(LANG_DATA) --model pqrnn --crf --batch-size 64)

$(LANG_PQRNN_SEED1): pqrnn-%-crf-seed1:
	$(call run,build $(LANG_DATA) --model pqrnn --crf --seed 1)

# the batch-64 pQRNN's eval EM still rose at the 40-epoch cap on Thai: 60 epochs (cosine decay
# over 60), and batch 32 at 40 epochs (twice the updates of batch 64)
LANG_PQRNN_BS64_E60 = $(foreach l,$(EACH_LANGS),pqrnn-$(l)-crf-bs64-e60)
LANG_PQRNN_BS64_E60_P60 = $(foreach l,$(EACH_LANGS),pqrnn-$(l)-crf-bs64-e60-p60)
LANG_PQRNN_BS32 = $(foreach l,$(EACH_LANGS),pqrnn-$(l)-crf-bs32)
.PHONY: $(LANG_PQRNN_BS64_E60) $(LANG_PQRNN_BS64_E60_P60) $(LANG_PQRNN_BS32)
$(LANG_PQRNN_BS64_E60): pqrnn-%-crf-bs64-e60:
	$(call run,build $(LANG_DATA) --model pqrnn --crf --batch-size 64 --epochs 60)

# the same without early stopping (the run above stopped at epoch 31 of 60 on Thai: patience 6
# ran out while the cosine schedule's learning rate was still high)
$(LANG_PQRNN_BS64_E60_P60): pqrnn-%-crf-bs64-e60-p60:
	$(call run,build $(LANG_DATA) --model pqrnn --crf --batch-size 64 --epochs 60 --patience 60)

$(LANG_PQRNN_BS32): pqrnn-%-crf-bs32:
	$(call run,build $(LANG_DATA) --model pqrnn --crf --batch-size 32)

# batch 32 at seed 1: is its gain over batch 64 (+1.1 on Thai) more than two runs' spread?
LANG_PQRNN_BS32_SEED1 = $(foreach l,$(EACH_LANGS),pqrnn-$(l)-crf-bs32-seed1)
.PHONY: $(LANG_PQRNN_BS32_SEED1)
$(LANG_PQRNN_BS32_SEED1): pqrnn-%-crf-bs32-seed1:
	$(call run,build $(LANG_DATA) --model pqrnn --crf --batch-size 32 --seed 1)

# the four pQRNN runs above (seed 1, batch 64, batch 64 for 60 epochs, batch 32) averaged as a
# teacher labelling the training set and one slot-substituted copy per utterance, and pQRNN
# students of it (batch 64, the mixer students' 24 epochs at temperature 1): on the training set
# only (kd-pq4), and with the copies (kd-pq4-aug1; each epoch twice as long)
LANG_PQ4_MEMBERS = runs/pqrnn-$*-crf-seed1,runs/pqrnn-$*-crf-bs64,runs/pqrnn-$*-crf-bs64-e60,runs/pqrnn-$*-crf-bs32
LANG_TEACHER_PQ4 = $(foreach l,$(EACH_LANGS),teacher-$(l)-pq4-aug1)
LANG_PQRNN_KD_PQ4 = $(foreach l,$(EACH_LANGS),pqrnn-$(l)-crf-kd-pq4)
LANG_PQRNN_KD_PQ4_AUG1 = $(foreach l,$(EACH_LANGS),pqrnn-$(l)-crf-kd-pq4-aug1)
LANG_PQRNN_KD_PQ4_BS32 = $(foreach l,$(EACH_LANGS),pqrnn-$(l)-crf-kd-pq4-bs32)
.PHONY: $(LANG_TEACHER_PQ4) $(LANG_PQRNN_KD_PQ4) $(LANG_PQRNN_KD_PQ4_AUG1) $(LANG_PQRNN_KD_PQ4_BS32)
$(LANG_TEACHER_PQ4): teacher-%-pq4-aug1:
	$(call run,teacher $(LANG_DATA) --teacher-model ensemble --members $(LANG_PQ4_MEMBERS) --augment-slots 1.0)

# the students' shared flags; each target adds its batch size (and copies)
PQ4_STUDENT = --model pqrnn --crf --epochs 24 --patience 24 --qat-epochs 1 \
    --teacher runs/teacher-$*-pq4-aug1 --distill-temperature 1.0 --distill-weight 0.5
$(LANG_PQRNN_KD_PQ4): pqrnn-%-crf-kd-pq4:
	$(call run,build $(LANG_DATA) $(PQ4_STUDENT) --batch-size 64)

# the same student at batch 32 (the best pQRNN run's batch size)
$(LANG_PQRNN_KD_PQ4_BS32): pqrnn-%-crf-kd-pq4-bs32:
	$(call run,build $(LANG_DATA) $(PQ4_STUDENT) --batch-size 32)

$(LANG_PQRNN_KD_PQ4_AUG1): pqrnn-%-crf-kd-pq4-aug1:
	$(call run,build $(LANG_DATA) $(PQ4_STUDENT) --batch-size 64 --augment-slots 1.0)

$(LANG_CHAIN): mtop-%-kd4-best:
	$(call chain,mtop-$*-crf-bs64 mtop-$*-crf-td10 pqrnn-$*-crf mtop-$*-crf teacher-$*-ens4-aug3 mtop-$*-crf-kd4-aug3-24-t1)

# the six-language distilled students (not run yet; about 8 h for MTOP and 4 h for MASSIVE
# on 2 cores, from the wall times in README)
mtop-all-best:
	$(call chain,mtop-all mtop-all-crf pqrnn-all bilstm-all transformer-all teacher-all-ens mtop-all-crf-kd)

massive-all-best:
	$(call chain,massive-all massive-pqrnn-all massive-bilstm-all massive-transformer-all massive-teacher-all-ens massive-all-crf-kd)

# the better two-member chain above (the student on slot-substituted copies, 53.8 EM in README),
# the members one after the other
massive-all-kd2-best:
	$(call chain,massive-all massive-pqrnn-all massive-teacher-all-ens2-aug massive-all-kd2-aug)

# the same chain on the six MTOP languages
mtop-all-kd2-best:
	$(call chain,mtop-all pqrnn-all teacher-all-ens2-aug mtop-all-kd2-aug)

# and with the slot-CRF student (68.6 EM in README, the best six-language ~1 MB model here)
mtop-all-crf-kd2-best:
	$(call chain,mtop-all pqrnn-all teacher-all-ens2-aug mtop-all-crf-kd2-aug)

clean:
	rm -rf build ondevice_nlp/_lib/*.so *.egg-info

# Thai as words (an experiment, tools/thai_words.py): the training slot values' words as a
# dictionary, each Thai stretch cut into them by maximal matching and moved to a script the op
# splits at spaces; the best letter recipes (pQRNN batch 32, base batch 64) trained on that copy
TH_WORDS_DATA = --dataset mtop --data-dir runs/mtop-th-words --languages th
LANG_DATA_TH = --dataset mtop --data-dir $(DATA)/mtop --languages th
.PHONY: mtop-th-words pqrnn-th-words-crf-bs32 mtop-th-words-crf-bs64
mtop-th-words: runs/mtop-th-words/th/test.txt
runs/mtop-th-words/th/test.txt: tools/thai_words.py
	$(BIN)/python tools/thai_words.py --data-dir $(DATA)/mtop --out runs/mtop-th-words

pqrnn-th-words-crf-bs32: runs/mtop-th-words/th/test.txt
	$(call run,build $(TH_WORDS_DATA) --model pqrnn --crf --batch-size 32)

mtop-th-words-crf-bs64: runs/mtop-th-words/th/test.txt
	$(call run,build $(TH_WORDS_DATA) --model pnlp_mixer --crf --batch-size 64)

# Thai read word by word inside the op (`build --words`, config version 4): the word list of
# tools/thai_words.py (the training slot values' words), the best letter recipes again
runs/th-words.txt: tools/thai_words.py
	$(BIN)/python tools/thai_words.py --data-dir $(DATA)/mtop --write-words runs/th-words.txt

.PHONY: pqrnn-th-crf-bs32-words mtop-th-crf-bs64-words
pqrnn-th-crf-bs32-words: runs/th-words.txt
	$(call run,build $(LANG_DATA_TH) --model pqrnn --crf --batch-size 32 --words runs/th-words.txt)

mtop-th-crf-bs64-words: runs/th-words.txt
	$(call run,build $(LANG_DATA_TH) --model pnlp_mixer --crf --batch-size 64 --words runs/th-words.txt)

# the same without early stopping (the base on the words copy stopped at epoch 16 of 40, and
# its quantization-aware epochs, at a low learning rate, then lifted it by 2.6 points)
.PHONY: mtop-th-crf-bs64-words-p40 mtop-th-crf-bs32-words-p40
mtop-th-crf-bs64-words-p40: runs/th-words.txt
	$(call run,build $(LANG_DATA_TH) --model pnlp_mixer --crf --batch-size 64 --patience 40 --words runs/th-words.txt)

# and at batch 32 (pQRNN's best batch size on Thai letters)
mtop-th-crf-bs32-words-p40: runs/th-words.txt
	$(call run,build $(LANG_DATA_TH) --model pnlp_mixer --crf --batch-size 32 --patience 40 --words runs/th-words.txt)

# the distillation recipe of "MTOP, one language distilled" on Thai words: the two ~1 MB runs that
# read words in the op (pQRNN batch 32, base batch 64 without early stopping) averaged as a
# teacher over the training set and three slot-substituted copies, and a base + CRF student of it
# with the same word list (24 epochs, temperature 1, weight 0.5)
TH_WORDS_MEMBERS = runs/pqrnn-th-crf-bs32-words,runs/mtop-th-crf-bs64-words-p40
.PHONY: teacher-th-words2-aug3 mtop-th-crf-words-kd2-aug3-24-t1
teacher-th-words2-aug3:
	$(call run,teacher $(LANG_DATA_TH) --teacher-model ensemble --members $(TH_WORDS_MEMBERS) --augment-slots 3.0)

mtop-th-crf-words-kd2-aug3-24-t1: runs/th-words.txt
	$(call run,build $(LANG_DATA_TH) --model pnlp_mixer --crf --augment-slots 3.0 --epochs 24 --patience 24 --qat-epochs 1 \
	    --teacher runs/teacher-th-words2-aug3 --distill-temperature 1.0 --distill-weight 0.5 --words runs/th-words.txt)

# four word members (README "Thai read word by word"): the two above, the base at batch 32 and
# pQRNN batch 32 at seed 1, averaged as a teacher; its student with the recipe of the two-member
# one, and both again at seed 1 (other substituted copies, which the teacher labels with the same
# --seed; other initial weights and batch order): how far two runs of the recipe land
pqrnn-th-crf-bs32-words-seed1: runs/th-words.txt
	$(call run,build $(LANG_DATA_TH) --model pqrnn --crf --batch-size 32 --seed 1 --words runs/th-words.txt)

TH_WORDS4_MEMBERS = $(TH_WORDS_MEMBERS),runs/mtop-th-crf-bs32-words-p40,runs/pqrnn-th-crf-bs32-words-seed1
# six word members (README "Thai read word by word"), the English "six members" step: the four
# above and both their students (seeds 0 and 1)
TH_WORDS6_MEMBERS = $(TH_WORDS4_MEMBERS),runs/mtop-th-crf-words-kd4-aug3-24-t1,runs/mtop-th-crf-words-kd4-aug3-24-t1-seed1
TH_WORDS_STUDENT = --model pnlp_mixer --crf --augment-slots 3.0 --epochs 24 --patience 24 --qat-epochs 1 \
    --distill-temperature 1.0 --distill-weight 0.5 --words runs/th-words.txt

# the teacher of N word members (TH_WORDSN_MEMBERS, N = 4 or 6) over the training set and three
# slot-substituted copies, and its student, at seeds 0 and 1
TH_WORDS_N = 4 6
TH_WORDS_TEACHERS = $(foreach n,$(TH_WORDS_N),teacher-th-words$(n)-aug3)
TH_WORDS_TEACHERS_SEED1 = $(foreach n,$(TH_WORDS_N),teacher-th-words$(n)-aug3-seed1)
TH_WORDS_STUDENTS = $(foreach n,$(TH_WORDS_N),mtop-th-crf-words-kd$(n)-aug3-24-t1)
TH_WORDS_STUDENTS_SEED1 = $(foreach n,$(TH_WORDS_N),mtop-th-crf-words-kd$(n)-aug3-24-t1-seed1)
.PHONY: pqrnn-th-crf-bs32-words-seed1 $(TH_WORDS_TEACHERS) $(TH_WORDS_TEACHERS_SEED1) \
    $(TH_WORDS_STUDENTS) $(TH_WORDS_STUDENTS_SEED1) mtop-th-words-kd4-best mtop-th-words-kd6-seed1-best
$(TH_WORDS_TEACHERS): teacher-th-words%-aug3:
	$(call run,teacher $(LANG_DATA_TH) --teacher-model ensemble --members $(TH_WORDS$*_MEMBERS) --augment-slots 3.0)

$(TH_WORDS_STUDENTS): mtop-th-crf-words-kd%-aug3-24-t1: runs/th-words.txt
	$(call run,build $(LANG_DATA_TH) $(TH_WORDS_STUDENT) --teacher runs/teacher-th-words$*-aug3)

$(TH_WORDS_TEACHERS_SEED1): teacher-th-words%-aug3-seed1:
	$(call run,teacher $(LANG_DATA_TH) --teacher-model ensemble --members $(TH_WORDS$*_MEMBERS) --augment-slots 3.0 --seed 1)

$(TH_WORDS_STUDENTS_SEED1): mtop-th-crf-words-kd%-aug3-24-t1-seed1: runs/th-words.txt
	$(call run,build $(LANG_DATA_TH) $(TH_WORDS_STUDENT) --teacher runs/teacher-th-words$*-aug3-seed1 --seed 1)

# the whole four-member Thai chain, members one after the other; and on to the six-member
# teacher and student at seed 1
TH_WORDS4_CHAIN = pqrnn-th-crf-bs32-words mtop-th-crf-bs64-words-p40 mtop-th-crf-bs32-words-p40 \
    pqrnn-th-crf-bs32-words-seed1 teacher-th-words4-aug3 mtop-th-crf-words-kd4-aug3-24-t1
mtop-th-words-kd4-best:
	$(call chain,$(TH_WORDS4_CHAIN))

mtop-th-words-kd6-seed1-best:
	$(call chain,$(TH_WORDS4_CHAIN) teacher-th-words4-aug3-seed1 mtop-th-crf-words-kd4-aug3-24-t1-seed1 teacher-th-words6-aug3-seed1 mtop-th-crf-words-kd6-aug3-24-t1-seed1)
