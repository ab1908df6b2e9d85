// How an app registers the OndeviceProjection kernel, compiled against the app's OWN
// TensorFlow Lite / LiteRT headers (not part of this repository's build; see README.md).
//
// Our kernel (tflite_kernel.cc) is compiled against custom_ops/tflite_abi.h; the app's code
// below sees the same C structs through the app's headers. The static_asserts check, against
// those headers, the layout facts that tflite_abi.h pins; if one fails, the app's TFLite
// version is not ABI-compatible with this kernel.

#include <cstddef>

#include "tensorflow/lite/c/common.h"                // TfLiteRegistration, TfLiteTensor
#include "tensorflow/lite/interpreter.h"
#include "tensorflow/lite/kernels/register.h"         // BuiltinOpResolver
#include "tensorflow/lite/model_builder.h"

extern "C" const TfLiteRegistration* OndeviceNlp_ProjectionRegistration();

static_assert(sizeof(void*) == 8, "arm64-v8a / x86_64 only");
static_assert(offsetof(TfLiteTensor, data) == 8 && offsetof(TfLiteTensor, dims) == 16 &&
                  offsetof(TfLiteTensor, allocation_type) == 32 &&
                  offsetof(TfLiteTensor, bytes) == 40,
              "TfLiteTensor layout differs from custom_ops/tflite_abi.h");
static_assert(offsetof(TfLiteRegistration, invoke) == 24 &&
                  offsetof(TfLiteRegistration, custom_name) == 48 &&
                  offsetof(TfLiteRegistration, version) == 56,
              "TfLiteRegistration layout differs from custom_ops/tflite_abi.h");

// C++ API (TFLite built from source with CMake, or any build exporting the C++ API).
std::unique_ptr<tflite::Interpreter> MakeInterpreter(const tflite::FlatBufferModel& model) {
  tflite::ops::builtin::BuiltinOpResolver resolver;
  resolver.AddCustom("OndeviceProjection", OndeviceNlp_ProjectionRegistration());
  std::unique_ptr<tflite::Interpreter> interpreter;
  if (tflite::InterpreterBuilder(model, resolver)(&interpreter) != kTfLiteOk) return nullptr;
  return interpreter;
}

// C API (prebuilt libtensorflowlite_jni.so / LiteRT shared library): instead of the above,
//   #include "tensorflow/lite/c/c_api_experimental.h"
//   TfLiteInterpreterOptionsAddCustomOp(options, "OndeviceProjection",
//                                       OndeviceNlp_ProjectionRegistration(), 1, 1);
