// Implementation of the hashing projections; see projection.h and the
// specification ondevice_nlp/projection_ref.py.

#include "projection.h"

#include <algorithm>
#include <cstring>
#include <limits>

namespace ondevice_nlp {
namespace projection {
namespace {

constexpr uint32_t kReplacement = 0xFFFD;
constexpr uint8_t kTokenBegin = 0x02;
constexpr uint8_t kTokenEnd = 0x03;
constexpr size_t kMaxOffset = static_cast<size_t>(std::numeric_limits<int32_t>::max());

std::string RangeError(const char* name, int64_t lo, int64_t hi, int64_t value) {
  return std::string(name) + " must be an int in [" + std::to_string(lo) + ", " +
         std::to_string(hi) + "], got " + std::to_string(value);
}

// Appends the UTF-8 encoding of `cp` (a scalar value <= 0x10FFFF) at `out`
// and returns the number of bytes written.
int EncodeUtf8(uint32_t cp, uint8_t* out) {
  if (cp < 0x80) {
    out[0] = static_cast<uint8_t>(cp);
    return 1;
  }
  if (cp < 0x800) {
    out[0] = static_cast<uint8_t>(0xC0u | (cp >> 6));
    out[1] = static_cast<uint8_t>(0x80u | (cp & 0x3Fu));
    return 2;
  }
  if (cp < 0x10000) {
    out[0] = static_cast<uint8_t>(0xE0u | (cp >> 12));
    out[1] = static_cast<uint8_t>(0x80u | ((cp >> 6) & 0x3Fu));
    out[2] = static_cast<uint8_t>(0x80u | (cp & 0x3Fu));
    return 3;
  }
  out[0] = static_cast<uint8_t>(0xF0u | (cp >> 18));
  out[1] = static_cast<uint8_t>(0x80u | ((cp >> 12) & 0x3Fu));
  out[2] = static_cast<uint8_t>(0x80u | ((cp >> 6) & 0x3Fu));
  out[3] = static_cast<uint8_t>(0x80u | (cp & 0x3Fu));
  return 4;
}

inline bool InRange(uint32_t cp, uint32_t lo, uint32_t hi) { return cp >= lo && cp <= hi; }

// Ternary decoding of one byte of a derived hash word: four 2-bit fields,
// least significant first, {00: 0, 01: +1, 10: -1, 11: 0}.
struct QuadTable {
  float v[256][4];
};
constexpr QuadTable MakeQuadTable() {
  QuadTable t{};
  for (int byte = 0; byte < 256; ++byte) {
    for (int q = 0; q < 4; ++q) {
      const int bits = (byte >> (2 * q)) & 3;
      t.v[byte][q] = bits == 1 ? 1.0f : bits == 2 ? -1.0f : 0.0f;
    }
  }
  return t;
}
constexpr QuadTable kQuad = MakeQuadTable();

// Expands packed ternary words into `f` floats.
void ExpandTernary(const uint64_t* words, size_t f, float* out) {
  for (size_t i = 0; i < f; i += 4) {
    const uint64_t word = words[i / 32];
    const unsigned byte = static_cast<unsigned>((word >> (2 * (i % 32))) & 0xFFu);
    if (i + 4 <= f) {
      std::memcpy(out + i, kQuad.v[byte], 4 * sizeof(float));
    } else {
      std::memcpy(out + i, kQuad.v[byte], (f - i) * sizeof(float));
    }
  }
}

}  // namespace

// ---------------------------------------------------------------- config ---

std::string ValidateConfig(const Config& c) {
  const int32_t method = static_cast<int32_t>(c.method);
  if (method < 0 || method >= kNumMethods) {
    return "method id must be 0 (minhash), 1 (ternary) or 2 (hashid), got " +
           std::to_string(method);
  }
  struct Field {
    const char* name;
    int64_t lo, hi, value;
  };
  const Field fields[] = {
      {"feature_size", 1, kMaxFeatureSize, c.feature_size},
      {"num_hashes", 1, kMaxNumHashes, c.num_hashes},
      {"window", 0, kMaxWindow, c.window},
      {"max_tokens", 1, kMaxMaxTokens, c.max_tokens},
      {"seed", 0, std::numeric_limits<int32_t>::max(), c.seed},
      {"shape", 0, 1, c.shape},
      {"ngram", 0, kMaxNgram, c.ngram},
  };
  for (const Field& f : fields) {
    if (f.value < f.lo || f.value > f.hi) return RangeError(f.name, f.lo, f.hi, f.value);
  }
  if (c.shape == 1 && c.feature_size < kMinShapeFeatureSize) {
    return "feature_size must be >= " + std::to_string(kMinShapeFeatureSize) +
           " with shape=1, got " + std::to_string(c.feature_size);
  }
  if (c.ngram == 1) return "ngram must be 0 (off) or in [2, 8], got 1";
  if (c.ngram != 0 && c.method != Method::kMinHash) {
    return "ngram must be 0 with method id " + std::to_string(method) + ", got " +
           std::to_string(c.ngram);
  }
  if (c.words.size() > static_cast<size_t>(kMaxWords)) {
    return "words must hold at most " + std::to_string(kMaxWords) + " hashes, got " +
           std::to_string(c.words.size());
  }
  for (size_t i = 1; i < c.words.size(); ++i) {
    if (c.words[i] <= c.words[i - 1]) {
      return "words must be strictly increasing, word " + std::to_string(i) + " is not";
    }
  }
  if (c.words.empty() ? c.word_len != 0 : (c.word_len < 1 || c.word_len > kMaxWordLen)) {
    return RangeError("word_len", c.words.empty() ? 0 : 1, c.words.empty() ? 0 : kMaxWordLen,
                      c.word_len);
  }
  if (!c.words.empty() && c.ngram != 0) {
    return "ngram must be 0 with a word dictionary, got " + std::to_string(c.ngram);
  }
  if (c.method == Method::kHashId) {
    if (c.feature_size < kMinHashIdVocab) {
      return "feature_size (the vocabulary size) must be >= " + std::to_string(kMinHashIdVocab) +
             " with method hashid, got " + std::to_string(c.feature_size);
    }
    if (c.window != 0) return "window must be 0 with method hashid, got " + std::to_string(c.window);
    if (c.shape != 0) return "shape must be 0 with method hashid, got " + std::to_string(c.shape);
  }
  return std::string();
}

std::string ParseConfig(const int32_t* vec, int64_t size, Config* config) {
  const bool v4 = vec != nullptr && size >= kConfigHeaderV4 && vec[0] == kConfigVersionV4;
  if ((size != kConfigSizeV1 && size != kConfigSizeV2 && size != kConfigSizeV3 && !v4) ||
      vec == nullptr) {
    return "bad projection config vector: expected 7 int32 values [version=1, method, F, N, w, "
           "S, seed], 8 [version=2, method, F, N, w, S, seed, shape], 9 [version=3, method, "
           "F, N, w, S, seed, shape, ngram] or 11 + 2K [version=4, ..., ngram, K, L, K word "
           "hashes], got " + std::to_string(size);
  }
  if (v4 && (vec[9] < 0 || vec[9] > kMaxWords ||
             size != kConfigHeaderV4 + 2 * static_cast<int64_t>(vec[9]))) {
    return "bad projection config vector: version 4 with K = " + std::to_string(vec[9]) +
           " word hashes needs 11 + 2K values (K <= " + std::to_string(kMaxWords) + "), got " +
           std::to_string(size);
  }
  const int32_t version = v4                      ? kConfigVersionV4
                          : size == kConfigSizeV1 ? kConfigVersionV1
                          : size == kConfigSizeV2 ? kConfigVersionV2
                                                  : kConfigVersionV3;
  if (vec[0] != version) {
    return "bad projection config vector: version must be " + std::to_string(version) +
           " in a vector of " + std::to_string(size) + " values, got " + std::to_string(vec[0]);
  }
  if (vec[1] < 0 || vec[1] >= kNumMethods) {
    return "bad projection config vector: method id must be 0 (minhash), 1 "
           "(ternary) or 2 (hashid), got " + std::to_string(vec[1]);
  }
  Config c;
  c.method = static_cast<Method>(vec[1]);
  c.feature_size = vec[2];
  c.num_hashes = vec[3];
  c.window = vec[4];
  c.max_tokens = vec[5];
  c.seed = vec[6];
  c.shape = size >= kConfigSizeV2 ? vec[7] : 0;
  c.ngram = size >= kConfigSizeV3 ? vec[8] : 0;
  if (v4) {
    c.word_len = vec[10];
    const size_t k = static_cast<size_t>(vec[9]);
    c.words.resize(k);
    for (size_t i = 0; i < k; ++i) {
      const uint64_t lo = static_cast<uint32_t>(vec[kConfigHeaderV4 + 2 * i]);
      const uint64_t hi = static_cast<uint32_t>(vec[kConfigHeaderV4 + 2 * i + 1]);
      c.words[i] = lo | (hi << 32);
    }
  }
  std::string error = ValidateConfig(c);
  if (!error.empty()) return error;
  *config = c;
  return std::string();
}

// ---------------------------------------------------------------- hashes ---

uint64_t Fmix64(uint64_t k) {
  k ^= k >> 33;
  k *= 0xFF51AFD7ED558CCDULL;
  k ^= k >> 33;
  k *= 0xC4CEB9FE1A85EC53ULL;
  k ^= k >> 33;
  return k;
}

uint64_t Fnv1a64(const uint8_t* data, size_t len, uint64_t h) {
  for (size_t i = 0; i < len; ++i) {
    h ^= static_cast<uint64_t>(data[i]);
    h *= kFnvPrime;
  }
  return h;
}

uint64_t UnitHash(const uint8_t* data, size_t len, int32_t seed) {
  const uint64_t mix = static_cast<uint64_t>(static_cast<uint32_t>(seed)) * kGolden;
  return Fmix64(Fnv1a64(data, len) ^ mix);
}

uint64_t WordHash(const uint8_t* data, size_t len) { return Fmix64(Fnv1a64(data, len)); }

uint64_t DerivedHash(uint64_t base, uint64_t k) { return Fmix64(base + (k + 1) * kGolden); }

void DerivedHashes(uint64_t base, size_t n, uint64_t* out) {
  uint64_t x = base;
  for (size_t k = 0; k < n; ++k) {
    x += kGolden;  // base + (k + 1) * kGolden, wrapping
    out[k] = Fmix64(x);
  }
}

// ------------------------------------------------------------------ text ---

size_t DecodeUtf8(const uint8_t* data, size_t len, size_t pos, uint32_t* cp) {
  const uint32_t b0 = data[pos];
  if (b0 < 0x80) {
    *cp = b0;
    return 1;
  }
  size_t need;
  uint32_t lo = 0x80, hi = 0xBF;
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    need = 1;
  } else if (b0 == 0xE0) {
    need = 2;
    lo = 0xA0;
  } else if ((b0 >= 0xE1 && b0 <= 0xEC) || b0 == 0xEE || b0 == 0xEF) {
    need = 2;
  } else if (b0 == 0xED) {
    need = 2;
    hi = 0x9F;
  } else if (b0 == 0xF0) {
    need = 3;
    lo = 0x90;
  } else if (b0 >= 0xF1 && b0 <= 0xF3) {
    need = 3;
  } else if (b0 == 0xF4) {
    need = 3;
    hi = 0x8F;
  } else {
    *cp = kReplacement;
    return 1;
  }
  // pos < len and need <= 3, so pos + need cannot overflow.
  if (pos + need >= len) {
    *cp = kReplacement;
    return 1;
  }
  const uint32_t b1 = data[pos + 1];
  if (b1 < lo || b1 > hi) {
    *cp = kReplacement;
    return 1;
  }
  for (size_t j = 2; j <= need; ++j) {
    const uint32_t b = data[pos + j];
    if (b < 0x80 || b > 0xBF) {
      *cp = kReplacement;
      return 1;
    }
  }
  uint32_t value = b0 & (need == 1 ? 0x1Fu : need == 2 ? 0x0Fu : 0x07u);
  for (size_t j = 1; j <= need; ++j) value = (value << 6) | (data[pos + j] & 0x3Fu);
  *cp = value;
  return need + 1;
}

CharClass ClassifyCodePoint(uint32_t cp) {
  if (cp <= 0x20 || InRange(cp, 0x7F, 0xA0) || cp == 0x1680 || InRange(cp, 0x2000, 0x200B) ||
      cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000 ||
      cp == 0xFEFF) {
    return kSpace;
  }
  if (cp < 0x80) {
    const bool alnum = InRange(cp, 0x30, 0x39) || InRange(cp, 0x41, 0x5A) || InRange(cp, 0x61, 0x7A);
    return alnum ? kWord : kSingle;
  }
  if (cp == 0xA1 || cp == 0xA7 || cp == 0xAB || cp == 0xB6 || cp == 0xB7 || cp == 0xBB ||
      cp == 0xBF || cp == 0x0964 || cp == 0x0965 || InRange(cp, 0x2010, 0x2027) ||
      InRange(cp, 0x2030, 0x205E) || InRange(cp, 0x2190, 0x2BFF) || InRange(cp, 0x3001, 0x3003) ||
      InRange(cp, 0x1F000, 0x1FAFF)) {
    return kSingle;
  }
  if (InRange(cp, 0x0E00, 0x0EFF) || InRange(cp, 0x1000, 0x109F) || InRange(cp, 0x1780, 0x17FF) ||
      InRange(cp, 0x2E80, 0x2FFF) || InRange(cp, 0x3004, 0x31FF) || InRange(cp, 0x3400, 0x4DBF) ||
      InRange(cp, 0x4E00, 0x9FFF) || InRange(cp, 0xF900, 0xFAFF) || InRange(cp, 0x20000, 0x2FFFF)) {
    return kNoSpace;
  }
  return kWord;
}

bool IsThaiLaoMark(uint32_t cp) {
  return cp == 0x0E31 || InRange(cp, 0x0E34, 0x0E3A) || InRange(cp, 0x0E47, 0x0E4E) ||
         cp == 0x0EB1 || InRange(cp, 0x0EB4, 0x0EBC) || InRange(cp, 0x0EC8, 0x0ECE);
}

uint32_t LowerCodePoint(uint32_t cp) {
  if (InRange(cp, 0x41, 0x5A)) return cp + 0x20;
  if (cp < 0xC0) return cp;
  if (InRange(cp, 0xC0, 0xDE) && cp != 0xD7) return cp + 0x20;
  if (cp == 0x130) return 0x69;  // capital I with dot above -> i (U+0131 is already lower)
  if (InRange(cp, 0x100, 0x137) || InRange(cp, 0x14A, 0x177)) return cp | 1u;
  if (InRange(cp, 0x139, 0x148) || InRange(cp, 0x179, 0x17E)) return (cp & 1u) ? cp + 1 : cp;
  if (cp == 0x178) return 0xFF;
  if (InRange(cp, 0x391, 0x3A9) && cp != 0x3A2) return cp + 0x20;
  if (InRange(cp, 0x410, 0x42F)) return cp + 0x20;
  if (InRange(cp, 0x400, 0x40F)) return cp + 0x50;
  return cp;
}

bool IsUpperCodePoint(uint32_t cp) { return LowerCodePoint(cp) != cp; }

bool IsDecimalDigit(uint32_t cp) {
  return InRange(cp, 0x30, 0x39) || InRange(cp, 0x0966, 0x096F) || InRange(cp, 0x0E50, 0x0E59);
}

// ------------------------------------------------------------- projector ---

Projector::Projector(const Config& config) : config_(config) {
  config_error_ = ValidateConfig(config_);
  if (!config_error_.empty()) return;
  seed_mix_ = static_cast<uint64_t>(static_cast<uint32_t>(config_.seed)) * kGolden;
  row_size_ = config_.OutputSize();
  ring_size_ = 2 * config_.window + 1;
  hashed_size_ = static_cast<size_t>(config_.HashedSize());
  num_words_ = (hashed_size_ + 31) / 32;
  const size_t ring = static_cast<size_t>(ring_size_);
  if (config_.method == Method::kMinHash) {
    fingerprint_.resize(static_cast<size_t>(config_.num_hashes));
    unit_.resize(static_cast<size_t>(config_.num_hashes));
    // ngram > 0: a token's own N indices, then N of its n-gram fingerprint.
    index_stride_ = static_cast<size_t>(config_.num_hashes) * (config_.ngram > 0 ? 2 : 1);
    ring_index_.resize(ring * index_stride_);
    ring_count_.assign(ring, static_cast<uint32_t>(config_.num_hashes));
  } else if (config_.method == Method::kHashId) {
    ring_id_.resize(ring);
  } else {
    ring_words_.resize(ring * num_words_);
  }
  if (config_.shape) ring_shape_.resize(ring);
  if (!config_.words.empty()) {
    const size_t n = static_cast<size_t>(kMaxRunTokens) + 1;
    run_start_.resize(n);
    run_end_.resize(n);
    seg_cost_.resize(n);
    seg_back_.resize(n);
    seg_piece_.resize(n);
  }
  if (config_.ngram > 0) {
    pending_size_ = config_.ngram;
    const size_t p = static_cast<size_t>(pending_size_);
    pending_fp_.resize(p * static_cast<size_t>(config_.num_hashes));
    pending_index_.resize(p * static_cast<size_t>(config_.num_hashes));
    pending_has_ngram_.resize(p);
    pending_bytes_.resize(p * 4 * kMaxTokenChars);
    pending_len_.resize(p);
    pending_joins_.resize(p);
    pending_shape_.resize(p);
  }
}

void Projector::StartToken(size_t start, size_t end, uint32_t cp, CharClass cls) {
  token_.start = start;
  token_.cls = cls;
  token_.num_chars = 0;
  token_.bytes[0] = kTokenBegin;
  token_.bounds[0] = 0;
  token_.bounds[1] = 1;
  if (config_.shape) {
    const bool upper = IsUpperCodePoint(cp);
    const bool digit = IsDecimalDigit(cp);
    token_.first_upper = upper;
    token_.several = false;
    token_.all_upper = upper;
    token_.any_digit = digit;
    token_.all_digit = digit;
  }
  AppendChar(end, cp);
}

void Projector::ExtendToken(size_t end, uint32_t cp) {
  if (config_.shape) {  // over every code point, also beyond kMaxTokenChars
    const bool digit = IsDecimalDigit(cp);
    token_.several = true;
    token_.all_upper = token_.all_upper && IsUpperCodePoint(cp);
    token_.any_digit = token_.any_digit || digit;
    token_.all_digit = token_.all_digit && digit;
  }
  AppendChar(end, cp);
}

uint8_t Projector::ShapeBits() const {
  return static_cast<uint8_t>((token_.first_upper ? 1u : 0u) |
                              (token_.several && token_.all_upper ? 2u : 0u) |
                              (token_.any_digit ? 4u : 0u) | (token_.all_digit ? 8u : 0u));
}

void Projector::AppendChar(size_t end, uint32_t cp) {
  token_.end = end;
  if (token_.num_chars >= kMaxTokenChars) return;  // cut to MAX_TOKEN_CHARS
  const int n = token_.num_chars;
  const uint16_t at = token_.bounds[n + 1];
  const int written = EncodeUtf8(LowerCodePoint(cp), token_.bytes + at);
  token_.bounds[n + 2] = static_cast<uint16_t>(at + written);
  token_.num_chars = n + 1;
}

void Projector::MinHashFingerprint(uint64_t* fp) {
  // Close the frame: pieces are 0x02, the code points, 0x03.
  const int n = token_.num_chars;  // >= 1
  const uint16_t at = token_.bounds[n + 1];
  token_.bytes[at] = kTokenEnd;
  token_.bounds[n + 2] = static_cast<uint16_t>(at + 1);

  const size_t num_hashes = fingerprint_.size();
  std::fill(fp, fp + num_hashes, std::numeric_limits<uint64_t>::max());
  // One unit per trigram of pieces: n + 2 pieces give n trigrams.
  for (int u = 0; u < n; ++u) {
    const uint8_t* begin = token_.bytes + token_.bounds[u];
    const size_t len = static_cast<size_t>(token_.bounds[u + 3] - token_.bounds[u]);
    const uint64_t* unit = unit_.data();
    DerivedHashes(Fmix64(Fnv1a64(begin, len) ^ seed_mix_), num_hashes, unit_.data());
    for (size_t k = 0; k < num_hashes; ++k) fp[k] = unit[k] < fp[k] ? unit[k] : fp[k];
  }
}

void Projector::FingerprintIndices(const uint64_t* fp, uint32_t* index) const {
  const size_t num_hashes = fingerprint_.size();
  const uint64_t h = static_cast<uint64_t>(hashed_size_);  // F, or F - 4 before the shape flags
  for (size_t k = 0; k < num_hashes; ++k) index[k] = static_cast<uint32_t>(fp[k] % h);
}

void Projector::TernaryWords(uint64_t* words) {
  const int n = token_.num_chars;
  const uint8_t* begin = token_.bytes + 1;  // skip the 0x02 frame byte
  const size_t len = static_cast<size_t>(token_.bounds[n + 1] - 1);
  DerivedHashes(Fmix64(Fnv1a64(begin, len) ^ seed_mix_), num_words_, words);
}

uint32_t Projector::HashId() const {
  // The token's lowercased bytes without the 0x02 frame, hashed as by ternary.
  const uint8_t* begin = token_.bytes + 1;
  const size_t len = static_cast<size_t>(token_.bounds[token_.num_chars + 1] - 1);
  const uint64_t vocab = static_cast<uint64_t>(config_.feature_size);  // >= 2
  return static_cast<uint32_t>(1 + Fmix64(Fnv1a64(begin, len) ^ seed_mix_) % (vocab - 1));
}

void Projector::HashToken(int t) {
  const size_t slot = static_cast<size_t>(t % ring_size_);
  if (config_.method == Method::kMinHash) {
    MinHashFingerprint(fingerprint_.data());
    FingerprintIndices(fingerprint_.data(), ring_index_.data() + slot * index_stride_);
  } else if (config_.method == Method::kHashId) {
    ring_id_[slot] = HashId();
  } else {
    TernaryWords(ring_words_.data() + slot * num_words_);
  }
  if (config_.shape) ring_shape_[slot] = ShapeBits();
}

void Projector::PendToken(int t) {
  const size_t p = static_cast<size_t>(t % pending_size_);
  const size_t num_hashes = fingerprint_.size();
  MinHashFingerprint(fingerprint_.data());
  FingerprintIndices(fingerprint_.data(), pending_index_.data() + p * num_hashes);
  uint64_t* ngram_fp = pending_fp_.data() + p * num_hashes;  // no n-gram unit yet
  std::fill(ngram_fp, ngram_fp + num_hashes, std::numeric_limits<uint64_t>::max());
  pending_has_ngram_[p] = 0;
  // The lowercased code points without the 0x02 frame byte (at most 4 * kMaxTokenChars).
  const uint16_t len = static_cast<uint16_t>(token_.bounds[token_.num_chars + 1] - 1);
  std::memcpy(pending_bytes_.data() + p * 4 * kMaxTokenChars, token_.bytes + 1, len);
  pending_len_[p] = len;
  const bool nospace = token_.cls == kNoSpace;
  pending_joins_[p] =
      (t > 0 && nospace && previous_nospace_ && previous_end_ == token_.start) ? 1 : 0;
  previous_end_ = token_.end;
  previous_nospace_ = nospace;
  if (config_.shape) pending_shape_[p] = ShapeBits();
}

void Projector::AddNgrams(int t) {
  const size_t num_hashes = fingerprint_.size();
  const size_t ps = static_cast<size_t>(pending_size_);
  for (int n = 2; n <= config_.ngram; ++n) {
    const int first = t - n + 1;
    if (first < 0) break;
    // The stretch first..t stays inside a run of touching nospace tokens when
    // its new front pair does (the pairs after it were checked for n - 1).
    if (!pending_joins_[static_cast<size_t>(first + 1) % ps]) break;
    uint64_t h = Fnv1a64(&kNgramUnitPrefix, 1);
    for (int i = first; i <= t; ++i) {
      const size_t q = static_cast<size_t>(i) % ps;
      h = Fnv1a64(pending_bytes_.data() + q * 4 * kMaxTokenChars, pending_len_[q], h);
    }
    const uint64_t* unit = unit_.data();
    DerivedHashes(Fmix64(h ^ seed_mix_), num_hashes, unit_.data());
    for (int i = first; i <= t; ++i) {
      const size_t q = static_cast<size_t>(i) % ps;
      uint64_t* fp = pending_fp_.data() + q * num_hashes;
      for (size_t k = 0; k < num_hashes; ++k) fp[k] = unit[k] < fp[k] ? unit[k] : fp[k];
      pending_has_ngram_[q] = 1;
    }
  }
}

void Projector::FinishToken(int u) {
  const size_t p = static_cast<size_t>(u % pending_size_);
  const size_t slot = static_cast<size_t>(u % ring_size_);
  const size_t num_hashes = fingerprint_.size();
  uint32_t* index = ring_index_.data() + slot * index_stride_;
  std::memcpy(index, pending_index_.data() + p * num_hashes, num_hashes * sizeof(uint32_t));
  ring_count_[slot] = static_cast<uint32_t>(num_hashes);
  if (pending_has_ngram_[p]) {
    FingerprintIndices(pending_fp_.data() + p * num_hashes, index + num_hashes);
    ring_count_[slot] = static_cast<uint32_t>(2 * num_hashes);
  }
  if (config_.shape) ring_shape_[slot] = pending_shape_[p];
}

void Projector::WriteRow(int row, int num_tokens, float* features) {
  const int w = config_.window;
  const size_t f = static_cast<size_t>(config_.TokenSize());
  float* block = features + static_cast<size_t>(row) * static_cast<size_t>(row_size_);
  for (int j = 0; j < ring_size_; ++j, block += f) {
    const int t = row - w + j;  // token in block j
    if (t < 0 || t >= num_tokens) {
      std::memset(block, 0, f * sizeof(float));
      continue;
    }
    const size_t slot = static_cast<size_t>(t % ring_size_);
    if (config_.method == Method::kMinHash) {
      std::memset(block, 0, hashed_size_ * sizeof(float));
      const uint32_t* index = ring_index_.data() + slot * index_stride_;
      const size_t count = ring_count_[slot];  // N, or 2N with an n-gram fingerprint
      for (size_t k = 0; k < count; ++k) block[index[k]] += 1.0f;
    } else if (config_.method == Method::kHashId) {
      block[0] = static_cast<float>(ring_id_[slot]);  // < 2^16: exact in float32
    } else {
      ExpandTernary(ring_words_.data() + slot * num_words_, hashed_size_, block);
    }
    if (config_.shape) {  // the last kNumShapeFeatures features
      const unsigned bits = ring_shape_[slot];
      for (size_t i = 0; i < static_cast<size_t>(kNumShapeFeatures); ++i) {
        block[hashed_size_ + i] = ((bits >> i) & 1u) ? 1.0f : 0.0f;
      }
    }
  }
}

size_t Projector::SegmentRun(const uint8_t* data, size_t n) {
  // Cost of a split = outside * kPieceScale + pieces (pieces <= n <= 256 <
  // kPieceScale, so this orders as (outside, pieces) in the reference).
  constexpr uint32_t kPieceScale = 1024;
  constexpr uint32_t kUnset = std::numeric_limits<uint32_t>::max();
  const std::vector<uint64_t>& words = config_.words;
  const size_t word_len = static_cast<size_t>(config_.word_len);
  seg_cost_[0] = 0;
  for (size_t j = 1; j <= n; ++j) seg_cost_[j] = kUnset;
  auto relax = [&](size_t j, uint32_t cost, size_t i) {
    if (cost < seg_cost_[j]) {  // strictly lower: on a tie the earliest i stays
      seg_cost_[j] = cost;
      seg_back_[j] = static_cast<uint32_t>(i);
    }
  };
  for (size_t i = 0; i < n; ++i) {
    const uint32_t base = seg_cost_[i];
    relax(i + 1, base + kPieceScale + 1, i);  // one token outside every word
    uint64_t h = kFnvOffset;  // FNV-1a over the tokens i .. j-1, which touch
    const size_t last = std::min(n, i + word_len);
    for (size_t j = i + 1; j <= last; ++j) {
      h = Fnv1a64(data + run_start_[j - 1], run_end_[j - 1] - run_start_[j - 1], h);
      if (std::binary_search(words.begin(), words.end(), Fmix64(h))) relax(j, base + 1, i);
    }
  }
  size_t count = 0;
  for (size_t j = n; j > 0; j = seg_back_[j]) seg_piece_[count++] = static_cast<uint32_t>(j);
  return count;
}

bool Projector::Run(const uint8_t* data, size_t len, float* features, float* mask,
                    int32_t* offsets, std::string* error) {
  if (!config_error_.empty()) {
    if (error) *error = config_error_;
    return false;
  }
  const int s = config_.max_tokens;
  const int w = config_.window;
  const size_t d = static_cast<size_t>(row_size_);
  std::memset(mask, 0, static_cast<size_t>(s) * sizeof(float));
  std::memset(offsets, 0, static_cast<size_t>(s) * 2 * sizeof(int32_t));
  const char* failure = nullptr;
  if (len > 0 && data == nullptr) failure = "null input data";

  // Tokens are hashed as they close; row r is written as soon as token r + w
  // is known (or the text ended). With ngram = K, token t waits for token
  // t + K - 1 (lag), the last token of the last n-gram that can contain it.
  const int lag = config_.ngram > 0 ? config_.ngram - 1 : 0;
  int num_tokens = 0;
  bool open = false;  // token_ holds an unfinished token
  auto emit = [&]() -> bool {
    if (token_.end > kMaxOffset) {
      failure = "input string too long: token offsets must fit in int32";
      return false;
    }
    const int t = num_tokens++;
    offsets[2 * static_cast<size_t>(t)] = static_cast<int32_t>(token_.start);
    offsets[2 * static_cast<size_t>(t) + 1] = static_cast<int32_t>(token_.end);
    mask[t] = 1.0f;
    if (lag == 0) {
      HashToken(t);
      if (t - w >= 0) WriteRow(t - w, num_tokens, features);
      return true;
    }
    PendToken(t);
    AddNgrams(t);
    const int u = t - lag;  // no n-gram that ends later contains token u
    if (u >= 0) {
      FinishToken(u);
      if (u - w >= 0) WriteRow(u - w, num_tokens, features);
    }
    return true;
  };
  // With a word dictionary, nospace tokens wait in the run buffer until the
  // run ends (a space, a token of another class, a gap, kMaxRunTokens tokens
  // or the end of the text); then its pieces are emitted as tokens.
  const bool segment = !config_.words.empty();
  size_t run_len = 0;
  auto flush = [&]() -> bool {
    const size_t n = run_len;
    run_len = 0;
    if (n == 0) return true;
    for (size_t k = SegmentRun(data, n); k-- > 0 && num_tokens < s;) {
      const size_t j = seg_piece_[k];
      const size_t i = seg_back_[j];
      size_t at = run_start_[i];
      uint32_t cp;
      size_t next = at + DecodeUtf8(data, len, at, &cp);
      StartToken(at, next, cp, kNoSpace);
      for (at = next; at < run_end_[j - 1]; at = next) {
        next = at + DecodeUtf8(data, len, at, &cp);
        ExtendToken(next, cp);
      }
      if (!emit()) return false;
    }
    return true;
  };
  // token_ is complete: emit it, or hold it in the run buffer.
  auto finish = [&]() -> bool {
    if (!segment) return emit();
    if (token_.cls == kNoSpace) {
      const size_t start = token_.start;  // flush() builds the pieces in token_
      const size_t end = token_.end;
      if (run_len > 0 && run_end_[run_len - 1] != start) {
        if (!flush()) return false;
        if (num_tokens == s) return true;
      }
      run_start_[run_len] = start;
      run_end_[run_len] = end;
      if (++run_len == static_cast<size_t>(kMaxRunTokens)) return flush();
      return true;
    }
    if (run_len > 0) {
      const Token held = token_;  // flush() builds the pieces in token_
      if (!flush()) return false;
      if (num_tokens == s) return true;
      token_ = held;
    }
    return emit();
  };
  size_t pos = 0;
  while (failure == nullptr && pos < len) {
    uint32_t cp;
    const size_t start = pos;
    pos += DecodeUtf8(data, len, pos, &cp);
    const CharClass cls = ClassifyCodePoint(cp);
    if (open && cls == kWord && token_.cls == kWord) {
      ExtendToken(pos, cp);
      continue;
    }
    if (open && token_.cls == kNoSpace && IsThaiLaoMark(cp)) {
      ExtendToken(pos, cp);
      continue;
    }
    if (open) {
      open = false;
      if (!finish() || num_tokens == s) break;
    }
    if (cls == kSpace) continue;
    StartToken(start, pos, cp, cls);
    open = true;
  }
  if (failure == nullptr && open && num_tokens < s) finish();
  if (failure == nullptr && num_tokens < s) flush();
  if (failure != nullptr) {
    if (error) *error = failure;
    std::memset(features, 0, static_cast<size_t>(s) * d * sizeof(float));
    std::memset(mask, 0, static_cast<size_t>(s) * sizeof(float));
    std::memset(offsets, 0, static_cast<size_t>(s) * 2 * sizeof(int32_t));
    return false;
  }
  // The last `lag` tokens, then the last w token rows, then padding rows.
  for (int u = std::max(0, num_tokens - lag); lag > 0 && u < num_tokens; ++u) {
    FinishToken(u);
    if (u - w >= 0) WriteRow(u - w, num_tokens, features);
  }
  for (int row = std::max(0, num_tokens - w); row < num_tokens; ++row) {
    WriteRow(row, num_tokens, features);
  }
  std::memset(features + static_cast<size_t>(num_tokens) * d, 0,
              static_cast<size_t>(s - num_tokens) * d * sizeof(float));
  return true;
}

bool Project(const uint8_t* data, size_t len, const Config& config, float* features,
             float* mask, int32_t* offsets, std::string* error) {
  std::string config_error = ValidateConfig(config);
  if (!config_error.empty()) {
    // Outputs are sized by the config; without a valid one nothing is written.
    if (error) *error = config_error;
    return false;
  }
  Projector projector(config);
  return projector.Run(data, len, features, mask, offsets, error);
}

}  // namespace projection
}  // namespace ondevice_nlp
