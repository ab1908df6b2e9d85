// Portable C++17 core of the ondevice_nlp hashing projections.
//
// This is the single implementation behind the TensorFlow op (tf_op.cc) and
// the TFLite custom kernel (tflite_kernel.cc). It reproduces, bit for bit, the
// Python/NumPy specification in ondevice_nlp/projection_ref.py:
//
//   * MinHash counting Bloom filter over character trigrams (pNLP-Mixer,
//     Fusco et al. 2022, arXiv:2202.04350, Sec. 2.1);
//   * ternary 2-bit projection (pQRNN, Kaliamoorthi et al. 2021,
//     arXiv:2101.08890, Sec. 3);
//   * hashed token ids (method 2, "hashid", for the baselines' embedding
//     tables): one feature per token, 1 + UnitHash(token) mod (F - 1), with
//     F the vocabulary size and id 0 left to padding;
//   * optionally (config version 2, shape = 1) 4 token shape flags in the
//     last feature slots (first code point upper case, all caps, some decimal
//     digit, all decimal digits), after the extra features of the pQRNN
//     reference op;
//   * optionally (config version 3, ngram = K in 2..8, MinHash only) letter
//     n-grams: every stretch of 2..K touching nospace tokens (Thai letters)
//     is a unit of a second MinHash fingerprint of each of its tokens, counted
//     into the same Bloom filter as the token's own;
//   * optionally (config version 4, a word dictionary of K word hashes)
//     maximal-matching word segmentation: runs of touching nospace tokens
//     (Thai letters with their marks) are joined into dictionary words
//     (fewest tokens outside words, then fewest pieces; see SegmentRun in
//     projection.cc and segment_run in the reference);
//
// with the reference's own UTF-8 decoder (one U+FFFD per ill-formed byte),
// tokenizer (space / single / nospace / word classes, Thai and Lao marks),
// lowercase table, FNV-1a64 + fmix64 hashing, splitmix-style derived hashes
// and window concatenation.
//
// Rules the implementation follows: input bytes are read as uint8_t only,
// hashing uses uint64_t arithmetic only (wrap-around is defined), no signed
// overflow, no shift by >= 64, no read outside [data, data + len).
//
// Not thread-safe per object: use one Projector per thread. The free function
// Project() is thread-safe.

#ifndef ONDEVICE_NLP_CUSTOM_OPS_PROJECTION_H_
#define ONDEVICE_NLP_CUSTOM_OPS_PROJECTION_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace ondevice_nlp {
namespace projection {

// Layouts of the int32 config vector (ProjectionConfig.to_vector()):
//   version 1, 7 entries: [1, method id, F, N, w, S, seed]         (shape = 0)
//   version 2, 8 entries: [2, method id, F, N, w, S, seed, shape]  (shape 0 or 1)
//   version 3, 9 entries: [3, method id, F, N, w, S, seed, shape, ngram]
//   version 4, 11 + 2K entries: [4, method id, F, N, w, S, seed, shape, ngram, K, L,
//     then K word hashes as (low, high) 32-bit halves, strictly increasing as uint64]
constexpr int kConfigSizeV1 = 7;
constexpr int kConfigSizeV2 = 8;
constexpr int kConfigSizeV3 = 9;

constexpr int32_t kConfigVersionV1 = 1;
constexpr int32_t kConfigVersionV2 = 2;
constexpr int32_t kConfigVersionV3 = 3;
constexpr int32_t kConfigVersionV4 = 4;
constexpr int kConfigHeaderV4 = 11;
// Word dictionary limits (MAX_WORDS, MAX_WORD_LEN) and the most touching
// nospace tokens segmented at once (MAX_RUN_TOKENS).
constexpr int32_t kMaxWords = 1 << 16;
constexpr int32_t kMaxWordLen = 32;
constexpr int kMaxRunTokens = 256;
// Longest config vector: version 4 with kMaxWords word hashes.
constexpr int kMaxConfigSize = kConfigHeaderV4 + 2 * kMaxWords;

// Limits, identical to ProjectionConfig.__post_init__ (inclusive).
constexpr int32_t kMaxFeatureSize = 1 << 16;
constexpr int32_t kMaxNumHashes = 4096;
constexpr int32_t kMaxWindow = 16;
constexpr int32_t kMaxMaxTokens = 4096;
// Code points of a token kept for hashing (MAX_TOKEN_CHARS).
constexpr int kMaxTokenChars = 64;
// Shape flags in the last feature slots of a token when shape = 1
// (NUM_SHAPE_FEATURES), and the smallest F allowed then (MIN_SHAPE_FEATURE_SIZE).
constexpr int32_t kNumShapeFeatures = 4;
constexpr int32_t kMinShapeFeatureSize = 8;
// Largest ngram (MAX_NGRAM) and the first byte of a letter n-gram unit
// (NGRAM_UNIT_PREFIX).
constexpr int32_t kMaxNgram = 8;
constexpr uint8_t kNgramUnitPrefix = 0x04;

// Hash constants.
constexpr uint64_t kGolden = 0x9E3779B97F4A7C15ULL;
constexpr uint64_t kFnvOffset = 0xCBF29CE484222325ULL;
constexpr uint64_t kFnvPrime = 0x100000001B3ULL;

enum class Method : int32_t { kMinHash = 0, kTernary = 1, kHashId = 2 };
constexpr int32_t kNumMethods = 3;
// hashid: vocabulary size F >= kMinHashIdVocab (ids 1 .. F-1, 0 = padding).
constexpr int32_t kMinHashIdVocab = 2;

struct Config {
  Method method = Method::kMinHash;
  int32_t feature_size = 1024;  // F (hashid: vocabulary size V)
  int32_t num_hashes = 64;      // N (MinHash only, validated for both)
  int32_t window = 1;           // w
  int32_t max_tokens = 64;      // S
  int32_t seed = 0;
  int32_t shape = 0;            // 1: last kNumShapeFeatures features are shape flags
  int32_t ngram = 0;            // 0, or K in 2..8: letter n-gram units (MinHash only)
  std::vector<uint64_t> words;  // word dictionary: strictly increasing WordHash values
  int32_t word_len = 0;         // L: most nospace tokens in a word (1..32 with words, else 0)

  // Features of one token before windowing: F, or 1 (the id) for hashid.
  int32_t TokenSize() const { return method == Method::kHashId ? 1 : feature_size; }
  // Features per token after windowing: D = (2w + 1) * TokenSize() (at most 33 * 2^16).
  int64_t OutputSize() const {
    return (2 * static_cast<int64_t>(window) + 1) * TokenSize();
  }
  // Hashed features per token: F, or F - 4 when shape = 1 (valid configs only).
  int32_t HashedSize() const { return feature_size - (shape ? kNumShapeFeatures : 0); }
};

// Checks the limits of ProjectionConfig.__post_init__ (shape 0 or 1, and
// F >= kMinShapeFeatureSize when shape = 1; ngram 0 or 2..8, and 0 unless
// MinHash; hashid: F >= 2, w = 0, shape = 0; at most kMaxWords strictly
// increasing words, word_len in 1..32 with words and 0 without, ngram 0 with
// words). Returns "" when valid, otherwise a message naming the bad field and
// its value.
std::string ValidateConfig(const Config& config);

// Parses and validates an int32 config vector of `size` entries: 7 of version
// 1 (method id 0, 1 or 2, then F, N, w, S, seed; shape = 0), 8 of version 2
// (the same, then shape), 9 of version 3 (then shape, ngram) or 11 + 2K of
// version 4 (then K, L and the K word hashes). Returns "" and
// fills `*config` on success, otherwise an error message (and leaves *config
// alone).
std::string ParseConfig(const int32_t* vec, int64_t size, Config* config);

// ---- Hash primitives (exposed for tests and the sanitizer driver). ----

// MurmurHash3 64-bit finalizer.
uint64_t Fmix64(uint64_t k);
// 64-bit FNV-1a over unsigned bytes, continuing from state `h`.
uint64_t Fnv1a64(const uint8_t* data, size_t len, uint64_t h = kFnvOffset);
// fmix64(fnv1a64(data) ^ seed * kGolden); seed must be >= 0.
uint64_t UnitHash(const uint8_t* data, size_t len, int32_t seed);
// k-th derived hash (k = 0, 1, ...): fmix64(base + (k + 1) * kGolden).
uint64_t DerivedHash(uint64_t base, uint64_t k);
// Dictionary hash of a word's UTF-8 bytes as written: Fmix64(Fnv1a64(data)).
uint64_t WordHash(const uint8_t* data, size_t len);
// The first n derived hashes: out[k] = DerivedHash(base, k) for k < n. Every
// hashing method draws its per-unit hash stream from here.
void DerivedHashes(uint64_t base, size_t n, uint64_t* out);

// ---- Text primitives (exposed for tests). ----

enum CharClass : int { kSpace = 0, kSingle = 1, kNoSpace = 2, kWord = 3 };

// Decodes the code point starting at data[pos] (pos < len). Writes it to *cp
// and returns the number of bytes consumed (1..4). Ill-formed input gives
// U+FFFD covering exactly one byte.
size_t DecodeUtf8(const uint8_t* data, size_t len, size_t pos, uint32_t* cp);
CharClass ClassifyCodePoint(uint32_t cp);
bool IsThaiLaoMark(uint32_t cp);
uint32_t LowerCodePoint(uint32_t cp);
// Shape features: upper case means LowerCodePoint(cp) != cp; decimal digits
// are ASCII 0-9, Devanagari U+0966..U+096F and Thai U+0E50..U+0E59.
bool IsUpperCodePoint(uint32_t cp);
bool IsDecimalDigit(uint32_t cp);

// Projects strings with one fixed, valid config. Holds small scratch buffers
// that are reused across calls (no allocation per token or per string).
class Projector {
 public:
  // `config` must be valid (see ValidateConfig); Run() reports otherwise.
  explicit Projector(const Config& config);

  const Config& config() const { return config_; }

  // Projects one UTF-8 byte string.
  //   features: float32 [S * D], mask: float32 [S], offsets: int32 [S * 2].
  // Every element of the three outputs is written (padding with zeros).
  // Returns false and sets *error (if not null) when a token offset does not
  // fit in int32 (inputs over 2 GiB; the outputs are then all zero) or when
  // the config given to the constructor is invalid (nothing is written: the
  // sizes are unknown).
  bool Run(const uint8_t* data, size_t len, float* features, float* mask,
           int32_t* offsets, std::string* error = nullptr);

 private:
  // The token being built: byte range, class, the UTF-8 bytes of its first
  // kMaxTokenChars lowercased code points framed by 0x02 ... 0x03 and, when
  // shape = 1, its shape flags accumulated over all its code points.
  struct Token {
    size_t start = 0;
    size_t end = 0;
    CharClass cls = kWord;
    int num_chars = 0;                          // stored code points (<= 64)
    uint8_t bytes[1 + 4 * kMaxTokenChars + 1];  // 0x02, chars..., (0x03)
    uint16_t bounds[kMaxTokenChars + 3];        // piece i = bytes[b[i], b[i+1])
    bool first_upper = false;                   // shape flags so far
    bool several = false;                       // >= 2 code points
    bool all_upper = false;
    bool any_digit = false;
    bool all_digit = false;
  };

  void StartToken(size_t start, size_t end, uint32_t cp, CharClass cls);
  void ExtendToken(size_t end, uint32_t cp);
  void AppendChar(size_t end, uint32_t cp);  // end of the byte range, kept code points
  // Shape flags of the finished token_, bit i = feature F - 4 + i.
  uint8_t ShapeBits() const;
  // Hashes the finished token_ as token number `t` into its ring slot.
  void HashToken(int t);
  // ngram > 0: keeps the finished token_ (number `t`) pending with its own
  // Bloom filter indices; AddNgrams mins the n-grams that end at it into the
  // n-gram fingerprints of their tokens.
  void PendToken(int t);
  void AddNgrams(int t);
  // ngram > 0: token `u` has seen every n-gram that contains it; its own
  // indices, those of its n-gram fingerprint (if it has one) and its shape
  // flags move to the ring slot of WriteRow.
  void FinishToken(int u);
  void MinHashFingerprint(uint64_t* fp);  // N-entry MinHash fingerprint of token_
  void FingerprintIndices(const uint64_t* fp, uint32_t* index) const;  // fp % H
  void TernaryWords(uint64_t* words);    // ceil(F / 32) 2-bit feature words of token_
  uint32_t HashId() const;               // hashid: 1 + UnitHash(token_) % (F - 1)
  // Writes output row `row` (blocks of tokens row-w .. row+w, zeros for
  // tokens outside [0, num_tokens)). Rows are written once, in order, so the
  // output is streamed instead of being cleared first and scattered into.
  void WriteRow(int row, int num_tokens, float* features);

  Config config_;
  std::string config_error_;
  uint64_t seed_mix_ = 0;
  int64_t row_size_ = 0;     // D
  int ring_size_ = 1;        // 2w + 1 tokens in flight
  size_t hashed_size_ = 0;   // H = config_.HashedSize(): F, or F - 4 with shape flags
  size_t num_words_ = 0;     // ternary: ceil(H / 32) hash words per token
  Token token_;
  std::vector<uint64_t> fingerprint_;  // [N]
  std::vector<uint64_t> unit_;         // minhash: [N] derived hashes of one unit
  size_t index_stride_ = 0;            // minhash: N, or 2N when ngram > 0
  std::vector<uint32_t> ring_index_;   // minhash: [2w + 1][stride] Bloom filter indices (< H)
  std::vector<uint32_t> ring_count_;   // minhash: [2w + 1] indices used (N, or 2N)
  std::vector<uint64_t> ring_words_;   // ternary: [2w + 1][ceil(H / 32)] packed features
  std::vector<uint8_t> ring_shape_;    // shape = 1: [2w + 1] ShapeBits()
  std::vector<uint32_t> ring_id_;      // hashid: [2w + 1] token ids
  // ngram > 0: the last P = ngram tokens, whose fingerprints can still change.
  int pending_size_ = 1;                // P
  std::vector<uint32_t> pending_index_;  // [P][N] own Bloom filter indices
  std::vector<uint64_t> pending_fp_;     // [P][N] n-gram fingerprint (all ones: none yet)
  std::vector<uint8_t> pending_has_ngram_;  // [P] 1 once an n-gram unit was added
  std::vector<uint8_t> pending_bytes_;  // [P][4 * kMaxTokenChars] lowercased UTF-8, no frame
  std::vector<uint16_t> pending_len_;   // [P] bytes used
  // [P] 1 when the token and the one before it are nospace tokens that touch
  // (no byte between them): an n-gram may span the two.
  std::vector<uint8_t> pending_joins_;
  size_t previous_end_ = 0;        // end byte of the last pended token
  bool previous_nospace_ = false;  // the last pended token is a nospace token
  std::vector<uint8_t> pending_shape_;    // [P] ShapeBits() (shape = 1)
  // words: the run of touching nospace tokens not yet segmented, and the
  // segmentation's scratch (costs, back pointers, piece ends), kMaxRunTokens + 1 each.
  std::vector<size_t> run_start_, run_end_;
  std::vector<uint32_t> seg_cost_;
  std::vector<uint32_t> seg_back_;
  std::vector<uint32_t> seg_piece_;
  // Segments the run's first n tokens into seg_back_ (pieces ending at n,
  // then at seg_back_[n], ...) and returns the number of pieces, whose ends
  // are written to seg_piece_ last piece first.
  size_t SegmentRun(const uint8_t* data, size_t n);
};

// Convenience wrapper: Projector(config).Run(...). Thread-safe.
bool Project(const uint8_t* data, size_t len, const Config& config,
             float* features, float* mask, int32_t* offsets,
             std::string* error = nullptr);

}  // namespace projection
}  // namespace ondevice_nlp

#endif  // ONDEVICE_NLP_CUSTOM_OPS_PROJECTION_H_
