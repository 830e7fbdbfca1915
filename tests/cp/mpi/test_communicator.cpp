// The MPI communicator and the host group under mpirun (any rank count >= 2): every operation
// moves the right data, counts the bytes the model counts, and a peer that never answers ends in
// a CommError after the timeout instead of a hang.
#include <gtest/gtest.h>

#include <chrono>
#include <numeric>

#include "longattn/cp/communicator.hpp"
#include "longattn/cp/device.hpp"
#include "longattn/cp/host_group.hpp"
#include "mpi_test_main.hpp"

namespace longattn::cp {
namespace {


struct Comm : ::testing::Test {
  HostGroup& group = test_group();
  std::unique_ptr<Device> dev = make_cpu_device();
  std::unique_ptr<Communicator> comm = make_mpi_communicator(group, 30);
  int rank = comm->rank(), n = comm->size();

  std::vector<float> read(TensorRef t) {
    std::vector<float> x(t.count);
    dev->download(x, t);
    return x;
  }
  Buffer make(std::vector<float> x) {
    Buffer b = dev->allocate(x.size(), DType::fp32);
    dev->upload(b, x);
    return b;
  }
};

TEST_F(Comm, AllToAllDeliversBlockPToRankP) {
  const int B = 3;
  std::vector<float> x(n * B);
  for (int p = 0; p < n; ++p)
    for (int i = 0; i < B; ++i) x[p * B + i] = float(rank * 1000 + p * 10 + i);
  Buffer s = make(x), r = dev->allocate(n * B, DType::fp32);
  comm->all_to_all({s, r});
  std::vector<float> got = read(r);
  for (int p = 0; p < n; ++p)
    for (int i = 0; i < B; ++i) EXPECT_EQ(got[p * B + i], float(p * 1000 + rank * 10 + i));
  EXPECT_EQ(comm->stats().bytes_of(CommOp::all_to_all), std::uint64_t(n - 1) * B * 4);
  EXPECT_EQ(comm->stats().calls[int(CommOp::all_to_all)], 1u);
}

TEST_F(Comm, FusedAllToAllDeliversEachTransfersBlocksAndCountsOnce) {
  // Blocks of 2 and of 1 element: each transfer is its own all-to-all.
  std::vector<float> x(2 * n), y(n);
  for (int p = 0; p < n; ++p) {
    x[2 * p] = float(rank * 100 + p), x[2 * p + 1] = -1.f;
    y[p] = float(rank * 7 + p) + 0.25f;
  }
  Buffer sx = make(x), sy = make(y);
  Buffer rx = dev->allocate(2 * n, DType::fp32), ry = dev->allocate(n, DType::fp32);
  const Transfer ts[] = {{sx, rx}, {sy, ry}};
  comm->all_to_all(ts);
  std::vector<float> gx = read(rx), gy = read(ry);
  for (int p = 0; p < n; ++p) {
    EXPECT_EQ(gx[2 * p], float(p * 100 + rank));
    EXPECT_EQ(gx[2 * p + 1], -1.f);
    EXPECT_EQ(gy[p], float(p * 7 + rank) + 0.25f);
  }
  EXPECT_EQ(comm->stats().bytes_of(CommOp::all_to_all), std::uint64_t(n - 1) * 12);
  EXPECT_EQ(comm->stats().calls[int(CommOp::all_to_all)], 1u);
}

TEST_F(Comm, StartedAllGatherDeliversAfterWaitAndCountsOnce) {
  Buffer a = make({float(rank) + 0.5f}), b = make({float(-rank), 2.f});
  Buffer ga = dev->allocate(n, DType::fp32), gb = dev->allocate(2 * n, DType::fp32);
  const Transfer ts[] = {{a, ga}, {b, gb}};
  comm->start_all_gather(ts)->wait();
  std::vector<float> xa = read(ga), xb = read(gb);
  for (int p = 0; p < n; ++p) {
    EXPECT_EQ(xa[p], float(p) + 0.5f);
    EXPECT_EQ(xb[2 * p], float(-p));
    EXPECT_EQ(xb[2 * p + 1], 2.f);
  }
  EXPECT_EQ(comm->stats().bytes_of(CommOp::all_gather), std::uint64_t(n - 1) * 12);
  EXPECT_EQ(comm->stats().calls[int(CommOp::all_gather)], 1u);
}

TEST_F(Comm, FusedAllGatherAndReduceScatterCountOnce) {
  Buffer a = make({float(rank), float(rank) + 0.5f}), b = make({float(-rank)});
  Buffer ga = dev->allocate(2 * n, DType::fp32), gb = dev->allocate(n, DType::fp32);
  Transfer ts[] = {{a, ga}, {b, gb}};
  comm->all_gather(ts);
  std::vector<float> xa = read(ga), xb = read(gb);
  for (int p = 0; p < n; ++p) {
    EXPECT_EQ(xa[2 * p], float(p));
    EXPECT_EQ(xa[2 * p + 1], float(p) + 0.5f);
    EXPECT_EQ(xb[p], float(-p));
  }
  EXPECT_EQ(comm->stats().bytes_of(CommOp::all_gather), std::uint64_t(n - 1) * 12);
  EXPECT_EQ(comm->stats().calls[int(CommOp::all_gather)], 1u);

  // Block p of every rank's input sums into rank p.
  std::vector<float> x(2 * n);
  for (int p = 0; p < n; ++p) x[2 * p] = float(rank + p), x[2 * p + 1] = 1.f;
  Buffer s = make(x), r = dev->allocate(2, DType::fp32);
  Transfer rs[] = {{s, r}};
  comm->reduce_scatter(rs);
  std::vector<float> got = read(r);
  EXPECT_EQ(got[0], float(n * rank + n * (n - 1) / 2));
  EXPECT_EQ(got[1], float(n));
  EXPECT_EQ(comm->stats().bytes_of(CommOp::reduce_scatter), std::uint64_t(n - 1) * 8);
}

TEST_F(Comm, RingExchangeKeepsMessagesToOnePeerInOrder) {
  const int next = (rank + 1) % n, prev = (rank + n - 1) % n;
  Buffer k = make({float(rank), 1}), v = make({float(rank), 2, 3});
  Buffer rk = dev->allocate(2, DType::fp32), rv = dev->allocate(3, DType::fp32);
  P2P ops[] = {P2P::send_to(next, k), P2P::send_to(next, v), P2P::recv_from(prev, rk),
               P2P::recv_from(prev, rv)};
  comm->start(ops)->wait();
  EXPECT_EQ(read(rk), (std::vector<float>{float(prev), 1}));
  EXPECT_EQ(read(rv), (std::vector<float>{float(prev), 2, 3}));
  EXPECT_EQ(comm->stats().bytes_of(CommOp::p2p), 20u);
  EXPECT_EQ(comm->stats().calls[int(CommOp::p2p)], 1u);
}

TEST_F(Comm, SplitOrdersByKeyAndKeepsItsOwnCounts) {
  auto half = comm->split(rank % 2, -rank);  // reversed order inside each color
  const int members = (n + 1 - rank % 2) / 2;
  EXPECT_EQ(half->size(), members);
  EXPECT_EQ(half->rank(), members - 1 - rank / 2);
  Buffer one = make({float(rank)}), all = dev->allocate(half->size(), DType::fp32);
  Transfer ts[] = {{one, all}};
  half->all_gather(ts);
  std::vector<float> got = read(all);
  for (int i = 0; i < half->size(); ++i)
    EXPECT_EQ(int(got[i]) % 2, rank % 2);
  EXPECT_EQ(comm->stats().total_bytes(), 0u);
}

TEST_F(Comm, HostGroupGathersUnequalStringsAndReduces) {
  auto all = group.all_gather(std::string(rank + 1, char('a' + rank)));
  ASSERT_EQ(int(all.size()), n);
  for (int r = 0; r < n; ++r) EXPECT_EQ(all[r], std::string(r + 1, char('a' + r)));
  double v[2] = {double(rank), double(rank)};
  group.all_reduce_sum({v, 1});
  group.all_reduce_max({v + 1, 1});
  EXPECT_EQ(v[0], n * (n - 1) / 2.0);
  EXPECT_EQ(v[1], n - 1.0);
  const double mine[1] = {double(rank) * 2};
  auto got = group.gather(mine, 0);
  if (rank == 0) {
    ASSERT_EQ(int(got.size()), n);
    for (int r = 0; r < n; ++r) EXPECT_EQ(got[r], 2.0 * r);
  } else {
    EXPECT_TRUE(got.empty());
  }
}

TEST_F(Comm, AnUnansweredReceiveTimesOutWithAClearError) {
  auto quick = make_mpi_communicator(group, 0.5);
  Buffer b = dev->allocate(1, DType::fp32);
  if (quick->rank() == 0) {
    P2P ops[] = {P2P::recv_from(1, b)};
    auto pending = quick->start(ops);
    const auto t0 = std::chrono::steady_clock::now();
    try {
      pending->wait();
      ADD_FAILURE() << "a receive nobody answers completed";
    } catch (const CommError& e) {
      EXPECT_NE(std::string(e.what()).find("did not complete within 0.5 s"), std::string::npos)
          << e.what();
    }
    EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(20));
    group.barrier();  // now rank 1 answers, and the same wait completes
    pending->wait();
    EXPECT_EQ(read(b)[0], 42.f);
  } else {
    group.barrier();
    if (quick->rank() == 1) {
      Buffer x = make({42.f});
      P2P ops[] = {P2P::send_to(0, x)};
      quick->start(ops)->wait();
    }
  }
}

}  // namespace
}  // namespace longattn::cp
