// The MPI communicator: host buffers, non-blocking MPI calls completed by polling with a deadline.
#include <fmt/format.h>

#include <map>
#include <vector>

#include "longattn/cp/communicator.hpp"
#include "longattn/cp/host_group.hpp"
#include "mpi_util.hpp"

namespace longattn::cp {

namespace {

using detail::check_mpi;
using detail::mpi_count;
using detail::wait_all;

class MpiPending final : public Pending {
 public:
  MpiPending(std::vector<MPI_Request> r, double timeout_s, int rank, const char* what)
      : requests_(std::move(r)), timeout_s_(timeout_s), rank_(rank), what_(what) {}
  void wait() override {
    wait_all(requests_, timeout_s_, rank_, what_);
    requests_.clear();
  }

 private:
  std::vector<MPI_Request> requests_;
  double timeout_s_;
  int rank_;
  const char* what_;
};

class MpiCommunicator final : public Communicator {
 public:
  MpiCommunicator(MPI_Comm comm, double timeout_s) : comm_(comm), timeout_s_(timeout_s) {
    MPI_Comm_rank(comm_, &rank_);
    MPI_Comm_size(comm_, &size_);
    MPI_Comm_rank(MPI_COMM_WORLD, &world_rank_);
  }
  ~MpiCommunicator() override {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) MPI_Comm_free(&comm_);
  }

  std::string_view kind() const override { return "mpi"; }
  int rank() const override { return rank_; }
  int size() const override { return size_; }

  std::unique_ptr<Communicator> split(int color, int key) override {
    // MPI_Comm_split cannot time out: a timed barrier first turns a missing peer into an error.
    barrier();
    MPI_Comm out;
    check_mpi(MPI_Comm_split(comm_, color, key, &out), "MPI_Comm_split");
    return std::make_unique<MpiCommunicator>(out, timeout_s_);
  }

  void all_to_all(std::span<const Transfer> ts) override {
    std::vector<MPI_Request> rs(ts.size());
    std::uint64_t sent = 0;
    for (std::size_t i = 0; i < ts.size(); ++i) {
      const Transfer& t = ts[i];
      const std::size_t block = t.send.bytes() / size_;
      if (t.send.bytes() != block * size_ || t.recv.bytes() != t.send.bytes())
        throw CommError(fmt::format("all_to_all: {} bytes to send and {} to receive do not make "
                                    "{} equal blocks", t.send.bytes(), t.recv.bytes(), size_));
      const int n = mpi_count(block, "all_to_all");
      check_mpi(MPI_Ialltoall(t.send.data, n, MPI_BYTE, t.recv.data, n, MPI_BYTE, comm_, &rs[i]),
                "all_to_all");
      sent += block * (size_ - 1);
    }
    count(CommOp::all_to_all, sent);  // one fused call
    wait_all(rs, timeout_s_, world_rank_, "all_to_all");
  }

  void all_gather(std::span<const Transfer> ts) override { start_all_gather(ts)->wait(); }

  std::unique_ptr<Pending> start_all_gather(std::span<const Transfer> ts) override {
    std::vector<MPI_Request> rs(ts.size());
    std::uint64_t sent = 0;
    for (std::size_t i = 0; i < ts.size(); ++i) {
      const Transfer& t = ts[i];
      if (t.recv.bytes() != t.send.bytes() * size_)
        throw CommError(fmt::format("all_gather: receive buffer of {} bytes for {} x {}",
                                    t.recv.bytes(), size_, t.send.bytes()));
      const int n = mpi_count(t.send.bytes(), "all_gather");
      check_mpi(MPI_Iallgather(t.send.data, n, MPI_BYTE, t.recv.data, n, MPI_BYTE, comm_, &rs[i]),
                "all_gather");
      sent += t.send.bytes() * (size_ - 1);
    }
    count(CommOp::all_gather, sent);  // one fused call
    return std::make_unique<MpiPending>(std::move(rs), timeout_s_, world_rank_, "all_gather");
  }

  void reduce_scatter(std::span<const Transfer> ts) override { start_reduce_scatter(ts)->wait(); }

  std::unique_ptr<Pending> start_reduce_scatter(std::span<const Transfer> ts) override {
    std::vector<MPI_Request> rs(ts.size());
    std::uint64_t sent = 0;
    for (std::size_t i = 0; i < ts.size(); ++i) {
      const Transfer& t = ts[i];
      if (t.send.dtype != DType::fp32 || t.recv.dtype != DType::fp32 ||
          t.send.count != t.recv.count * size_)
        throw CommError("reduce_scatter: fp32 buffers of size() x the received count expected");
      check_mpi(MPI_Ireduce_scatter_block(t.send.data, t.recv.data,
                                          mpi_count(t.recv.count, "reduce_scatter"), MPI_FLOAT,
                                          MPI_SUM, comm_, &rs[i]),
                "reduce_scatter");
      sent += t.recv.bytes() * (size_ - 1);
    }
    count(CommOp::reduce_scatter, sent);  // one fused call
    return std::make_unique<MpiPending>(std::move(rs), timeout_s_, world_rank_, "reduce_scatter");
  }

  void barrier() override {
    MPI_Request r;
    check_mpi(MPI_Ibarrier(comm_, &r), "barrier");
    wait_all({&r, 1}, timeout_s_, world_rank_, "barrier");
  }

  std::unique_ptr<Pending> start(std::span<const P2P> ops) override {
    // Several messages to one peer in a group are told apart by their order (the tag).
    std::map<int, int> sends, recvs;
    std::vector<MPI_Request> rs(ops.size());
    std::uint64_t sent = 0;
    for (std::size_t i = 0; i < ops.size(); ++i) {
      const P2P& op = ops[i];
      if (op.peer < 0 || op.peer >= size_)
        throw CommError(fmt::format("p2p: peer {} outside a communicator of {}", op.peer, size_));
      const int n = mpi_count(op.buffer.bytes(), "p2p");
      if (op.kind == P2P::Kind::send) {
        check_mpi(MPI_Isend(op.buffer.data, n, MPI_BYTE, op.peer, sends[op.peer]++, comm_, &rs[i]),
                  "send");
        sent += op.buffer.bytes();
      } else {
        check_mpi(MPI_Irecv(op.buffer.data, n, MPI_BYTE, op.peer, recvs[op.peer]++, comm_, &rs[i]),
                  "recv");
      }
    }
    count(CommOp::p2p, sent);
    return std::make_unique<MpiPending>(std::move(rs), timeout_s_, world_rank_,
                                        "point-to-point exchange");
  }

 private:
  MPI_Comm comm_;
  int rank_ = 0, size_ = 1, world_rank_ = 0;
  double timeout_s_;
};

}  // namespace

std::unique_ptr<Communicator> make_mpi_communicator(const HostGroup& group, double timeout_s) {
  MPI_Comm dup;
  check_mpi(MPI_Comm_dup(detail::as_comm(group.native()), &dup), "MPI_Comm_dup");
  return std::make_unique<MpiCommunicator>(dup, timeout_s);
}

}  // namespace longattn::cp
