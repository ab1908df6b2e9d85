// Standalone driver for the OndeviceProjection TFLite kernel and core, built
// with ASan + UBSan by tests/test_projection.py (tools/build_ops.py --sanitize
// --target driver). It fabricates TfLiteContext / TfLiteNode / TfLiteTensor
// from our own tflite_abi.h, plays the interpreter's part (Prepare, arena
// allocation, Invoke, ResizeTensor, ReportError) and feeds nasty inputs.
//
// Usage:
//   sanitize_driver selftest
//       Runs the built-in corpus (random bytes, invalid UTF-8, 1 MB strings,
//       bad configs, malformed string buffers, wrong tensor types). Exit 0
//       when every expectation holds.
//   sanitize_driver checksum FILE
//       FILE = config vector (int32[7] of version 1, int32[8] when its first
//       value is 2, int32[9] when it is 3) + a TFLite string buffer. Runs the kernel and
//       prints "features=<u64> mask=<u64> offsets=<u64>", each the sum over
//       the output's little-endian uint32 words w_i of w_i * (2i + 1) mod 2^64.

#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <limits>
#include <string>
#include <vector>

#include "../projection.h"
#include "../tflite_abi.h"

extern "C" const TfLiteRegistration* OndeviceNlp_ProjectionRegistration();
extern "C" void OndeviceNlp_RegisterProjection(void* resolver);

namespace proj = ::ondevice_nlp::projection;

// ---- Stand-in for the resolver method exported by libtensorflow_cc.so.2 ----

namespace {
const char* g_added_name = nullptr;
const TfLiteRegistration* g_added_registration = nullptr;
int g_added_version = 0;
int g_add_calls = 0;
}  // namespace

void tflite::MutableOpResolver::AddCustom(const char* name, const TfLiteRegistration* registration,
                                          int version) {
  g_added_name = name;
  g_added_registration = registration;
  g_added_version = version;
  ++g_add_calls;
}

namespace {

int g_failures = 0;
int g_checks = 0;

void Expect(bool condition, const std::string& what) {
  ++g_checks;
  if (!condition) {
    ++g_failures;
    std::fprintf(stderr, "EXPECTATION FAILED: %s\n", what.c_str());
  }
}

// ---- A tiny fake interpreter ----

size_t ElementSize(TfLiteType type) {
  switch (type) {
    case kTfLiteFloat32:
    case kTfLiteInt32:
      return 4;
    default:
      return 1;
  }
}

TfLiteIntArray* NewIntArray(const std::vector<int>& values) {
  auto* a = static_cast<TfLiteIntArray*>(std::malloc(sizeof(int) * (1 + values.size())));
  a->size = static_cast<int>(values.size());
  for (size_t i = 0; i < values.size(); ++i) a->data[i] = values[i];
  return a;
}

struct FakeInterpreter {
  std::vector<TfLiteTensor> tensors;
  std::vector<bool> owns_data;  // data malloc'ed by us (freed in the destructor)
  TfLiteContext context;
  TfLiteNode node;
  std::string last_error;
  int resize_calls = 0;

  FakeInterpreter() {
    std::memset(&context, 0, sizeof(context));
    std::memset(&node, 0, sizeof(node));
  }
  ~FakeInterpreter() {
    for (size_t i = 0; i < tensors.size(); ++i) {
      std::free(tensors[i].dims);
      if (owns_data[i]) std::free(tensors[i].data.raw);
    }
    std::free(node.inputs);
    std::free(node.outputs);
  }
  FakeInterpreter(const FakeInterpreter&) = delete;
  FakeInterpreter& operator=(const FakeInterpreter&) = delete;

  int AddTensor(TfLiteType type, const std::vector<int>& dims, TfLiteAllocationType alloc) {
    TfLiteTensor t;
    std::memset(&t, 0, sizeof(t));
    t.type = type;
    t.dims = NewIntArray(dims);
    t.allocation_type = alloc;
    t.buffer_handle = -1;
    tensors.push_back(t);
    owns_data.push_back(false);
    return static_cast<int>(tensors.size()) - 1;
  }

  // Copies `bytes` into a fresh malloc'ed buffer owned by tensor `i`.
  void SetData(int i, const void* data, size_t bytes) {
    if (owns_data[i]) std::free(tensors[i].data.raw);
    void* copy = std::malloc(bytes == 0 ? 1 : bytes);
    if (bytes > 0) std::memcpy(copy, data, bytes);
    tensors[i].data.raw = static_cast<char*>(copy);
    tensors[i].bytes = bytes;
    owns_data[i] = true;
  }

  void Wire(const std::vector<int>& inputs, const std::vector<int>& outputs) {
    std::free(node.inputs);
    std::free(node.outputs);
    node.inputs = NewIntArray(inputs);
    node.outputs = NewIntArray(outputs);
    context.tensors = tensors.data();
    context.tensors_size = tensors.size();
    context.impl_ = this;
    context.ResizeTensor = &ResizeTensorImpl;
    context.ReportError = &ReportErrorImpl;
    context.recommended_num_threads = 1;
  }

  static FakeInterpreter* Self(TfLiteContext* c) { return static_cast<FakeInterpreter*>(c->impl_); }

  static TfLiteStatus ResizeTensorImpl(TfLiteContext* c, TfLiteTensor* tensor, TfLiteIntArray* dims) {
    FakeInterpreter* self = Self(c);
    ++self->resize_calls;
    const size_t index = static_cast<size_t>(tensor - self->tensors.data());
    if (index >= self->tensors.size() || dims == nullptr) {
      std::free(dims);
      return kTfLiteError;
    }
    uint64_t elements = 1;
    for (int i = 0; i < dims->size; ++i) {
      if (dims->data[i] < 0 ||
          __builtin_mul_overflow(elements, static_cast<uint64_t>(dims->data[i]), &elements)) {
        std::free(dims);
        return kTfLiteError;
      }
    }
    std::free(tensor->dims);
    tensor->dims = dims;
    tensor->bytes = static_cast<size_t>(elements) * ElementSize(tensor->type);
    if (tensor->allocation_type == kTfLiteDynamic) {
      if (self->owns_data[index]) std::free(tensor->data.raw);
      // Fill with garbage: the kernel must write every output byte.
      void* data = std::malloc(tensor->bytes == 0 ? 1 : tensor->bytes);
      std::memset(data, 0xA5, tensor->bytes);
      tensor->data.raw = static_cast<char*>(data);
      self->owns_data[index] = true;
    }
    return kTfLiteOk;
  }

  static void ReportErrorImpl(TfLiteContext* c, const char* format, ...) {
    char buffer[1024];
    va_list args;
    va_start(args, format);
    std::vsnprintf(buffer, sizeof(buffer), format, args);
    va_end(args);
    Self(c)->last_error = buffer;
  }

  // What the interpreter does between Prepare and Invoke for arena outputs.
  void AllocateArenaOutputs() {
    for (int k = 0; k < node.outputs->size; ++k) {
      const int i = node.outputs->data[k];
      if (i < 0 || static_cast<size_t>(i) >= tensors.size()) continue;
      TfLiteTensor& t = tensors[i];
      if (t.allocation_type != kTfLiteArenaRw) continue;
      if (owns_data[i]) std::free(t.data.raw);
      void* data = std::malloc(t.bytes == 0 ? 1 : t.bytes);
      std::memset(data, 0x5A, t.bytes);
      t.data.raw = static_cast<char*>(data);
      owns_data[i] = true;
    }
  }

  TfLiteStatus Run(const TfLiteRegistration* reg) {
    last_error.clear();
    void* user_data = reg->init(&context, nullptr, 0);
    node.user_data = user_data;
    TfLiteStatus status = reg->prepare(&context, &node);
    if (status == kTfLiteOk) {
      AllocateArenaOutputs();
      status = reg->invoke(&context, &node);
      // A second invocation reuses the node's cached state.
      if (status == kTfLiteOk) status = reg->invoke(&context, &node);
    }
    reg->free(&context, user_data);
    return status;
  }
};

// TFLite string buffer: int32 count, int32 offsets[count + 1], bytes.
std::vector<uint8_t> StringBuffer(const std::vector<std::string>& strings) {
  const size_t header = 4 * (strings.size() + 2);
  size_t total = header;
  for (const auto& s : strings) total += s.size();
  std::vector<uint8_t> out(total);
  const int32_t count = static_cast<int32_t>(strings.size());
  std::memcpy(out.data(), &count, 4);
  int32_t offset = static_cast<int32_t>(header);
  for (size_t i = 0; i < strings.size(); ++i) {
    std::memcpy(out.data() + 4 * (i + 1), &offset, 4);
    std::memcpy(out.data() + offset, strings[i].data(), strings[i].size());
    offset += static_cast<int32_t>(strings[i].size());
  }
  std::memcpy(out.data() + 4 * (strings.size() + 1), &offset, 4);
  return out;
}

struct KernelResult {
  TfLiteStatus status = kTfLiteError;
  std::string error;
  std::vector<float> features, mask;
  std::vector<int32_t> offsets;
};

// Runs the kernel on a well-formed string buffer with `config` (constant or
// not) and returns copies of the outputs.
KernelResult RunKernel(const std::vector<int32_t>& config, const std::vector<uint8_t>& buffer,
                       int batch, bool constant_config) {
  FakeInterpreter fi;
  const int text = fi.AddTensor(kTfLiteString, {batch}, kTfLiteDynamic);
  fi.SetData(text, buffer.data(), buffer.size());
  const int cfg = fi.AddTensor(kTfLiteInt32, {static_cast<int>(config.size())},
                               constant_config ? kTfLiteMmapRo : kTfLiteArenaRw);
  fi.SetData(cfg, config.data(), config.size() * sizeof(int32_t));
  const int f = fi.AddTensor(kTfLiteFloat32, {}, kTfLiteArenaRw);
  const int m = fi.AddTensor(kTfLiteFloat32, {}, kTfLiteArenaRw);
  const int o = fi.AddTensor(kTfLiteInt32, {}, kTfLiteArenaRw);
  fi.Wire({text, cfg}, {f, m, o});
  KernelResult r;
  r.status = fi.Run(OndeviceNlp_ProjectionRegistration());
  r.error = fi.last_error;
  if (r.status == kTfLiteOk) {
    r.features.assign(fi.tensors[f].data.f, fi.tensors[f].data.f + fi.tensors[f].bytes / 4);
    r.mask.assign(fi.tensors[m].data.f, fi.tensors[m].data.f + fi.tensors[m].bytes / 4);
    r.offsets.assign(fi.tensors[o].data.i32, fi.tensors[o].data.i32 + fi.tensors[o].bytes / 4);
  }
  return r;
}

uint64_t Checksum(const void* data, size_t bytes) {
  const uint8_t* p = static_cast<const uint8_t*>(data);
  uint64_t sum = 0;
  for (size_t i = 0; i + 4 <= bytes; i += 4) {
    const uint64_t word = static_cast<uint64_t>(p[i]) | (static_cast<uint64_t>(p[i + 1]) << 8) |
                          (static_cast<uint64_t>(p[i + 2]) << 16) |
                          (static_cast<uint64_t>(p[i + 3]) << 24);
    sum += word * (2 * static_cast<uint64_t>(i / 4) + 1);
  }
  return sum;
}

// ---- Corpus ----

struct Rng {
  uint64_t state;
  uint64_t Next() {
    state += 0x9E3779B97F4A7C15ULL;
    return proj::Fmix64(state);
  }
  size_t Below(size_t n) { return n == 0 ? 0 : static_cast<size_t>(Next() % n); }
};

void AppendUtf8(std::string* s, uint32_t cp) {
  if (cp < 0x80) {
    s->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    s->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    s->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    s->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    s->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    s->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    s->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    s->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    s->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    s->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

std::string RandomBytes(Rng* rng, size_t n) {
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(rng->Next() & 0xFF);
  return s;
}

std::string RandomText(Rng* rng, size_t n_cps) {
  static const uint32_t kRanges[][2] = {
      {0x20, 0x7E},     {0x00, 0x20},     {0xC0, 0x17F},    {0x391, 0x3C9},   {0x400, 0x45F},
      {0x900, 0x97F},   {0x0E00, 0x0E7F}, {0x0E80, 0x0EFF}, {0x0590, 0x06FF}, {0x300, 0x36F},
      {0x2000, 0x206F}, {0x3040, 0x30FF}, {0x4E00, 0x4E80}, {0x1F300, 0x1F6FF}, {0x200D, 0x200D},
      {0xFE00, 0xFE0F}, {0x1000, 0x109F}, {0x1780, 0x17FF}, {0xFFF0, 0xFFFF}, {0x10000, 0x10FFFF},
  };
  const size_t num_ranges = sizeof(kRanges) / sizeof(kRanges[0]);
  std::string s;
  for (size_t i = 0; i < n_cps; ++i) {
    const auto& r = kRanges[rng->Below(num_ranges)];
    uint32_t cp = r[0] + static_cast<uint32_t>(rng->Below(r[1] - r[0] + 1));
    if (cp >= 0xD800 && cp <= 0xDFFF) cp = 0xFFFD;
    AppendUtf8(&s, cp);
    if (rng->Below(8) == 0) s.push_back(' ');
  }
  return s;
}

std::vector<std::string> NastyStrings() {
  Rng rng{12345};
  std::vector<std::string> out = {
      "",
      " ",
      std::string(1, '\0'),
      std::string("a\0b", 3),
      "\t\n \r\x0b\x0c",
      "Hello, World! How are you?",
      "set an alarm for 7am tomorrow",
      "\xC0\x80 \xED\xA0\x80 \xF5\x80\x80\x80 \xFF\xFE \x80\xBF",
      "trunc\xE2\x82",
      "\xF0\x9F\x98",
      "\xE0\x9F\x80",  // overlong 3-byte
      "\xF4\x90\x80\x80",  // beyond U+10FFFF
      "\xF0\x9F\x91\xA9\xE2\x80\x8D\xF0\x9F\x92\xBB x",  // emoji ZWJ
      "\xE0\xB8\xAA\xE0\xB8\xA7\xE0\xB8\xB1\xE0\xB8\xAA\xE0\xB8\x94\xE0\xB8\xB5",  // Thai
      "\xE0\xB8\xB1\xE0\xB8\xB1 \xE0\xB8\xB1",  // leading Thai marks
      "\xE0\xA4\xA8\xE0\xA4\xAE\xE0\xA4\xB8\xE0\xA5\x8D\xE0\xA4\xA4\xE0\xA5\x87",  // Hindi
      "e\xCC\x81\xCC\x81\xCC\x81",  // combining marks
      "\xD7\xA9\xD7\x9C\xD7\x95\xD7\x9D \xD8\xB3\xD9\x84\xD8\xA7\xD9\x85",  // RTL
      "\xC3\x80\xC3\x9E\xC5\xB8\xC4\xB0\xCE\xA3\xD0\x81\xD0\xAF",  // lowercase table
      "Call Dean NASA at 8pm 350 I",  // shape features
      "\xE0\xA5\xA9\xE0\xA5\xAB\xE0\xA5\xA6 \xE0\xB9\x93\xE0\xB9\x95x",  // Devanagari, Thai digits
  };
  out.push_back(std::string(100, 'x') + " " + std::string(1000, 'y'));
  for (int i = 0; i < 40; ++i) out.push_back(RandomBytes(&rng, rng.Below(200)));
  for (int i = 0; i < 40; ++i) out.push_back(RandomText(&rng, rng.Below(120)));
  std::string spaced;
  for (int i = 0; i < 5000; ++i) spaced += "w" + std::to_string(i) + " ";
  out.push_back(spaced);
  return out;
}

std::vector<std::string> HugeStrings() {
  Rng rng{777};
  const size_t kMb = 1 << 20;
  std::vector<std::string> out;
  out.push_back(std::string(kMb, 'a'));                 // one 1 MB token
  out.push_back(std::string(kMb, ' ') + "tail");        // 1 MB of space first
  out.push_back(RandomBytes(&rng, kMb));                // 1 MB of random bytes
  std::string marks;
  while (marks.size() < kMb) marks += "\xE0\xB8\x81\xE0\xB8\xB1\xE0\xB9\x88";  // Thai + marks
  out.push_back(marks);
  std::string invalid(kMb, '\xFF');
  out.push_back(invalid);
  return out;
}

std::vector<std::vector<int32_t>> ValidConfigs() {
  return {
      {1, 0, 1024, 64, 1, 64, 0},  {1, 1, 1024, 64, 1, 64, 0},   {1, 0, 7, 3, 0, 5, 99},
      {1, 1, 33, 1, 2, 7, 12345},  {1, 0, 1, 1, 0, 1, 0},         {1, 1, 1, 1, 16, 3, 2147483647},
      {1, 0, 257, 300, 3, 16, 5},  {1, 1, 65, 4096, 0, 2, 1},
      // Version 2: shape features (and shape = 0, the same as version 1).
      {2, 0, 1024, 64, 1, 64, 0, 1},  {2, 1, 1024, 64, 1, 64, 0, 1},  {2, 0, 8, 3, 0, 5, 99, 1},
      {2, 1, 8, 1, 2, 7, 12345, 1},   {2, 1, 37, 1, 1, 9, 3, 1},      {2, 0, 16, 4, 1, 8, 0, 0},
      // hashid: one id per token, F = vocabulary size (2 .. 2^16), w = 0, shape = 0.
      {1, 2, 8000, 1, 0, 64, 0},  {1, 2, 2, 1, 0, 5, 7},  {1, 2, 65536, 4096, 0, 3, 2147483647},
      {2, 2, 300, 1, 0, 16, 9, 0},
      // Version 3: letter n-grams of 2..ngram touching nospace tokens (minhash only).
      {3, 0, 1024, 64, 1, 64, 0, 1, 4},  {3, 0, 7, 3, 0, 5, 99, 0, 2},  {3, 0, 16, 4, 2, 9, 7, 1, 8},
      {3, 0, 32, 8, 1, 3, 0, 0, 5},      {3, 0, 16, 4, 1, 8, 0, 0, 0},  {3, 1, 16, 4, 1, 8, 0, 1, 0},
  };
}

std::vector<std::vector<int32_t>> BadConfigs() {
  const int32_t kMin = std::numeric_limits<int32_t>::min();
  const int32_t kMax = std::numeric_limits<int32_t>::max();
  return {
      {0, 0, 16, 4, 1, 8, 0},     {2, 0, 16, 4, 1, 8, 0},     {1, -1, 16, 4, 1, 8, 0},
      {1, 2, 16, 4, 1, 8, 0},     {1, 0, 0, 4, 1, 8, 0},      {1, 0, 65537, 4, 1, 8, 0},
      {1, 0, kMin, 4, 1, 8, 0},   {1, 0, kMax, 4, 1, 8, 0},   {1, 0, 16, 0, 1, 8, 0},
      {1, 0, 16, 4097, 1, 8, 0},  {1, 1, 16, -1, 1, 8, 0},    {1, 0, 16, 4, -1, 8, 0},
      {1, 0, 16, 4, 17, 8, 0},    {1, 0, 16, 4, kMax, 8, 0},  {1, 0, 16, 4, 1, 0, 0},
      {1, 0, 16, 4, 1, 4097, 0},  {1, 0, 16, 4, 1, kMin, 0},  {1, 0, 16, 4, 1, 8, -1},
      {1, 0, 16, 4, 1, 8, kMin},  {1, 0, 16, 4, 1, 8},        {1, 0, 16, 4, 1, 8, 0, 0},
      {},                         {2, 0, 16, 4, 1, 8, 0, 2},  {2, 0, 16, 4, 1, 8, 0, -1},
      {2, 1, 16, 4, 1, 8, 0, kMin}, {2, 0, 7, 4, 1, 8, 0, 1}, {2, 1, 1, 1, 0, 8, 0, 1},
      {3, 0, 16, 4, 1, 8, 0, 1},  {0, 0, 16, 4, 1, 8, 0, 1},  {2, 0, 0, 4, 1, 8, 0, 0},
      {2, 0, 16, 4, 1, 8, 0, 1, 0},
      {3, 1, 16, 4, 1, 8, 0, 0, 2},  {3, 2, 300, 1, 0, 16, 9, 0, 3}, {3, 0, 16, 4, 1, 8, 0, 0, 1},
      {3, 0, 16, 4, 1, 8, 0, 0, 9},  {3, 0, 16, 4, 1, 8, 0, 0, -1}, {3, 0, 16, 4, 1, 8, 0, 0, kMin},
      {3, 0, 16, 4, 1, 8, 0, 1, 2, 0},
      // Version 4 (word dictionary): 11 + 2K entries, hashes strictly increasing as
      // uint64, word_len 1..32 with words and 0 without, ngram 0.
      {4, 0, 16, 4, 1, 8, 0, 0, 0, 1, 1}, {4, 0, 16, 4, 1, 8, 0, 0, 0, 1, 1, 5, 0, 6},
      {4, 0, 16, 4, 1, 8, 0, 0, 0, 2, 1, 5, 0, 5, 0}, {4, 0, 16, 4, 1, 8, 0, 0, 0, 2, 1, -1, 0, 1, 0},
      {4, 0, 16, 4, 1, 8, 0, 0, 0, 2, 1, 0, 1, 5, 0}, {4, 0, 16, 4, 1, 8, 0, 0, 0, 1, 0, 5, 0},
      {4, 0, 16, 4, 1, 8, 0, 0, 0, 1, 33, 5, 0}, {4, 0, 16, 4, 1, 8, 0, 0, 0, 0, 1},
      {4, 0, 16, 4, 1, 8, 0, 0, 4, 1, 1, 5, 0}, {4, 0, 16, 4, 1, 8, 0, 0, 0, -1, 1},
      {4, 0, 16, 4, 1, 8, 0, 0, 0, kMax, 1}, {4, 3, 16, 4, 1, 8, 0, 0, 0, 1, 1, 5, 0},
      {4, 2, 16, 4, 1, 8, 0, 0, 0, 1, 1, 5, 0}, {4, 0, 16, 4, 1, 8, 0, 0, 0, 1, 1, 5},
      // hashid: vocabulary >= 2, no window, no shape flags; no method 3.
      {1, 2, 1, 1, 0, 8, 0},      {1, 2, 16, 4, 1, 8, 0},     {2, 2, 16, 4, 0, 8, 0, 1},
      {1, 3, 16, 4, 0, 8, 0},     {1, 2, 65537, 1, 0, 8, 0},
  };
}

proj::Config MustParse(const std::vector<int32_t>& v) {
  proj::Config c;
  const std::string error = proj::ParseConfig(v.data(), static_cast<int64_t>(v.size()), &c);
  Expect(error.empty(), "valid config parses: " + error);
  return c;
}

// Kernel output == core output, item by item.
void CheckKernelMatchesCore(const std::vector<int32_t>& vec, const std::vector<std::string>& batch,
                            bool constant_config, const std::string& label) {
  const proj::Config config = MustParse(vec);
  const KernelResult r =
      RunKernel(vec, StringBuffer(batch), static_cast<int>(batch.size()), constant_config);
  Expect(r.status == kTfLiteOk, label + ": kernel ok (" + r.error + ")");
  if (r.status != kTfLiteOk) return;
  const size_t s = static_cast<size_t>(config.max_tokens);
  const size_t row = s * static_cast<size_t>(config.OutputSize());
  Expect(r.features.size() == batch.size() * row, label + ": features size");
  Expect(r.mask.size() == batch.size() * s, label + ": mask size");
  Expect(r.offsets.size() == batch.size() * s * 2, label + ": offsets size");
  if (r.features.size() != batch.size() * row) return;
  std::vector<float> f(row), m(s);
  std::vector<int32_t> o(2 * s);
  for (size_t b = 0; b < batch.size(); ++b) {
    std::string error;
    const bool ok = proj::Project(reinterpret_cast<const uint8_t*>(batch[b].data()), batch[b].size(),
                                  config, f.data(), m.data(), o.data(), &error);
    Expect(ok, label + ": core ok " + error);
    Expect(std::memcmp(f.data(), r.features.data() + b * row, row * 4) == 0, label + ": features");
    Expect(std::memcmp(m.data(), r.mask.data() + b * s, s * 4) == 0, label + ": mask");
    Expect(std::memcmp(o.data(), r.offsets.data() + b * 2 * s, 2 * s * 4) == 0, label + ": offsets");
    // Invariants of the spec.
    float mass = 0.0f;
    int tokens = 0;
    for (size_t t = 0; t < s; ++t) tokens += m[t] == 1.0f;
    for (size_t t = 0; t < s; ++t) {
      Expect(m[t] == (t < static_cast<size_t>(tokens) ? 1.0f : 0.0f), label + ": mask prefix");
      const int32_t start = o[2 * t], end = o[2 * t + 1];
      if (t < static_cast<size_t>(tokens)) {
        Expect(start >= 0 && start < end && static_cast<size_t>(end) <= batch[b].size(),
               label + ": offsets in range");
      } else {
        Expect(start == 0 && end == 0, label + ": padding offsets");
      }
    }
    if (config.method == proj::Method::kHashId) {  // ids 1 .. F-1 on tokens, 0 on padding
      for (size_t t = 0; t < s; ++t) {
        const float id = f[t];
        const bool real = t < static_cast<size_t>(tokens);
        Expect(real ? id >= 1.0f && id <= static_cast<float>(config.feature_size - 1) &&
                          id == static_cast<float>(static_cast<int32_t>(id))
                    : id == 0.0f,
               label + ": hashid id range");
      }
    }
    if (config.method == proj::Method::kMinHash && tokens > 0) {
      // Center block of row 0 is token 0's Bloom filter: its hashed entries sum to N (2N with
      // an n-gram fingerprint, ngram > 0).
      const size_t center = static_cast<size_t>(config.window) * static_cast<size_t>(config.feature_size);
      for (int32_t k = 0; k < config.HashedSize(); ++k) mass += f[center + static_cast<size_t>(k)];
      const float n = static_cast<float>(config.num_hashes);
      Expect(mass == n || (config.ngram > 0 && mass == 2.0f * n), label + ": bloom mass");
    }
  }
}

void ExpectKernelError(FakeInterpreter* fi, const std::string& label) {
  const TfLiteStatus status = fi->Run(OndeviceNlp_ProjectionRegistration());
  Expect(status == kTfLiteError, label + ": returns kTfLiteError");
  Expect(!fi->last_error.empty(), label + ": reports an error message");
}

void MalformedCases() {
  const std::vector<int32_t> good = {1, 0, 16, 4, 1, 8, 0};
  const std::vector<uint8_t> buffer = StringBuffer({"hello world", "x"});

  auto make = [&](FakeInterpreter* fi, const std::vector<uint8_t>& text, int batch,
                  const std::vector<int32_t>& cfg, TfLiteType text_type = kTfLiteString,
                  std::vector<int> text_dims = {}) {
    if (text_dims.empty()) text_dims = {batch};
    const int t = fi->AddTensor(text_type, text_dims, kTfLiteDynamic);
    if (!text.empty()) fi->SetData(t, text.data(), text.size());
    const int c = fi->AddTensor(kTfLiteInt32, {static_cast<int>(cfg.size())}, kTfLiteMmapRo);
    if (!cfg.empty()) fi->SetData(c, cfg.data(), cfg.size() * 4);
    const int f = fi->AddTensor(kTfLiteFloat32, {}, kTfLiteArenaRw);
    const int m = fi->AddTensor(kTfLiteFloat32, {}, kTfLiteArenaRw);
    const int o = fi->AddTensor(kTfLiteInt32, {}, kTfLiteArenaRw);
    fi->Wire({t, c}, {f, m, o});
  };

  for (const auto& bad : BadConfigs()) {
    FakeInterpreter fi;
    make(&fi, buffer, 2, bad);
    ExpectKernelError(&fi, "bad config (constant)");
    proj::Config c;
    Expect(!proj::ParseConfig(bad.data(), static_cast<int64_t>(bad.size()), &c).empty(),
           "ParseConfig rejects a bad vector");
  }
  for (const auto& bad : BadConfigs()) {  // non-constant config: fails in Eval
    FakeInterpreter fi;
    make(&fi, buffer, 2, bad);
    fi.tensors[1].allocation_type = kTfLiteArenaRw;
    ExpectKernelError(&fi, "bad config (runtime)");
  }
  {
    proj::Config c;
    c.feature_size = 0;
    std::vector<float> f(1), m(1);
    std::vector<int32_t> o(2);
    std::string error;
    Expect(!proj::Project(reinterpret_cast<const uint8_t*>("a"), 1, c, f.data(), m.data(), o.data(),
                          &error),
           "Project rejects an invalid Config");
    Expect(!error.empty(), "Project explains an invalid Config");
    c.feature_size = 4;
    c.method = static_cast<proj::Method>(7);
    Expect(!proj::ValidateConfig(c).empty(), "ValidateConfig rejects an unknown method");
  }
  {  // config of the wrong type / shape / without data
    FakeInterpreter fi;
    make(&fi, buffer, 2, good);
    fi.tensors[1].type = kTfLiteFloat32;
    ExpectKernelError(&fi, "float config");
  }
  {
    FakeInterpreter fi;
    make(&fi, buffer, 2, good);
    std::free(fi.tensors[1].dims);
    fi.tensors[1].dims = NewIntArray({1, 7});
    ExpectKernelError(&fi, "config of rank 2");
  }
  {
    FakeInterpreter fi;
    make(&fi, buffer, 2, good);
    fi.tensors[1].bytes = 8;
    ExpectKernelError(&fi, "config with too few bytes");
  }
  {
    FakeInterpreter fi;
    make(&fi, buffer, 2, good);
    fi.tensors[1].allocation_type = kTfLiteArenaRw;
    std::free(fi.tensors[1].data.raw);
    fi.tensors[1].data.raw = nullptr;
    fi.owns_data[1] = false;
    ExpectKernelError(&fi, "runtime config without data");
  }
  // Malformed string buffers.
  auto patched = [&](size_t at, int32_t value) {
    std::vector<uint8_t> b = buffer;
    std::memcpy(b.data() + at, &value, 4);
    return b;
  };
  const std::vector<std::pair<std::vector<uint8_t>, std::string>> bad_buffers = {
      {patched(0, 3), "count larger than the shape"},
      {patched(0, 1), "count smaller than the shape"},
      {patched(0, -1), "negative count"},
      {patched(0, 0x7FFFFFFF), "huge count"},
      {patched(4, -8), "negative offset"},
      {patched(4, 2), "offset inside the header"},
      {patched(8, 1000), "offset beyond the buffer"},
      {patched(12, 20), "decreasing offsets"},
      {patched(12, 1 << 30), "end beyond the buffer"},
      {std::vector<uint8_t>(buffer.begin(), buffer.begin() + 3), "shorter than the count"},
      {std::vector<uint8_t>(buffer.begin(), buffer.begin() + 10), "truncated offset table"},
      {std::vector<uint8_t>(buffer.begin(), buffer.end() - 1), "truncated bytes"},
  };
  for (const auto& [bytes, label] : bad_buffers) {
    FakeInterpreter fi;
    make(&fi, bytes, 2, good);
    ExpectKernelError(&fi, "string buffer: " + label);
  }
  {
    FakeInterpreter fi;
    make(&fi, {}, 2, good);  // no data at all
    ExpectKernelError(&fi, "string input without data");
  }
  {
    FakeInterpreter fi;
    make(&fi, buffer, 2, good, kTfLiteInt32);
    ExpectKernelError(&fi, "int32 text input");
  }
  {
    FakeInterpreter fi;
    make(&fi, buffer, 2, good, kTfLiteString, {1, 2});
    ExpectKernelError(&fi, "text input of rank 2");
  }
  {
    FakeInterpreter fi;
    make(&fi, buffer, 2, good, kTfLiteString, {-2});
    ExpectKernelError(&fi, "negative batch");
  }
  {
    FakeInterpreter fi;
    make(&fi, buffer, 2, good);
    fi.tensors[2].type = kTfLiteInt32;
    ExpectKernelError(&fi, "wrong output type");
  }
  {
    FakeInterpreter fi;
    make(&fi, buffer, 2, good);
    fi.Wire({0}, {2, 3, 4});
    ExpectKernelError(&fi, "one input");
  }
  {
    FakeInterpreter fi;
    make(&fi, buffer, 2, good);
    fi.Wire({0, 1}, {2, 3});
    ExpectKernelError(&fi, "two outputs");
  }
  {
    FakeInterpreter fi;
    make(&fi, buffer, 2, good);
    fi.Wire({0, 99}, {2, 3, 4});
    ExpectKernelError(&fi, "tensor index out of range");
  }
  {
    FakeInterpreter fi;
    make(&fi, buffer, 2, good);
    fi.Wire({-1, 1}, {2, 3, 4});
    ExpectKernelError(&fi, "optional (-1) input");
  }
  {  // batch size 0 with an empty (count = 0) buffer and with no data
    const KernelResult r = RunKernel(good, StringBuffer({}), 0, true);
    Expect(r.status == kTfLiteOk && r.features.empty(), "empty batch");
    FakeInterpreter fi;
    make(&fi, {}, 0, good);
    Expect(fi.Run(OndeviceNlp_ProjectionRegistration()) == kTfLiteOk, "empty batch, no data");
  }
  {  // Eval without a prior Prepare on arena outputs: must not write anywhere.
    FakeInterpreter fi;
    make(&fi, buffer, 2, good);
    const TfLiteRegistration* reg = OndeviceNlp_ProjectionRegistration();
    Expect(reg->invoke(&fi.context, &fi.node) == kTfLiteError, "invoke before prepare");
  }
  {  // Null node / context pieces.
    FakeInterpreter fi;
    make(&fi, buffer, 2, good);
    TfLiteNode empty;
    std::memset(&empty, 0, sizeof(empty));
    const TfLiteRegistration* reg = OndeviceNlp_ProjectionRegistration();
    Expect(reg->prepare(&fi.context, &empty) == kTfLiteError, "node without lists");
    Expect(reg->prepare(nullptr, &fi.node) == kTfLiteError, "null context");
    Expect(reg->invoke(nullptr, &fi.node) == kTfLiteError, "null context (invoke)");
  }
}

void RegistrationChecks() {
  const TfLiteRegistration* reg = OndeviceNlp_ProjectionRegistration();
  Expect(reg != nullptr, "registration");
  Expect(reg->custom_name != nullptr && std::strcmp(reg->custom_name, "OndeviceProjection") == 0,
         "custom name");
  Expect(reg->builtin_code == kTfLiteBuiltinCustom && reg->version == 1, "builtin code, version");
  Expect(reg->init && reg->free && reg->prepare && reg->invoke, "callbacks set");
  OndeviceNlp_RegisterProjection(nullptr);
  Expect(g_add_calls == 0, "null resolver ignored");
  alignas(16) unsigned char fake_resolver[256] = {0};
  OndeviceNlp_RegisterProjection(fake_resolver);
  Expect(g_add_calls == 1 && g_added_registration == reg && g_added_version == 1 &&
             std::strcmp(g_added_name, "OndeviceProjection") == 0,
         "RegisterProjection calls MutableOpResolver::AddCustom");
}

void HashChecks() {
  Expect(proj::Fnv1a64(nullptr, 0) == 0xcbf29ce484222325ULL, "fnv1a64('')");
  const uint8_t a = 'a';
  Expect(proj::Fnv1a64(&a, 1) == 0xaf63dc4c8601ec8cULL, "fnv1a64('a')");
  const uint8_t foobar[] = {'f', 'o', 'o', 'b', 'a', 'r'};
  Expect(proj::Fnv1a64(foobar, 6) == 0x85944171f73967e8ULL, "fnv1a64('foobar')");
  Expect(proj::Fmix64(0) == 0, "fmix64(0)");
  // Word dictionary hash, pinned as in tests/test_projection.py (Thai "wan", 9 bytes).
  const uint8_t wan[] = {0xE0, 0xB8, 0xA7, 0xE0, 0xB8, 0xB1, 0xE0, 0xB8, 0x99};
  Expect(proj::WordHash(wan, sizeof(wan)) == 0xB4BFD8E2635990CFULL, "WordHash(wan)");
  Expect(proj::WordHash(nullptr, 0) == 0xEFD01F60BA992926ULL, "WordHash('')");
  Expect(proj::DerivedHash(5, 0) == proj::Fmix64(5 + 0x9E3779B97F4A7C15ULL), "derived hash 0");
  // The stream form agrees with the one-value form, also where base + k * golden wraps.
  for (const uint64_t base : {uint64_t{5}, ~uint64_t{0} - 3}) {
    uint64_t stream[5];
    proj::DerivedHashes(base, 5, stream);
    for (uint64_t k = 0; k < 5; ++k) {
      Expect(stream[k] == proj::DerivedHash(base, k), "derived hash stream");
    }
  }
  // Every byte value through the decoder, at the end of the buffer and not.
  for (uint32_t b = 0; b < 256; ++b) {
    const uint8_t one[1] = {static_cast<uint8_t>(b)};
    uint32_t cp = 0;
    Expect(proj::DecodeUtf8(one, 1, 0, &cp) == 1, "one byte decodes to one unit");
    Expect(cp == (b < 0x80 ? b : 0xFFFDu), "lone byte value");
  }
}

// Shape features (config version 2): flags of known tokens, including code
// points beyond the 64 kept for hashing, and zero padding.
void ShapeChecks() {
  Expect(proj::IsUpperCodePoint('A') && proj::IsUpperCodePoint(0x130) &&
             proj::IsUpperCodePoint(0x42F) && !proj::IsUpperCodePoint('a') &&
             !proj::IsUpperCodePoint(0xD7) && !proj::IsUpperCodePoint(0x131) &&
             !proj::IsUpperCodePoint(0xFFFD) && !proj::IsUpperCodePoint('1'),
         "IsUpperCodePoint");
  const uint32_t digits[] = {0x30, 0x39, 0x966, 0x96F, 0xE50, 0xE59};
  const uint32_t non_digits[] = {0x2F, 0x3A, 0x965, 0x970, 0xE4F, 0xE5A, 0xFF10, 0x660};
  for (uint32_t cp : digits) Expect(proj::IsDecimalDigit(cp), "IsDecimalDigit " + std::to_string(cp));
  for (uint32_t cp : non_digits) Expect(!proj::IsDecimalDigit(cp), "!IsDecimalDigit " + std::to_string(cp));
  // Tokens: Call, NASA, 8pm, 350, Devanagari 35, Thai 3, U+FFFD, A x 70,
  // A x 70 + b, 1 x 80 + x, I (b and x lie beyond the 64 code points hashed).
  const std::string text = "Call NASA 8pm 350 \xE0\xA5\xA9\xE0\xA5\xAB \xE0\xB9\x93 \xFF " +
                           std::string(70, 'A') + " " + std::string(70, 'A') + "b " +
                           std::string(80, '1') + "x I";
  const int expected[][4] = {{1, 0, 0, 0}, {1, 1, 0, 0}, {0, 0, 1, 0}, {0, 0, 1, 1},
                             {0, 0, 1, 1}, {0, 0, 1, 1}, {0, 0, 0, 0}, {1, 1, 0, 0},
                             {1, 0, 0, 0}, {0, 0, 1, 0}, {1, 0, 0, 0}};
  const size_t num_tokens = sizeof(expected) / sizeof(expected[0]);
  for (const auto& vec : {std::vector<int32_t>{2, 0, 16, 4, 0, 12, 0, 1},
                          std::vector<int32_t>{2, 1, 8, 1, 0, 12, 5, 1}}) {
    const proj::Config config = MustParse(vec);
    const size_t f = static_cast<size_t>(config.feature_size);
    std::vector<float> features(12 * f), mask(12);
    std::vector<int32_t> offsets(24);
    const bool ok = proj::Project(reinterpret_cast<const uint8_t*>(text.data()), text.size(), config,
                                  features.data(), mask.data(), offsets.data());
    Expect(ok, "shape config projects");
    for (size_t t = 0; t < 12; ++t) {
      Expect(mask[t] == (t < num_tokens ? 1.0f : 0.0f), "shape text token count");
      for (size_t i = 0; i < 4; ++i) {
        const float want = t < num_tokens ? static_cast<float>(expected[t][i]) : 0.0f;
        Expect(features[t * f + f - 4 + i] == want,
               "shape flag " + std::to_string(i) + " of token " + std::to_string(t));
      }
    }
  }
  const proj::Config no_shape = MustParse({2, 0, 16, 4, 0, 12, 0, 0});
  Expect(no_shape.shape == 0 && no_shape.HashedSize() == 16, "version 2 with shape 0");
  Expect(MustParse({2, 0, 16, 4, 0, 12, 0, 1}).HashedSize() == 12, "hashed size with shape 1");
}

int SelfTest() {
  HashChecks();
  ShapeChecks();
  RegistrationChecks();
  const std::vector<std::string> nasty = NastyStrings();
  const std::vector<std::string> huge = HugeStrings();
  int index = 0;
  for (const auto& vec : ValidConfigs()) {
    const std::string label = "config#" + std::to_string(index++);
    CheckKernelMatchesCore(vec, nasty, /*constant_config=*/true, label + " nasty");
    CheckKernelMatchesCore(vec, {nasty[5], nasty[12], ""}, /*constant_config=*/false,
                           label + " runtime config");
    for (const auto& h : huge) CheckKernelMatchesCore(vec, {h}, true, label + " 1MB");
  }
  MalformedCases();
  std::printf("checks=%d failures=%d\n", g_checks, g_failures);
  return g_failures == 0 ? 0 : 1;
}

int ChecksumFile(const char* path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    std::fprintf(stderr, "cannot open %s\n", path);
    return 2;
  }
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (bytes.size() < 28 + 4) {
    std::fprintf(stderr, "file too short\n");
    return 2;
  }
  int32_t version;
  std::memcpy(&version, bytes.data(), 4);
  size_t config_size = version == proj::kConfigVersionV3   ? proj::kConfigSizeV3
                       : version == proj::kConfigVersionV2 ? proj::kConfigSizeV2
                                                           : proj::kConfigSizeV1;
  if (version == proj::kConfigVersionV4) {  // 11 entries, then 2 per word hash (K = entry 9)
    int32_t k = 0;
    if (bytes.size() >= 4 * static_cast<size_t>(proj::kConfigHeaderV4)) {
      std::memcpy(&k, bytes.data() + 4 * 9, 4);
    }
    if (k < 0 || k > proj::kMaxWords) {
      std::fprintf(stderr, "bad word count\n");
      return 2;
    }
    config_size = static_cast<size_t>(proj::kConfigHeaderV4) + 2 * static_cast<size_t>(k);
  }
  if (bytes.size() < 4 * config_size + 4) {
    std::fprintf(stderr, "file too short\n");
    return 2;
  }
  std::vector<int32_t> config(config_size);
  std::memcpy(config.data(), bytes.data(), 4 * config_size);
  std::vector<uint8_t> buffer(bytes.begin() + static_cast<std::ptrdiff_t>(4 * config_size), bytes.end());
  int32_t count;
  std::memcpy(&count, buffer.data(), 4);
  const KernelResult r = RunKernel(config, buffer, count, true);
  if (r.status != kTfLiteOk) {
    std::fprintf(stderr, "kernel error: %s\n", r.error.c_str());
    return 3;
  }
  std::printf("features=%llu mask=%llu offsets=%llu\n",
              static_cast<unsigned long long>(Checksum(r.features.data(), r.features.size() * 4)),
              static_cast<unsigned long long>(Checksum(r.mask.data(), r.mask.size() * 4)),
              static_cast<unsigned long long>(Checksum(r.offsets.data(), r.offsets.size() * 4)));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 2 && std::strcmp(argv[1], "selftest") == 0) return SelfTest();
  if (argc == 3 && std::strcmp(argv[1], "checksum") == 0) return ChecksumFile(argv[2]);
  std::fprintf(stderr, "usage: %s selftest | checksum FILE\n", argv[0]);
  return 2;
}
