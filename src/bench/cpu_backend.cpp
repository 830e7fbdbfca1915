#include "longattn/bench/cpu_backend.hpp"

#include <vector>

namespace longattn::bench {

MaskAlteration drop_key_tile(TileShape shape, Index q_tile, Index k_tile) {
  return [=](RowIntervals& m) {
    const Range rows = Range{q_tile * shape.rows, (q_tile + 1) * shape.rows}.intersect({0, m.seqlen_q()});
    const Range cut{k_tile * shape.cols, (k_tile + 1) * shape.cols};
    RowIntervals out;
    out.seqlen_k = m.seqlen_k;
    out.offsets.push_back(0);
    for (Index i = 0; i < m.seqlen_q(); ++i) {
      for (Range r : m.row(i)) {
        if (!rows.contains(i) || !r.overlaps(cut)) {
          out.keys.push_back(r);
          continue;
        }
        if (r.begin < cut.begin) out.keys.push_back({r.begin, cut.begin});
        if (cut.end < r.end) out.keys.push_back({cut.end, r.end});
      }
      out.offsets.push_back(Index(out.keys.size()));
    }
    m = std::move(out);
  };
}

namespace {

class CpuPlan final : public Plan {
 public:
  CpuPlan(const Problem& p, std::vector<RowIntervals> rows, int threads)
      : shape_(p.shape), rows_(std::move(rows)) {
    opt_.threads = threads;
  }

  void forward(const Tensors& t, Stream) override {
    const std::size_t nq = shape_.q_elements(), nkv = shape_.kv_elements();
    reference_forward(shape_, mask(), {static_cast<const float*>(t.q), nq},
                      {static_cast<const float*>(t.k), nkv}, {static_cast<const float*>(t.v), nkv},
                      {static_cast<float*>(t.o), nq},
                      {t.lse, std::size_t(shape_.heads_q) * std::size_t(shape_.seqlen_q)}, {}, opt_);
  }

  void backward(const Tensors& t, Stream) override {
    const std::size_t nq = shape_.q_elements(), nkv = shape_.kv_elements();
    reference_backward(shape_, mask(), {static_cast<const float*>(t.q), nq},
                       {static_cast<const float*>(t.k), nkv}, {static_cast<const float*>(t.v), nkv},
                       {static_cast<const float*>(t.o), nq},
                       {t.lse, std::size_t(shape_.heads_q) * std::size_t(shape_.seqlen_q)},
                       {static_cast<const float*>(t.d_o), nq}, {static_cast<float*>(t.dq), nq},
                       {static_cast<float*>(t.dk), nkv}, {static_cast<float*>(t.dv), nkv}, opt_);
  }

 private:
  MaskRows mask() const { return MaskRows{rows_}; }
  AttentionShape shape_;
  std::vector<RowIntervals> rows_;
  ReferenceOptions opt_;
};

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(CpuBackendOptions o) : opt_(std::move(o)) {
    cap_.device = Device::cpu;
    cap_.dtypes = {DType::fp32};
    cap_.dynamic_masks = true;
    cap_.masks = "every static and block-sparse mask (per-row key intervals)";
  }
  std::string_view name() const override { return opt_.name; }
  const Capabilities& capabilities() const override { return cap_; }
  std::string version() const override { return "longattn CPU reference (fp32)"; }

  std::unique_ptr<Plan> prepare(const Problem& p) override {
    if (const auto* b = std::get_if<BlockSparseMask>(&p.canonical());
        b && b->num_heads() != 1 && b->num_heads() != p.shape.heads_kv)
      throw Unsupported("block-sparse mask heads must be 1 or heads_kv");
    std::vector<RowIntervals> rows = row_intervals_per_head(p.canonical());
    if (opt_.alter_mask)
      for (RowIntervals& r : rows) opt_.alter_mask(r);
    return std::make_unique<CpuPlan>(p, std::move(rows), opt_.threads);
  }

 private:
  CpuBackendOptions opt_;
  Capabilities cap_;
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend(CpuBackendOptions options) {
  return std::make_unique<CpuBackend>(std::move(options));
}

std::unique_ptr<Backend> make_cpu_backend() { return make_cpu_backend(CpuBackendOptions{}); }

}  // namespace longattn::bench
