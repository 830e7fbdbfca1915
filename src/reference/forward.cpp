// reference_forward: O and LSE of the listed rows, tile by tile on a thread pool.
#include "longattn/reference.hpp"
#include "tiles.hpp"

namespace longattn {
namespace {

using namespace reference_detail;

template <class Acc>
void forward(const Operands& x, const MaskRows& mask, std::span<const Index> rows,
             std::span<float> o, std::span<float> lse, int threads) {
  const AttentionShape& s = x.s;
  const int D = s.head_dim;
  parallel_tiles(
      s.heads_q, [&](int) { return rows; }, threads,
      [&](int h, std::span<const Index> tile) {
        forward_tile<Acc>(x, mask.for_q_head(h, s), h, tile,
                          [&](Index i, const Acc* out, Acc row_lse) {
                            store(o.data() + (i * s.heads_q + h) * D, out, D);
                            lse[x.row_stat(i, h)] = float(row_lse);
                          });
      });
}

}  // namespace

void reference_forward(const AttentionShape& s, const MaskRows& mask, std::span<const float> q,
                       std::span<const float> k, std::span<const float> v, std::span<float> o,
                       std::span<float> lse, std::span<const Index> rows, ReferenceOptions opt) {
  check_shape(s);
  check_mask(s, mask);
  check_size(q, s.q_elements(), "q");
  check_size(k, s.kv_elements(), "k");
  check_size(v, s.kv_elements(), "v");
  check_size(o, s.q_elements(), "o");
  check_size(lse, std::size_t(s.heads_q) * std::size_t(s.seqlen_q), "lse");
  const std::vector<Index> list = row_list(rows, s.seqlen_q, "rows", true);
  const Operands x{s, s.softmax_scale(), q.data(), k.data(), v.data()};
  if (opt.accumulate == Accumulate::fp64)
    forward<double>(x, mask, list, o, lse, opt.threads);
  else
    forward<float>(x, mask, list, o, lse, opt.threads);
}

}  // namespace longattn
