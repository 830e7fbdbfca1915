// longattn cp: context-parallel attention under mpirun (one process per GPU, or per CPU rank), and
// longattn comm: the communication model of the five algorithms for any configuration.
#include <fmt/format.h>

#include <charconv>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <thread>

#include "commands/commands.hpp"
#include "commands/cp_sweep.hpp"
#include "commands/mask_options.hpp"
#include "longattn/bench/environment.hpp"
#include "longattn/cp/comm_model.hpp"
#include "longattn/cp/communicator.hpp"
#include "longattn/cp/host_group.hpp"
#include "longattn/cp/run.hpp"
#include "longattn/cp/sweep.hpp"
#include "longattn/error.hpp"

namespace longattn::cli {
namespace {

using namespace longattn::cp;

// The sizes of a sweep: --seqlen gives S directly, --tokens-per-rank gives S = t x ranks (weak
// scaling).
struct SizeOptions {
  std::vector<std::string> seqlens, tokens_per_rank;
};

std::vector<Index> lengths(const std::vector<std::string>& texts, std::string_view flag) {
  std::vector<Index> out;
  for (const std::string& t : texts) out.push_back(parse_seqlen(t, flag));
  return out;
}

std::vector<Index> total_seqlens(const SizeOptions& o, int ranks) {
  return cp::total_seqlens(lengths(o.seqlens, "--seqlen"),
                           lengths(o.tokens_per_rank, "--tokens-per-rank"), ranks);
}

std::vector<HeadConfig> head_list(const std::vector<std::string>& heads,
                                  const std::vector<int>& dims) {
  std::vector<HeadConfig> out;
  for (const std::string& h : heads)
    for (int d : dims) {
      HeadConfig c = parse_heads(h);
      c.head_dim = d;
      validate(c);
      out.push_back(c);
    }
  return out;
}

// ---- longattn cp --------------------------------------------------------------------------------

struct CpOptionsCli {
  std::vector<std::string> algorithms, ulysses, masks, dispatches, heads, dtypes,
      directions{"fwdbwd"};
  std::vector<int> windows, gather_groups, head_dims;
  SizeOptions sizes;
  MaskOptions mask;
  int balance_chunks = 8;
  std::uint64_t seed = 0;
  std::string device = "auto";
  std::string kernel;
  int threads = 1;
  double timeout_s = 300;
  bench::TimingOptions timing{1, 5, 100, 0.5, true};
  bool no_l2_flush = false;
  Index check_rows = bench::CheckOptions{}.rows;
  double full_check_flops = bench::CheckOptions{}.full_check_flops;
  bool no_check = false;
  std::string out;
  bool json = false;
  bool steps = false;
  int inject_hang = -1;
};

// The flags as a CP grid; the device's defaults fill the axes left out (cp::expand).
bench::CpGrid to_grid(const CpOptionsCli& o) {
  bench::CpGrid g;
  g.algorithms = o.algorithms;
  g.ulysses = o.ulysses;
  g.inner_rings = o.windows;
  g.gather_groups = o.gather_groups;
  g.dispatches = o.dispatches;
  g.balance_chunks = o.balance_chunks;
  const MaskParams params = to_params(o.mask);
  for (const std::string& m : o.masks) g.masks.push_back({parse_pattern(m), params});
  if (g.masks.empty())
    for (const char* m : {"full", "causal", "full_document", "causal_document"})
      g.masks.push_back({parse_pattern(m), params});
  g.seqlens = lengths(o.sizes.seqlens, "--seqlen");
  g.tokens_per_rank = lengths(o.sizes.tokens_per_rank, "--tokens-per-rank");
  for (const std::string& h : o.heads) g.heads.push_back(parse_heads(h));
  g.head_dims = o.head_dims;
  for (const std::string& t : o.dtypes) g.dtypes.push_back(bench::parse_dtype(t));
  g.directions.clear();
  for (const std::string& d : o.directions) g.directions.push_back(bench::parse_direction(d));
  g.seed = o.seed;
  return g;
}

// The resolved options, to compare across ranks.
std::string fingerprint(const CpOptionsCli& o) {
  const MaskParams& p = o.mask.params;
  nlohmann::json j{{"algorithms", o.algorithms}, {"ulysses", o.ulysses}, {"masks", o.masks},
                   {"dispatches", o.dispatches}, {"heads", o.heads},     {"dtypes", o.dtypes},
                   {"directions", o.directions}, {"windows", o.windows}, {"head_dims", o.head_dims},
                   {"gather_groups", o.gather_groups},
                   {"seqlens", o.sizes.seqlens}, {"tokens", o.sizes.tokens_per_rank},
                   {"balance", o.balance_chunks}, {"seed", o.seed},      {"device", o.device},
                   {"kernel", o.kernel},         {"threads", o.threads}, {"timeout", o.timeout_s},
                   {"warmup", o.timing.warmup},  {"min_reps", o.timing.min_reps},
                   {"reps", o.timing.max_reps},  {"budget", o.timing.time_budget_s},
                   {"no_l2", o.no_l2_flush},     {"check_rows", o.check_rows},
                   {"full_check_flops", o.full_check_flops},
                   {"no_check", o.no_check},     {"window", p.window},   {"global", p.global},
                   {"block", p.block},           {"prefix", o.mask.prefix},
                   {"doc_lens", o.mask.doc_lens}, {"histogram", o.mask.histogram}};
  return j.dump();
}

void run_cp(const CpOptionsCli& o) {
  CpSweepSettings s;
  s.device = o.device;
  s.kernel = o.kernel;
  s.threads = o.threads;
  s.timeout_s = o.timeout_s;
  s.timing = o.timing;
  s.timing.l2_flush = !o.no_l2_flush;
  s.check.rows = o.check_rows;
  s.check.full_check_flops = o.full_check_flops;
  s.check.enabled = !o.no_check;
  s.out = o.out;
  s.json = o.json;
  s.steps = o.steps;
  s.inject_hang = o.inject_hang;
  run_cp_sweep([&o](bool) { return std::vector{to_grid(o)}; }, s, fingerprint(o));
}

// ---- longattn comm ------------------------------------------------------------------------------

struct CommOptionsCli {
  std::vector<std::string> algorithms, ulysses, heads{"64:8"}, dtypes{"bf16"};
  std::vector<int> ranks{8}, windows, gather_groups, head_dims{128};
  SizeOptions sizes;
  double bandwidth_gbs = 0;
  bool json = false;
};

std::string mb(std::uint64_t b) { return fmt::format("{:.3f}", double(b) / 1e6); }

void run_comm(const CommOptionsCli& o) {
  if (!o.json)
    fmt::print(
        "# bytes one rank sends per pass (MB = 1e6 B); model in docs/cp.md; a2a = all_to_all, "
        "ag = all_gather, rs = reduce_scatter (fp32)\n"
        "# {:<14} {:>5} {:>9} {:>7} {:>7} {:>3} {:>5} {:>10} {:>10} {:>10} {:>10} {:>11} {:>10} "
        "{:>10} {:>10} {:>11}{}\n",
        "algorithm", "ranks", "topo", "S", "heads", "D", "dtype", "fwd_a2a", "fwd_p2p", "fwd_ag",
        "fwd_MB", "bwd_a2a", "bwd_p2p", "bwd_ag+rs", "bwd_MB", "fwd+bwd_MB",
        o.bandwidth_gbs > 0 ? fmt::format(" {:>10}", "ms@bw") : "");
  for (int n : o.ranks) {
    if (n < 1) throw InputError(fmt::format("--gpus: {} is not a rank count", n));
    for (Index S : total_seqlens(o.sizes, n))
      for (const HeadConfig& h : head_list(o.heads, o.head_dims))
        for (const std::string& dt : o.dtypes) {
          const DType t = bench::parse_dtype(dt);
          for (Algorithm a : parse_algorithms(o.algorithms))
            for (const Topology& topo : topologies(a, n, o.ulysses, o.windows, o.gather_groups)) {
              CommShape shape{topo, S, h, int(element_size(t))};
              std::string heads = fmt::format("{}:{}", h.heads_q, h.heads_kv);
              CommVolume v;
              try {
                v = comm_model(shape);
              } catch (const InputError& e) {
                if (o.json)
                  fmt::print("{}\n", nlohmann::json{{"algorithm", to_string(a)},
                                                    {"ranks", n},
                                                    {"topology", topo.describe()},
                                                    {"seqlen", S},
                                                    {"invalid", e.what()}}
                                         .dump());
                else
                  fmt::print("  {:<14} {:>5} {:>9} {:>7} {:>7} {:>3} {:>5}  invalid: {}\n",
                             to_string(a), n, topo.describe(), bench::short_size(S), heads,
                             h.head_dim, dt, e.what());
                continue;
              }
              const auto& f = v.forward;
              const auto& b = v.backward;
              const std::uint64_t total = f.total_bytes() + b.total_bytes();
              if (o.json) {
                nlohmann::json j{{"algorithm", to_string(a)}, {"ranks", n},
                                 {"ulysses", topo.ulysses},   {"ring", topo.ring},
                                 {"window", topo.window},     {"gather_groups", topo.gather_groups},
                                 {"seqlen", S},
                                 {"heads_q", h.heads_q},      {"heads_kv", h.heads_kv},
                                 {"head_dim", h.head_dim},    {"dtype", dt}};
                for (int op = 0; op < kCommOps; ++op) {
                  j["forward"][std::string(to_string(CommOp(op)))] = f.bytes[op];
                  j["backward"][std::string(to_string(CommOp(op)))] = b.bytes[op];
                }
                j["forward_bytes"] = f.total_bytes();
                j["backward_bytes"] = b.total_bytes();
                fmt::print("{}\n", j.dump());
                continue;
              }
              using enum CommOp;
              fmt::print(
                  "  {:<14} {:>5} {:>9} {:>7} {:>7} {:>3} {:>5} {:>10} {:>10} {:>10} {:>10} "
                  "{:>11} {:>10} {:>10} {:>10} {:>11}{}\n",
                  to_string(a), n, topo.describe(), bench::short_size(S), heads, h.head_dim, dt,
                  mb(f.bytes_of(all_to_all)), mb(f.bytes_of(p2p)), mb(f.bytes_of(all_gather)),
                  mb(f.total_bytes()), mb(b.bytes_of(all_to_all)), mb(b.bytes_of(p2p)),
                  mb(b.bytes_of(all_gather) + b.bytes_of(reduce_scatter)), mb(b.total_bytes()),
                  mb(total),
                  o.bandwidth_gbs > 0
                      ? fmt::format(" {:>10.3f}", double(total) / (o.bandwidth_gbs * 1e9) * 1e3)
                      : "");
            }
        }
  }
}

}  // namespace

void add_cp_command(CLI::App& app) {
  auto o = std::make_shared<CpOptionsCli>();
  CLI::App* cmd = app.add_subcommand(
      "cp",
      "Context-parallel attention under mpirun: `mpirun -np N longattn cp ...`, one process per "
      "GPU (NCCL, bootstrapped by MPI) or per CPU rank (MPI). Runs the five algorithms (ulysses, "
      "ring_p2p, ring_allgather, usp, loongtrain) forward and backward on any static mask and "
      "reports per rank time, TF/s per GPU (global FLOPs over N x the slowest rank's median, and "
      "LongCA-bench's global FLOPs over the sum of the ranks' medians), peak memory, load "
      "imbalance, the bytes each rank sent against the model (`longattn comm`) and the error "
      "against the single-device reference.\n\n"
      "List flags take several values (comma-separated); the sweep is their cross product. A case "
      "is `wrong` when an error is over tolerance or the bytes differ from the model; the exit "
      "status is 1 when a case is error or wrong. A rank that hangs or dies ends the job after "
      "--timeout seconds with a message naming the operation.");
  cmd->add_option("--algorithm", o->algorithms,
                  "ulysses, ring_p2p, ring_allgather, usp, loongtrain, or all (default)")
      ->delimiter(',');
  cmd->add_option("--ulysses", o->ulysses,
                  "usp/loongtrain: Ulysses degrees U (ring degree R = N / U), or all (every valid "
                  "split); default: the largest U with U*U <= N")
      ->delimiter(',');
  cmd->add_option("--inner-ring", o->windows,
                  "loongtrain: inner ring sizes w (R = windows x w); default: the smallest divisor "
                  "w of R with w*w >= R")
      ->delimiter(',');
  cmd->add_option("--gather-groups", o->gather_groups,
                  "ring_allgather: the forward gathers K/V in G groups of KV heads (G divides "
                  "heads_kv) and attends each group while the next travels; default 1 (one "
                  "all-gather, then one kernel call)")
      ->delimiter(',');
  cmd->add_option("--dispatch", o->dispatches,
                  "token placement: contiguous, zigzag (default), balanced (by attention area)")
      ->delimiter(',');
  cmd->add_option("--balance-chunks", o->balance_chunks,
                  "balanced dispatch: equal chunks per ring position")
      ->capture_default_str();
  cmd->add_option("--mask", o->masks,
                  "mask patterns (static); default: full,causal,full_document,causal_document")
      ->delimiter(',');
  cmd->add_option("--seqlen", o->sizes.seqlens, "total tokens S (4096, 32K, ...)")->delimiter(',');
  cmd->add_option("--tokens-per-rank", o->sizes.tokens_per_rank,
                  "tokens per rank: S = t x ranks (weak scaling); default: 8K on a GPU, 256 on "
                  "the CPU")
      ->delimiter(',');
  cmd->add_option("--heads", o->heads, "query:KV heads; default: 64:8 on a GPU, 8:4 on the CPU")
      ->delimiter(',');
  cmd->add_option("--head-dim", o->head_dims, "head dimensions; default: 128 on a GPU, 32 on the CPU")
      ->delimiter(',');
  cmd->add_option("--dtype", o->dtypes, "bf16, fp16 (GPU), fp32 (CPU); default: bf16 on a GPU, fp32 on the CPU")
      ->delimiter(',');
  cmd->add_option("--direction", o->directions, "fwd, bwd, fwdbwd")->delimiter(',')->capture_default_str();
  cmd->add_option("--seed", o->seed, "seed of the masks and the inputs")->capture_default_str();
  add_mask_param_options(*cmd, o->mask);
  cmd->add_option("--device", o->device, "auto (GPU when present and built with NCCL), cpu, gpu")
      ->capture_default_str();
  cmd->add_option("--kernel", o->kernel,
                  "local attention kernel: reference (cpu), flash_hopper, flash, or a GPU bench "
                  "backend such as cudnn; default: reference on the CPU, on a GPU flash_hopper "
                  "(sm_90) or flash");
  cmd->add_option("--threads", o->threads, "threads of the reference kernel per rank (0 = all)")
      ->capture_default_str();
  cmd->add_option("--timeout", o->timeout_s,
                  "seconds any wait for a peer may take before the job ends with an error")
      ->capture_default_str();
  cmd->add_option("--reps", o->timing.max_reps, "most timed repetitions per phase")
      ->capture_default_str()->group("Timing");
  cmd->add_option("--min-reps", o->timing.min_reps, "fewest timed repetitions per phase")
      ->capture_default_str()->group("Timing");
  cmd->add_option("--time-budget", o->timing.time_budget_s, "seconds per timed phase")
      ->capture_default_str()->group("Timing");
  cmd->add_option("--warmup", o->timing.warmup, "untimed calls before timing")
      ->capture_default_str()->group("Timing");
  cmd->add_flag("--no-l2-flush", o->no_l2_flush, "do not flush the GPU's L2 between repetitions")
      ->group("Timing");
  cmd->add_option("--check-rows", o->check_rows,
                  "rows compared with the reference when a full check is too costly (0 = all)")
      ->capture_default_str()->group("Correctness");
  cmd->add_option("--full-check-flops", o->full_check_flops,
                  "reference work up to which every row is checked; above it rows are sampled "
                  "(0 = always sample)")
      ->capture_default_str()->group("Correctness");
  cmd->add_flag("--no-check", o->no_check, "skip the correctness check")->group("Correctness");
  cmd->add_option("--out", o->out, "directory to append records.jsonl to (rank 0)");
  cmd->add_flag("--json", o->json, "print JSON records instead of the table");
  cmd->add_flag("--steps", o->steps,
                "print under each row where its time goes: the slowest rank's steps (attention, "
                "elementwise work, each collective, waits for transfers) in one traced call; the "
                "records always hold them (cp.forward.steps_ms)");
  cmd->add_option("--inject-hang", o->inject_hang,
                  "testing: this rank stops answering in its first timed call, to show that the others "
                  "end with a timeout error")
      ->group("Testing");
  cmd->callback([o] { run_cp(*o); });
}

void add_comm_command(CLI::App& app) {
  auto o = std::make_shared<CommOptionsCli>();
  CLI::App* cmd = app.add_subcommand(
      "comm",
      "The communication model: bytes one rank sends in a forward and a backward pass of each CP "
      "algorithm, per operation (all-to-all, point-to-point, all-gather, reduce-scatter), for any "
      "configuration. `longattn cp` checks every run against it. Formulas in docs/cp.md.");
  cmd->add_option("--algorithm", o->algorithms, "algorithms, or all (default)")->delimiter(',');
  cmd->add_option("--gpus", o->ranks, "rank counts N")->delimiter(',')->capture_default_str();
  cmd->add_option("--ulysses", o->ulysses, "usp/loongtrain: Ulysses degrees, or all")
      ->delimiter(',');
  cmd->add_option("--inner-ring", o->windows, "loongtrain: inner ring sizes")->delimiter(',');
  cmd->add_option("--gather-groups", o->gather_groups,
                  "ring_allgather: KV-head groups gathered in turn")
      ->delimiter(',');
  cmd->add_option("--seqlen", o->sizes.seqlens, "total tokens S")->delimiter(',');
  cmd->add_option("--tokens-per-rank", o->sizes.tokens_per_rank, "tokens per rank (S = t x N)")
      ->delimiter(',');
  cmd->add_option("--heads", o->heads, "query:KV heads")->delimiter(',')->capture_default_str();
  cmd->add_option("--head-dim", o->head_dims, "head dimensions")->delimiter(',')->capture_default_str();
  cmd->add_option("--dtype", o->dtypes, "activation dtypes (bf16, fp16, fp32)")
      ->delimiter(',')->capture_default_str();
  cmd->add_option("--bandwidth", o->bandwidth_gbs,
                  "per-rank link bandwidth in GB/s: adds the time the bytes take at it");
  cmd->add_flag("--json", o->json, "JSON lines instead of the table");
  cmd->callback([o] { run_comm(*o); });
}

}  // namespace longattn::cli
