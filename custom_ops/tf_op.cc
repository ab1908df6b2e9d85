// TensorFlow op OndeviceProjection: the hashing projection of projection.h
// (pNLP-Mixer MinHash, pQRNN ternary or hashed token ids) applied to a batch of strings.
//
//   input:   string [B]     UTF-8 (any bytes accepted)
//   config:  int32  [7]     ProjectionConfig.to_vector(): version 1, or
//            int32  [8]     version 2 (last entry: shape, 0 or 1), or
//            int32  [9]     version 3 (shape, then ngram: 0 or 2..8), or
//            int32  [11+2K] version 4 (then K, L and K word hashes: word segmentation)
//   features float32 [B, S, D]   D = (2w + 1) * F
//   mask     float32 [B, S]
//   offsets  int32   [B, S, 2]   UTF-8 byte start/end of each token
//
// Shape function: when `config` is a graph constant, S and D are exact;
// otherwise they are unknown. An invalid config is an InvalidArgument error.

#include <algorithm>
#include <mutex>
#include <string>

#if defined(__linux__)
#include <sys/mman.h>
#endif

#include "projection.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "tensorflow/core/framework/tensor.h"
#include "tensorflow/core/framework/tensor_shape.h"
#include "tensorflow/core/util/work_sharder.h"

namespace ondevice_nlp {
namespace {

namespace proj = ::ondevice_nlp::projection;
using ::tensorflow::DEVICE_CPU;
using ::tensorflow::OpKernel;
using ::tensorflow::OpKernelConstruction;
using ::tensorflow::OpKernelContext;
using ::tensorflow::Tensor;
using ::tensorflow::TensorShape;
using ::tensorflow::shape_inference::DimensionHandle;
using ::tensorflow::shape_inference::InferenceContext;
using ::tensorflow::shape_inference::ShapeHandle;

absl::Status ConfigFromTensor(const Tensor& t, proj::Config* config) {
  if (t.dtype() != tensorflow::DT_INT32 || t.dims() != 1) {
    return absl::InvalidArgumentError(
        "OndeviceProjection: config must be an int32 vector [7], [8], [9] or [11 + 2K], got shape " +
        t.shape().DebugString());
  }
  const std::string error =
      proj::ParseConfig(t.flat<int32_t>().data(), t.NumElements(), config);
  if (!error.empty()) return absl::InvalidArgumentError("OndeviceProjection: " + error);
  return absl::OkStatus();
}

// Large outputs usually arrive as fresh, untouched memory (the allocator maps
// them on demand), and first-touch page faults then dominate the op's time
// (~2.5 us per 4 KiB page, i.e. ~0.5 ms per utterance with S=64, D=3072).
// Asking for transparent huge pages on the interior 2 MiB-aligned part of the
// buffer cuts the number of faults by 512. Advisory only: no effect on
// results, ignored where unsupported.
void AdviseHugePages(void* data, size_t bytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr uintptr_t kHuge = uintptr_t{2} << 20;
  if (bytes < 4 * kHuge) return;
  const uintptr_t begin = (reinterpret_cast<uintptr_t>(data) + kHuge - 1) & ~(kHuge - 1);
  const uintptr_t end = (reinterpret_cast<uintptr_t>(data) + bytes) & ~(kHuge - 1);
  if (end > begin) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
#else
  (void)data;
  (void)bytes;
#endif
}

absl::Status ProjectionShape(InferenceContext* c) {
  ShapeHandle input;
  TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 1, &input));
  ShapeHandle config_shape;
  TF_RETURN_IF_ERROR(c->WithRank(c->input(1), 1, &config_shape));
  const DimensionHandle config_size = c->Dim(config_shape, 0);
  if (c->ValueKnown(config_size) && c->Value(config_size) != proj::kConfigSizeV1 &&
      c->Value(config_size) != proj::kConfigSizeV2 &&
      c->Value(config_size) != proj::kConfigSizeV3 &&
      (c->Value(config_size) < proj::kConfigHeaderV4 ||
       c->Value(config_size) > proj::kMaxConfigSize)) {
    return absl::InvalidArgumentError(
        "OndeviceProjection: config must be an int32 vector [7] (version 1), [8] (version "
        "2), [9] (version 3) or [11 + 2K] (version 4), got [" +
        std::to_string(c->Value(config_size)) + "]");
  }
  const DimensionHandle batch = c->Dim(input, 0);
  DimensionHandle seq = c->UnknownDim();
  DimensionHandle depth = c->UnknownDim();
  if (const Tensor* config_tensor = c->input_tensor(1)) {
    proj::Config config;
    TF_RETURN_IF_ERROR(ConfigFromTensor(*config_tensor, &config));
    seq = c->MakeDim(config.max_tokens);
    depth = c->MakeDim(config.OutputSize());
  }
  c->set_output(0, c->MakeShape({batch, seq, depth}));
  c->set_output(1, c->MakeShape({batch, seq}));
  c->set_output(2, c->MakeShape({batch, seq, c->MakeDim(2)}));
  return absl::OkStatus();
}

class OndeviceProjectionOp : public OpKernel {
 public:
  explicit OndeviceProjectionOp(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    const Tensor& input = ctx->input(0);
    const Tensor& config_tensor = ctx->input(1);
    OP_REQUIRES(ctx, input.dims() == 1,
                absl::InvalidArgumentError(
                    "OndeviceProjection: input must be a string vector [B], got shape " +
                    input.shape().DebugString()));
    proj::Config config;
    OP_REQUIRES_OK(ctx, ConfigFromTensor(config_tensor, &config));

    const int64_t batch = input.dim_size(0);
    const int64_t seq = config.max_tokens;
    const int64_t depth = config.OutputSize();
    TensorShape features_shape, mask_shape, offsets_shape;
    OP_REQUIRES_OK(ctx, TensorShape::BuildTensorShape({batch, seq, depth}, &features_shape));
    OP_REQUIRES_OK(ctx, TensorShape::BuildTensorShape({batch, seq}, &mask_shape));
    OP_REQUIRES_OK(ctx, TensorShape::BuildTensorShape({batch, seq, 2}, &offsets_shape));
    Tensor* features = nullptr;
    Tensor* mask = nullptr;
    Tensor* offsets = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, features_shape, &features));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, mask_shape, &mask));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(2, offsets_shape, &offsets));
    if (batch == 0) return;

    const auto texts = input.flat<tensorflow::tstring>();
    float* features_data = features->flat<float>().data();
    AdviseHugePages(features_data, features->TotalBytes());
    float* mask_data = mask->flat<float>().data();
    int32_t* offsets_data = offsets->flat<int32_t>().data();
    const size_t row = static_cast<size_t>(seq) * static_cast<size_t>(depth);

    std::mutex error_mu;
    std::string first_error;
    auto work = [&](int64_t begin, int64_t end) {
      proj::Projector projector(config);  // scratch buffers reused in the shard
      for (int64_t b = begin; b < end; ++b) {
        const tensorflow::tstring& text = texts(b);
        std::string error;
        const bool ok = projector.Run(
            reinterpret_cast<const uint8_t*>(text.data()), text.size(),
            features_data + static_cast<size_t>(b) * row,
            mask_data + static_cast<size_t>(b) * static_cast<size_t>(seq),
            offsets_data + static_cast<size_t>(b) * static_cast<size_t>(seq) * 2, &error);
        if (!ok) {
          std::lock_guard<std::mutex> lock(error_mu);
          if (first_error.empty()) {
            first_error = "OndeviceProjection: element " + std::to_string(b) + ": " + error;
          }
        }
      }
    };
    // Rough cost in cycles of one string: zero-filling its rows plus hashing
    // a typical utterance (~20 tokens x N hashes x few trigrams).
    const int64_t hash_work = config.method == proj::Method::kMinHash
                                  ? int64_t{20} * 6 * config.num_hashes * 8
                                  : int64_t{20} * (config.TokenSize() / 4 + 8);
    const int64_t cost = static_cast<int64_t>(row) / 4 + hash_work + 2000;
    const auto* threads = ctx->device()->tensorflow_cpu_worker_threads();
    tensorflow::Shard(threads->num_threads, threads->workers, batch, cost, work);
    OP_REQUIRES(ctx, first_error.empty(), absl::InvalidArgumentError(first_error));
  }
};

}  // namespace
}  // namespace ondevice_nlp

REGISTER_OP("OndeviceProjection")
    .Input("input: string")
    .Input("config: int32")
    .Output("features: float32")
    .Output("mask: float32")
    .Output("offsets: int32")
    .SetShapeFn(ondevice_nlp::ProjectionShape)
    .Doc(R"doc(
Hashing projection of UTF-8 strings for on-device text models.

Tokenizes each string (spec: ondevice_nlp/projection_ref.py) and hashes every
token into F features: MinHash counting Bloom filter over character trigrams
(pNLP-Mixer, Fusco et al. 2022, arXiv:2202.04350, Sec. 2.1) or ternary 2-bit
features (pQRNN, Kaliamoorthi et al. 2021, arXiv:2101.08890); or, with hashid,
into one feature, the token id 1 + hash mod (F - 1) (F = vocabulary size, w = 0,
padding 0). Features of the tokens i-w..i+w are concatenated.

input: string [B].
config: int32 [7] = [version=1, method (0 minhash, 1 ternary, 2 hashid), F, N, w, S, seed], or
  int32 [8] = [version=2, method, F, N, w, S, seed, shape]; shape=1 puts 4 token shape
  flags (first code point upper case, all caps, some digit, all digits) in the last
  4 of each token's F features; or int32 [9] = [version=3, method, F, N, w, S, seed,
  shape, ngram]; ngram=K (2..8, minhash only) counts, beside each nospace token's
  own fingerprint, a MinHash over the stretches of 2..K touching nospace tokens
  (Thai letters) that contain it; or int32 [11 + 2K] = [version=4, method, F, N, w, S,
  seed, shape, ngram=0, K, L, K word hashes as (low, high) int32 pairs]: touching
  nospace tokens are joined into dictionary words by maximal matching first.
features: float32 [B, S, (2w+1)*F] ([B, S, 1] for hashid).
mask: float32 [B, S], 1.0 for real tokens.
offsets: int32 [B, S, 2], UTF-8 byte start and end of each token (0, 0 for padding).
)doc");

REGISTER_KERNEL_BUILDER(Name("OndeviceProjection").Device(tensorflow::DEVICE_CPU),
                        ondevice_nlp::OndeviceProjectionOp);
