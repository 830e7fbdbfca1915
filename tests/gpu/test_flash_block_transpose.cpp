// The device k->q lists of block-sparse masks (flash/block_transpose.hpp) equal the host
// transpose (views/block_lists.hpp) entry for entry: several KV heads, uniform and variable
// blocks, causal or not, keep ratios down to one block per row, and a single block.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "flash_test_support.hpp"
#include "flash/block_transpose.hpp"
#include "longattn/error.hpp"
#include "longattn/patterns.hpp"
#include "longattn/views/block_lists.hpp"

namespace longattn {
namespace {

using namespace gpu_test;

// All heads' lists in one CSR, head after head (block_transpose.hpp's stacked form).
struct Stacked {
  std::vector<std::int64_t> offsets{0};
  std::vector<std::int32_t> indices;
};
Stacked stack(const std::vector<BlockLists>& heads) {
  Stacked s;
  for (const BlockLists& l : heads) {
    for (Index r = 0; r < l.num_rows(); ++r) s.offsets.push_back(s.offsets.back() + l.count(r));
    s.indices.insert(s.indices.end(), l.indices.begin(), l.indices.end());
  }
  return s;
}

template <class T>
std::vector<T> download(const DevBuf& b, std::size_t n) {
  std::vector<T> out(n);
  EXPECT_EQ(cudaMemcpy(out.data(), b.p, n * sizeof(T), cudaMemcpyDeviceToHost), cudaSuccess);
  return out;
}

void expect_device_transpose_matches(const BlockSparseMask& m, const std::string& what) {
  const Stacked q_to_k = stack(block_index_lists(m).q_to_k);
  const Stacked want = stack(block_index_lists(m).k_to_q);
  flash::BlockListShape shape;
  shape.heads = m.num_heads();
  shape.blocks = std::int32_t(m.blocks().num_blocks());
  shape.entries = std::int64_t(q_to_k.indices.size());

  DevBuf qo(q_to_k.offsets.size() * 8), qi(q_to_k.indices.size() * 4);
  DevBuf ko(want.offsets.size() * 8), ki(want.indices.size() * 4);
  const std::size_t scratch_bytes = flash::transpose_scratch_bytes(shape);
  DevBuf scratch(scratch_bytes);
  ASSERT_EQ(cudaMemcpy(qo.p, q_to_k.offsets.data(), q_to_k.offsets.size() * 8, cudaMemcpyHostToDevice), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(qi.p, q_to_k.indices.data(), q_to_k.indices.size() * 4, cudaMemcpyHostToDevice), cudaSuccess);
  // Poison the outputs: every element must be written.
  ASSERT_EQ(cudaMemset(ko.p, 0xff, want.offsets.size() * 8), cudaSuccess);
  ASSERT_EQ(cudaMemset(ki.p, 0xff, want.indices.size() * 4), cudaSuccess);
  for (int run = 0; run < 2; ++run) {  // the same lists twice: the order does not depend on atomics
    flash::transpose_block_lists(shape, {qo.as<std::int64_t>(), qi.as<std::int32_t>()},
                                 {ko.as<std::int64_t>(), ki.as<std::int32_t>()}, scratch.p,
                                 scratch_bytes, nullptr);
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess) << what;
    EXPECT_EQ(download<std::int64_t>(ko, want.offsets.size()), want.offsets) << what;
    EXPECT_EQ(download<std::int32_t>(ki, want.indices.size()), want.indices) << what;
  }
}

TEST(FlashBlockTranspose, MatchesTheHostTranspose) {
  if (!gpu_present()) GTEST_SKIP() << "no GPU";
  for (Pattern p : {Pattern::block_sparse_uniform, Pattern::block_sparse_variable})
    for (bool causal : {false, true})
      for (double keep : {0.01, 0.3, 1.0})
        for (Index s : {Index(100), Index(4097), Index(70000)}) {
          MaskSpec spec;
          spec.pattern = p;
          spec.seqlen = s;
          spec.seed = 5;
          spec.params.sparse_block = 64;
          spec.params.min_block = 64;
          spec.params.average_block = 192;
          spec.params.keep = keep;
          spec.params.sparse_causal = causal;
          spec.params.sparse_heads = 4;
          const auto m = std::get<BlockSparseMask>(make_mask(spec).mask);
          expect_device_transpose_matches(
              m, std::string(to_string(p)) + (causal ? " causal" : "") + " keep " +
                     std::to_string(keep) + " S=" + std::to_string(s));
        }
}

TEST(FlashBlockTranspose, TooLittleScratchIsAnInputError) {
  if (!gpu_present()) GTEST_SKIP() << "no GPU";
  flash::BlockListShape shape{2, 8, 10};
  EXPECT_THROW(flash::transpose_block_lists(shape, {}, {}, nullptr,
                                            flash::transpose_scratch_bytes(shape) - 1, nullptr),
               InputError);
}

}  // namespace
}  // namespace longattn
