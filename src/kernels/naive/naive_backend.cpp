#include "naive/naive_backend.hpp"

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <fmt/format.h>

#include <vector>

#include "device_memory.hpp"
#include "naive/naive_kernels.hpp"

namespace longattn::bench {
namespace {

using naive::Elem;

constexpr std::string_view kName = "naive";

void check_cuda(cudaError_t e, const char* what) { check_cuda_call(e, kName, what); }

void check_blas(cublasStatus_t s, const char* what) {
  if (s == CUBLAS_STATUS_SUCCESS) return;
  const std::string msg = fmt::format("naive: {}: {}", what, cublasGetStatusString(s));
  if (s == CUBLAS_STATUS_ALLOC_FAILED) throw OutOfMemory(msg);
  throw std::runtime_error(msg);
}


constexpr std::size_t kCublasWorkspace = std::size_t(32) << 20;

class NaivePlan final : public Plan {
 public:
  NaivePlan(cublasHandle_t handle, const Problem& p, const std::vector<RowIntervals>& rows)
      : blas_(handle), s_(p.shape), elem_(p.dtype == DType::bf16 ? Elem::bf16 : Elem::fp16) {
    const std::size_t S = std::size_t(s_.seqlen_q), H = std::size_t(s_.heads_q);
    // The mask as one CSR of intervals per entry, offsets rebased into one key array.
    std::vector<long long> offsets, keys;
    long long base = 0;
    for (const RowIntervals& r : rows) {
      for (Index o : r.offsets) offsets.push_back(base + o);
      for (Range k : r.keys) {
        keys.push_back(k.begin);
        keys.push_back(k.end);
      }
      base += Index(r.keys.size());
    }
    offsets_ = DeviceBuffer(offsets.size() * sizeof(long long), kName);
    keys_ = DeviceBuffer(keys.size() * sizeof(long long), kName);
    check_cuda(cudaMemcpy(offsets_.get(), offsets.data(), offsets.size() * sizeof(long long),
                          cudaMemcpyHostToDevice), "mask upload");
    check_cuda(cudaMemcpy(keys_.get(), keys.data(), keys.size() * sizeof(long long),
                          cudaMemcpyHostToDevice), "mask upload");
    dev_rows_.offsets = offsets_.get<long long>();
    dev_rows_.keys = keys_.get<long long>();
    dev_rows_.entries = int(rows.size());
    dev_rows_.group = s_.heads_q / s_.heads_kv;

    scores_ = DeviceBuffer(H * S * S * sizeof(float), kName);
    p_ = DeviceBuffer(H * S * S * 2, kName);
    workspace_ = DeviceBuffer(kCublasWorkspace, kName);
    if (runs_backward(p.direction)) {
      const std::size_t kv = s_.kv_elements();
      dk32_ = DeviceBuffer(kv * sizeof(float), kName);
      dv32_ = DeviceBuffer(kv * sizeof(float), kName);
      delta_ = DeviceBuffer(H * S * sizeof(float), kName);
    }
  }

  void forward(const Tensors& t, Stream stream) override {
    bind(stream);
    scores_gemm(t.q, t.k);
    naive::masked_softmax(scores_.get<float>(), p_.get(), t.lse, dev_rows_, s_.seqlen_q, s_.heads_q,
                          elem_, stream);
    // O_h = P_h V_g.
    for_each_r([&](int r, float, float) {
      gemm(CUBLAS_OP_N, CUBLAS_OP_N, s_.head_dim, s_.seqlen_q, s_.seqlen_k, 1.0f, t.v, ld_kv(), d(),
           p_elems(r), s_.seqlen_k, group_stride_ss(), 0.0f, q_head(t.o, r), ld_q(), group_stride_d(),
           data_type());
    });
    check_cuda(cudaGetLastError(), "forward launch");
  }

  void backward(const Tensors& t, Stream stream) override {
    bind(stream);
    const float scale = s_.softmax_scale();
    const long long S = s_.seqlen_q;
    scores_gemm(t.q, t.k);
    naive::recompute_p(scores_.get<float>(), p_.get(), t.lse, dev_rows_, S, s_.heads_q, elem_, stream);
    naive::row_dot(t.d_o, t.o, delta_.get<float>(), S, s_.heads_q, s_.head_dim, elem_, stream);
    for_each_r([&](int r, float, float beta) {
      // dV_g += P_h^T dO_h
      gemm(CUBLAS_OP_N, CUBLAS_OP_T, s_.head_dim, s_.seqlen_k, s_.seqlen_q, 1.0f, q_head(t.d_o, r),
           ld_q(), group_stride_d(), p_elems(r), s_.seqlen_k, group_stride_ss(), beta, dv32_.get(),
           ld_kv(), d(), CUDA_R_32F);
      // dP_h = dO_h V_g^T, into the score buffer
      gemm(CUBLAS_OP_T, CUBLAS_OP_N, s_.seqlen_k, s_.seqlen_q, s_.head_dim, 1.0f, t.v, ld_kv(), d(),
           q_head(t.d_o, r), ld_q(), group_stride_d(), 0.0f, score_elems(r), s_.seqlen_k,
           group_stride_ss(), CUDA_R_32F);
    });
    naive::softmax_grad(p_.get(), scores_.get<float>(), delta_.get<float>(), S, s_.heads_q, elem_, stream);
    for_each_r([&](int r, float, float beta) {
      // dQ_h = scale dS_h K_g
      gemm(CUBLAS_OP_N, CUBLAS_OP_N, s_.head_dim, s_.seqlen_q, s_.seqlen_k, scale, t.k, ld_kv(), d(),
           p_elems(r), s_.seqlen_k, group_stride_ss(), 0.0f, q_head(t.dq, r), ld_q(), group_stride_d(),
           data_type());
      // dK_g += scale dS_h^T Q_h
      gemm(CUBLAS_OP_N, CUBLAS_OP_T, s_.head_dim, s_.seqlen_k, s_.seqlen_q, scale, q_head(t.q, r), ld_q(),
           group_stride_d(), p_elems(r), s_.seqlen_k, group_stride_ss(), beta, dk32_.get(), ld_kv(), d(),
           CUDA_R_32F);
    });
    naive::convert_from_f32(dk32_.get<float>(), t.dk, (long long)s_.kv_elements(), elem_, stream);
    naive::convert_from_f32(dv32_.get<float>(), t.dv, (long long)s_.kv_elements(), elem_, stream);
    check_cuda(cudaGetLastError(), "backward launch");
  }

  std::optional<Index> issued_area() const override { return s_.seqlen_q * s_.seqlen_k; }

 private:
  // Batched over the KV heads g; one call per position r inside the group (query head
  // h = g * group + r), so that K/V are shared without copies.
  template <class F>
  void for_each_r(F&& f) {
    const int group = s_.heads_q / s_.heads_kv;
    for (int r = 0; r < group; ++r) f(r, 0.0f, r == 0 ? 0.0f : 1.0f);
  }
  void scores_gemm(const void* q, const void* k) {
    // S_h = scale Q_h K_g^T, fp32, row-major [i][j] (column-major S_k x S_q).
    for_each_r([&](int r, float, float) {
      gemm(CUBLAS_OP_T, CUBLAS_OP_N, s_.seqlen_k, s_.seqlen_q, s_.head_dim, s_.softmax_scale(), k, ld_kv(),
           d(), q_head(q, r), ld_q(), group_stride_d(), 0.0f, score_elems(r), s_.seqlen_k,
           group_stride_ss(), CUDA_R_32F);
    });
  }
  void gemm(cublasOperation_t ta, cublasOperation_t tb, long long m, long long n, long long k, float alpha,
            const void* a, long long lda, long long stride_a, const void* b, long long ldb,
            long long stride_b, float beta, void* c, long long ldc, long long stride_c,
            cudaDataType_t c_type) {
    check_blas(cublasGemmStridedBatchedEx(blas_, ta, tb, int(m), int(n), int(k), &alpha, a, data_type(),
                                          int(lda), stride_a, b, data_type(), int(ldb), stride_b, &beta, c,
                                          c_type, int(ldc), stride_c, s_.heads_kv, CUBLAS_COMPUTE_32F,
                                          CUBLAS_GEMM_DEFAULT),
               "cublasGemmStridedBatchedEx");
  }
  void bind(Stream stream) {
    if (bound_ && stream == stream_) return;
    // cublasSetStream resets the workspace to cuBLAS's own pool: ours is set after it, so cuBLAS
    // allocates nothing inside the timed region.
    check_blas(cublasSetStream(blas_, stream), "cublasSetStream");
    check_blas(cublasSetWorkspace(blas_, workspace_.get(), kCublasWorkspace), "cublasSetWorkspace");
    stream_ = stream;
    bound_ = true;
  }
  cudaDataType_t data_type() const { return elem_ == Elem::bf16 ? CUDA_R_16BF : CUDA_R_16F; }
  long long d() const { return s_.head_dim; }  // batch stride of K/V heads (and their fp32 grads)
  long long ld_q() const { return (long long)s_.heads_q * s_.head_dim; }
  long long ld_kv() const { return (long long)s_.heads_kv * s_.head_dim; }
  long long group_stride_d() const { return (long long)(s_.heads_q / s_.heads_kv) * s_.head_dim; }
  long long group_stride_ss() const {
    return (long long)(s_.heads_q / s_.heads_kv) * s_.seqlen_q * s_.seqlen_k;
  }
  // Head r (of KV head 0's group) of a [S][Hq][D] tensor; batches step by group_stride_d.
  const void* q_head(const void* x, int r) const {
    return static_cast<const char*>(x) + std::size_t(r) * std::size_t(s_.head_dim) * 2;
  }
  void* q_head(void* x, int r) const {
    return static_cast<char*>(x) + std::size_t(r) * std::size_t(s_.head_dim) * 2;
  }
  void* p_elems(int r) const {
    return p_.get<char>() + std::size_t(r) * std::size_t(s_.seqlen_q) * std::size_t(s_.seqlen_k) * 2;
  }
  void* score_elems(int r) const {
    return scores_.get<float>() + std::size_t(r) * std::size_t(s_.seqlen_q) * std::size_t(s_.seqlen_k);
  }

  cublasHandle_t blas_;
  AttentionShape s_;
  Elem elem_;
  DeviceBuffer offsets_, keys_, scores_, p_, workspace_, dk32_, dv32_, delta_;
  naive::DeviceRows dev_rows_;
  Stream stream_ = nullptr;
  bool bound_ = false;
};

class NaiveBackend final : public Backend {
 public:
  explicit NaiveBackend(NaiveBackendOptions o) : opt_(std::move(o)) {
    check_blas(cublasCreate(&blas_), "cublasCreate");
    cap_.device = Device::gpu;
    cap_.dtypes = {DType::bf16, DType::fp16};
    cap_.dynamic_masks = true;
    cap_.masks = "every static and block-sparse mask (per-row key intervals on the device)";
  }
  ~NaiveBackend() override { cublasDestroy(blas_); }

  std::string_view name() const override { return opt_.name; }
  const Capabilities& capabilities() const override { return cap_; }
  std::string version() const override {
    int v = 0;
    cublasGetVersion(blas_, &v);
    return fmt::format("cuBLAS {}.{}.{}", v / 10000, (v % 10000) / 100, v % 100);
  }
  std::optional<std::string> unsupported_reason(const Problem& p) const override {
    if (const auto* b = std::get_if<BlockSparseMask>(&p.canonical()))
      if (b->num_heads() != 1 && b->num_heads() != p.shape.heads_kv)
        return fmt::format("block-sparse mask has {} heads; expected 1 or heads_kv", b->num_heads());
    const long long S = p.shape.seqlen_q;
    if (S * S * (long long)p.shape.heads_q / p.shape.heads_kv > (1ll << 62) / 8)
      return std::string("score matrix size overflows");
    return std::nullopt;
  }

  std::unique_ptr<Plan> prepare(const Problem& p) override {
    std::vector<RowIntervals> rows = row_intervals_per_head(p.canonical());
    if (opt_.alter_mask)
      for (RowIntervals& r : rows) opt_.alter_mask(r);
    return std::make_unique<NaivePlan>(blas_, p, rows);
  }

 private:
  NaiveBackendOptions opt_;
  Capabilities cap_;
  cublasHandle_t blas_ = nullptr;
};

}  // namespace

std::unique_ptr<Backend> make_naive_backend(NaiveBackendOptions options) {
  return std::make_unique<NaiveBackend>(std::move(options));
}
std::unique_ptr<Backend> make_naive_backend() { return make_naive_backend(NaiveBackendOptions{}); }

}  // namespace longattn::bench
