// longattn peers list | conformance: what is peer-specific about the Python peer kernels
// (PyTorch SDPA, FlexAttention, FlashAttention 2/3/4, FlashInfer) behind the bridge of src/peers.
// Benchmarking them is `longattn bench --backend torch.flex,...` (the shared sweep of sweep.cpp),
// side by side with longattn's own backends under the same timing protocol, masks and reference.
#include <fmt/format.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>

#include "commands/commands.hpp"
#include "commands/mask_options.hpp"
#include "longattn/bench/case.hpp"
#include "longattn/bench/environment.hpp"
#include "longattn/bench/progress.hpp"
#include "longattn/bench/runner.hpp"
#include "longattn/error.hpp"
#include "longattn/mask_json.hpp"
#include "longattn/peers/bridge.hpp"

namespace longattn::cli {
namespace {

using namespace longattn::bench;
using nlohmann::json;
namespace fs = std::filesystem;

}  // namespace

// The flags of the bridge, here and in the sweep of `longattn bench` / `suite` (sweep.cpp).
void add_peer_bridge_options(CLI::App& cmd, peers::BridgeOptions& b) {
  constexpr const char* kBridgeGroup = "Peer bridge";
  cmd.add_option("--python", b.python, "Python interpreter with torch (default: $LONGATTN_PYTHON or python3)")
      ->group(kBridgeGroup);
  cmd.add_option("--peers-path", b.python_path,
                 "folder holding the longattn_peers package (default: $LONGATTN_PEERS_PATH or the "
                 "source tree's python/)")
      ->group(kBridgeGroup);
  cmd.add_option("--peer-device", b.device, "cuda, or cpu for development (host clock, no memory)")
      ->check(CLI::IsMember({"cuda", "cpu"}))->capture_default_str()->group(kBridgeGroup);
  cmd.add_option("--case-timeout", b.case_timeout_s,
                 "seconds a peer case may take (compilation included) before it is killed")
      ->capture_default_str()->group(kBridgeGroup);
  cmd.add_option("--dense-limit", b.dense_limit,
                 "most elements (heads x S x S) of a dense boolean mask for SDPA efficient/math")
      ->capture_default_str()->group(kBridgeGroup);
  cmd.add_option("--work-dir", b.work_dir, "folder for the exchanged tensors (default: a fresh one)")
      ->group(kBridgeGroup);
  cmd.add_flag("--keep-files", b.keep_files, "keep the work folder (requests, tensors, peers.log)")
      ->group(kBridgeGroup);
}

namespace {

// ---------------------------------------------------------------------------------------------
// peers list

struct ListOptions {
  peers::BridgeOptions bridge;
  bool json = false;
};

void run_list(const ListOptions& o) {
  const auto rows = peers::probe_peers(o.bridge);
  if (o.json) {
    json out = json::array();
    for (const auto& p : rows)
      out.push_back({{"name", p.name}, {"available", p.available}, {"version", p.version},
                     {"reason", p.reason}, {"summary", p.summary}});
    fmt::print("{}\n", out.dump(2));
    return;
  }
  for (const auto& p : rows) {
    fmt::print("{:<21} {:<4} {}\n", p.name, p.available ? "yes" : "no",
               p.available ? p.version : p.reason);
    fmt::print("{:<26} {}\n", "", p.summary);
  }
}

// ---------------------------------------------------------------------------------------------
// peers conformance

struct ConformanceOptions {
  std::vector<std::string> masks;
  std::string seqlen = "1000";
  std::string heads = "4:2";
  std::uint64_t seed = 0;
  MaskOptions mask;
  bool numeric = false;
  std::string dtype;
  std::string out;
  bool json = false;
  peers::BridgeOptions bridge;
  CLI::App* cmd = nullptr;
};

// The masks of the table: every pattern (both block-sparse ones also causal), with the window,
// block and prefix parameters scaled to the small S unless given, so that each is non-trivial.
std::vector<std::pair<std::string, MaskSpec>> conformance_masks(const ConformanceOptions& o,
                                                                Index S, int heads_kv) {
  MaskParams base = to_params(o.mask);
  const auto given = [&](const char* flag) { return o.cmd->count(flag) > 0; };
  if (!given("--window")) base.window = std::max<Index>(1, S / 9);
  if (!given("--global")) base.global = std::max<Index>(1, S / 23);
  if (!given("--block")) base.block = std::max<Index>(1, S / 7);
  if (!given("--sparse-block")) base.sparse_block = 64;
  if (!given("--min-block")) base.min_block = 16;
  if (!given("--avg-block")) base.average_block = 48;
  if (!given("--sparse-heads")) base.sparse_heads = heads_kv;
  std::vector<std::string> names = o.masks;
  if (names.empty())
    for (const PatternInfo& p : all_patterns()) names.emplace_back(p.name);
  std::vector<std::pair<std::string, MaskSpec>> out;
  for (const std::string& n : names) {
    MaskSpec spec;
    spec.pattern = parse_pattern(n);
    spec.seqlen = S;
    spec.seed = o.seed;
    spec.params = base;
    out.emplace_back(n, spec);
    if (info(spec.pattern).family == PatternFamily::dynamic && !given("--sparse-causal")) {
      spec.params.sparse_causal = true;
      out.emplace_back(n + "_causal", spec);
    }
  }
  return out;
}

void run_conformance(const ConformanceOptions& o) {
  const Index S = parse_seqlen(o.seqlen, "--seqlen");
  HeadConfig heads = parse_heads(o.heads);
  heads.head_dim = 64;
  validate(heads);
  const auto masks = conformance_masks(o, S, heads.heads_kv);

  // The masks as files, named by their label (the Python side labels rows by file name).
  std::unique_ptr<peers::PeerBridge> holder;
  const std::string dir = (fs::temp_directory_path() / fmt::format("longattn-conformance-{}", ::getpid())).string();
  fs::create_directories(dir);
  std::vector<std::string> files;
  std::vector<GeneratedMask> generated;
  for (const auto& [label, spec] : masks) {
    generated.push_back(make_mask(spec));
    const std::string f = (fs::path(dir) / (label + ".json")).string();
    std::ofstream(f) << longattn::to_json(generated.back().mask).dump();
    files.push_back(f);
  }
  std::vector<json> rows;
  try {
    rows = peers::conformance(files, heads.heads_q, heads.heads_kv, o.bridge);
  } catch (...) {
    fs::remove_all(dir);
    throw;
  }
  fs::remove_all(dir);

  // The numerical check: every supported (mask, peer) run once, fwd+bwd, against the CPU reference.
  std::map<std::pair<std::string, std::string>, std::string> numeric;
  if (o.numeric) {
    std::vector<Case> cases;
    std::vector<std::string> labels;
    const DType dt = !o.dtype.empty() ? parse_dtype(o.dtype)
                                      : (o.bridge.device == "cuda" ? DType::bf16 : DType::fp32);
    for (std::size_t m = 0; m < masks.size(); ++m)
      for (const json& r : rows)
        if (r["mask"] == masks[m].first && r["status"] == "exact") {
          Case c;
          c.backend = r["peer"].get<std::string>();
          c.mask = masks[m].second;
          c.heads = heads;
          c.dtype = dt;
          c.direction = Direction::fwdbwd;
          c.data_seed = o.seed;
          cases.push_back(c);
          labels.push_back(masks[m].first);
        }
    RunOptions ro;
    ro.timing.warmup = 1;
    ro.timing.min_reps = 1;
    ro.timing.max_reps = 3;
    ro.timing.time_budget_s = 0;
    ro.check.rows = 0;  // every row
    auto env = std::make_shared<const Environment>(collect_environment(LONGATTN_GIT_COMMIT));
    Progress progress(cases.size());
    peers::run_peer_cases(cases, ro, o.bridge, env, [&](const Record& r, const json&, std::size_t i) {
      std::string s(to_string(r.status));
      if (r.check && r.check->o)
        s += fmt::format(" O {:.1e}", r.check->o->error);
      if (r.check && r.check->dq) s += fmt::format(" dQ {:.1e}", r.check->dq->error);
      if (r.status != Status::ok && !r.reason.empty()) s += ": " + r.reason;
      numeric[{labels[i], r.c.backend}] = s;
      progress.update(i + 1, describe(r.c));
    });
  }
  for (json& r : rows) {
    const auto it = numeric.find({r["mask"].get<std::string>(), r["peer"].get<std::string>()});
    r["numeric"] = it != numeric.end() ? json(it->second) : json(nullptr);
  }

  // Table: one line per (mask, peer).
  std::string table = fmt::format("# peer conformance: each peer's own mask format rasterised and "
                                  "compared bit for bit with the canonical mask; S = {}, heads {}:{}{}\n",
                                  S, heads.heads_q, heads.heads_kv,
                                  o.numeric ? "; numeric: fwd+bwd vs the CPU reference" : "");
  table += fmt::format("#{:>28} {:>21} {:>12}  {}\n", "mask", "peer", "conformance",
                       o.numeric ? "numeric | format / reason" : "format / reason");
  std::size_t mismatches = 0;
  for (const json& r : rows) {
    const std::string st = r["status"].get<std::string>();
    std::string status = st == "mismatch" ? fmt::format("MISMATCH:{}", r["differing_pairs"].get<Index>()) : st;
    mismatches += st == "mismatch";
    std::string what = st == "unsupported" ? r.value("reason", "") : r.value("format", "");
    if (o.numeric && r["numeric"].is_string()) what = r["numeric"].get<std::string>() + " | " + what;
    table += fmt::format(" {:>28} {:>21} {:>12}  {}\n", r["mask"].get<std::string>(),
                         r["peer"].get<std::string>(), status, what);
  }
  if (o.json) {
    for (const json& r : rows) fmt::print("{}\n", r.dump());
  } else {
    fmt::print("{}", table);
  }
  if (!o.out.empty()) {
    fs::create_directories(o.out);
    std::ofstream jl(fs::path(o.out) / "conformance.jsonl");
    for (const json& r : rows) jl << r.dump() << '\n';
    std::ofstream(fs::path(o.out) / "conformance.txt") << table;
  }
  for (const auto& [key, s] : numeric)
    if (s.rfind("wrong", 0) == 0 || s.rfind("error", 0) == 0) ++mismatches;
  if (mismatches > 0) exit_code = 1;
}

}  // namespace

void add_peers_command(CLI::App& app) {
  CLI::App* peers_cmd = app.add_subcommand(
      "peers",
      "Peer kernels from Python packages (PyTorch SDPA flash/cudnn/efficient/math, FlexAttention, "
      "FlashAttention 2/3/4, FlashInfer), run through a child Python process on longattn's "
      "canonical masks, inputs, timing protocol and CPU reference (python/longattn_peers/"
      "PROTOCOL.md). Benchmark them with `longattn bench --backend torch.flex,cudnn,...`.");
  peers_cmd->require_subcommand(1);

  // `peers bench` was a second copy of `longattn bench`; old command lines get a pointer, hidden
  // from the help.
  CLI::App* moved = peers_cmd->add_subcommand("bench", "")->group("")->allow_extras();
  moved->callback([] {
    throw InputError("`longattn peers bench` is gone: run `longattn bench --backend <peers and "
                     "built-in backends>` (same flags; see `longattn peers list`)");
  });

  auto lo = std::make_shared<ListOptions>();
  CLI::App* list = peers_cmd->add_subcommand("list", "the peers and whether each is usable here (and why not)");
  list->add_flag("--json", lo->json, "print a JSON array");
  add_peer_bridge_options(*list, lo->bridge);
  list->callback([lo] { run_list(*lo); });

  auto c = std::make_shared<ConformanceOptions>();
  CLI::App* conf = peers_cmd->add_subcommand(
      "conformance",
      "Does each peer compute exactly the canonical mask? Every pattern is generated at a small S, "
      "each peer's own mask format is built from it, rasterised back and compared bit for bit "
      "(MISMATCH:n gives the differing pairs); --numeric also runs every exact (mask, peer) "
      "fwd+bwd against the CPU reference. Window, block and prefix parameters scale with S "
      "unless given. Exit status 1 on any mismatch or failed numerical check.");
  c->cmd = conf;
  conf->add_option("--mask", c->masks, "patterns (default: all 14; block-sparse ones also causal)")->delimiter(',');
  conf->add_option("--seqlen", c->seqlen, "sequence length (odd sizes test edges)")->capture_default_str();
  conf->add_option("--heads", c->heads, "query:KV heads (block-sparse masks get one pattern per KV head)")
      ->capture_default_str();
  conf->add_option("--seed", c->seed, "seed of the masks and inputs")->capture_default_str();
  add_mask_param_options(*conf, c->mask);
  conf->add_flag("--numeric", c->numeric, "also run every exact (mask, peer) and check it numerically");
  conf->add_option("--dtype", c->dtype, "element type of the numerical check (default bf16 on cuda, fp32 on cpu)");
  conf->add_option("--out", c->out, "directory for conformance.jsonl and conformance.txt");
  conf->add_flag("--json", c->json, "print one JSON object per row");
  add_peer_bridge_options(*conf, c->bridge);
  conf->callback([c] { run_conformance(*c); });
}

}  // namespace longattn::cli
