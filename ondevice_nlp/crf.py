"""Linear-chain CRF over the slot tags (``ondevice-nlp build --crf``).

The slot head's per-token logits become a linear-chain CRF's emission scores
(Lafferty et al. 2001; on top of a neural tagger as in Lample et al. 2016,
Sec. 2.2, and Huang et al. 2015, arXiv 1508.01991): a tag sequence y_1..y_n of
an utterance with emissions E [n, K] scores

    s(y) = A[K, y_1] + sum_t E[t, y_t] + sum_{t>1} A[y_{t-1}, y_t]

with A float [K + 1, K] learned transition scores (row K: the first tag), and
p(y) = exp s(y) / Z, Z summed over every tag sequence by the forward
algorithm. Training minimises -log p(gold tags) in place of the per-token
cross-entropy. Transitions that are not valid IOB2, or not seen in training
(``train.Labels.allowed_transitions``), get a fixed score of -1e4, so the CRF
normalises over valid sequences only, the ones decoding can return.

Speed: given ``allowed``, the forward and backward recursions sum each tag's
predecessors (successors) over the allowed transitions only, P of them
(six-language MTOP: 911 of its 22,350 scores are allowed, the first-tag row
included), plus a single term ``DISALLOWED + logsumexp`` of
all the others, which is what the dense sum over K^2 gives when every other
transition scores exactly ``DISALLOWED`` (CRFTagger's, whose disallowed
entries never move from zero). The per-token cost falls from B K^2 to
B (P + K) exponentials; measured in the README ("Slot CRF").

Only the training loss and the decoder change: the network and therefore the
``.tflite`` are those of the model without a CRF (its ``slot_logits`` output are
the emissions); the learned A travels in the file's metadata
(``labels.crf_transitions``, ``tagging.pack_transition_scores``) and the
decoders add it to the path score (``tagging.viterbi_bio``,
``tagging.joint_decode``).

Distillation (``build --crf --teacher T``): the teacher's per-token soft
targets are matched by the CRF's own per-token marginals p(y_t = k | x)
(forward-backward, ``crf_log_marginals``), not by a softmax of the emissions,
which are not the distribution the CRF predicts; the slot loss is
``(1 - w) NLL + w T^2 KL(softmax(t / T) || marginals at E / T, A / T)`` per real
token, the teacher's softmax taken over the tags the CRF can give that token
("posterior distillation", as in Wang et al. 2020, "Structure-level knowledge
distillation for multilingual sequence labeling", ACL).

Why: on MTOP English most exact-match errors are slot boundaries (adjacent
spans of one type split or merged, a preposition split off); per-token
cross-entropy scores each token's tag alone, the CRF scores the whole sequence.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
import tf_keras as keras

__all__ = ["DISALLOWED", "crf_nll", "crf_log_marginals", "CRFTagger", "unwrap"]

DISALLOWED = -1e4
"""Fixed score of a transition outside ``allowed`` (finite, so the forward
algorithm stays free of inf - inf)."""


def crf_nll(emissions: tf.Tensor, tags: tf.Tensor, mask: tf.Tensor,
            transitions: tf.Tensor, allowed: np.ndarray | None = None) -> tf.Tensor:
    """Negative log-likelihood of the gold tags under a linear-chain CRF.

    Args:
        emissions: float32 [B, L, K] per-token tag scores (the slot logits).
        tags: int [B, L] gold tag ids; values at masked positions are ignored.
        mask: float32 [B, L], 1 on real tokens, 0 on padding; real tokens come
            first (a prefix of each row). A row with no tokens scores 0.
        transitions: float32 [K + 1, K]; row K scores the first tag.
        allowed: optional bool [K + 1, K]; given, the transitions outside it
            are taken to score exactly ``DISALLOWED`` in log Z whatever
            ``transitions`` holds there, and log Z is summed sparsely (module
            docstring); None: the dense sum over every transition.

    Returns:
        float32 [B]: log Z - s(gold) per utterance (>= 0 up to rounding).
    """
    tags = tf.cast(tags, tf.int32)
    mask = tf.cast(mask, emissions.dtype)
    K = tf.shape(emissions)[2]
    length = tf.shape(emissions)[1]
    tags = tf.where(mask > 0, tags, 0)
    start, trans = transitions[K], transitions[:K]
    gold = tf.reduce_sum(tf.gather(emissions, tags, batch_dims=2) * mask, axis=1)
    gold += tf.gather(start, tags[:, 0]) * mask[:, 0]
    pairs = tf.gather_nd(trans, tf.stack([tags[:, :-1], tags[:, 1:]], axis=-1))  # [B, L-1]
    gold += tf.reduce_sum(pairs * mask[:, 1:], axis=1)

    if allowed is not None:
        sparse = _SparseTransitions(allowed, trans)
        alpha0 = sparse.first(start)[:, None] + tf.transpose(emissions[:, 0])  # [K, B]

        def forward():  # alpha_t [K, B]
            return tf.scan(sparse.step, (tf.transpose(emissions[:, 1:], [1, 2, 0]),
                                         tf.transpose(mask[:, 1:])), initializer=alpha0)[-1]

        log_z = tf.reduce_logsumexp(tf.cond(length > 1, forward, lambda: alpha0), axis=0)
        return (log_z - gold) * mask[:, 0]

    alpha0 = start[None, :] + emissions[:, 0]

    def step(alpha, inp):
        e_t, m_t = inp
        nxt = tf.reduce_logsumexp(alpha[:, :, None] + trans[None], axis=1) + e_t
        return tf.where(m_t[:, None] > 0, nxt, alpha)

    def forward():
        alphas = tf.scan(step, (tf.transpose(emissions[:, 1:], [1, 0, 2]),
                                tf.transpose(mask[:, 1:])), initializer=alpha0)
        return alphas[-1]

    last = tf.cond(length > 1, forward, lambda: alpha0)
    log_z = tf.reduce_logsumexp(last, axis=1)
    return (log_z - gold) * mask[:, 0]


class _SparseTransitions:
    """One step of the forward / backward recursion over the allowed transitions only.

    For tags in the layout [K, B] (tag first, so that the sums are segment sums
    along axis 0): ``forward(alpha)[k] = logsumexp_j (alpha[j] + A[j, k])`` and
    ``backward(u)[j] = logsumexp_k (A[j, k] + u[k])``, each sum taken over the
    P allowed pairs plus one term ``DISALLOWED + logsumexp`` of all K inputs
    standing for the disallowed ones (exact when they score ``DISALLOWED``: their
    own share, e^-1e4 relative, is zero in float32 whenever the tag has an allowed
    pair, and the term is the whole sum when it has none).

    Args:
        allowed: bool [K + 1, K]; row K, the first tag's, is used by ``first``.
        trans: float32 [K, K] tag-to-tag scores (read at the allowed pairs only).
    """

    def __init__(self, allowed: np.ndarray, trans: tf.Tensor):
        allowed = np.asarray(allowed, dtype=bool)
        K = allowed.shape[1]
        src, dst = np.nonzero(allowed[:K])
        self.K = K
        self.first_allowed = tf.constant(allowed[K])
        self.src = tf.constant(src, tf.int32)  # [P]
        self.dst = tf.constant(dst, tf.int32)
        every = np.arange(K, dtype=np.int32)
        self.by_dst = tf.constant(np.concatenate([dst, every]).astype(np.int32))  # [P + K]
        self.by_src = tf.constant(np.concatenate([src, every]).astype(np.int32))
        self.scores = tf.gather_nd(trans, tf.stack([self.src, self.dst], axis=1))[:, None]

    def first(self, start: tf.Tensor) -> tf.Tensor:
        """float32 [K] first-tag scores, ``DISALLOWED`` outside ``allowed[K]`` (so that a
        tag no valid sequence reaches scores about ``DISALLOWED`` or less at any
        temperature)."""
        return tf.where(self.first_allowed, start, DISALLOWED)

    def _sum(self, picked, x, segments):
        rest = tf.reduce_logsumexp(x, axis=0, keepdims=True) + DISALLOWED  # [1, B]
        v = tf.concat([picked + self.scores, tf.tile(rest, [self.K, 1])], axis=0)  # [P + K, B]
        m = tf.stop_gradient(tf.math.unsorted_segment_max(v, segments, self.K))  # [K, B]
        total = tf.math.unsorted_segment_sum(tf.exp(v - tf.gather(m, segments)), segments,
                                             self.K)
        return tf.math.log(total) + m  # a segment's maximum adds exp(0): total >= 1

    def forward(self, alpha: tf.Tensor) -> tf.Tensor:
        """float32 [K, B] -> [K, B]: the sum over each tag's allowed predecessors."""
        return self._sum(tf.gather(alpha, self.src), alpha, self.by_dst)

    def backward(self, u: tf.Tensor) -> tf.Tensor:
        """float32 [K, B] -> [K, B]: the sum over each tag's allowed successors."""
        return self._sum(tf.gather(u, self.dst), u, self.by_src)

    def step(self, alpha: tf.Tensor, inp) -> tf.Tensor:
        """One ``tf.scan`` step of the forward algorithm: alpha [K, B] and (emissions
        [K, B], mask [B]) of the next token -> the next alpha, unchanged past a row's end."""
        e_t, m = inp
        return tf.where(m[None] > 0, self.forward(alpha) + e_t, alpha)


def crf_log_marginals(emissions: tf.Tensor, mask: tf.Tensor, transitions: tf.Tensor,
                      allowed: np.ndarray | None = None) -> tf.Tensor:
    """Log of each token's marginal tag probability under a linear-chain CRF.

    Forward-backward in log space (Lafferty et al. 2001; Sutton and McCallum
    2012, "An introduction to conditional random fields", Sec. 4.1):
    ``log p(y_t = k | x) = alpha_t[k] + beta_t[k] - log Z``. Differentiable
    (the distillation loss trains through it).

    Args:
        emissions: float32 [B, L, K] per-token tag scores.
        mask: float32 [B, L], 1 on real tokens (a prefix of each row), 0 on padding.
        transitions: float32 [K + 1, K]; row K scores the first tag.
        allowed: optional bool [K + 1, K]: sparse sums, as in ``crf_nll``.

    Returns:
        float32 [B, L, K]: log-marginals on real tokens (each row's exp sums to
        1); zeros on padding and for rows with no tokens.
    """
    mask = tf.cast(mask, emissions.dtype)
    K = tf.shape(emissions)[2]
    start, trans = transitions[K], transitions[:K]
    if allowed is not None:
        sparse = _SparseTransitions(allowed, trans)
        return _sparse_log_marginals(emissions, mask, sparse.first(start), sparse)
    alpha0 = start[None, :] + emissions[:, 0]

    def fwd(alpha, inp):
        e_t, m_t = inp
        nxt = tf.reduce_logsumexp(alpha[:, :, None] + trans[None], axis=1) + e_t
        return tf.where(m_t[:, None] > 0, nxt, alpha)

    def bwd(beta, inp):  # beta_t from beta_{t+1} and the emissions of token t + 1
        e_next, m_next = inp
        prev = tf.reduce_logsumexp(trans[None] + (e_next + beta)[:, None, :], axis=2)
        return tf.where(m_next[:, None] > 0, prev, tf.zeros_like(prev))

    em_t = tf.transpose(emissions, [1, 0, 2])  # [L, B, K]
    m_t = tf.transpose(mask)  # [L, B]
    alphas = tf.concat([alpha0[None], tf.scan(fwd, (em_t[1:], m_t[1:]), initializer=alpha0)],
                       axis=0)  # [L, B, K]; past a row's end alpha stays at its last token's
    betas = tf.scan(bwd, (em_t[1:], m_t[1:]), initializer=tf.zeros_like(alpha0), reverse=True)
    betas = tf.concat([betas, tf.zeros_like(alpha0)[None]], axis=0)  # [L, B, K]
    log_z = tf.reduce_logsumexp(alphas[-1], axis=1)  # [B]
    out = alphas + betas - log_z[None, :, None]
    return tf.transpose(out, [1, 0, 2]) * mask[:, :, None]


def _sparse_log_marginals(emissions, mask, start, sparse: _SparseTransitions):
    """``crf_log_marginals`` in the [L, K, B] layout with ``_SparseTransitions`` steps."""
    em_t = tf.transpose(emissions, [1, 2, 0])  # [L, K, B]
    m_t = tf.transpose(mask)  # [L, B]
    alpha0 = start[:, None] + em_t[0]

    def bwd(beta, inp):  # beta_t from beta_{t+1} and the emissions of token t + 1
        e_next, m = inp
        return tf.where(m[None] > 0, sparse.backward(e_next + beta), tf.zeros_like(beta))

    alphas = tf.concat([alpha0[None], tf.scan(sparse.step, (em_t[1:], m_t[1:]),
                                              initializer=alpha0)], axis=0)  # [L, K, B]
    betas = tf.scan(bwd, (em_t[1:], m_t[1:]), initializer=tf.zeros_like(alpha0), reverse=True)
    betas = tf.concat([betas, tf.zeros_like(alpha0)[None]], axis=0)
    log_z = tf.reduce_logsumexp(alphas[-1], axis=0)  # [B]
    out = alphas + betas - log_z[None, None, :]
    return tf.transpose(out, [2, 0, 1]) * mask[:, :, None]


class CRFTagger(keras.Model):
    """Training wrapper: a tagger (``model(x) -> (intent logits [B, I], slot
    logits [B, L, K])``) plus learned CRF transitions ``crf_transitions`` float32
    [K + 1, K].

    ``fit`` minimises the intent cross-entropy (weighted by the intent sample
    weights) plus the CRF negative log-likelihood of the slot tags summed over
    the batch and divided by its number of real tokens (so its scale matches the
    per-token cross-entropy it replaces). The batch is the pipeline's
    (``train.make_dataset``): ``({"features", "mask"}, (intent, tags),
    (intent weight, slot weight))``. Calling the wrapper calls the tagger;
    ``save_weights`` / ``load_weights`` cover both. Compile with an optimizer
    only (``loss`` is ignored). The wrapper is built when it is made (called
    once on zeros shaped like ``tagger.input``). The loss sums over the allowed
    transitions only (``crf_nll``'s sparse sums); setting the attribute
    ``allowed`` to None makes it sum densely over all K^2, the same loss
    more slowly (``tools/crf_speed.py`` times both).

    Args:
        tagger: the Keras model whose slot logits are the emissions.
        allowed: bool [K + 1, K] transitions decoding may take
            (``train.Labels.allowed_transitions``); the others score ``DISALLOWED``.
        init: optional float [K + 1, K] starting transitions (the float phase's,
            for QAT); zeros otherwise.
        distill: optional (temperature T, weight w) for a batch that carries a
            teacher's logits (``train.make_dataset(soft=...)``: targets
            ``(intent [B, 1 + I], tags [B, L, 1 + K])``, column 0 the hard label):
            the intent loss is ``distill.distill_loss_fn``'s and the slot loss
            ``(1 - w) NLL + w T^2 KL`` against the CRF marginals at temperature T
            (see the module docstring), both per real token like the NLL.

    Raises:
      ValueError: T <= 0 or w outside [0, 1].
    """

    def __init__(self, tagger: keras.Model, allowed: np.ndarray, init: np.ndarray | None = None,
                 distill: tuple[float, float] | None = None):
        super().__init__()
        self.distill = None
        if distill is not None:
            from .distill import distill_loss_fn
            self.distill = (float(distill[0]), float(distill[1]))
            self.intent_distill = distill_loss_fn(*self.distill)  # validates T and w
        self.tagger = tagger
        allowed = np.asarray(allowed, dtype=bool)
        # the loss sums over these transitions only (sparse); None: over all (dense)
        self.allowed = allowed
        self.penalty = tf.constant(np.where(allowed, 0.0, DISALLOWED).astype(np.float32))
        self.crf_transitions = self.add_weight(
            name="crf_transitions", shape=allowed.shape, trainable=True,
            initializer="zeros" if init is None else keras.initializers.Constant(init))
        self.intent_ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        self.loss_trackers = {k: keras.metrics.Mean(name=k) for k in ("loss", "intent", "crf")}
        # built now, on zeros shaped like one example, so that fit's BackupAndRestore
        # sees every variable (an unbuilt subclassed model makes it warn)
        self(tf.nest.map_structure(lambda t: tf.zeros([d or 1 for d in t.shape], t.dtype),
                                   tagger.input))

    @property
    def metrics(self):
        return list(self.loss_trackers.values())

    def call(self, x, training=False):
        return self.tagger(x, training=training)

    def transition_scores(self) -> np.ndarray:
        """The learned transitions, float64 [K + 1, K] (meaningful where allowed)."""
        return self.crf_transitions.numpy().astype(np.float64)

    def batch_losses(self, data, training: bool = False):
        """(intent loss, slot loss) float32 scalars of one batch ``(x, targets, weights)``
        as ``fit`` minimises them (see the class docstring); ``training`` is the
        tagger's (dropout)."""
        x, (intent, tags), (intent_w, _) = data
        intent_logits, slot_logits = self(x, training=training)
        mask = x["mask"]
        n_tokens = tf.maximum(tf.reduce_sum(mask), 1.0)
        trans = self.crf_transitions + self.penalty
        if self.distill is None:
            intent_loss = self.intent_ce(intent, intent_logits, sample_weight=intent_w)
            nll = crf_nll(slot_logits, tags, mask, trans, self.allowed)
            return intent_loss, tf.reduce_sum(nll) / n_tokens
        T, w = self.distill  # targets: column 0 the hard label, the rest the teacher's logits
        per_example = self.intent_distill(intent, intent_logits)
        intent_loss = tf.reduce_sum(per_example * intent_w) / tf.cast(tf.shape(intent_w)[0],
                                                                        tf.float32)
        hard, teacher = tags[..., 0], tf.cast(tags[..., 1:], tf.float32)
        nll = tf.reduce_sum(crf_nll(slot_logits, hard, mask, trans, self.allowed)) / n_tokens
        log_q = crf_log_marginals(slot_logits / T, mask, trans / T, self.allowed)
        # the teacher renormalised over the tags the CRF can give this token (a
        # disallowed transition makes the others' log-marginals about DISALLOWED or
        # less in the sparse sums, about DISALLOWED / T in the dense ones)
        possible = log_q > DISALLOWED / (2.0 if self.allowed is not None else 2.0 * T)
        log_p = tf.nn.log_softmax(tf.where(possible, teacher / T, -1e9), axis=-1)
        kl = tf.reduce_sum(tf.where(possible, tf.exp(log_p) * (log_p - log_q), 0.0), axis=-1)
        kl = tf.reduce_sum(kl * mask) / n_tokens
        return intent_loss, (1.0 - w) * nll + (w * T * T) * kl

    def train_step(self, data):
        with tf.GradientTape() as tape:
            intent_loss, crf_loss = self.batch_losses(data, training=True)
            loss = intent_loss + crf_loss
            if self.tagger.losses:
                loss += tf.add_n(self.tagger.losses)
        variables = self.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        for k, v in (("loss", loss), ("intent", intent_loss), ("crf", crf_loss)):
            self.loss_trackers[k].update_state(v)
        return {k: t.result() for k, t in self.loss_trackers.items()}


def unwrap(model):
    """The tagger inside a ``CRFTagger``, or ``model`` itself."""
    return model.tagger if isinstance(model, CRFTagger) else model
