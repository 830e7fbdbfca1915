#pragma once
// `longattn cp`: measures one context-parallel case on every rank of an mpirun and judges it.
//
// Per rank: median (p20, p80) time of forward and of backward over repetitions started together
// (device synchronised and a host barrier before each; CUDA events on a GPU, the steady clock on
// the CPU), the bytes its communicators sent in one forward and one backward, its peak memory and
// its work (allowed pairs x query heads it computed). Rank 0 then reports:
//   tflops_per_gpu  global mask-aware FLOPs / (N x the slowest rank's median)
//   tflops_longca   global FLOPs / the sum of the ranks' medians (LongCA-bench's convention)
//   imbalance       max / mean of the ranks' work
//   bytes           measured per rank against the model (comm_model.hpp); any difference makes
//                   the case `wrong`
//   error           O, dQ, dK, dV checked against the single-device reference exactly as
//                   `longattn bench` checks a kernel (bench::Checker); only the entries the
//                   checker reads (bench::CheckSample: all of them for a full check) travel to
//                   rank 0
// The record is `longattn bench`'s (bench::Record: status, mask statistics, FLOPs, the slowest
// rank's timing, the largest peak memory, the check, the environment) plus a "cp" object.
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <vector>

#include "longattn/bench/result.hpp"
#include "longattn/cp/comm_model.hpp"
#include "longattn/cp/device.hpp"
#include "longattn/cp/dispatch.hpp"
#include "longattn/cp/host_group.hpp"
#include "longattn/cp/topology.hpp"

namespace longattn::cp {

struct CpCase {
  Topology topology;
  DispatchKind dispatch = DispatchKind::zigzag;
  int balance_chunks = 8;  // chunks per ring position of the balanced dispatch
  MaskSpec mask;
  HeadConfig heads;
  DType dtype = DType::fp32;
  bench::Direction direction = bench::Direction::fwdbwd;
  std::uint64_t data_seed = 0;
};

// "ring_p2p 4 zigzag causal S=1024 H=8:4 D=32 fp32"
std::string describe(const CpCase& c);

struct CpOptions {
  bool gpu = false;                 // CUDA device + NCCL; else CPU device + MPI
  std::string kernel = "reference"; // local attention: "reference" (cpu) or a GPU kernel name
  int threads = 1;                  // worker threads of the reference kernel
  double timeout_s = 300;           // bound on every wait
  bench::TimingOptions timing;
  bench::CheckOptions check;
  int inject_hang = -1;             // testing: this rank stops answering in the first timed call
};

struct CpPhase {
  bench::PhaseResult slowest;          // the slowest rank's timing; tflops = tflops_per_gpu
  std::vector<double> rank_median_ms;  // every rank's median
  double tflops_per_gpu = 0;
  double tflops_longca = 0;
  CommStats model;                     // bytes per rank the model predicts
  CommStats measured;                  // rank 0's counted bytes, per operation
  std::vector<double> rank_bytes;      // every rank's counted total
  bool bytes_match = false;            // every rank's count equals the model, per operation
  std::vector<TracedStep> steps;       // one traced call of the slowest rank (steps_rank)
  int steps_rank = 0;
};

struct CpRecord {
  bench::Record record;
  CpCase c;
  std::string kernel;
  std::string comm;  // "mpi" or "nccl"
  std::optional<CpPhase> forward, backward;
  std::vector<double> rank_work;
  double imbalance = 0;
  std::vector<double> rank_peak_gib;
  std::string memory_method;
};

nlohmann::json to_json(const CpRecord& r);
std::string table_header();  // lines starting with '#'
std::string table_row(const CpRecord& r);
std::string step_lines(const CpRecord& r);  // the phases' traced steps, a line each

class CpRunner {
 public:
  // Collective: makes the device (GPU local_rank() on a GPU) and the world communicator.
  CpRunner(const HostGroup& group, CpOptions options,
           std::shared_ptr<const bench::Environment> env);
  ~CpRunner();
  CpRunner(const CpRunner&) = delete;
  CpRunner& operator=(const CpRunner&) = delete;

  // Collective; the record is complete on rank 0. A case that cannot run, runs out of memory or
  // fails gets that status (the same on every rank) and the sweep goes on; a communication
  // failure (CommError) is thrown, as the ranks can no longer be trusted to agree.
  CpRecord run(const CpCase& c);

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace longattn::cp
