"""A pre-trained multilingual encoder as teacher: keras-hub presets (mBERT, XLM-R, ...).

``ondevice-nlp teacher --teacher-model hub --preset DIR`` fine-tunes a
keras-hub backbone (Keras 3, TensorFlow backend) from a local preset folder
(``keras_hub.models.Backbone.from_preset(DIR)``; nothing is downloaded: fetch
the preset elsewhere, e.g. ``bert_multi_cased`` or ``xlm_roberta_base``, and
copy the folder) with two heads, then writes the same teacher folder as
``distill.run_teacher`` (``teacher.json``, ``soft_targets.npz``):

* intent logits from the first position (``[CLS]`` / ``<s>``) of the
  backbone's sequence output;
* slot logits per token of *our* tokenization (``projection_ref.tokenize``,
  the student's tokens): each token takes the encoder state of its first
  sub-word piece, found by character offsets (the piece whose character span
  overlaps the token first; BERT's first-sub-word tagging, Devlin et al.
  2019, arXiv 1810.04805, Sec. 5.3). A token no piece overlaps (cut by the
  piece limit) reads the first position.

Sub-word pieces and their character offsets come from the Hugging Face
``tokenizers`` library (keras-hub's own tokenizers need tensorflow-text, which
would pull a second full TensorFlow): a WordPiece vocabulary
(``DIR/assets/tokenizer/vocabulary.txt``, the layout of keras-hub's BERT
presets; lower-casing as the preset's ``tokenizer.json`` says) or any
``tokenizers`` JSON file given as ``tokenizer_file`` (e.g. XLM-R's
``tokenizer.json``, whose SentencePiece model keras-hub stores as a
``vocabulary.spm`` that ``tokenizers`` cannot read).
"""

from __future__ import annotations

import json
import logging
import os
import time

import numpy as np

log = logging.getLogger(__name__)

MAX_PIECES = 128  # sub-word positions fed to the encoder (longer utterances are cut)


def load_tokenizer(preset: str, tokenizer_file: str | None = None):
    """A ``tokenizers.Tokenizer`` that adds the preset's special tokens.

    ``tokenizer_file``: a ``tokenizers`` JSON file; otherwise a WordPiece
    tokenizer (BERT pre-tokenization, ``[CLS] ... [SEP]``) on
    ``preset/assets/tokenizer/vocabulary.txt``.

    Raises:
      FileNotFoundError: no tokenizer file and no vocabulary.txt.
      ValueError: the vocabulary lacks [CLS], [SEP] or [UNK].
    """
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordPiece

    if tokenizer_file:
        if not os.path.exists(tokenizer_file):
            raise FileNotFoundError(f"tokenizer file {tokenizer_file} does not exist")
        return Tokenizer.from_file(tokenizer_file)
    vocab_path = os.path.join(preset, "assets", "tokenizer", "vocabulary.txt")
    if not os.path.exists(vocab_path):
        raise FileNotFoundError(f"{vocab_path} is missing: give the preset's tokenizers JSON "
                                "file (--hub-tokenizer) for a non-WordPiece preset")
    with open(vocab_path, encoding="utf-8") as f:
        vocab = {w.rstrip("\n"): i for i, w in enumerate(f)}
    for special in ("[CLS]", "[SEP]", "[UNK]"):
        if special not in vocab:
            raise ValueError(f"{vocab_path}: no {special} token")
    lowercase = False
    cfg_path = os.path.join(preset, "tokenizer.json")
    if os.path.exists(cfg_path):  # keras-hub's tokenizer config (not a `tokenizers` file)
        with open(cfg_path, encoding="utf-8") as f:
            lowercase = bool(json.load(f).get("config", {}).get("lowercase", False))
    tok = Tokenizer(WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=lowercase, strip_accents=lowercase)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", vocab["[CLS]"]),
                                                 ("[SEP]", vocab["[SEP]"])])
    return tok


def encode_for_hub(tokenizer, texts, max_tokens: int, max_pieces: int = MAX_PIECES, proj=None):
    """Sub-word inputs and the first-piece index of each of our tokens.

    Returns (token_ids int32 [N, W], padding_mask bool [N, W], first_piece
    int32 [N, S] (0 on padding), token_counts int32 [N]); W = min(max_pieces,
    longest encoding), S = ``max_tokens``; our tokens are
    ``train.token_char_offsets`` (with ``proj``'s word dictionary, if any:
    ``teacher --words``).
    """
    from .train import token_char_offsets

    encs = tokenizer.encode_batch(list(texts))
    W = max(1, min(max_pieces, max((len(e.ids) for e in encs), default=1)))
    n = len(encs)
    ids = np.zeros((n, W), np.int32)
    pmask = np.zeros((n, W), bool)
    first = np.zeros((n, max_tokens), np.int32)
    counts = np.zeros((n,), np.int32)
    for i, (text, e) in enumerate(zip(texts, encs)):
        k = min(W, len(e.ids))
        ids[i, :k], pmask[i, :k] = e.ids[:k], True
        special = e.special_tokens_mask[:k]
        spans = [(s, t) for (s, t) in e.offsets[:k]]
        offs = token_char_offsets(text, max_tokens, proj)
        counts[i] = len(offs)
        for j, (cs, ce) in enumerate(offs):
            first[i, j] = next((p for p, (s, t) in enumerate(spans)
                                if not special[p] and s < ce and t > cs), 0)
    return ids, pmask, first, counts


def build_hub_model(backbone, num_intents: int, num_tags: int, dropout: float = 0.1):
    """Keras 3 model: backbone + intent head (first position) + slot head (first pieces).

    Inputs: ``token_ids`` int32 [B, W], ``padding_mask`` bool [B, W],
    ``first_piece`` int32 [B, S] (plus ``segment_ids`` zeros when the backbone
    takes them). Outputs: intent logits float32 [B, I], slot logits float32
    [B, S, K].
    """
    import keras

    ids = keras.Input((None,), dtype="int32", name="token_ids")
    pmask = keras.Input((None,), dtype="bool", name="padding_mask")
    first = keras.Input((None,), dtype="int32", name="first_piece")
    feed = {"token_ids": ids, "padding_mask": pmask}
    if isinstance(backbone.input, dict) and "segment_ids" in backbone.input:
        feed["segment_ids"] = keras.ops.zeros_like(ids)
    out = backbone(feed)
    seq = out["sequence_output"] if isinstance(out, dict) else out  # [B, W, H]
    seq = keras.layers.Dropout(dropout)(seq)
    tok = keras.ops.take_along_axis(seq, keras.ops.expand_dims(first, -1), axis=1)  # [B, S, H]
    intent = keras.layers.Dense(num_intents, name="intent")(seq[:, 0])
    slots = keras.layers.Dense(num_tags, name="slots")(tok)
    return keras.Model({"token_ids": ids, "padding_mask": pmask, "first_piece": first},
                       [intent, slots], name="hub_teacher")


def run_hub_teacher(a, preset: str, tokenizer_file: str | None = None, backbone=None,
                    max_tokens: int = 64) -> dict:
    """Fine-tune a keras-hub encoder on ``a`` (``distill.TeacherArgs``) and write its teacher folder.

    ``backbone``: a ``keras_hub`` backbone to use instead of
    ``Backbone.from_preset(preset)`` (tests build a tiny random one).
    ``max_tokens``: S of our tokenization (64, the students' default); ``a.words``:
    a word list file (``build --words``) whose words are our tokens.
    AdamW at ``a.lr`` (default 5e-5), ``a.epochs`` epochs, the epoch with the
    best eval exact match kept. Returns the teacher.json dict.

    Raises:
      FileNotFoundError: missing preset, tokenizer or dataset files.
      ImportError: keras-hub or tokenizers not installed (requirements-nodeps.txt).
    """
    import keras
    import keras_hub

    from . import tagging
    from . import train as T
    from .distill import write_teacher
    from .metrics import evaluate
    from .pipeline import _average, prepare_data, with_word_list
    from .projection_ref import ProjectionConfig

    t0 = time.time()
    keras.utils.set_random_seed(a.seed)
    if backbone is None:
        if not os.path.isdir(preset):
            raise FileNotFoundError(f"keras-hub preset folder {preset} does not exist "
                                    "(nothing can be downloaded: copy a preset folder here)")
        backbone = keras_hub.models.Backbone.from_preset(preset)
    tokenizer = load_tokenizer(preset, tokenizer_file)
    proj = None  # our tokens, which the student reads: with a.words, one per dictionary word
    if a.words:
        proj = with_word_list(ProjectionConfig(max_tokens=max_tokens), a.words)
    data = prepare_data(a, max_tokens, proj)
    train_ex, labels, enc = data.train_ex, data.labels, data.enc_train
    allowed = labels.allowed_transitions()
    model = build_hub_model(backbone, len(labels.intents), len(labels.tags))
    n_params = int(model.count_params())
    log.info("hub teacher %s: %d parameters; %d training examples", type(backbone).__name__,
             n_params, len(train_ex))

    def inputs(examples):
        ids, pm, first, _ = encode_for_hub(tokenizer, [e.text for e in examples], max_tokens,
                                           proj=proj)
        return {"token_ids": ids, "padding_mask": pm, "first_piece": first}

    x = inputs(train_ex)
    tags = np.where(enc.mask > 0, enc.tags, -1)  # -1: padding, ignored by the loss
    ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=-1)
    model.compile(optimizer=keras.optimizers.AdamW(a.lr or 5e-5, weight_decay=a.weight_decay),
                  loss=[ce, ce])

    def predict(examples, e):
        il, sl = model.predict(inputs(examples), batch_size=64, verbose=0)
        tag_ids = np.zeros(e.tags.shape, np.int64)
        for i, offs in enumerate(e.offsets):
            tag_ids[i, :len(offs)] = tagging.viterbi_bio(sl[i, :len(offs)], allowed)
        return il, sl, T.decode_predictions(e, labels, il.argmax(-1), tag_ids)

    def score(split):
        out = {}
        for lang, (ex, e) in (data.evals if split == "eval" else data.tests).items():
            pi, ps = predict(ex, e)[2]
            out[lang] = evaluate(ex, pi, ps)
        out["average"] = _average(out)
        return out

    best, best_w, history = -1.0, None, []
    for epoch in range(a.epochs):
        h = model.fit(x, (np.maximum(enc.intents, 0), tags), batch_size=a.batch_size, epochs=1,
                      shuffle=True, verbose=T.keras_verbosity())
        em = score("eval")["average"]["exact_match"]
        history.append({"epoch": epoch + 1, "eval_exact_match": em,
                        "loss": float(h.history["loss"][-1])})
        log.info("[hub teacher] epoch %d eval exact match %.4f", epoch + 1, em)
        if em > best:
            best, best_w = em, model.get_weights()
    if best_w is not None:
        model.set_weights(best_w)
    metrics = {"eval": score("eval"), "test": score("test")}
    il, sl, _ = predict(train_ex, enc)
    lengths = enc.mask.sum(axis=1).astype(int)
    meta = {"model": "hub", "size": os.path.basename(os.path.normpath(preset)) or preset,
            "backbone": type(backbone).__name__, "parameters": n_params, "dataset": a.dataset,
            "languages": a.languages, "labels": {"intents": labels.intents, "tags": labels.tags},
            "max_tokens": max_tokens, **({"words": len(proj.words)} if proj else {}),
            "metrics": metrics, "eval_history": history,
            "epochs_run": len(history), "seconds": {"total": round(time.time() - t0, 1)}}
    return write_teacher(a.out, meta, [e.text for e in train_ex], il,
                         [sl[i, :k] for i, k in enumerate(lengths)])
