// Every algorithm built on the ring or the all-gather (with and without gather groups) restricts
// its per-step merges and sums to the rows each step touches. Under mpirun (any rank count), on a hand-made mask whose rows are
// touched in every way a step can touch them, each rank's outputs must equal the single-device
// reference: rows touched only by a remote step, rows whose first step leaves them without keys
// (a causal slice's top rows), rows of a block no query reaches, and rows no step touches at all
// (O = 0, LSE = -inf, zero gradients). Every call first runs on other inputs and writes into NaN,
// so a row the restricted work skipped keeps a stale or NaN value and fails the comparison.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "longattn/cp/cp_attention.hpp"
#include "longattn/cp/host_group.hpp"
#include "mpi_test_main.hpp"
#include "longattn/rng.hpp"
#include "longattn/views/row_intervals.hpp"

namespace longattn::cp {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();
constexpr Index kT = 16;  // tokens per rank

// Per rank r (base b = r T; the ranks' blocks in a ring, next n, previous p):
//   rows [0, 4)    a local document (keys [0, 4) of b)
//   rows [4, 7)    keys [8, 11) of the next rank's block only
//   rows [7, 10)   no keys at all
//   rows [10, 16)  keys [12, 16) of b, and a causal slice on keys [0, 3) of the previous block,
//                  which leaves its rows 10..12 without keys
// so keys [4, 8) and [11, 12) of every block are reached by no query.
SliceMask test_mask(int ranks) {
  std::vector<Slice> s;
  for (int r = 0; r < ranks; ++r) {
    const Index b = r * kT, n = ((r + 1) % ranks) * kT, p = ((r + ranks - 1) % ranks) * kT;
    s.push_back({{b, b + 4}, {b, b + 4}, SliceType::full});
    s.push_back({{b + 4, b + 7}, {n + 8, n + 11}, SliceType::full});
    s.push_back({{b + 10, b + 16}, {b + 12, b + 16}, SliceType::full});
    s.push_back({{b + 10, b + 16}, {p, p + 3}, SliceType::causal});
  }
  return SliceMask(kT * ranks, std::move(s));
}

std::vector<float> random(std::size_t n, std::uint64_t seed, float scale) {
  Rng r(seed);
  std::vector<float> x(n);
  for (float& v : x) v = scale * float(r.uniform01() * 2 - 1);
  return x;
}

struct Inputs {
  std::vector<float> q, k, v, d_o;
  Inputs(Index S, int hq, int hkv, int D, std::uint64_t seed, float scale)
      : q(random(S * hq * D, seed, scale)),
        k(random(S * hkv * D, seed + 1, scale)),
        v(random(S * hkv * D, seed + 2, scale)),
        d_o(random(S * hq * D, seed + 3, scale)) {}
};

void expect_near_all(const std::vector<float>& got, const std::vector<float>& want,
                     const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  int bad = 0;
  for (std::size_t i = 0; i < got.size() && bad < 5; ++i) {
    const bool same = std::isinf(want[i]) ? got[i] == want[i]
                                          : std::abs(got[i] - want[i]) <= 1e-4f * (1 + std::abs(want[i]));
    if (!same) {
      ++bad;
      ADD_FAILURE() << what << "[" << i << "] = " << got[i] << ", reference " << want[i];
    }
  }
}

TEST(RowSets, EveryAlgorithmKeepsRowsEveryStepOrNoStepTouches) {
  HostGroup& group = test_group();
  const int N = group.size(), me = group.rank();
  const int hq = 4, hkv = 2, D = 8;
  const Index S = kT * N;
  const SliceMask mask = test_mask(N);
  const RowIntervals rows = row_intervals(mask);
  const AttentionShape shape{S, S, hq, hkv, D, 0};
  const Inputs in(S, hq, hkv, D, 7, 1.f), stale(S, hq, hkv, D, 99, 3.f);
  std::vector<float> ref_o(in.q.size()), ref_lse(S * hq), ref_dq(in.q.size()),
      ref_dk(in.k.size()), ref_dv(in.v.size());
  reference_forward(shape, MaskRows{{&rows, 1}}, in.q, in.k, in.v, ref_o, ref_lse);
  reference_backward(shape, MaskRows{{&rows, 1}}, in.q, in.k, in.v, ref_o, ref_lse, in.d_o, ref_dq,
                     ref_dk, ref_dv);

  auto dev = make_cpu_device();
  auto world = make_mpi_communicator(group, 30);
  auto packed_rows = make_reference_attention(1);
  auto in_place = make_reference_attention(1, true);  // takes head slices as the flash kernels do
  int cases = 0;
  std::vector<Topology> topologies;
  for (Algorithm a : {Algorithm::ring_p2p, Algorithm::ring_allgather, Algorithm::usp,
                      Algorithm::loongtrain})
    for (const Topology& t : all_topologies(a, N)) topologies.push_back(t);
  // Ring AllGather's forward in gather groups too (one KV head per group), with a group's Q and
  // O packed for the kernel, then passed in place to a kernel that takes head slices.
  topologies.push_back(make_topology(Algorithm::ring_allgather, N, 0, 0, hkv));
  topologies.push_back(topologies.back());
  for (std::size_t i = 0; i < topologies.size(); ++i) {
    const Topology& t = topologies[i];
    const Algorithm a = t.algorithm;
    LocalAttention& kernel = i + 1 == topologies.size() ? *in_place : *packed_rows;
    if (hkv % t.ulysses != 0 && t.ulysses % hkv != 0) continue;
    SCOPED_TRACE(fmt::format("{} {}{}", to_string(a), t.describe(),
                             kernel.slices_heads() ? " (head slices in place)" : ""));
    const Dispatch d = make_dispatch(DispatchKind::contiguous, mask, t.ring, t.ulysses);
    Mesh mesh(*world, t);
    CpProblem p{&mask, &d, t, {hq, hkv, D}, 0.f, DType::fp32, true};
    auto attn = make_cp_attention(p, mesh, *dev, kernel);
    const Chunks& mine = d.chunks(me);
    const std::size_t wq = hq * D, wkv = hkv * D;
    auto upload = [&](const std::vector<float>& global, std::size_t width) {
      std::vector<float> x = gather_rows(mine, global, width);
      Buffer b = dev->allocate(x.size(), DType::fp32);
      dev->upload(b, x);
      return b;
    };
    auto nan_buffer = [&](std::size_t n) {
      Buffer b = dev->allocate(n, DType::fp32);
      dev->fill(b, std::numeric_limits<float>::quiet_NaN());
      return b;
    };
    auto read = [&](TensorRef t) {
      std::vector<float> x(t.count);
      dev->download(x, t);
      return x;
    };
    const Index T = d.tokens_per_rank();
    Buffer o = nan_buffer(T * wq), lse = nan_buffer(T * hq), dq = nan_buffer(T * wq),
           dk = nan_buffer(T * wkv), dv = nan_buffer(T * wkv);
    for (const Inputs* x : {&stale, &in}) {
      Buffer q = upload(x->q, wq), k = upload(x->k, wkv), v = upload(x->v, wkv),
             d_o = upload(x->d_o, wq);
      for (TensorRef b : {o.ref(), dq.ref(), dk.ref(), dv.ref()})
        dev->fill(b, std::numeric_limits<float>::quiet_NaN());
      attn->forward(q, k, v, o);
      attn->backward(d_o, dq, dk, dv);
      attn->export_lse(lse);
    }
    expect_near_all(read(o), gather_rows(mine, ref_o, wq), "O");
    expect_near_all(read(dq), gather_rows(mine, ref_dq, wq), "dQ");
    expect_near_all(read(dk), gather_rows(mine, ref_dk, wkv), "dK");
    expect_near_all(read(dv), gather_rows(mine, ref_dv, wkv), "dV");
    std::vector<float> want_lse;  // [H][T] of this rank's rows
    for (int h = 0; h < hq; ++h) {
      auto head = std::span<const float>(ref_lse).subspan(std::size_t(h) * S, S);
      std::vector<float> mine_h = gather_rows(mine, head, 1);
      want_lse.insert(want_lse.end(), mine_h.begin(), mine_h.end());
    }
    expect_near_all(read(lse), want_lse, "LSE");
    ++cases;
  }
  EXPECT_GE(cases, 4);
  // The mask has what the test is about: rows without keys and keys without rows.
  EXPECT_EQ(ref_lse[7], kNegInf);
  EXPECT_EQ(ref_dk[4 * hkv * D], 0.f);
}

}  // namespace
}  // namespace longattn::cp
