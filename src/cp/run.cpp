#include "longattn/cp/run.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>
#include <map>
#include <numbers>
#include <sstream>
#include <tuple>
#include <thread>

#include "longattn/bench/backend.hpp"
#include "longattn/bench/check.hpp"
#include "longattn/cp/cp_attention.hpp"
#include "longattn/cp/sweep.hpp"
#include "longattn/error.hpp"

namespace longattn::cp {

using bench::Status;

std::string describe(const CpCase& c) {
  return fmt::format("{} {} {} {} S={} H={}:{} D={} {} {}", to_string(c.topology.algorithm),
                     c.topology.describe(), to_string(c.dispatch), to_string(c.mask.pattern),
                     c.mask.seqlen, c.heads.heads_q, c.heads.heads_kv, c.heads.head_dim,
                     bench::to_string(c.dtype), bench::to_string(c.direction));
}

namespace {

// ---- inputs ---------------------------------------------------------------------------------

std::uint64_t mix(std::uint64_t z) {  // splitmix64's finaliser
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// Entry i of input tensor `which` (0 Q, 1 K, 2 V, 3 dO) in its global layout: standard normal,
// a function of (seed, which, i) alone, so each rank makes its own rows and rank 0 the whole.
float input_entry(std::uint64_t seed, int which, std::uint64_t i) {
  const std::uint64_t base = mix(seed * 0x9e3779b97f4a7c15ull + std::uint64_t(which) + 1);
  const std::uint64_t a = mix(base ^ mix(2 * i)), b = mix(base ^ mix(2 * i + 1));
  const double u1 = (double(a >> 11) + 1.0) * 0x1.0p-53;  // (0, 1]
  const double u2 = double(b >> 11) * 0x1.0p-53;
  return float(std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * std::numbers::pi * u2));
}

// The whole [S][width] input tensor `which`, rounded to the dtype, made by `threads` threads.
std::vector<float> make_input(std::uint64_t seed, int which, Index seqlen, std::size_t width,
                              DType dtype, int threads) {
  std::vector<float> out(std::size_t(seqlen) * width);
  const std::size_t n = out.size(), per = (n + threads - 1) / threads;
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t)
    pool.emplace_back([&, t] {
      for (std::size_t i = t * per; i < std::min(n, (t + 1) * per); ++i)
        out[i] = bench::round_to(dtype, input_entry(seed, which, i));
    });
  for (auto& th : pool) th.join();
  return out;
}

double percentile_free_max(const std::vector<double>& v) {
  return v.empty() ? 0 : *std::max_element(v.begin(), v.end());
}

constexpr double kGiB = bench::kGiB;

// ---- agreement between ranks ----------------------------------------------------------------

struct Outcome {
  Status status = Status::ok;
  std::string reason;
};

int severity(Status s) {
  switch (s) {
    case Status::ok: return 0;
    case Status::wrong: return 1;
    case Status::unsupported: return 2;
    case Status::oom: return 3;
    case Status::error: return 4;
  }
  return 4;
}

// Every rank's outcome of a phase: the worst one (with the ranks that had it) on every rank.
Outcome agree(const HostGroup& g, const Outcome& mine) {
  auto all = g.all_gather(fmt::format("{}|{}", int(mine.status), mine.reason));
  Outcome worst;
  std::vector<int> who;
  for (int r = 0; r < int(all.size()); ++r) {
    const auto bar = all[r].find('|');
    Outcome o{Status(std::stoi(all[r].substr(0, bar))), all[r].substr(bar + 1)};
    if (severity(o.status) > severity(worst.status)) {
      worst = o;
      who = {r};
    } else if (o.status == worst.status && o.status != Status::ok) {
      who.push_back(r);
    }
  }
  if (worst.status != Status::ok && g.size() > 1) {
    std::string ranks;
    for (int r : who) ranks += fmt::format("{}{}", ranks.empty() ? "" : ",", r);
    worst.reason = fmt::format("rank {}: {}", ranks, worst.reason);
  }
  return worst;
}

// Runs f; turns its failure into an outcome (communication failures propagate).
template <class F>
Outcome attempt(F&& f) {
  try {
    f();
    return {};
  } catch (const CommError&) {
    throw;
  } catch (const bench::OutOfMemory& e) {
    return {Status::oom, e.what()};
  } catch (const bench::Unsupported& e) {
    return {Status::unsupported, e.what()};
  } catch (const InputError& e) {
    return {Status::unsupported, e.what()};
  } catch (const std::exception& e) {
    return {Status::error, e.what()};
  }
}

std::uint64_t total_calls(const CommStats& s) {
  std::uint64_t n = 0;
  for (auto c : s.calls) n += c;
  return n;
}

std::string bytes_str(double b) {
  if (b >= 1e9) return fmt::format("{:.2f}G", b / 1e9);
  if (b >= 1e6) return fmt::format("{:.2f}M", b / 1e6);
  if (b >= 1e3) return fmt::format("{:.1f}K", b / 1e3);
  return fmt::format("{:.0f}", b);
}

// ---- outputs for the check -----------------------------------------------------------------

// Where a global row lives: the rank holding it and its local row there.
class RowOwners {
 public:
  explicit RowOwners(const Dispatch& d) {
    for (int rk = 0; rk < d.ranks(); ++rk) {
      Index local = 0;
      for (Range c : d.chunks(rk)) {
        pieces_.push_back({c, rk, local});
        local += c.size();
      }
    }
    std::sort(pieces_.begin(), pieces_.end(),
              [](const Piece& a, const Piece& b) { return a.rows.begin < b.rows.begin; });
  }
  std::pair<int, Index> operator()(Index row) const {
    auto it = std::upper_bound(pieces_.begin(), pieces_.end(), row,
                               [](Index r, const Piece& p) { return r < p.rows.begin; });
    if (it == pieces_.begin() || !(--it)->rows.contains(row))
      throw std::logic_error(fmt::format("row {} is held by no rank", row));
    return {it->rank, it->local + (row - it->rows.begin)};
  }

 private:
  struct Piece {
    Range rows;
    int rank;
    Index local;
  };
  std::vector<Piece> pieces_;
};

// Columns [cols) of the global rows `rows` of a [S][width] tensor, of which every rank holds its
// rows (`local`, dispatch order), written into `global` ([S][width]) on rank 0 only. Collective;
// every rank passes the same rows and columns.
void gather_entries(const HostGroup& g, const RowOwners& owners, std::span<const float> local,
                    std::size_t width, std::span<const Index> rows, Range cols,
                    std::vector<float>& global) {
  const int N = g.size(), me = g.rank();
  const std::size_t n = std::size_t(cols.size());
  std::vector<std::vector<Index>> of(N);  // per rank: positions in `rows` it holds, in order
  std::vector<Index> local_row(rows.size());
  for (std::size_t i = 0; i < rows.size(); ++i) {
    auto [rk, l] = owners(rows[i]);
    of[rk].push_back(Index(i));
    local_row[i] = l;
  }
  std::size_t most = 0;
  for (const auto& v : of) most = std::max(most, v.size());
  std::vector<float> pack(most * n, 0.f);  // padded: the gather takes equal sizes
  for (std::size_t j = 0; j < of[me].size(); ++j)
    std::copy_n(&local[std::size_t(local_row[std::size_t(of[me][j])]) * width + cols.begin], n,
                &pack[j * n]);
  const std::vector<float> all = g.gather(std::span<const float>(pack), 0);
  if (me != 0) return;
  for (int rk = 0; rk < N; ++rk)
    for (std::size_t j = 0; j < of[rk].size(); ++j)
      std::copy_n(&all[(rk * most + j) * n], n,
                  &global[std::size_t(rows[std::size_t(of[rk][j])]) * width + cols.begin]);
}

}  // namespace

// ---- the runner -----------------------------------------------------------------------------

// What cases share: the global inputs of one (S, heads, dtype, seed), from which every rank takes
// its rows and against which rank 0 checks, and per mask the mask and, on rank 0, its checker
// (whose reference is computed once for all the cases of the mask).
struct MaskData {
  GeneratedMask mask;
  std::unique_ptr<bench::Checker> checker;
};

struct CaseData {
  std::string inputs_key;
  bench::HostTensors inputs;
  std::map<std::string, std::unique_ptr<MaskData>> masks;  // the checkers hold `inputs`
};

struct CpRunner::State {
  const HostGroup& group;
  CpOptions opt;
  std::shared_ptr<const bench::Environment> env;
  std::unique_ptr<Device> device;
  std::unique_ptr<Communicator> world;
  std::unique_ptr<LocalAttention> kernel;
  std::unique_ptr<CaseData> data;
  std::unique_ptr<Mesh> mesh;  // of the last topology: consecutive cases share it

  // Collective. The communicators are made (and their connections opened) before a case's memory
  // baseline, so that their own buffers are not counted, as in LongCA-bench's allocator figures.
  Mesh& mesh_for(const Topology& t) {
    if (!mesh || mesh_key(mesh->topology()) != mesh_key(t)) {
      mesh.reset();
      mesh = std::make_unique<Mesh>(*world, t);
      mesh->warm_up(*device);
    }
    return *mesh;
  }

  // Threads for host work: the machine's cores shared by the ranks on it.
  int host_threads() const {
    const int hw = int(std::max(1u, std::thread::hardware_concurrency()));
    return std::max(1, hw / std::max(1, group.local_size()));
  }

  // The inputs and the mask data of a case. Throws InputError for a mask that cannot be made.
  std::pair<MaskData*, const bench::HostTensors*> case_data(const CpCase& c) {
    const MaskParams& p = c.mask.params;
    std::string docs;
    for (Index l : p.doc_lens.value_or(std::vector<Index>{})) docs += fmt::format("{},", l);
    const std::string inputs_key =
        fmt::format("S={} H={}:{} D={} {} seed={}", c.mask.seqlen, c.heads.heads_q,
                    c.heads.heads_kv, c.heads.head_dim, bench::to_string(c.dtype), c.data_seed);
    const std::string mask_key = fmt::format(
        "{} S={} seed={} w={} g={} p={} b={} docs={} hist={}", to_string(c.mask.pattern),
        c.mask.seqlen, c.mask.seed, p.window, p.global, p.prefix.value_or(-1), p.block, docs,
        p.histogram ? p.histogram->name : "");
    if (!data || data->inputs_key != inputs_key) {
      data.reset();  // free the old inputs (and the checkers that hold them) first
      data = std::make_unique<CaseData>();
      const Index S = c.mask.seqlen;
      const std::size_t wq = std::size_t(c.heads.heads_q) * c.heads.head_dim;
      const std::size_t wkv = std::size_t(c.heads.heads_kv) * c.heads.head_dim;
      const int th = host_threads();
      data->inputs.q = make_input(c.data_seed, 0, S, wq, c.dtype, th);
      data->inputs.k = make_input(c.data_seed, 1, S, wkv, c.dtype, th);
      data->inputs.v = make_input(c.data_seed, 2, S, wkv, c.dtype, th);
      data->inputs.d_o = make_input(c.data_seed, 3, S, wq, c.dtype, th);
      data->inputs_key = inputs_key;
    }
    auto& m = data->masks[mask_key];
    if (!m) {
      auto fresh = std::make_unique<MaskData>();
      fresh->mask = make_mask(c.mask);
      m = std::move(fresh);
    }
    return {m.get(), &data->inputs};
  }
};

CpRunner::CpRunner(const HostGroup& group, CpOptions options,
                   std::shared_ptr<const bench::Environment> env)
    : state_(new State{group, std::move(options), std::move(env), nullptr, nullptr, nullptr, nullptr, nullptr}) {
  State& s = *state_;
  bench::validate(s.opt.timing);
  if (s.opt.gpu) {
    s.device = make_cuda_device(group.local_rank(), s.opt.timeout_s);
    s.world = make_nccl_communicator(group, *s.device, s.opt.timeout_s);
    s.kernel = make_gpu_attention(s.opt.kernel, *s.device);
  } else {
    if (s.opt.kernel != "reference")
      throw InputError(fmt::format("the cpu device runs the 'reference' kernel, not '{}'",
                                   s.opt.kernel));
    s.device = make_cpu_device();
    s.world = make_mpi_communicator(group, s.opt.timeout_s);
    s.kernel = make_reference_attention(s.opt.threads);
  }
}

CpRunner::~CpRunner() = default;

CpRecord CpRunner::run(const CpCase& c) {
  State& st = *state_;
  const HostGroup& g = st.group;
  Device& dev = *st.device;
  const int N = g.size(), me = g.rank();
  const Topology& topo = c.topology;
  const bool fwd_on = bench::runs_forward(c.direction);  // timed; the backward runs one anyway
  const bool bwd_on = bench::runs_backward(c.direction);

  CpRecord rec;
  rec.c = c;
  rec.kernel = st.kernel->name();
  rec.comm = std::string(st.world->kind());
  rec.memory_method = dev.gpu() ? "device-wide used bytes (cudaMemGetInfo) above the case "
                                  "baseline, read after setup and after each timed phase (every "
                                  "buffer and plan is allocated in setup)"
                                : "peak bytes allocated through the cpu device (its own counter)";
  bench::Record& r = rec.record;
  r.c = bench_case(c);
  r.backend_version = fmt::format("{} kernel over {}", rec.kernel, rec.comm);
  r.timing_options = st.opt.timing;
  r.env = st.env;
  auto finish = [&](const Outcome& o) {
    r.status = o.status;
    r.reason = o.reason;
    return rec;
  };

  // Deterministic validation first: every rank reaches the same verdict without talking.
  if (topo.ranks != N)
    return finish({Status::unsupported, fmt::format("topology {} needs {} ranks, this run has {}",
                                                    topo.describe(), topo.ranks, N)});
  MaskData* data = nullptr;
  const bench::HostTensors* inputs = nullptr;
  const GeneratedMask* gm = nullptr;
  std::optional<Dispatch> dispatch;
  CpProblem prob;
  Outcome pre = attempt([&] {
    if (info(c.mask.pattern).family == PatternFamily::dynamic)
      throw bench::Unsupported("context parallelism runs static masks; block-sparse masks are "
                               "dynamic");
    std::tie(data, inputs) = st.case_data(c);
    gm = &data->mask;
    r.mask = bench::mask_stats(*gm);
    r.flops = attention_flops(gm->mask, c.heads);
    if (!dev.gpu() && c.dtype != DType::fp32)
      throw bench::Unsupported(fmt::format("the cpu device runs fp32, not {}",
                                           bench::to_string(c.dtype)));
    const SliceMask& mask = std::get<SliceMask>(gm->mask);
    dispatch = make_dispatch(c.dispatch, mask, topo.ring, topo.ulysses, c.balance_chunks);
    prob = {&mask, &*dispatch, topo, c.heads, 0.f, c.dtype, bwd_on};
    validate(prob);
  });
  if (pre.status != Status::ok) return finish(pre);
  const Chunks& mine = dispatch->chunks(me);
  const Index T = dispatch->tokens_per_rank();
  const std::size_t wq = std::size_t(c.heads.heads_q) * c.heads.head_dim;
  const std::size_t wkv = std::size_t(c.heads.heads_kv) * c.heads.head_dim;

  // Setup: inputs, buffers, plans (any rank may fail: agree).
  Mesh* mesh = nullptr;
  Outcome comms = attempt([&] { mesh = &st.mesh_for(topo); });
  comms = agree(g, comms);
  if (comms.status != Status::ok) return finish(comms);
  dev.synchronize();
  dev.reset_peak();
  const std::size_t baseline = dev.device_used_bytes();
  std::unique_ptr<CpAttention> attn;
  Buffer q, k, v, o, d_o, dq, dk, dv, lse;
  Outcome setup = attempt([&] {
    q = dev.allocate(T * wq, c.dtype);
    k = dev.allocate(T * wkv, c.dtype);
    v = dev.allocate(T * wkv, c.dtype);
    o = dev.allocate(T * wq, c.dtype);
    lse = dev.allocate(T * c.heads.heads_q, DType::fp32);
    const bench::HostTensors& in = *inputs;
    dev.upload(q, gather_rows(mine, in.q, wq));
    dev.upload(k, gather_rows(mine, in.k, wkv));
    dev.upload(v, gather_rows(mine, in.v, wkv));
    if (bwd_on) {
      d_o = dev.allocate(T * wq, c.dtype);
      dq = dev.allocate(T * wq, c.dtype);
      dk = dev.allocate(T * wkv, c.dtype);
      dv = dev.allocate(T * wkv, c.dtype);
      dev.upload(d_o, gather_rows(mine, in.d_o, wq));
    }
    attn = make_cp_attention(prob, *mesh, dev, *st.kernel);
    dev.synchronize();
  });
  setup = agree(g, setup);
  if (setup.status != Status::ok) return finish(setup);

  auto used = [&] {
    return dev.gpu() ? double(dev.device_used_bytes() - std::min(baseline, dev.device_used_bytes()))
                     : double(dev.memory().peak_allocated);
  };
  double peak = used();

  // One timed phase: warm-up, the same number of repetitions on every rank, bytes of one call.
  auto phase = [&](auto&& call, double flops, const CommStats& model, CpPhase& out) {
    auto sw = dev.stopwatch();
    double estimate = 0;
    for (int i = 0; i < std::max(st.opt.timing.warmup, 1); ++i) {
      dev.synchronize();
      g.barrier();
      if (me == st.opt.inject_hang)  // the others must give up on it with a clear error
        std::this_thread::sleep_for(std::chrono::duration<double>(4 * st.opt.timeout_s + 30));
      sw->start();
      call();
      sw->stop();
      estimate = sw->elapsed_ms();
    }
    double est[1] = {estimate};
    g.all_reduce_max(est);
    const int reps = bench::planned_reps(est[0], st.opt.timing);
    std::vector<double> times;
    CommStats counted;
    for (int i = 0; i < reps; ++i) {
      if (st.opt.timing.l2_flush) dev.flush_caches();
      dev.synchronize();
      g.barrier();
      attn->reset_stats();
      sw->start();
      call();
      sw->stop();
      times.push_back(sw->elapsed_ms());
      if (i == 0) counted = attn->stats();
    }
    dev.synchronize();
    peak = std::max(peak, used());
    // One more call, untimed, traced step by step (where the time goes; device.hpp StepTrace).
    g.barrier();
    dev.trace().begin(dev);
    call();
    const std::vector<TracedStep> steps = dev.trace().end();
    std::string steps_text;
    for (const TracedStep& t : steps) steps_text += fmt::format("{}\t{}\n", t.label, t.ms);
    const std::vector<std::string> rank_steps = g.all_gather(steps_text);
    const bench::TimingSummary mine_t = bench::summarize(times);
    const double med[1] = {mine_t.median_ms};
    std::vector<double> meds = g.gather(med, 0);
    const double total[1] = {double(counted.total_bytes())};
    std::vector<double> totals = g.gather(total, 0);
    // Per-operation agreement, decided on every rank, then combined.
    bool match = true;
    for (int op = 0; op < kCommOps; ++op)
      match = match && counted.bytes[op] == model.bytes[op] && counted.calls[op] == model.calls[op];
    double mism[1] = {match ? 0.0 : 1.0};
    g.all_reduce_max(mism);
    // The slowest rank's full summary travels to rank 0.
    const double summary[7] = {mine_t.median_ms, mine_t.p20_ms, mine_t.p80_ms, mine_t.min_ms,
                               mine_t.max_ms,    mine_t.mean_ms, double(mine_t.reps)};
    std::vector<double> summaries = g.gather(summary, 0);
    if (me != 0) return;
    int slow = int(std::max_element(meds.begin(), meds.end()) - meds.begin());
    const double* s = &summaries[7 * slow];
    out.slowest.timing = {int(s[6]), s[0], s[1], s[2], s[3], s[4], s[5]};
    double sum = 0;
    for (double m : meds) sum += m;
    out.rank_median_ms = meds;
    out.tflops_per_gpu = flops / (N * s[0] * 1e-3) / 1e12;
    out.tflops_longca = flops / (sum * 1e-3) / 1e12;
    out.slowest.tflops = out.tflops_per_gpu;
    out.model = model;
    out.measured = counted;
    out.rank_bytes = totals;
    out.bytes_match = mism[0] == 0.0;
    out.steps_rank = slow;
    std::istringstream lines(rank_steps[slow]);
    for (std::string line; std::getline(lines, line);) {
      const auto tab = line.rfind('\t');
      out.steps.push_back({line.substr(0, tab), std::stod(line.substr(tab + 1))});
    }
  };

  const CommVolume model = comm_model({topo, c.mask.seqlen, c.heads, int(element_size(c.dtype))});
  CpPhase fwd, bwd;
  Outcome timed = attempt([&] {
    if (fwd_on) phase([&] { attn->forward(q, k, v, o); }, r.flops.forward, model.forward, fwd);
    if (bwd_on) {
      attn->forward(q, k, v, o);  // the state the backward starts from
      phase([&] { attn->backward(d_o, dq, dk, dv); }, r.flops.backward, model.backward, bwd);
    }
  });
  timed = agree(g, timed);
  if (timed.status != Status::ok) return finish(timed);

  // Work, memory and outputs travel to rank 0.
  const double work[1] = {attn->work()};
  std::vector<double> works = g.gather(work, 0);
  const double pk[1] = {peak / kGiB};
  std::vector<double> peaks = g.gather(pk, 0);
  std::vector<float> o_local(T * wq), lse_local(T * c.heads.heads_q), dq_l, dk_l, dv_l;
  Outcome outputs = attempt([&] {
    attn->forward(q, k, v, o);
    attn->export_lse(lse);
    dev.synchronize();
    dev.download(o_local, o);
    dev.download(lse_local, lse);
    if (bwd_on) {
      dq_l.resize(T * wq), dk_l.resize(T * wkv), dv_l.resize(T * wkv);
      dev.download(dq_l, dq);
      dev.download(dk_l, dk);
      dev.download(dv_l, dv);
    }
  });
  outputs = agree(g, outputs);
  if (outputs.status != Status::ok) return finish(outputs);
  // Only the entries the check reads travel (all of them for a full check); rank 0 holds the
  // outputs in global order with NaN elsewhere, so that reading anything else would fail it.
  const Index S = c.mask.seqlen;
  const int H = c.heads.heads_q, D = c.heads.head_dim, group = H / c.heads.heads_kv;
  const AttentionShape shape{S, S, H, c.heads.heads_kv, D, 0.f};
  const std::uint64_t check_seed = c.mask.seed ^ c.data_seed;
  bench::HostTensors out;
  bench::CheckSample sample;
  if (st.opt.check.enabled) {
    sample = bench::check_sample(shape, gm->mask, st.opt.check, check_seed);
    const RowOwners owners(*dispatch);
    std::vector<Index> every(static_cast<std::size_t>(S));
    for (Index i = 0; i < S; ++i) every[std::size_t(i)] = i;
    const std::span<const Index> q_rows = sample.full ? every : sample.q_rows;
    const std::span<const Index> k_rows = sample.full ? every : sample.k_rows;
    const int h0 = sample.full ? 0 : sample.kv_group * group, nh = sample.full ? H : group;
    const int g0 = sample.full ? 0 : sample.kv_group, ng = sample.full ? c.heads.heads_kv : 1;
    auto global = [&](std::size_t width) {
      return me == 0 ? std::vector<float>(std::size_t(S) * width,
                                          std::numeric_limits<float>::quiet_NaN())
                     : std::vector<float>{};
    };
    const Index all_cols = Index(wq);
    out.o = global(wq);
    gather_entries(g, owners, o_local, wq, q_rows, {0, all_cols}, out.o);
    // LSE is [H][T] per rank: gathered as [T][H] rows, put back as [H][S] on rank 0.
    std::vector<float> lse_rows(lse_local.size()), lse_t = global(H);
    for (int h = 0; h < H; ++h)
      for (Index t = 0; t < T; ++t)
        lse_rows[std::size_t(t) * H + h] = lse_local[std::size_t(h) * T + t];
    gather_entries(g, owners, lse_rows, H, q_rows, {0, H}, lse_t);
    if (bwd_on) {
      if (!sample.full) {  // the group's saved O and LSE at every row
        gather_entries(g, owners, o_local, wq, every, {Index(h0) * D, Index(h0 + nh) * D}, out.o);
        gather_entries(g, owners, lse_rows, H, every, {h0, h0 + nh}, lse_t);
      }
      out.dq = global(wq);
      out.dk = global(wkv);
      out.dv = global(wkv);
      gather_entries(g, owners, dq_l, wq, q_rows, {Index(h0) * D, Index(h0 + nh) * D}, out.dq);
      const Range kv_cols{Index(g0) * D, Index(g0 + ng) * D};
      gather_entries(g, owners, dk_l, wkv, k_rows, kv_cols, out.dk);
      gather_entries(g, owners, dv_l, wkv, k_rows, kv_cols, out.dv);
    }
    if (me == 0) {
      out.lse.resize(lse_t.size());
      for (int h = 0; h < H; ++h)
        for (Index i = 0; i < S; ++i)
          out.lse[std::size_t(h) * S + i] = lse_t[std::size_t(i) * H + h];
    }
  }
  if (me != 0) return finish({});

  // Rank 0: the record.
  if (fwd_on) rec.forward = fwd;
  if (bwd_on) rec.backward = bwd;
  if (rec.forward) r.forward = rec.forward->slowest;
  if (rec.backward) r.backward = rec.backward->slowest;
  rec.rank_work = works;
  double mean_work = 0;
  for (double w : works) mean_work += w / N;
  rec.imbalance = mean_work > 0 ? percentile_free_max(works) / mean_work : 1.0;
  rec.rank_peak_gib = peaks;
  r.memory.case_gib = percentile_free_max(peaks);

  Outcome verdict;
  if (st.opt.check.enabled) {
    if (!data->checker)  // shared by the cases of this mask: its reference is computed once
      data->checker = std::make_unique<bench::Checker>(shape, gm->mask, c.dtype, *inputs,
                                                       st.opt.check, check_seed);
    const bench::CheckSample& reads = data->checker->sample();
    if (reads.full != sample.full || reads.q_rows != sample.q_rows ||
        reads.k_rows != sample.k_rows || reads.kv_group != sample.kv_group)
      throw std::logic_error("the checker samples other entries than the ranks gathered");
    bench::CheckResult cr;
    data->checker->check_forward(out.o, out.lse, cr);
    if (bwd_on) data->checker->check_backward(out.o, out.lse, out.dq, out.dk, out.dv, cr);
    r.check = cr;
    if (!cr.passed()) verdict = {Status::wrong, cr.failure()};
  }
  for (const CpPhase* p : {rec.forward ? &*rec.forward : nullptr, rec.backward ? &*rec.backward : nullptr})
    if (p && !p->bytes_match && verdict.status == Status::ok)
      verdict = {Status::wrong,
                 fmt::format("communication differs from the model: measured {} B in {} calls "
                             "(rank 0), model {} B in {} calls",
                             p->measured.total_bytes(), total_calls(p->measured),
                             p->model.total_bytes(), total_calls(p->model))};
  return finish(verdict);
}

// ---- output ---------------------------------------------------------------------------------

namespace {

nlohmann::json stats_json(const CommStats& s) {
  nlohmann::json j;
  for (int op = 0; op < kCommOps; ++op)
    j[std::string(to_string(CommOp(op)))] = {{"bytes", s.bytes[op]}, {"calls", s.calls[op]}};
  j["total_bytes"] = s.total_bytes();
  return j;
}

nlohmann::json phase_json(const CpPhase& p) {
  nlohmann::json steps = nlohmann::json::array();
  for (const TracedStep& t : p.steps) steps.push_back({{"step", t.label}, {"ms", t.ms}});
  return {{"rank_median_ms", p.rank_median_ms},
          {"slowest_median_ms", p.slowest.timing.median_ms},
          {"tflops_per_gpu", p.tflops_per_gpu},
          {"tflops_per_gpu_note", "global FLOPs / (ranks x slowest rank's median)"},
          {"tflops_longca", p.tflops_longca},
          {"tflops_longca_note", "global FLOPs / sum of the ranks' medians (LongCA-bench)"},
          {"bytes_model", stats_json(p.model)},
          {"bytes_measured", stats_json(p.measured)},
          {"rank_bytes", p.rank_bytes},
          {"bytes_match", p.bytes_match},
          {"steps_rank", p.steps_rank},
          {"steps_ms", steps},
          {"steps_note", "one untimed call of the slowest rank, step by step (device work between "
                         "the algorithm's marks; waits for transfers apart)"}};
}

}  // namespace

nlohmann::json to_json(const CpRecord& r) {
  nlohmann::json j = bench::to_json(r.record);
  const Topology& t = r.c.topology;
  j["memory"]["method"] = r.memory_method;
  j["cp"] = {{"algorithm", std::string(to_string(t.algorithm))},
             {"ranks", t.ranks},
             {"ulysses", t.ulysses},
             {"ring", t.ring},
             {"window", t.window},
             {"gather_groups", t.gather_groups},
             {"topology", t.describe()},
             {"dispatch", std::string(to_string(r.c.dispatch))},
             {"balance_chunks", r.c.balance_chunks},
             {"tokens_per_rank", t.ranks ? r.c.mask.seqlen / t.ranks : 0},
             {"kernel", r.kernel},
             {"comm", r.comm},
             {"rank_work", r.rank_work},
             {"imbalance", r.imbalance},
             {"rank_peak_gib", r.rank_peak_gib}};
  j["cp"]["forward"] = r.forward ? phase_json(*r.forward) : nlohmann::json(nullptr);
  j["cp"]["backward"] = r.backward ? phase_json(*r.backward) : nlohmann::json(nullptr);
  return j;
}

std::string table_header() {
  return fmt::format(
      "# TF/s per GPU = global FLOPs / (N x slowest rank's median); lcb = LongCA-bench's global "
      "FLOPs / sum of ranks' medians\n"
      "# {:<14} {:>8} {:>10} {:<22} {:>6} {:>9} {:>8} {:>8} {:>9} {:>8} {:>8} {:>9} {:>9} {:>5} "
      "{:>6} {:>8} {:>8} {:>8}  {}\n",
      "algorithm", "topo", "dispatch", "mask", "S", "fwd_ms", "fwd_tf", "fwd_lcb", "bwd_ms",
      "bwd_tf", "bwd_lcb", "fwd_bytes", "bwd_bytes", "model", "imbal", "peak_GiB", "err_o",
      "err_dq", "status");
}

std::string table_row(const CpRecord& r) {
  const auto& rec = r.record;
  auto ms = [](const std::optional<CpPhase>& p) {
    return p ? fmt::format("{:.3f}", p->slowest.timing.median_ms) : std::string("-");
  };
  auto tf = [](const std::optional<CpPhase>& p, bool lcb) {
    return p ? fmt::format("{:.4g}", lcb ? p->tflops_longca : p->tflops_per_gpu)
             : std::string("-");
  };
  auto by = [](const std::optional<CpPhase>& p) {
    return p ? bytes_str(double(p->measured.total_bytes())) : std::string("-");
  };
  bool match = (!r.forward || r.forward->bytes_match) && (!r.backward || r.backward->bytes_match);
  bool any = r.forward || r.backward;
  auto err = [&](const std::optional<bench::OutputCheck>& c) {
    return c ? fmt::format("{:.1e}", c->error) : std::string("-");
  };
  std::string status(bench::to_string(rec.status));
  if (!rec.reason.empty()) status += ": " + rec.reason;
  return fmt::format(
      "  {:<14} {:>8} {:>10} {:<22} {:>6} {:>9} {:>8} {:>8} {:>9} {:>8} {:>8} {:>9} {:>9} {:>5} "
      "{:>6} {:>8} {:>8} {:>8}  {}\n",
      to_string(r.c.topology.algorithm), r.c.topology.describe(), to_string(r.c.dispatch),
      to_string(r.c.mask.pattern), bench::short_size(r.c.mask.seqlen), ms(r.forward),
      tf(r.forward, false), tf(r.forward, true), ms(r.backward), tf(r.backward, false),
      tf(r.backward, true), by(r.forward), by(r.backward), any ? (match ? "equal" : "DIFF") : "-",
      r.imbalance > 0 ? fmt::format("{:.3f}", r.imbalance) : std::string("-"),
      rec.memory.case_gib ? fmt::format("{:.3f}", *rec.memory.case_gib) : std::string("-"),
      rec.check ? err(rec.check->o) : std::string("-"),
      rec.check ? err(rec.check->dq) : std::string("-"), status);
}

std::string step_lines(const CpRecord& r) {
  std::string out;
  for (const auto* p : {&r.forward, &r.backward}) {
    if (!*p || (*p)->steps.empty()) continue;
    std::string steps;
    for (const TracedStep& t : (*p)->steps)
      steps += fmt::format("{}{} {:.3f}", steps.empty() ? "" : ", ", t.label, t.ms);
    out += fmt::format("      {} steps (ms, rank {}): {}\n", p == &r.forward ? "fwd" : "bwd",
                       (*p)->steps_rank, steps);
  }
  return out;
}

}  // namespace longattn::cp
