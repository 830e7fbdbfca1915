// The `cudnn` backend: cuDNN's fused SDPA through the frontend graph API, forward and backward,
// GQA, bf16/fp16, for the masks cuDNN expresses exactly:
//  - one diagonal band for every row (views/uniform_band.hpp): full, causal, sliding windows;
//  - packed documents (views/cu_seqlens.hpp), full or causal inside each: a ragged batch (one
//    sequence per document, Q/K/V/O addressed through ragged offsets into our packed [S][H][D]
//    tensors) with a padding mask.
// Anything else is `unsupported`, with the reason. Built graphs are cached per shape.
#include <cuda_runtime.h>
#include <cudnn.h>
#include <fmt/format.h>

#include <cudnn_frontend.h>
#include <limits>
#include <map>
#include <variant>

#include "cudnn/stats_layout.hpp"
#include "device_memory.hpp"
#include "longattn/bench/backend.hpp"
#include "longattn/views/cu_seqlens.hpp"
#include "longattn/views/uniform_band.hpp"

namespace longattn::bench {
namespace {

namespace fe = cudnn_frontend;

enum Uid : fe::graph::Tensor_attributes::uid_t {
  kQ = 1, kK, kV, kO, kStats, kSeqQ, kSeqKv, kRaggedQ, kRaggedKv, kDO, kDQ, kDK, kDV
};

constexpr std::string_view kName = "cudnn";

void check_cuda(cudaError_t e, const char* what) { check_cuda_call(e, kName, what); }


// The mask as cuDNN takes it.
struct BandMask {
  std::optional<Index> left, right;  // uniform_band's: keys i - left .. i + right
};
struct DocumentMask {
  std::vector<Index> offsets;  // cu_seqlens
  bool causal = false;
};
using CudnnMask = std::variant<BandMask, DocumentMask>;

std::variant<CudnnMask, std::string> express(const Problem& p) {
  const auto* s = std::get_if<SliceMask>(&p.canonical());
  if (!s) return std::string("cuDNN SDPA has no block-sparse masks");
  if (auto band = uniform_band(*s)) return CudnnMask{BandMask{band->left, band->right}};
  auto docs = cu_seqlens(*s);
  if (auto* c = std::get_if<CuSeqlens>(&docs)) return CudnnMask{DocumentMask{c->offsets, c->causal}};
  return fmt::format(
      "cuDNN SDPA expresses one diagonal band for every row (full, causal, sliding windows) or "
      "packed documents (cu_seqlens); the {} mask is neither ({})",
      to_string(p.mask->spec.pattern), std::get<NotDocumentMask>(docs).reason);
}

struct Layout {
  long long batch = 1, max_len = 0;  // documents (or 1) and the padded sequence length
  bool ragged = false;
};

Layout layout_of(const Problem& p, const CudnnMask& m) {
  Layout l;
  l.max_len = p.shape.seqlen_q;
  if (const auto* d = std::get_if<DocumentMask>(&m)) {
    l.ragged = true;
    l.batch = (long long)d->offsets.size() - 1;
    l.max_len = 0;
    for (std::size_t b = 0; b + 1 < d->offsets.size(); ++b)
      l.max_len = std::max<long long>(l.max_len, d->offsets[b + 1] - d->offsets[b]);
  }
  return l;
}

// Everything of a graph's key: the shapes and the mask's structure (not the document lengths,
// which are device data).
std::string graph_key(const Problem& p, const CudnnMask& m, const Layout& l, bool backward) {
  std::string mask;
  if (const auto* b = std::get_if<BandMask>(&m))
    mask = fmt::format("band:{}:{}", b->left ? *b->left : -1, b->right ? *b->right : -1);
  else
    mask = fmt::format("docs:{}", std::get<DocumentMask>(m).causal);
  return fmt::format("{}|{}|{}:{}:{}|{}x{}|{}|{}", backward ? "bwd" : "fwd", to_string(p.dtype),
                     p.shape.heads_q, p.shape.heads_kv, p.shape.head_dim, l.batch, l.max_len, mask,
                     p.shape.seqlen_q);
}

template <class Attr>
void apply_mask(Attr& a, const CudnnMask& m) {
  if (const auto* b = std::get_if<BandMask>(&m)) {
    if (!b->left && !b->right) return;  // full
    a.set_diagonal_alignment(fe::DiagonalAlignment_t::TOP_LEFT);
    // cuDNN keeps j with i - j < left_bound (exclusive) and j - i <= right_bound (inclusive).
    if (b->left) a.set_diagonal_band_left_bound(int(*b->left + 1));
    if (b->right) a.set_diagonal_band_right_bound(int(*b->right));
    return;
  }
  if (std::get<DocumentMask>(m).causal) {
    a.set_diagonal_alignment(fe::DiagonalAlignment_t::TOP_LEFT);
    a.set_diagonal_band_right_bound(0);
  }
}

// A [B][H][Smax][D] view of our packed [S][H][D] tensor (token-major), ragged when documents.
std::shared_ptr<fe::graph::Tensor_attributes> qkv_tensor(fe::graph::Graph& g, const char* name, Uid uid,
                                                         const Layout& l, long long heads, long long dim,
                                                         std::shared_ptr<fe::graph::Tensor_attributes> ragged) {
  auto t = g.tensor(fe::graph::Tensor_attributes()
                        .set_name(name)
                        .set_uid(uid)
                        .set_dim({l.batch, heads, l.max_len, dim})
                        .set_stride({l.max_len * heads * dim, dim, heads * dim, 1}));
  if (ragged) t->set_ragged_offset(ragged);
  return t;
}

void set_output(std::shared_ptr<fe::graph::Tensor_attributes> t, Uid uid, const Layout& l, long long heads,
                long long dim, std::shared_ptr<fe::graph::Tensor_attributes> ragged) {
  t->set_output(true).set_uid(uid).set_dim({l.batch, heads, l.max_len, dim}).set_stride(
      {l.max_len * heads * dim, dim, heads * dim, 1});
  if (ragged) t->set_ragged_offset(ragged);
}

struct GraphInputs {
  std::shared_ptr<fe::graph::Tensor_attributes> seq_q, seq_kv, ragged_q, ragged_kv;
};

GraphInputs add_document_inputs(fe::graph::Graph& g, const Layout& l) {
  GraphInputs in;
  if (!l.ragged) return in;
  auto index = [&](const char* name, Uid uid, long long n) {
    return g.tensor(fe::graph::Tensor_attributes()
                        .set_name(name)
                        .set_uid(uid)
                        .set_dim({n, 1, 1, 1})
                        .set_stride({1, 1, 1, 1})
                        .set_data_type(fe::DataType_t::INT32));
  };
  in.seq_q = index("seq_q", kSeqQ, l.batch);
  in.seq_kv = index("seq_kv", kSeqKv, l.batch);
  in.ragged_q = index("ragged_q", kRaggedQ, l.batch + 1);
  in.ragged_kv = index("ragged_kv", kRaggedKv, l.batch + 1);
  return in;
}

std::shared_ptr<fe::graph::Graph> new_graph(DType t) {
  auto g = std::make_shared<fe::graph::Graph>();
  g->set_io_data_type(t == DType::bf16 ? fe::DataType_t::BFLOAT16 : fe::DataType_t::HALF)
      .set_intermediate_data_type(fe::DataType_t::FLOAT)
      .set_compute_data_type(fe::DataType_t::FLOAT);
  return g;
}

std::shared_ptr<fe::graph::Graph> build_forward(const Problem& p, const CudnnMask& m, const Layout& l) {
  auto g = new_graph(p.dtype);
  const long long Hq = p.shape.heads_q, Hkv = p.shape.heads_kv, D = p.shape.head_dim;
  GraphInputs in = add_document_inputs(*g, l);
  auto Q = qkv_tensor(*g, "Q", kQ, l, Hq, D, in.ragged_q);
  auto K = qkv_tensor(*g, "K", kK, l, Hkv, D, in.ragged_kv);
  auto V = qkv_tensor(*g, "V", kV, l, Hkv, D, in.ragged_kv);
  auto a = fe::graph::SDPA_attributes().set_name("sdpa").set_generate_stats(true).set_attn_scale(
      p.shape.softmax_scale());
  if (l.ragged) a.set_padding_mask(true).set_seq_len_q(in.seq_q).set_seq_len_kv(in.seq_kv);
  apply_mask(a, m);
  auto [O, Stats] = g->sdpa(Q, K, V, a);
  set_output(O, kO, l, Hq, D, in.ragged_q);
  // [B][H][Smax] fp32: for one sequence exactly our LSE layout [H][S].
  Stats->set_output(true).set_uid(kStats).set_data_type(fe::DataType_t::FLOAT).set_dim({l.batch, Hq, l.max_len, 1})
      .set_stride({Hq * l.max_len, l.max_len, 1, 1});
  return g;
}

std::shared_ptr<fe::graph::Graph> build_backward(const Problem& p, const CudnnMask& m, const Layout& l) {
  auto g = new_graph(p.dtype);
  const long long Hq = p.shape.heads_q, Hkv = p.shape.heads_kv, D = p.shape.head_dim;
  GraphInputs in = add_document_inputs(*g, l);
  auto Q = qkv_tensor(*g, "Q", kQ, l, Hq, D, in.ragged_q);
  auto K = qkv_tensor(*g, "K", kK, l, Hkv, D, in.ragged_kv);
  auto V = qkv_tensor(*g, "V", kV, l, Hkv, D, in.ragged_kv);
  auto O = qkv_tensor(*g, "O", kO, l, Hq, D, in.ragged_q);
  auto dO = qkv_tensor(*g, "dO", kDO, l, Hq, D, in.ragged_q);
  auto Stats = g->tensor(fe::graph::Tensor_attributes()
                             .set_name("Stats")
                             .set_uid(kStats)
                             .set_dim({l.batch, Hq, l.max_len, 1})
                             .set_stride({Hq * l.max_len, l.max_len, 1, 1})
                             .set_data_type(fe::DataType_t::FLOAT));
  auto a = fe::graph::SDPA_backward_attributes().set_name("sdpa_backward").set_attn_scale(
      p.shape.softmax_scale());
  if (l.ragged) a.set_padding_mask(true).set_seq_len_q(in.seq_q).set_seq_len_kv(in.seq_kv);
  apply_mask(a, m);
  auto [dQ, dK, dV] = g->sdpa_backward(Q, K, V, O, dO, Stats, a);
  set_output(dQ, kDQ, l, Hq, D, in.ragged_q);
  set_output(dK, kDK, l, Hkv, D, in.ragged_kv);
  set_output(dV, kDV, l, Hkv, D, in.ragged_kv);
  return g;
}

struct Built {
  std::shared_ptr<fe::graph::Graph> graph;
  int64_t workspace = 0;
};

class CudnnPlan final : public Plan {
 public:
  CudnnPlan(cudnnHandle_t handle, const Problem& p, const CudnnMask& m, const Layout& l, Built fwd,
            Built bwd)
      : handle_(handle), s_(p.shape), l_(l), fwd_(std::move(fwd)), bwd_(std::move(bwd)) {
    workspace_ = DeviceBuffer(std::size_t(std::max(fwd_.workspace, bwd_.workspace)), kName);
    if (l_.ragged) {
      const auto& offsets = std::get<DocumentMask>(m).offsets;
      std::vector<int> seq, starts, rq, rkv;
      for (std::size_t b = 0; b + 1 < offsets.size(); ++b) seq.push_back(int(offsets[b + 1] - offsets[b]));
      for (Index o : offsets) {
        starts.push_back(int(o));
        rq.push_back(int(o * s_.heads_q * s_.head_dim));
        rkv.push_back(int(o * s_.heads_kv * s_.head_dim));
      }
      auto upload = [](DeviceBuffer& dst, const std::vector<int>& v) {
        dst = DeviceBuffer(v.size() * sizeof(int), kName);
        check_cuda(cudaMemcpy(dst.get(), v.data(), v.size() * sizeof(int), cudaMemcpyHostToDevice),
                   "document upload");
      };
      upload(seq_, seq);
      upload(starts_, starts);
      upload(ragged_q_, rq);
      upload(ragged_kv_, rkv);
      const std::size_t rows = std::size_t(l_.batch) * std::size_t(s_.heads_q) * std::size_t(l_.max_len);
      stats_ = DeviceBuffer(rows * sizeof(float), kName);
    }
  }

  void forward(const Tensors& t, Stream stream) override {
    std::unordered_map<int64_t, void*> pack = {{kQ, const_cast<void*>(t.q)},
                                               {kK, const_cast<void*>(t.k)},
                                               {kV, const_cast<void*>(t.v)},
                                               {kO, t.o},
                                               {kStats, l_.ragged ? stats_.get() : t.lse}};
    add_documents(pack);
    run(*fwd_.graph, pack, stream, "forward");
  }

  void export_lse(const Tensors& t, Stream stream) override {
    if (!l_.ragged) return;  // the forward wrote t.lse directly
    cudnn_sdpa::unpad_stats(stats_.get<float>(), starts_.get<int>(), int(l_.batch), s_.heads_q, l_.max_len,
                            s_.seqlen_q, t.lse, stream);
    check_cuda(cudaGetLastError(), "unpad_stats");
  }

  void backward(const Tensors& t, Stream stream) override {
    std::unordered_map<int64_t, void*> pack = {
        {kQ, const_cast<void*>(t.q)}, {kK, const_cast<void*>(t.k)}, {kV, const_cast<void*>(t.v)},
        {kO, t.o},  {kDO, const_cast<void*>(t.d_o)}, {kStats, l_.ragged ? stats_.get() : t.lse},
        {kDQ, t.dq}, {kDK, t.dk}, {kDV, t.dv}};
    add_documents(pack);
    run(*bwd_.graph, pack, stream, "backward");
  }

 private:
  void add_documents(std::unordered_map<int64_t, void*>& pack) const {
    if (!l_.ragged) return;
    pack[kSeqQ] = seq_.get();
    pack[kSeqKv] = seq_.get();
    pack[kRaggedQ] = ragged_q_.get();
    pack[kRaggedKv] = ragged_kv_.get();
  }
  void run(fe::graph::Graph& g, std::unordered_map<int64_t, void*>& pack, Stream stream, const char* what) {
    if (cudnnSetStream(handle_, stream) != CUDNN_STATUS_SUCCESS)
      throw std::runtime_error("cudnn: cudnnSetStream failed");
    auto status = g.execute(handle_, pack, workspace_.get());
    if (!status.is_good())
      throw std::runtime_error(fmt::format("cudnn: {} execute failed: {}", what, status.get_message()));
  }

  cudnnHandle_t handle_;
  AttentionShape s_;
  Layout l_;
  Built fwd_, bwd_;
  DeviceBuffer workspace_, seq_, starts_, ragged_q_, ragged_kv_, stats_;
};

class CudnnBackend final : public Backend {
 public:
  CudnnBackend() {
    if (cudnnCreate(&handle_) != CUDNN_STATUS_SUCCESS) throw std::runtime_error("cudnnCreate failed");
    cap_.device = Device::gpu;
    cap_.dtypes = {DType::bf16, DType::fp16};
    cap_.masks =
        "full, causal, sliding windows (one diagonal band per row: views/uniform_band) and packed "
        "documents, full or causal (ragged batch from views/cu_seqlens)";
  }
  ~CudnnBackend() override {
    cache_.clear();
    cudnnDestroy(handle_);
  }

  std::string_view name() const override { return "cudnn"; }
  const Capabilities& capabilities() const override { return cap_; }
  std::string version() const override {
    const std::size_t v = cudnnGetVersion();
    return fmt::format("cuDNN {}.{}.{} (frontend {}.{}.{})", v / 10000, (v % 10000) / 100, v % 100,
                       CUDNN_FRONTEND_MAJOR_VERSION, CUDNN_FRONTEND_MINOR_VERSION, CUDNN_FRONTEND_PATCH_VERSION);
  }

  std::optional<std::string> unsupported_reason(const Problem& p) const override {
    const int D = p.shape.head_dim;
    if (D % 8 != 0 || D > 256) return fmt::format("cuDNN SDPA needs head dim a multiple of 8 up to 256, got {}", D);
    auto m = express(p);
    if (auto* why = std::get_if<std::string>(&m)) return *why;
    const long long elems = (long long)p.shape.seqlen_q * p.shape.heads_q * D;
    if (elems > std::numeric_limits<int>::max())
      return std::string("ragged offsets of this size overflow int32");
    return std::nullopt;
  }

  std::unique_ptr<Plan> prepare(const Problem& p) override {
    auto expressed = express(p);
    if (auto* why = std::get_if<std::string>(&expressed)) throw Unsupported(*why);
    const CudnnMask& m = std::get<CudnnMask>(expressed);
    const Layout l = layout_of(p, m);
    // The backward starts from the forward's O and statistics: a plan always has a forward.
    Built fwd = graph(p, m, l, false);
    Built bwd;
    if (runs_backward(p.direction)) bwd = graph(p, m, l, true);
    return std::make_unique<CudnnPlan>(handle_, p, m, l, std::move(fwd), std::move(bwd));
  }

 private:
  Built graph(const Problem& p, const CudnnMask& m, const Layout& l, bool backward) {
    const std::string key = graph_key(p, m, l, backward);
    if (auto it = cache_.find(key); it != cache_.end()) return it->second;
    Built b;
    b.graph = backward ? build_backward(p, m, l) : build_forward(p, m, l);
    auto status = b.graph->build(handle_, {fe::HeurMode_t::A});
    if (!status.is_good())
      throw Unsupported(fmt::format("cuDNN {} graph not supported: {}", backward ? "backward" : "forward",
                                    status.get_message()));
    status = b.graph->get_workspace_size(b.workspace);
    if (!status.is_good()) throw std::runtime_error("cudnn: workspace query failed: " + status.get_message());
    cache_.emplace(key, b);
    return b;
  }

  cudnnHandle_t handle_ = nullptr;
  Capabilities cap_;
  std::map<std::string, Built> cache_;
};

}  // namespace

std::unique_ptr<Backend> make_cudnn_backend() { return std::make_unique<CudnnBackend>(); }

}  // namespace longattn::bench
