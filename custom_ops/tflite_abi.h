// Our own minimal declarations of the TensorFlow Lite C ABI used by the
// OndeviceProjection custom kernel (tflite_kernel.cc) and its sanitizer
// driver. Written for this project (no TensorFlow header is included or
// copied); only the facts of the binary interface are carried over.
//
// Pinned to the runtimes this project ships with, both on LP64 Linux/Android
// (x86_64, aarch64):
//   * tensorflow / tensorflow-cpu 2.21.0  (libtensorflow_cc.so.2)
//   * ai-edge-litert 2.3.0                 (libpywrap_litert_common.so)
// The TFLite structs below are "append only" upstream: fields are never
// reordered, new ones go to the end. We declare every field up to the last
// one we touch (and, for TfLiteRegistration, which the runtime copies by
// value, the complete struct) and pin sizes and offsets with static_asserts.
// The offsets were checked against the disassembly of TfLiteTensorReset and
// tflite::MutableOpResolver::AddCustom in libtensorflow_cc.so.2 (2.21.0):
// AddCustom copies 88 bytes of TfLiteRegistration and stores custom_name at
// +48 and version at +56; TfLiteTensorReset stores type +0, data +8, dims +16,
// params +24, allocation_type +32, bytes +40, allocation +48, name +56,
// is_variable +77, quantization +80.
//
// When upgrading TensorFlow / LiteRT, re-check these facts (and run
// tests/test_projection.py, which exercises the kernel in both runtimes).

#ifndef ONDEVICE_NLP_CUSTOM_OPS_TFLITE_ABI_H_
#define ONDEVICE_NLP_CUSTOM_OPS_TFLITE_ABI_H_

#include <cstddef>
#include <cstdint>

extern "C" {

// Status codes returned by kernel callbacks (only the two we use).
typedef enum TfLiteStatus {
  kTfLiteOk = 0,
  kTfLiteError = 1,
} TfLiteStatus;

// Element types (subset; the numeric values are the ABI).
typedef enum TfLiteType {
  kTfLiteNoType = 0,
  kTfLiteFloat32 = 1,
  kTfLiteInt32 = 2,
  kTfLiteUInt8 = 3,
  kTfLiteInt64 = 4,
  kTfLiteString = 5,
  kTfLiteBool = 6,
  kTfLiteInt16 = 7,
  kTfLiteInt8 = 9,
} TfLiteType;

// How a tensor's buffer is owned (values are the ABI).
typedef enum TfLiteAllocationType {
  kTfLiteMemNone = 0,
  kTfLiteMmapRo = 1,         // read-only model data (constant tensors)
  kTfLiteArenaRw = 2,        // planned arena memory, sized after Prepare
  kTfLiteArenaRwPersistent = 3,
  kTfLiteDynamic = 4,        // malloc'ed by ResizeTensor, e.g. strings
  kTfLitePersistentRo = 5,   // computed in Prepare, then constant
} TfLiteAllocationType;

// Length-prefixed int array (shapes, tensor index lists). Allocated with
// malloc(sizeof(int) * (1 + size)); the runtime releases it with free().
typedef struct TfLiteIntArray {
  int size;
  int data[];
} TfLiteIntArray;

typedef struct TfLiteQuantizationParams {
  float scale;
  int32_t zero_point;
} TfLiteQuantizationParams;

typedef struct TfLiteQuantization {
  int type;  // TfLiteQuantizationType
  void* params;
} TfLiteQuantization;

typedef union TfLitePtrUnion {
  int32_t* i32;
  float* f;
  char* raw;
  const char* raw_const;
  uint8_t* uint8;
  void* data;
} TfLitePtrUnion;

struct TfLiteDelegate;
struct TfLiteContext;
struct TfLiteNode;
struct TfLiteRegistration;

typedef struct TfLiteTensor {
  TfLiteType type;
  TfLitePtrUnion data;
  TfLiteIntArray* dims;
  TfLiteQuantizationParams params;
  TfLiteAllocationType allocation_type;
  size_t bytes;
  const void* allocation;
  const char* name;
  struct TfLiteDelegate* delegate;
  int buffer_handle;
  bool data_is_stale;
  bool is_variable;
  TfLiteQuantization quantization;
  void* sparsity;
  const TfLiteIntArray* dims_signature;
} TfLiteTensor;

typedef struct TfLiteNode {
  TfLiteIntArray* inputs;
  TfLiteIntArray* outputs;
  TfLiteIntArray* intermediates;
  TfLiteIntArray* temporaries;
  void* user_data;
  const void* builtin_data;
  const void* custom_initial_data;
  int custom_initial_data_size;
  struct TfLiteDelegate* delegate;
  bool might_have_side_effect;
} TfLiteNode;

// Function-pointer table handed to kernels. Fields we never call are
// declared as opaque pointers so that the layout is right.
typedef struct TfLiteContext {
  size_t tensors_size;
  void* GetExecutionPlan;
  TfLiteTensor* tensors;
  void* impl_;
  // Takes ownership of new_size (malloc'ed TfLiteIntArray) in all cases.
  TfLiteStatus (*ResizeTensor)(struct TfLiteContext* context, TfLiteTensor* tensor,
                               TfLiteIntArray* new_size);
  void (*ReportError)(struct TfLiteContext* context, const char* format, ...);
  void* AddTensors;
  void* GetNodeAndRegistration;
  void* ReplaceNodeSubsetsWithDelegateKernels;
  int recommended_num_threads;
  void* GetExternalContext;
  void* SetExternalContext;
  bool allow_fp32_relax_to_fp16;
  void* profiler;
  void* AllocatePersistentBuffer;
  void* AllocateBufferForEval;
  void* RequestScratchBufferInArena;
  void* GetScratchBuffer;
  void* ResizeTensorExplicit;
  void* PreviewDelegatePartitioning;
  // May be used when `tensors` is null (not the case in the TFLite interpreter).
  TfLiteTensor* (*GetTensor)(const struct TfLiteContext* context, int tensor_index);
} TfLiteContext;

// A kernel implementation. The runtime copies the whole struct when it is
// registered, so this must be the complete 2.21 layout.
typedef struct TfLiteRegistration {
  void* (*init)(TfLiteContext* context, const char* buffer, size_t length);
  void (*free)(TfLiteContext* context, void* buffer);
  TfLiteStatus (*prepare)(TfLiteContext* context, TfLiteNode* node);
  TfLiteStatus (*invoke)(TfLiteContext* context, TfLiteNode* node);
  const char* (*profiling_string)(const TfLiteContext* context, const TfLiteNode* node);
  int32_t builtin_code;
  const char* custom_name;
  int version;
  void* registration_external;  // TfLiteOperator*
  void* async_kernel;           // TfLiteAsyncKernel* (*)(TfLiteContext*, TfLiteNode*)
  uint64_t inplace_operator;    // TfLiteInPlaceOp bitmask
} TfLiteRegistration;

}  // extern "C"

// BuiltinOperator_CUSTOM in the TFLite schema.
constexpr int32_t kTfLiteBuiltinCustom = 32;

namespace tflite {
// The C++ op resolver of the TFLite interpreter. We only declare the one
// non-virtual member we call; its mangled name,
// _ZN6tflite17MutableOpResolver9AddCustomEPKcPK18TfLiteRegistrationi, is
// exported by libtensorflow_cc.so.2 (2.21.0). The resolver copies the
// registration and keeps `name` by pointer (pass a static string).
class MutableOpResolver {
 public:
  void AddCustom(const char* name, const TfLiteRegistration* registration, int version);
};
}  // namespace tflite

// ---- ABI pins (LP64). ----
static_assert(sizeof(void*) == 8, "tflite_abi.h describes LP64 targets only");
static_assert(sizeof(TfLiteStatus) == 4 && sizeof(TfLiteType) == 4, "enum size");
static_assert(sizeof(TfLiteAllocationType) == 4, "enum size");
static_assert(sizeof(TfLiteIntArray) == 4 && offsetof(TfLiteIntArray, data) == 4,
              "TfLiteIntArray layout");

static_assert(sizeof(TfLiteTensor) == 112, "TfLiteTensor size");
static_assert(offsetof(TfLiteTensor, type) == 0, "TfLiteTensor::type");
static_assert(offsetof(TfLiteTensor, data) == 8, "TfLiteTensor::data");
static_assert(offsetof(TfLiteTensor, dims) == 16, "TfLiteTensor::dims");
static_assert(offsetof(TfLiteTensor, params) == 24, "TfLiteTensor::params");
static_assert(offsetof(TfLiteTensor, allocation_type) == 32, "TfLiteTensor::allocation_type");
static_assert(offsetof(TfLiteTensor, bytes) == 40, "TfLiteTensor::bytes");
static_assert(offsetof(TfLiteTensor, name) == 56, "TfLiteTensor::name");
static_assert(offsetof(TfLiteTensor, is_variable) == 77, "TfLiteTensor::is_variable");
static_assert(offsetof(TfLiteTensor, quantization) == 80, "TfLiteTensor::quantization");
static_assert(offsetof(TfLiteTensor, dims_signature) == 104, "TfLiteTensor::dims_signature");

static_assert(sizeof(TfLiteNode) == 80, "TfLiteNode size");
static_assert(offsetof(TfLiteNode, inputs) == 0, "TfLiteNode::inputs");
static_assert(offsetof(TfLiteNode, outputs) == 8, "TfLiteNode::outputs");
static_assert(offsetof(TfLiteNode, user_data) == 32, "TfLiteNode::user_data");
static_assert(offsetof(TfLiteNode, custom_initial_data) == 48, "TfLiteNode::custom_initial_data");
static_assert(offsetof(TfLiteNode, custom_initial_data_size) == 56, "TfLiteNode::custom_initial_data_size");

static_assert(offsetof(TfLiteContext, tensors_size) == 0, "TfLiteContext::tensors_size");
static_assert(offsetof(TfLiteContext, tensors) == 16, "TfLiteContext::tensors");
static_assert(offsetof(TfLiteContext, ResizeTensor) == 32, "TfLiteContext::ResizeTensor");
static_assert(offsetof(TfLiteContext, ReportError) == 40, "TfLiteContext::ReportError");
static_assert(offsetof(TfLiteContext, recommended_num_threads) == 72,
              "TfLiteContext::recommended_num_threads");
static_assert(offsetof(TfLiteContext, GetTensor) == 160, "TfLiteContext::GetTensor");

static_assert(sizeof(TfLiteRegistration) == 88, "TfLiteRegistration size");
static_assert(offsetof(TfLiteRegistration, init) == 0, "TfLiteRegistration::init");
static_assert(offsetof(TfLiteRegistration, free) == 8, "TfLiteRegistration::free");
static_assert(offsetof(TfLiteRegistration, prepare) == 16, "TfLiteRegistration::prepare");
static_assert(offsetof(TfLiteRegistration, invoke) == 24, "TfLiteRegistration::invoke");
static_assert(offsetof(TfLiteRegistration, builtin_code) == 40, "TfLiteRegistration::builtin_code");
static_assert(offsetof(TfLiteRegistration, custom_name) == 48, "TfLiteRegistration::custom_name");
static_assert(offsetof(TfLiteRegistration, version) == 56, "TfLiteRegistration::version");
static_assert(offsetof(TfLiteRegistration, inplace_operator) == 80,
              "TfLiteRegistration::inplace_operator");

#endif  // ONDEVICE_NLP_CUSTOM_OPS_TFLITE_ABI_H_
