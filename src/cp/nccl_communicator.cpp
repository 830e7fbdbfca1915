// The NCCL communicator: GPU buffers, communicators in non-blocking mode (so that a hang can be
// aborted), MPI to broadcast the unique id. Collectives run on the device's compute stream;
// point-to-point groups on the communicator's own stream, ordered against the compute stream
// with events, so that they overlap the attention of the same ring step.
#include <cuda_runtime.h>
#include <fmt/format.h>
#include <nccl.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <mutex>
#include <thread>
#include <vector>

#include "cuda_watch.hpp"
#include "longattn/cp/communicator.hpp"
#include "longattn/cp/device.hpp"
#include "longattn/cp/host_group.hpp"

namespace longattn::cp {

namespace detail {

namespace {
std::mutex g_mutex;
std::vector<ncclComm_t> g_comms;
}  // namespace

void register_comm(void* c) {
  std::lock_guard lock(g_mutex);
  g_comms.push_back(static_cast<ncclComm_t>(c));
}
bool unregister_comm(void* c) {
  std::lock_guard lock(g_mutex);
  return std::erase(g_comms, static_cast<ncclComm_t>(c)) > 0;
}
std::string comm_error() {
  std::lock_guard lock(g_mutex);
  for (ncclComm_t c : g_comms) {
    ncclResult_t state = ncclSuccess;
    if (ncclCommGetAsyncError(c, &state) != ncclSuccess) return "ncclCommGetAsyncError failed";
    if (state != ncclSuccess && state != ncclInProgress)
      return fmt::format("{} ({})", ncclGetErrorString(state), ncclGetLastError(c));
  }
  return {};
}
void abort_comms() {
  std::lock_guard lock(g_mutex);
  for (ncclComm_t c : g_comms) ncclCommAbort(c);
  g_comms.clear();
}

}  // namespace detail

namespace {

using detail::check_cuda;

void check_nccl(ncclResult_t r, std::string_view what) {
  if (r == ncclSuccess || r == ncclInProgress) return;
  detail::abort_comms();
  throw CommError(fmt::format("NCCL {}: {}", what, ncclGetErrorString(r)));
}

// A non-blocking communicator finishes init, split and enqueueing asynchronously: poll until it is
// ready, with the deadline.
void wait_ready(ncclComm_t c, double timeout_s, int rank, std::string_view what) {
  using clock = std::chrono::steady_clock;
  const auto deadline = clock::now() + std::chrono::duration<double>(timeout_s);
  for (;;) {
    ncclResult_t state = ncclSuccess;
    check_nccl(ncclCommGetAsyncError(c, &state), what);
    if (state == ncclSuccess) return;
    if (state != ncclInProgress) {
      detail::abort_comms();
      ncclCommAbort(c);
      throw CommError(fmt::format("rank {}: NCCL {}: {}", rank, what, ncclGetErrorString(state)));
    }
    if (clock::now() > deadline) {
      detail::abort_comms();
      ncclCommAbort(c);
      throw CommError(fmt::format("rank {}: NCCL {} did not complete within {} s: a peer is hung "
                                  "or dead, or the ranks run different configurations",
                                  rank, what, timeout_s));
    }
    std::this_thread::sleep_for(std::chrono::microseconds(20));
  }
}

ncclConfig_t nonblocking_config() {
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;
  return config;
}

class NcclPending final : public Pending {
 public:
  NcclPending(cudaEvent_t done, cudaStream_t compute) : done_(done), compute_(compute) {}
  void wait() override {
    check_cuda(cudaStreamWaitEvent(compute_, done_, 0), "cudaStreamWaitEvent");
  }

 private:
  cudaEvent_t done_;
  cudaStream_t compute_;
};

class NcclCommunicator final : public Communicator {
 public:
  NcclCommunicator(ncclComm_t comm, Device& device, double timeout_s, int world_rank)
      : comm_(comm), device_(device), timeout_s_(timeout_s), world_rank_(world_rank) {
    check_nccl(ncclCommUserRank(comm_, &rank_), "rank");
    check_nccl(ncclCommCount(comm_, &size_), "size");
    compute_ = device.stream();
    check_cuda(cudaStreamCreateWithFlags(&p2p_, cudaStreamNonBlocking), "cudaStreamCreate");
    for (auto& e : ready_) check_cuda(cudaEventCreateWithFlags(&e, cudaEventDisableTiming), "event");
    for (auto& e : done_) check_cuda(cudaEventCreateWithFlags(&e, cudaEventDisableTiming), "event");
    check_cuda(cudaMalloc(&scratch_, sizeof(float)), "cudaMalloc");
    detail::register_comm(comm_);
  }
  ~NcclCommunicator() override {
    // An aborted communicator is gone already; a live one is finished cleanly (bounded).
    if (detail::unregister_comm(comm_)) {
      ncclResult_t state = ncclCommFinalize(comm_);
      const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
      while ((state == ncclSuccess || state == ncclInProgress) &&
             ncclCommGetAsyncError(comm_, &state) == ncclSuccess && state == ncclInProgress &&
             std::chrono::steady_clock::now() < until)
        std::this_thread::sleep_for(std::chrono::microseconds(50));
      if (state == ncclSuccess) ncclCommDestroy(comm_);
      else ncclCommAbort(comm_);
    }
    cudaFree(scratch_);
    for (auto e : ready_) cudaEventDestroy(e);
    for (auto e : done_) cudaEventDestroy(e);
    cudaStreamDestroy(p2p_);
  }

  std::string_view kind() const override { return "nccl"; }
  int rank() const override { return rank_; }
  int size() const override { return size_; }

  std::unique_ptr<Communicator> split(int color, int key) override {
    ncclConfig_t config = nonblocking_config();
    ncclComm_t out = nullptr;
    check_nccl(ncclCommSplit(comm_, color, key, &out, &config), "ncclCommSplit");
    wait_ready(comm_, timeout_s_, world_rank_, "ncclCommSplit");
    wait_ready(out, timeout_s_, world_rank_, "ncclCommSplit (new communicator)");
    return std::make_unique<NcclCommunicator>(out, device_, timeout_s_, world_rank_);
  }

  void all_to_all(std::span<const Transfer> ts) override {
    std::uint64_t sent = 0;
    for (const Transfer& t : ts)
      if (t.send.bytes() % size_ != 0 || t.recv.bytes() != t.send.bytes())
        throw CommError("all_to_all: buffers are not size() equal blocks");
    check_nccl(ncclGroupStart(), "group");
    for (const Transfer& t : ts) {
      const std::size_t block = t.send.bytes() / size_;
      for (int p = 0; p < size_; ++p) {
        check_nccl(ncclSend(static_cast<const char*>(t.send.data) + p * block, block, ncclUint8, p,
                            comm_, compute_),
                   "send");
        check_nccl(ncclRecv(static_cast<char*>(t.recv.data) + p * block, block, ncclUint8, p,
                            comm_, compute_),
                   "recv");
      }
      sent += block * (size_ - 1);
    }
    check_nccl(ncclGroupEnd(), "all_to_all");
    wait_ready(comm_, timeout_s_, world_rank_, "all_to_all");
    count(CommOp::all_to_all, sent);
  }

  void all_gather(std::span<const Transfer> ts) override {
    std::uint64_t sent = 0;
    check_nccl(ncclGroupStart(), "group");
    for (const Transfer& t : ts) {
      if (t.recv.bytes() != t.send.bytes() * size_) throw CommError("all_gather: buffer sizes");
      check_nccl(ncclAllGather(t.send.data, t.recv.data, t.send.bytes(), ncclUint8, comm_, compute_),
                 "all_gather");
      sent += t.send.bytes() * (size_ - 1);
    }
    check_nccl(ncclGroupEnd(), "all_gather");
    wait_ready(comm_, timeout_s_, world_rank_, "all_gather");
    count(CommOp::all_gather, sent);
  }

  void reduce_scatter(std::span<const Transfer> ts) override {
    std::uint64_t sent = 0;
    check_nccl(ncclGroupStart(), "group");
    for (const Transfer& t : ts) {
      if (t.send.dtype != DType::fp32 || t.recv.dtype != DType::fp32 ||
          t.send.count != t.recv.count * size_)
        throw CommError("reduce_scatter: fp32 buffers of size() x the received count expected");
      check_nccl(ncclReduceScatter(t.send.data, t.recv.data, t.recv.count, ncclFloat, ncclSum,
                                   comm_, compute_),
                 "reduce_scatter");
      sent += t.recv.bytes() * (size_ - 1);
    }
    check_nccl(ncclGroupEnd(), "reduce_scatter");
    wait_ready(comm_, timeout_s_, world_rank_, "reduce_scatter");
    count(CommOp::reduce_scatter, sent);
  }

  void barrier() override {
    check_nccl(ncclAllReduce(scratch_, scratch_, 1, ncclFloat, ncclSum, comm_, compute_),
               "barrier");
    wait_ready(comm_, timeout_s_, world_rank_, "barrier");
    detail::wait_stream(compute_, timeout_s_, fmt::format("rank {}: barrier", world_rank_));
  }

  std::unique_ptr<Pending> start_all_gather(std::span<const Transfer> ts) override {
    for (const Transfer& t : ts)
      if (t.recv.bytes() != t.send.bytes() * size_) throw CommError("all_gather: buffer sizes");
    const int slot = side_stream_waits_for_compute();
    std::uint64_t sent = 0;
    check_nccl(ncclGroupStart(), "group");
    for (const Transfer& t : ts) {
      check_nccl(ncclAllGather(t.send.data, t.recv.data, t.send.bytes(), ncclUint8, comm_, p2p_),
                 "all_gather");
      sent += t.send.bytes() * (size_ - 1);
    }
    check_nccl(ncclGroupEnd(), "all_gather");
    wait_ready(comm_, timeout_s_, world_rank_, "all_gather");
    check_cuda(cudaEventRecord(done_[slot], p2p_), "cudaEventRecord");
    count(CommOp::all_gather, sent);
    return std::make_unique<NcclPending>(done_[slot], compute_);
  }

  std::unique_ptr<Pending> start_reduce_scatter(std::span<const Transfer> ts) override {
    for (const Transfer& t : ts)
      if (t.send.dtype != DType::fp32 || t.recv.dtype != DType::fp32 ||
          t.send.count != t.recv.count * size_)
        throw CommError("reduce_scatter: fp32 buffers of size() x the received count expected");
    const int slot = side_stream_waits_for_compute();
    std::uint64_t sent = 0;
    check_nccl(ncclGroupStart(), "group");
    for (const Transfer& t : ts) {
      check_nccl(ncclReduceScatter(t.send.data, t.recv.data, t.recv.count, ncclFloat, ncclSum,
                                   comm_, p2p_),
                 "reduce_scatter");
      sent += t.recv.bytes() * (size_ - 1);
    }
    check_nccl(ncclGroupEnd(), "reduce_scatter");
    wait_ready(comm_, timeout_s_, world_rank_, "reduce_scatter");
    check_cuda(cudaEventRecord(done_[slot], p2p_), "cudaEventRecord");
    count(CommOp::reduce_scatter, sent);
    return std::make_unique<NcclPending>(done_[slot], compute_);
  }

  std::unique_ptr<Pending> start(std::span<const P2P> ops) override {
    const int slot = side_stream_waits_for_compute();
    std::uint64_t sent = 0;
    check_nccl(ncclGroupStart(), "group");
    for (const P2P& op : ops) {
      if (op.peer < 0 || op.peer >= size_)
        throw CommError(fmt::format("p2p: peer {} outside a communicator of {}", op.peer, size_));
      if (op.kind == P2P::Kind::send) {
        check_nccl(ncclSend(op.buffer.data, op.buffer.bytes(), ncclUint8, op.peer, comm_, p2p_),
                   "send");
        sent += op.buffer.bytes();
      } else {
        check_nccl(ncclRecv(op.buffer.data, op.buffer.bytes(), ncclUint8, op.peer, comm_, p2p_),
                   "recv");
      }
    }
    check_nccl(ncclGroupEnd(), "p2p group");
    wait_ready(comm_, timeout_s_, world_rank_, "point-to-point group");
    check_cuda(cudaEventRecord(done_[slot], p2p_), "cudaEventRecord");
    count(CommOp::p2p, sent);
    return std::make_unique<NcclPending>(done_[slot], compute_);
  }

 private:
  // The side stream waits for what the compute stream has enqueued so far (the data to send, the
  // last reads of the buffers to receive into); returns the event slot of the operation.
  int side_stream_waits_for_compute() {
    const int slot = next_++ % kSlots;
    check_cuda(cudaEventRecord(ready_[slot], compute_), "cudaEventRecord");
    check_cuda(cudaStreamWaitEvent(p2p_, ready_[slot], 0), "cudaStreamWaitEvent");
    return slot;
  }

  // Events reused round-robin: at most kSlots operations may be pending at once (two ring
  // groups, or the gather groups of Ring AllGather's forward).
  static constexpr int kSlots = 8;
  ncclComm_t comm_;
  Device& device_;
  double timeout_s_;
  int world_rank_;
  int rank_ = 0, size_ = 1;
  cudaStream_t compute_ = nullptr, p2p_ = nullptr;
  std::array<cudaEvent_t, kSlots> ready_{}, done_{};
  int next_ = 0;
  void* scratch_ = nullptr;
};

}  // namespace

std::unique_ptr<Communicator> make_nccl_communicator(const HostGroup& group, Device& device,
                                                     double timeout_s) {
  if (!device.gpu()) throw CommError("NCCL needs a CUDA device");
  ncclUniqueId id{};
  if (group.rank() == 0) check_nccl(ncclGetUniqueId(&id), "ncclGetUniqueId");
  group.broadcast(std::as_writable_bytes(std::span(&id, 1)), 0);
  ncclConfig_t config = nonblocking_config();
  ncclComm_t comm = nullptr;
  check_nccl(ncclCommInitRankConfig(&comm, group.size(), id, group.rank(), &config),
             "ncclCommInitRankConfig");
  wait_ready(comm, timeout_s, group.rank(), "ncclCommInitRankConfig");
  return std::make_unique<NcclCommunicator>(comm, device, timeout_s, group.rank());
}

bool nccl_available() { return true; }

std::string nccl_version() {
  int v = 0;
  if (ncclGetVersion(&v) != ncclSuccess) return "unknown";
  return fmt::format("{}.{}.{}", v / 10000, (v / 100) % 100, v % 100);
}

}  // namespace longattn::cp
