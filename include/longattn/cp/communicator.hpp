#pragma once
// The communicator the context-parallel algorithms run on: the few operations they need, over
// buffers of one Device. Two implementations: MPI (host buffers, so every algorithm runs and is
// tested on CPUs) and NCCL (GPU buffers; only in CUDA builds; MPI bootstraps it).
//
// Every call counts the bytes this rank sends to other ranks (CommStats), so a run can be compared
// with the communication model (comm_model.hpp). The count is the operation's data, independent of
// how the library moves it:
//   all_to_all      (n - 1) blocks of the send buffer (the block to itself stays)
//   all_gather      (n - 1) x the rank's contribution
//   reduce_scatter  (n - 1) x the block each rank receives (input bytes / n)
//   p2p             the bytes of every send
// so the per-rank volume of a ring collective, and the exact volume of point-to-point traffic.
//
// Failure is an error, never a hang: every wait has a deadline (the communicator's timeout), after
// which the operation is abandoned (NCCL communicators are aborted) and CommTimeout is thrown.
#include <array>
#include <cstdint>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "longattn/cp/tensor.hpp"

namespace longattn::cp {

class Device;
class HostGroup;

enum class CommOp { all_to_all, p2p, all_gather, reduce_scatter };
inline constexpr int kCommOps = 4;
std::string_view to_string(CommOp op);

struct CommStats {
  std::array<std::uint64_t, kCommOps> bytes{};  // sent by this rank, per operation kind
  std::array<std::uint64_t, kCommOps> calls{};

  std::uint64_t total_bytes() const;
  std::uint64_t& bytes_of(CommOp op) { return bytes[int(op)]; }
  std::uint64_t bytes_of(CommOp op) const { return bytes[int(op)]; }
  CommStats& operator+=(const CommStats& o);
  friend CommStats operator-(CommStats a, const CommStats& b);
};

// A peer did not answer within the timeout, or the transport reported an error. The message names
// the rank, the operation and what to suspect.
struct CommError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct Transfer {
  TensorRef send;
  TensorRef recv;
};

// One send or receive of a grouped point-to-point exchange.
struct P2P {
  enum class Kind { send, recv } kind;
  int peer;
  TensorRef buffer;
  static P2P send_to(int peer, TensorRef b) { return {Kind::send, peer, b}; }
  static P2P recv_from(int peer, TensorRef b) { return {Kind::recv, peer, b}; }
};

// Started point-to-point operations. wait() orders later work after them: on the CPU it returns
// when they completed; on a GPU it makes the compute stream wait for them.
class Pending {
 public:
  virtual ~Pending() = default;
  virtual void wait() = 0;
};

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual std::string_view kind() const = 0;  // "mpi" or "nccl"
  virtual int rank() const = 0;
  virtual int size() const = 0;

  // A communicator of the ranks that pass the same color, ordered by key (collective over this
  // one: every rank calls it, in the same order).
  virtual std::unique_ptr<Communicator> split(int color, int key) = 0;

  // Collectives: ordered with the device's work as if synchronous (enqueued on the compute stream
  // on a GPU). Every rank passes equal sizes.
  // For each transfer: send holds size() equal blocks, block p for rank p; recv gets block p
  // from rank p. Fused.
  virtual void all_to_all(std::span<const Transfer> ts) = 0;
  void all_to_all(const Transfer& t) { all_to_all(std::span(&t, 1)); }
  // For each transfer: recv = the size() ranks' send buffers in rank order. Fused.
  virtual void all_gather(std::span<const Transfer> ts) = 0;
  // For each transfer: recv = sum over ranks of block rank() of their send buffer (fp32). Fused.
  virtual void reduce_scatter(std::span<const Transfer> ts) = 0;
  virtual void barrier() = 0;

  // Grouped sends and receives, started now and overlapped with later device work until wait().
  // A rank may post at most one send and one receive per peer in a group.
  virtual std::unique_ptr<Pending> start(std::span<const P2P> ops) = 0;
  // all_gather, started now and overlapped with later device work until wait() (as start()):
  // the send buffers must hold their data when it is called, the receive buffers only after
  // wait(). Counted as one all_gather call.
  virtual std::unique_ptr<Pending> start_all_gather(std::span<const Transfer> ts) = 0;
  // reduce_scatter, started the same way; one reduce_scatter call.
  virtual std::unique_ptr<Pending> start_reduce_scatter(std::span<const Transfer> ts) = 0;

  const CommStats& stats() const { return stats_; }
  void reset_stats() { stats_ = {}; }

 protected:
  void count(CommOp op, std::uint64_t bytes) {
    stats_.bytes_of(op) += bytes;
    stats_.calls[int(op)] += 1;
  }

 private:
  CommStats stats_;
};

// Communicators over the ranks of `group` (a dup of its MPI communicator, so their traffic never
// mixes with the host group's). MPI: buffers in host memory. NCCL: buffers on `device`, which must
// be a CUDA device; MPI broadcasts the unique id. timeout_s bounds every wait.
std::unique_ptr<Communicator> make_mpi_communicator(const HostGroup& group, double timeout_s);
std::unique_ptr<Communicator> make_nccl_communicator(const HostGroup& group, Device& device,
                                                     double timeout_s);
bool nccl_available();  // built with NCCL
std::string nccl_version();  // "2.28.9", or "none"

}  // namespace longattn::cp
