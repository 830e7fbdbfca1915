#pragma once
// The processes of one `mpirun` and the host-side exchanges the runner needs around the
// algorithms (configuration check, gathering timings and errors). MPI stays behind this header.
//
// Every wait is bounded by the group's timeout: a peer that never arrives ends the run with a
// CommError naming the operation, not a hang.
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace longattn::cp {

// Initialises MPI (threads: funnelled) for the life of the object, unless something else did.
class MpiSession {
 public:
  MpiSession();
  ~MpiSession();
  MpiSession(const MpiSession&) = delete;
  MpiSession& operator=(const MpiSession&) = delete;
};

class HostGroup {
 public:
  // MPI_COMM_WORLD (MPI must be initialised).
  static HostGroup world(double timeout_s);
  HostGroup(HostGroup&&) noexcept;
  HostGroup& operator=(HostGroup&&) noexcept;
  ~HostGroup();

  int rank() const;
  int size() const;
  int local_rank() const;  // among the ranks of this host (picks the GPU)
  int local_size() const;  // ranks on this host
  double timeout_s() const;

  void barrier() const;
  void broadcast(std::span<std::byte> data, int root) const;
  // Every rank's bytes (equal sizes), in rank order.
  std::vector<std::string> all_gather(const std::string& mine) const;
  void all_reduce_sum(std::span<double> values) const;
  void all_reduce_max(std::span<double> values) const;
  // values of every rank, concatenated in rank order (equal sizes); the result is complete on root
  // and empty elsewhere.
  std::vector<double> gather(std::span<const double> values, int root) const;
  std::vector<float> gather(std::span<const float> values, int root) const;

  // Ends every process of the job (after an error on one rank, when the others may be waiting).
  [[noreturn]] void abort(int code) const;

  // The MPI communicator, for the communicators built on it (an MPI_Comm as an integer handle).
  std::intptr_t native() const;

 private:
  struct State;
  explicit HostGroup(std::unique_ptr<State> s);
  std::unique_ptr<State> state_;
};

}  // namespace longattn::cp
