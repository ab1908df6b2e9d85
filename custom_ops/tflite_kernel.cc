// TFLite custom kernel "OndeviceProjection": the same projection as the
// TensorFlow op (tf_op.cc), on the shared core of projection.h.
//
//   input 0: kTfLiteString [B]  (TFLite string buffer: int32 count,
//            int32 offsets[count + 1] from the buffer start, then the bytes)
//   input 1: kTfLiteInt32 [7], [8], [9] or [11 + 2K]  ProjectionConfig.to_vector()
//            (version 1, 2, 3 or 4 with K word hashes), normally a constant of the model
//   output 0: float32 [B, S, D], output 1: float32 [B, S],
//   output 2: int32 [B, S, 2]
//
// Outputs are resized in Prepare when the config is constant; otherwise they
// are marked dynamic and resized in Eval. Every malformed input (types,
// shapes, config values, string buffer) is reported through
// context->ReportError and returns kTfLiteError.
//
// Exported C entry points:
//   const TfLiteRegistration* OndeviceNlp_ProjectionRegistration();
//     for applications that own an op resolver (e.g. Android:
//     resolver.AddCustom("OndeviceProjection", OndeviceNlp_ProjectionRegistration())).
//   void OndeviceNlp_RegisterProjection(void* resolver);
//     `resolver` is a tflite::MutableOpResolver* (what the Python
//     InterpreterWithCustomOps hands to custom_op_registerers); calls
//     MutableOpResolver::AddCustom from libtensorflow_cc.so.2.

#include <cstdlib>
#include <cstring>
#include <exception>
#include <limits>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "projection.h"
#include "tflite_abi.h"

#define ONDEVICE_NLP_EXPORT extern "C" __attribute__((visibility("default")))

namespace ondevice_nlp {
namespace {

namespace proj = ::ondevice_nlp::projection;

constexpr char kOpName[] = "OndeviceProjection";
constexpr int kNumInputs = 2;
constexpr int kNumOutputs = 3;
constexpr int kTextInput = 0;
constexpr int kConfigInput = 1;
constexpr int kFeaturesOutput = 0;
constexpr int kMaskOutput = 1;
constexpr int kOffsetsOutput = 2;

TfLiteStatus Fail(TfLiteContext* context, const std::string& message) {
  if (context != nullptr && context->ReportError != nullptr) {
    context->ReportError(context, "%s: %s", kOpName, message.c_str());
  }
  return kTfLiteError;
}

TfLiteTensor* TensorAt(TfLiteContext* context, const TfLiteIntArray* list, int i) {
  if (list == nullptr || i < 0 || i >= list->size) return nullptr;
  const int index = list->data[i];
  if (index < 0) return nullptr;  // optional tensor (-1)
  if (context->tensors != nullptr) {
    if (static_cast<size_t>(index) >= context->tensors_size) return nullptr;
    return &context->tensors[index];
  }
  if (context->GetTensor != nullptr) return context->GetTensor(context, index);
  return nullptr;
}

struct Tensors {
  TfLiteTensor* text = nullptr;
  TfLiteTensor* config = nullptr;
  TfLiteTensor* out[kNumOutputs] = {nullptr, nullptr, nullptr};
};

TfLiteStatus GetTensors(TfLiteContext* context, TfLiteNode* node, Tensors* t) {
  if (node == nullptr || node->inputs == nullptr || node->outputs == nullptr) {
    return Fail(context, "node has no input or output list");
  }
  if (node->inputs->size != kNumInputs || node->outputs->size != kNumOutputs) {
    return Fail(context, "expected 2 inputs and 3 outputs, got " +
                             std::to_string(node->inputs->size) + " and " +
                             std::to_string(node->outputs->size));
  }
  t->text = TensorAt(context, node->inputs, kTextInput);
  t->config = TensorAt(context, node->inputs, kConfigInput);
  for (int i = 0; i < kNumOutputs; ++i) t->out[i] = TensorAt(context, node->outputs, i);
  if (t->text == nullptr || t->config == nullptr || t->out[0] == nullptr ||
      t->out[1] == nullptr || t->out[2] == nullptr) {
    return Fail(context, "missing input or output tensor");
  }
  if (t->text->type != kTfLiteString) return Fail(context, "input 0 must be a string tensor");
  if (t->config->type != kTfLiteInt32) return Fail(context, "input 1 (config) must be int32");
  if (t->out[kFeaturesOutput]->type != kTfLiteFloat32 ||
      t->out[kMaskOutput]->type != kTfLiteFloat32 || t->out[kOffsetsOutput]->type != kTfLiteInt32) {
    return Fail(context, "outputs must be float32 features, float32 mask, int32 offsets");
  }
  return kTfLiteOk;
}

// Batch size of the [B] string input.
TfLiteStatus GetBatch(TfLiteContext* context, const TfLiteTensor* text, int* batch) {
  if (text->dims == nullptr || text->dims->size != 1 || text->dims->data[0] < 0) {
    return Fail(context, "input 0 must be a string vector [B]");
  }
  *batch = text->dims->data[0];
  return kTfLiteOk;
}

bool IsConstant(const TfLiteTensor* t) {
  return t->allocation_type == kTfLiteMmapRo || t->allocation_type == kTfLitePersistentRo;
}

TfLiteStatus ReadConfig(TfLiteContext* context, const TfLiteTensor* t, proj::Config* config) {
  int64_t count = 1;
  if (t->dims == nullptr) return Fail(context, "config tensor has no shape");
  for (int i = 0; i < t->dims->size; ++i) {
    if (t->dims->data[i] < 0) return Fail(context, "config tensor has a negative dimension");
    count *= t->dims->data[i];
    if (count > proj::kMaxConfigSize) break;
  }
  if (t->dims->size != 1 || (count != proj::kConfigSizeV1 && count != proj::kConfigSizeV2 &&
                             count != proj::kConfigSizeV3 &&
                             (count < proj::kConfigHeaderV4 || count > proj::kMaxConfigSize))) {
    return Fail(context,
                "config must be an int32 vector [7] (version 1), [8] (version 2), [9] (version 3) "
                "or [11 + 2K] (version 4, K word hashes)");
  }
  const size_t bytes = sizeof(int32_t) * static_cast<size_t>(count);
  if (t->data.raw_const == nullptr || t->bytes < bytes) {
    return Fail(context, "config tensor has no data");
  }
  std::vector<int32_t> values(static_cast<size_t>(count));
  std::memcpy(values.data(), t->data.raw_const, bytes);
  const std::string error = proj::ParseConfig(values.data(), count, config);
  if (!error.empty()) return Fail(context, error);
  return kTfLiteOk;
}

struct OutputShapes {
  int rank[kNumOutputs];
  int dims[kNumOutputs][3];
  size_t bytes[kNumOutputs];
};

TfLiteStatus ComputeShapes(TfLiteContext* context, int batch, const proj::Config& config,
                           OutputShapes* shapes) {
  const int seq = config.max_tokens;
  const int64_t depth = config.OutputSize();  // <= 33 * 2^16, fits in int
  const int64_t inner[kNumOutputs] = {int64_t{seq} * depth, seq, int64_t{seq} * 2};
  const int ranks[kNumOutputs] = {3, 2, 3};
  const int last[kNumOutputs] = {static_cast<int>(depth), 0, 2};
  for (int i = 0; i < kNumOutputs; ++i) {
    uint64_t elements = 0;
    uint64_t bytes = 0;
    if (__builtin_mul_overflow(static_cast<uint64_t>(batch), static_cast<uint64_t>(inner[i]),
                               &elements) ||
        __builtin_mul_overflow(elements, uint64_t{4}, &bytes) ||
        bytes > static_cast<uint64_t>(std::numeric_limits<size_t>::max() / 2)) {
      return Fail(context, "output size overflows");
    }
    shapes->rank[i] = ranks[i];
    shapes->dims[i][0] = batch;
    shapes->dims[i][1] = seq;
    shapes->dims[i][2] = last[i];
    shapes->bytes[i] = static_cast<size_t>(bytes);
  }
  return kTfLiteOk;
}

bool DimsEqual(const TfLiteIntArray* dims, int rank, const int* values) {
  if (dims == nullptr || dims->size != rank) return false;
  for (int i = 0; i < rank; ++i) {
    if (dims->data[i] != values[i]) return false;
  }
  return true;
}

TfLiteStatus Resize(TfLiteContext* context, TfLiteTensor* tensor, int rank, const int* values) {
  if (context->ResizeTensor == nullptr) return Fail(context, "context cannot resize tensors");
  void* memory = std::malloc(sizeof(int) * (1 + static_cast<size_t>(rank)));
  if (memory == nullptr) return Fail(context, "out of memory");
  TfLiteIntArray* dims = static_cast<TfLiteIntArray*>(memory);
  dims->size = rank;
  for (int i = 0; i < rank; ++i) dims->data[i] = values[i];
  // ResizeTensor takes ownership of `dims`.
  if (context->ResizeTensor(context, tensor, dims) != kTfLiteOk) {
    return Fail(context, "could not resize an output tensor");
  }
  return kTfLiteOk;
}

// Per-node state: a Projector (scratch buffers) reused across invocations.
struct OpData {
  std::unique_ptr<proj::Projector> projector;
};

bool SameConfig(const proj::Config& a, const proj::Config& b) {
  return a.method == b.method && a.feature_size == b.feature_size &&
         a.num_hashes == b.num_hashes && a.window == b.window &&
         a.max_tokens == b.max_tokens && a.seed == b.seed && a.shape == b.shape &&
         a.ngram == b.ngram && a.word_len == b.word_len && a.words == b.words;
}

void* Init(TfLiteContext*, const char*, size_t) { return new (std::nothrow) OpData(); }

void Free(TfLiteContext*, void* buffer) { delete static_cast<OpData*>(buffer); }

TfLiteStatus PrepareImpl(TfLiteContext* context, TfLiteNode* node) {
  Tensors t;
  if (GetTensors(context, node, &t) != kTfLiteOk) return kTfLiteError;
  int batch = 0;
  if (GetBatch(context, t.text, &batch) != kTfLiteOk) return kTfLiteError;
  if (IsConstant(t.config) && t.config->data.raw_const != nullptr) {
    proj::Config config;
    if (ReadConfig(context, t.config, &config) != kTfLiteOk) return kTfLiteError;
    OutputShapes shapes;
    if (ComputeShapes(context, batch, config, &shapes) != kTfLiteOk) return kTfLiteError;
    for (int i = 0; i < kNumOutputs; ++i) {
      if (Resize(context, t.out[i], shapes.rank[i], shapes.dims[i]) != kTfLiteOk) {
        return kTfLiteError;
      }
    }
    return kTfLiteOk;
  }
  // Config only known at Eval: outputs become dynamic (malloc'ed by
  // ResizeTensor in Eval). The runtime owns no arena buffer for them then.
  for (TfLiteTensor* out : t.out) {
    if (out->allocation_type != kTfLiteDynamic) {
      out->data.raw = nullptr;
      out->allocation_type = kTfLiteDynamic;
    }
  }
  return kTfLiteOk;
}

// Reads a little-endian-as-native int32 at byte `offset` (caller checked range).
int32_t LoadInt32(const uint8_t* buffer, size_t offset) {
  int32_t value;
  std::memcpy(&value, buffer + offset, sizeof(value));
  return value;
}

TfLiteStatus EvalImpl(TfLiteContext* context, TfLiteNode* node) {
  Tensors t;
  if (GetTensors(context, node, &t) != kTfLiteOk) return kTfLiteError;
  int batch = 0;
  if (GetBatch(context, t.text, &batch) != kTfLiteOk) return kTfLiteError;
  proj::Config config;
  if (ReadConfig(context, t.config, &config) != kTfLiteOk) return kTfLiteError;
  OutputShapes shapes;
  if (ComputeShapes(context, batch, config, &shapes) != kTfLiteOk) return kTfLiteError;
  for (int i = 0; i < kNumOutputs; ++i) {
    TfLiteTensor* out = t.out[i];
    if (out->allocation_type == kTfLiteDynamic &&
        (!DimsEqual(out->dims, shapes.rank[i], shapes.dims[i]) ||
         (shapes.bytes[i] > 0 && out->data.raw == nullptr))) {
      if (Resize(context, out, shapes.rank[i], shapes.dims[i]) != kTfLiteOk) return kTfLiteError;
    }
    if (!DimsEqual(out->dims, shapes.rank[i], shapes.dims[i])) {
      return Fail(context, "output " + std::to_string(i) + " has the wrong shape");
    }
    if (shapes.bytes[i] > 0 && (out->data.raw == nullptr || out->bytes < shapes.bytes[i])) {
      return Fail(context, "output " + std::to_string(i) + " is not allocated");
    }
  }
  if (batch == 0) return kTfLiteOk;

  // Validate the whole string buffer before touching any output.
  const uint8_t* buffer = reinterpret_cast<const uint8_t*>(t.text->data.raw_const);
  const size_t size = t.text->bytes;
  if (buffer == nullptr || size < sizeof(int32_t)) {
    return Fail(context, "string input has no data");
  }
  const int32_t count = LoadInt32(buffer, 0);
  if (count != batch) {
    return Fail(context, "string buffer holds " + std::to_string(count) +
                             " strings but the tensor shape says " + std::to_string(batch));
  }
  const uint64_t header = uint64_t{4} * (static_cast<uint64_t>(count) + 2);
  if (header > size) return Fail(context, "string buffer is truncated");
  uint64_t previous = header;
  for (int32_t i = 0; i <= count; ++i) {
    const int32_t offset = LoadInt32(buffer, 4 * (static_cast<size_t>(i) + 1));
    if (offset < 0 || static_cast<uint64_t>(offset) < previous ||
        static_cast<uint64_t>(offset) > size) {
      return Fail(context, "string buffer has an invalid offset table");
    }
    previous = static_cast<uint64_t>(offset);
  }

  float* features = t.out[kFeaturesOutput]->data.f;
  float* mask = t.out[kMaskOutput]->data.f;
  int32_t* offsets = t.out[kOffsetsOutput]->data.i32;
  const size_t seq = static_cast<size_t>(config.max_tokens);
  const size_t row = seq * static_cast<size_t>(config.OutputSize());
  // Reuse the node's Projector when the config is unchanged.
  OpData* op_data = static_cast<OpData*>(node->user_data);
  std::unique_ptr<proj::Projector> local;
  proj::Projector* projector = nullptr;
  if (op_data != nullptr && op_data->projector && SameConfig(op_data->projector->config(), config)) {
    projector = op_data->projector.get();
  } else {
    local.reset(new (std::nothrow) proj::Projector(config));
    if (!local) return Fail(context, "out of memory");
    projector = local.get();
    if (op_data != nullptr) op_data->projector = std::move(local);
  }
  for (int32_t b = 0; b < count; ++b) {
    const size_t begin = static_cast<size_t>(LoadInt32(buffer, 4 * (static_cast<size_t>(b) + 1)));
    const size_t end = static_cast<size_t>(LoadInt32(buffer, 4 * (static_cast<size_t>(b) + 2)));
    std::string error;
    if (!projector->Run(buffer + begin, end - begin, features + static_cast<size_t>(b) * row,
                       mask + static_cast<size_t>(b) * seq,
                       offsets + static_cast<size_t>(b) * seq * 2, &error)) {
      return Fail(context, "element " + std::to_string(b) + ": " + error);
    }
  }
  return kTfLiteOk;
}

// No C++ exception may cross the C ABI into the runtime (e.g. bad_alloc).
template <TfLiteStatus (*Impl)(TfLiteContext*, TfLiteNode*)>
TfLiteStatus Guarded(TfLiteContext* context, TfLiteNode* node) {
  if (context == nullptr) return kTfLiteError;
#if defined(__cpp_exceptions)
  try {
    return Impl(context, node);
  } catch (const std::exception& e) {
    return Fail(context, std::string("internal error: ") + e.what());
  } catch (...) {
    return Fail(context, "internal error");
  }
#else
  return Impl(context, node);
#endif
}

TfLiteStatus Prepare(TfLiteContext* context, TfLiteNode* node) {
  return Guarded<PrepareImpl>(context, node);
}

TfLiteStatus Eval(TfLiteContext* context, TfLiteNode* node) {
  return Guarded<EvalImpl>(context, node);
}

// Constant-initialized (no static-initialization-order concerns).
constexpr TfLiteRegistration kRegistration = {
    /*init=*/Init,
    /*free=*/Free,
    /*prepare=*/Prepare,
    /*invoke=*/Eval,
    /*profiling_string=*/nullptr,
    /*builtin_code=*/kTfLiteBuiltinCustom,
    /*custom_name=*/kOpName,
    /*version=*/1,
    /*registration_external=*/nullptr,
    /*async_kernel=*/nullptr,
    /*inplace_operator=*/0,
};

}  // namespace
}  // namespace ondevice_nlp

ONDEVICE_NLP_EXPORT const TfLiteRegistration* OndeviceNlp_ProjectionRegistration() {
  return &ondevice_nlp::kRegistration;
}

#ifndef ONDEVICE_NLP_WITHOUT_MUTABLE_OP_RESOLVER
// Define ONDEVICE_NLP_WITHOUT_MUTABLE_OP_RESOLVER when linking against a
// TFLite runtime that does not export the C++ MutableOpResolver (e.g. C API
// only); use OndeviceNlp_ProjectionRegistration() there.
ONDEVICE_NLP_EXPORT void OndeviceNlp_RegisterProjection(void* resolver) {
  if (resolver == nullptr) return;
  static_cast<tflite::MutableOpResolver*>(resolver)->AddCustom(
      ondevice_nlp::kOpName, &ondevice_nlp::kRegistration, 1);
}
#endif  // ONDEVICE_NLP_WITHOUT_MUTABLE_OP_RESOLVER
