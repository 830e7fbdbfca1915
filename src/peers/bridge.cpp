#include "longattn/peers/bridge.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include "longattn/bench/check.hpp"
#include "longattn/error.hpp"
#include "longattn/mask_json.hpp"
#include "longattn/peers/npy.hpp"
#include "longattn/peers/process.hpp"
#include "tensor_data.hpp"  // the harness's seeded inputs and dtype packing (src/bench)

namespace longattn::peers {
namespace fs = std::filesystem;
using nlohmann::json;
using bench::Case;
using bench::Record;
using bench::Status;

namespace {

// Must list python/longattn_peers/formats.py PEERS, in its order.
constexpr PeerInfo kPeers[] = {
    {"torch.sdpa.flash", "PyTorch SDPA, FlashAttention-2 backend: full and causal (is_causal)"},
    {"torch.sdpa.cudnn", "PyTorch SDPA, cuDNN backend: full and causal (is_causal)"},
    {"torch.sdpa.efficient", "PyTorch SDPA, memory-efficient backend: is_causal or a dense mask"},
    {"torch.sdpa.math", "PyTorch SDPA, math backend (unfused): is_causal or a dense mask"},
    {"torch.flex", "PyTorch FlexAttention: BlockMask from the canonical mask, any mask"},
    {"flash_attn", "FlashAttention-2: causal, window_size, cu_seqlens"},
    {"flash_attn_interface", "FlashAttention-3 (Hopper): causal, window_size, cu_seqlens"},
    {"flash_attn.cute", "FlashAttention-4 (CuTe DSL): causal, window_size, cu_seqlens"},
    {"flashinfer", "FlashInfer block-sparse prefill, forward only"},
};

std::string env_or(const char* name, std::string fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::string(v) : std::move(fallback);
}

std::string python_of(const BridgeOptions& o) {
  return !o.python.empty() ? o.python : env_or("LONGATTN_PYTHON", "python3");
}

std::string python_path_of(const BridgeOptions& o) {
  return !o.python_path.empty() ? o.python_path
                                : env_or("LONGATTN_PEERS_PATH", LONGATTN_PEERS_PYTHON_DIR);
}

std::vector<std::pair<std::string, std::string>> child_env(const BridgeOptions& o) {
  std::string path = python_path_of(o);
  if (const char* old = std::getenv("PYTHONPATH"); old && *old) path += std::string(":") + old;
  // PYTHONSAFEPATH: the working folder is not searched, so only this path provides the package.
  return {{"PYTHONPATH", path}, {"PYTHONUNBUFFERED", "1"}, {"PYTHONSAFEPATH", "1"}};
}

// The last `n` non-empty lines of a log, joined, at most ~600 characters.
std::string tail_of(const std::string& path, std::size_t n = 4) {
  std::ifstream in(path);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);)
    if (line.find_first_not_of(" \t\r") != std::string::npos) lines.push_back(line);
  std::string out;
  for (std::size_t i = lines.size() > n ? lines.size() - n : 0; i < lines.size(); ++i)
    out += (out.empty() ? "" : " | ") + lines[i];
  if (out.size() > 600) out = "..." + out.substr(out.size() - 600);
  return out.empty() ? "(the log is empty)" : out;
}

// A fresh work folder: /dev/shm when it has room (tensors of long cases are GiBs), else temp.
std::string make_work_dir() {
  static int counter = 0;
  std::error_code ec;
  fs::path base = fs::temp_directory_path();
  if (fs::is_directory("/dev/shm", ec)) {
    const auto sp = fs::space("/dev/shm", ec);
    if (!ec && sp.available >= (std::uintmax_t(16) << 30)) base = "/dev/shm";
  }
  const fs::path dir = base / fmt::format("longattn-peers-{}-{}", ::getpid(), counter++);
  fs::create_directories(dir, ec);
  if (ec) throw InputError(fmt::format("cannot create work folder '{}': {}", dir.string(), ec.message()));
  return dir.string();
}

// The identity of a case's inputs: its mask draw, heads, dtype and data seed (not backend or
// direction), as the record writes them.
std::string input_key(const Case& c) {
  Record r;
  r.c = c;
  r.c.backend.clear();
  r.c.direction = bench::Direction::fwd;
  return bench::to_json(r)["case"].dump();
}

Status parse_status(const std::string& s) {
  for (Status st : {Status::ok, Status::unsupported, Status::oom, Status::error, Status::wrong})
    if (bench::to_string(st) == s) return st;
  throw InputError(fmt::format("peer record has an unknown status '{}'", s));
}

std::optional<double> opt_number(const json& j, const char* key) {
  if (!j.is_object() || !j.contains(key) || !j[key].is_number()) return std::nullopt;
  return j[key].get<double>();
}

std::optional<bench::PhaseResult> phase_of(const json& j, double flops) {
  if (!j.is_object()) return std::nullopt;
  bench::PhaseResult p;
  bench::TimingSummary& t = p.timing;
  t.median_ms = j.value("median_ms", 0.0);
  t.p20_ms = j.value("p20_ms", 0.0);
  t.p80_ms = j.value("p80_ms", 0.0);
  t.min_ms = j.value("min_ms", 0.0);
  t.max_ms = j.value("max_ms", 0.0);
  t.mean_ms = j.value("mean_ms", 0.0);
  t.reps = j.value("reps", 0);
  p.tflops = t.median_ms > 0 ? flops / (t.median_ms * 1e-3) / 1e12 : 0.0;
  return p;
}

void fail(Record& r, Status s, std::string why) {
  r.status = s;
  r.reason = std::move(why);
  r.forward.reset();
  r.backward.reset();
  r.check.reset();
}

// Reads complete new lines of a growing JSON Lines file.
class LineReader {
 public:
  explicit LineReader(std::string path) : path_(std::move(path)) {}
  std::vector<json> next() {
    std::vector<json> out;
    std::ifstream in(path_, std::ios::binary);
    if (!in) return out;
    in.seekg(std::streamoff(offset_));
    std::string chunk((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::size_t start = 0;
    for (std::size_t nl; (nl = chunk.find('\n', start)) != std::string::npos; start = nl + 1) {
      const std::string line = chunk.substr(start, nl - start);
      if (line.find_first_not_of(" \r\t") == std::string::npos) continue;
      try {
        out.push_back(json::parse(line));
      } catch (const json::parse_error& e) {
        out.push_back({{"event", "fatal"}, {"message", fmt::format("unreadable result line: {}", e.what())}});
      }
    }
    offset_ += start;
    return out;
  }

 private:
  std::string path_;
  std::size_t offset_ = 0;
};

// What came back for one submitted request.
struct Outcome {
  std::map<std::string, json> records;       // id -> the "record" event
  std::map<std::string, std::string> failed;  // id -> why (crash or timeout in that case)
  std::string fatal;                          // the request as a whole failed
  bool progressed = false;                    // at least one case started
};

}  // namespace

std::span<const PeerInfo> peer_list() { return kPeers; }

bool is_peer(std::string_view backend) {
  for (const PeerInfo& p : kPeers)
    if (p.name == backend) return true;
  return false;
}

std::string peer_names() {
  std::string s;
  for (const PeerInfo& p : kPeers) s += fmt::format("{}{}", s.empty() ? "" : ", ", p.name);
  return s;
}

json to_json(const Record& r, const json& details) {
  json j = bench::to_json(r);
  if (!details.is_null()) j["peer"] = details;
  return j;
}

// ---------------------------------------------------------------------------------------------

struct PeerBridge::State {
  BridgeOptions opt;
  bench::RunOptions run;
  std::shared_ptr<const bench::Environment> env;
  std::string work;
  bool own_work = false;
  std::string log_path;
  std::unique_ptr<ChildProcess> child;
  int requests = 0;
  int groups = 0;

  ~State() {
    child.reset();
    if (own_work && !opt.keep_files) {
      std::error_code ec;
      fs::remove_all(work, ec);
    }
  }

  void start_child() {
    child = std::make_unique<ChildProcess>(
        std::vector<std::string>{python_of(opt), "-m", "longattn_peers", "serve"}, child_env(opt),
        log_path);
  }

  Outcome submit(const std::string& request_path, const std::string& out_dir);
  void run_group(std::span<const Case> cases, std::vector<Record>& recs, std::vector<json>& details);
  json request_json(std::span<const Case> cases, const std::vector<std::size_t>& which,
                    const GeneratedMask& g, const json& inputs, const std::string& out_dir) const;
  void finish(const Case& c, Record& r, json& details, const json& event, const GeneratedMask& g,
              const bench::HostTensors& inputs, std::unique_ptr<bench::Checker>& checker);
};

PeerBridge::PeerBridge(BridgeOptions bridge, bench::RunOptions run,
                       std::shared_ptr<const bench::Environment> env)
    : state_(std::make_unique<State>()) {
  State& s = *state_;
  if (bridge.device != "cuda" && bridge.device != "cpu")
    throw InputError(fmt::format("peer device must be cuda or cpu, got '{}'", bridge.device));
  if (!(bridge.case_timeout_s > 0))
    throw InputError(fmt::format("peer case timeout must be positive, got {}", bridge.case_timeout_s));
  bench::validate(run.timing);
  s.opt = std::move(bridge);
  s.run = run;
  s.env = std::move(env);
  if (s.opt.work_dir.empty()) {
    s.work = make_work_dir();
    s.own_work = true;
  } else {
    std::error_code ec;
    fs::create_directories(s.opt.work_dir, ec);
    if (ec) throw InputError(fmt::format("cannot create '{}': {}", s.opt.work_dir, ec.message()));
    s.work = fs::absolute(s.opt.work_dir).string();
  }
  s.log_path = (fs::path(s.work) / "peers.log").string();
}

PeerBridge::~PeerBridge() = default;

const std::string& PeerBridge::work_dir() const { return state_->work; }

std::vector<Record> PeerBridge::run(std::span<const Case> cases, const RecordCallback& on_record,
                                    std::size_t first_index) {
  for (const Case& c : cases)
    if (!is_peer(c.backend))
      throw InputError(fmt::format("'{}' is not a peer (peers: {})", c.backend, peer_names()));
  std::vector<Record> out;
  out.reserve(cases.size());
  for (std::size_t i = 0; i < cases.size();) {
    std::size_t j = i + 1;
    const std::string key = input_key(cases[i]);
    while (j < cases.size() && input_key(cases[j]) == key) ++j;
    std::vector<Record> recs(j - i);
    std::vector<json> details(j - i);
    state_->run_group(cases.subspan(i, j - i), recs, details);
    for (std::size_t k = 0; k < recs.size(); ++k) {
      if (on_record) on_record(recs[k], details[k], first_index + i + k);
      out.push_back(std::move(recs[k]));
    }
    i = j;
  }
  return out;
}

Outcome PeerBridge::State::submit(const std::string& request_path, const std::string& out_dir) {
  Outcome o;
  bool sent = false;
  for (int attempt = 0; attempt < 2 && !sent; ++attempt) {
    try {
      if (!child || child->poll()) start_child();
    } catch (const std::exception& e) {
      o.fatal = fmt::format("the peer process does not start: {}", e.what());
      return o;
    }
    sent = child->send_line(request_path);
    if (!sent) child.reset();
  }
  if (!sent) {
    o.fatal = fmt::format("the peer process does not start: {}", tail_of(log_path));
    return o;
  }
  using clock = std::chrono::steady_clock;
  const auto timeout = std::chrono::duration_cast<clock::duration>(
      std::chrono::duration<double>(opt.case_timeout_s));
  auto deadline = clock::now() + timeout;
  std::string current;
  LineReader reader((fs::path(out_dir) / "results.jsonl").string());
  auto drain = [&]() -> bool {  // true when the request is over
    for (const json& e : reader.next()) {
      const std::string ev = e.value("event", "");
      if (ev == "start") {
        current = e.value("id", "");
        o.progressed = true;
        deadline = clock::now() + timeout;
      } else if (ev == "record") {
        o.records[e.value("id", "")] = e;
        current.clear();
        deadline = clock::now() + timeout;
      } else if (ev == "done") {
        return true;
      } else if (ev == "fatal") {
        o.fatal = e.value("message", "fatal error");
        return true;
      }
    }
    return false;
  };
  for (;;) {
    if (drain()) return o;
    if (auto st = child->poll()) {
      if (drain()) return o;
      const std::string how = ChildProcess::describe(*st);
      child.reset();
      if (!current.empty())
        o.failed[current] = fmt::format("the peer process died ({}) while running this case: {}",
                                        how, tail_of(log_path));
      else if (!o.progressed)
        o.fatal = fmt::format("the peer process ended ({}) before running a case: {}", how,
                              tail_of(log_path));
      // else: it ended between cases (after a device fault it exits once the faulting case's
      // record is written): the cases not yet run are resent to a fresh process.
      return o;
    }
    if (clock::now() > deadline) {
      child->kill();
      child.reset();
      const std::string why = fmt::format(
          "timed out: no result after {:.0f} s, the peer process was killed", opt.case_timeout_s);
      if (!current.empty()) o.failed[current] = why;
      else o.fatal = why + " (before its first case started)";
      return o;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

json PeerBridge::State::request_json(std::span<const Case> cases,
                                     const std::vector<std::size_t>& which, const GeneratedMask& g,
                                     const json& inputs, const std::string& out_dir) const {
  json req;
  req["protocol"] = 1;
  req["output_dir"] = out_dir;
  req["device"] = opt.device;
  const bench::TimingOptions& t = run.timing;
  req["timing"] = {{"warmup", t.warmup}, {"min_reps", t.min_reps}, {"max_reps", t.max_reps},
                   {"time_budget_s", t.time_budget_s}, {"l2_flush", t.l2_flush}};
  req["dense_limit"] = opt.dense_limit;
  req["write_outputs"] = run.check.enabled;
  req["masks"] = {{"m", longattn::to_json(g.mask)}};
  req["inputs"] = {{"x", inputs}};
  json list = json::array();
  for (std::size_t k : which) {
    Record echo;
    echo.c = cases[k];
    list.push_back({{"id", fmt::format("c{}", k)},
                    {"peer", cases[k].backend},
                    {"mask", "m"},
                    {"inputs", "x"},
                    {"direction", std::string(bench::to_string(cases[k].direction))},
                    {"case", bench::to_json(echo)["case"]}});
  }
  req["cases"] = std::move(list);
  return req;
}

void PeerBridge::State::run_group(std::span<const Case> cases, std::vector<Record>& recs,
                                  std::vector<json>& details) {
  const Case& c0 = cases.front();
  for (std::size_t k = 0; k < cases.size(); ++k) {
    recs[k].c = cases[k];
    recs[k].env = env;
    recs[k].timing_options = run.timing;
  }
  GeneratedMask g;
  try {
    g = make_mask(c0.mask);
  } catch (const std::exception& e) {
    for (Record& r : recs) fail(r, Status::error, e.what());
    return;
  }
  std::vector<std::size_t> pending;
  for (std::size_t k = 0; k < cases.size(); ++k) {
    recs[k].mask = bench::mask_stats(g);
    try {
      recs[k].flops = attention_flops(g.mask, cases[k].heads);
      pending.push_back(k);
    } catch (const std::exception& e) {
      fail(recs[k], Status::error, e.what());
    }
  }
  if (pending.empty()) return;

  // The harness's own inputs for this draw, written once for every case of the group.
  AttentionShape shape;
  shape.seqlen_q = shape.seqlen_k = c0.mask.seqlen;
  shape.heads_q = c0.heads.heads_q;
  shape.heads_kv = c0.heads.heads_kv;
  shape.head_dim = c0.heads.head_dim;
  const fs::path dir = fs::path(work) / fmt::format("g{}", groups++);
  bench::HostTensors inputs;
  json in = {{"seqlen", shape.seqlen_q}, {"heads_q", shape.heads_q}, {"heads_kv", shape.heads_kv},
             {"head_dim", shape.head_dim}, {"dtype", std::string(bench::to_string(c0.dtype))}};
  try {
    fs::create_directories(dir);
    inputs = bench::make_inputs(shape, c0.dtype, c0.data_seed);
    bool backward = false;
    for (std::size_t k : pending) backward |= bench::runs_backward(cases[k].direction);
    const std::vector<Index> qshape{shape.seqlen_q, shape.heads_q, shape.head_dim};
    const std::vector<Index> kvshape{shape.seqlen_k, shape.heads_kv, shape.head_dim};
    const auto write = [&](const char* name, const std::vector<float>& x, const std::vector<Index>& sh) {
      const auto bytes = bench::pack(x, c0.dtype);
      const std::string path = (dir / fmt::format("{}.npy", name)).string();
      write_npy(path, npy_descr(c0.dtype), sh, bytes.data(), bytes.size());
      in[name] = path;
    };
    write("q", inputs.q, qshape);
    write("k", inputs.k, kvshape);
    write("v", inputs.v, kvshape);
    if (backward) write("d_o", inputs.d_o, qshape);
  } catch (const std::bad_alloc&) {
    for (std::size_t k : pending) fail(recs[k], Status::oom, "host memory exhausted making the inputs");
    return;
  } catch (const std::exception& e) {
    for (std::size_t k : pending) fail(recs[k], Status::error, e.what());
    return;
  }

  std::map<std::string, json> results;
  for (int attempt = 0; !pending.empty(); ++attempt) {
    const std::string out_dir = (dir / fmt::format("out{}", attempt)).string();
    const std::string req_path = (dir / fmt::format("request{}.json", attempt)).string();
    {
      std::ofstream f(req_path);
      f << request_json(cases, pending, g, in, out_dir).dump();
      if (!f) throw InputError(fmt::format("cannot write '{}'", req_path));
    }
    ++requests;
    const Outcome o = submit(req_path, out_dir);
    std::vector<std::size_t> rest;
    for (std::size_t k : pending) {
      const std::string id = fmt::format("c{}", k);
      if (auto it = o.records.find(id); it != o.records.end()) {
        results[id] = it->second;
      } else if (auto f = o.failed.find(id); f != o.failed.end()) {
        fail(recs[k], Status::error, f->second);
      } else if (!o.fatal.empty() || !o.progressed) {
        fail(recs[k], Status::error, o.fatal.empty() ? "the peer process made no progress" : o.fatal);
      } else {
        rest.push_back(k);  // not reached before a crash: resent to a fresh process
      }
    }
    pending = std::move(rest);
  }

  std::unique_ptr<bench::Checker> checker;
  for (std::size_t k = 0; k < cases.size(); ++k) {
    const auto it = results.find(fmt::format("c{}", k));
    if (it == results.end()) continue;
    try {
      finish(cases[k], recs[k], details[k], it->second, g, inputs, checker);
    } catch (const std::bad_alloc&) {
      fail(recs[k], Status::oom, "host memory exhausted checking the peer's outputs");
    } catch (const std::exception& e) {
      fail(recs[k], Status::error, fmt::format("reading the peer's result: {}", e.what()));
    }
    if (!opt.keep_files && it->second.contains("outputs"))
      for (const auto& [name, path] : it->second["outputs"].items()) {
        std::error_code ec;
        fs::remove(path.get<std::string>(), ec);
      }
  }
  if (!opt.keep_files) {
    std::error_code ec;
    for (const char* name : {"q.npy", "k.npy", "v.npy", "d_o.npy"}) fs::remove(dir / name, ec);
  }
}

void PeerBridge::State::finish(const Case& c, Record& r, json& details, const json& event,
                               const GeneratedMask& g, const bench::HostTensors& inputs,
                               std::unique_ptr<bench::Checker>& checker) {
  const json& rec = event.at("record");
  details = event.value("peer", json::object());
  if (rec.contains("memory")) details["memory"] = rec["memory"];
  if (rec.contains("environment")) details["environment"] = rec["environment"];
  r.backend_version = rec.value("backend_version", "");
  r.status = parse_status(rec.value("status", "error"));
  r.reason = rec.value("reason", "");
  if (rec.contains("issued_area") && rec["issued_area"].is_number_integer())
    r.issued_area = rec["issued_area"].get<Index>();
  if (r.status != Status::ok) return;
  r.forward = phase_of(rec.value("forward", json()), r.flops.forward);
  r.backward = phase_of(rec.value("backward", json()), r.flops.backward);
  if (bench::runs_forward(c.direction) != r.forward.has_value() ||
      bench::runs_backward(c.direction) != r.backward.has_value())
    return fail(r, Status::error, "the peer's record lacks a timed phase of its direction");
  const json mem = rec.value("memory", json::object());
  r.memory.case_gib = opt_number(mem, "peak_gib");
  r.memory.forward_gib = opt_number(mem, "forward_peak_gib");
  r.memory.backward_gib = opt_number(mem, "backward_peak_gib");
  if (!run.check.enabled) return;

  // The harness's correctness check on the peer's outputs.
  const json outs = event.value("outputs", json::object());
  const Index S = c.mask.seqlen, Hq = c.heads.heads_q, Hkv = c.heads.heads_kv, D = c.heads.head_dim;
  const auto load = [&](const char* name, std::string_view descr, std::vector<Index> shape) {
    if (!outs.contains(name)) throw InputError(fmt::format("the peer wrote no {} output", name));
    const std::string path = outs[name].get<std::string>();
    NpyArray a = read_npy(path);
    expect_npy(a, path, descr, shape);
    std::vector<float> x(a.elements());
    if (descr == kLseDescr) std::memcpy(x.data(), a.data.data(), a.data.size());
    else bench::unpack(a.data, c.dtype, x);
    return x;
  };
  const std::string_view dt = npy_descr(c.dtype);
  if (!checker) {
    AttentionShape shape;
    shape.seqlen_q = shape.seqlen_k = S;
    shape.heads_q = int(Hq);
    shape.heads_kv = int(Hkv);
    shape.head_dim = int(D);
    checker = std::make_unique<bench::Checker>(shape, g.mask, c.dtype, inputs, run.check, c.data_seed);
  }
  bench::CheckResult check;
  const auto o = load("o", dt, {S, Hq, D});
  const auto lse = load("lse", kLseDescr, {Hq, S});
  checker->check_forward(o, lse, check);
  if (bench::runs_backward(c.direction)) {
    const auto dq = load("dq", dt, {S, Hq, D});
    const auto dk = load("dk", dt, {S, Hkv, D});
    const auto dv = load("dv", dt, {S, Hkv, D});
    checker->check_backward(o, lse, dq, dk, dv, check);
  }
  r.check = check;
  if (!check.passed()) {
    r.status = Status::wrong;
    r.reason = check.failure();
  }
}

// ---------------------------------------------------------------------------------------------

std::vector<Record> run_peer_cases(std::span<const Case> cases, const bench::RunOptions& run,
                                   const BridgeOptions& bridge,
                                   std::shared_ptr<const bench::Environment> env,
                                   const RecordCallback& on_record) {
  PeerBridge b(bridge, run, std::move(env));
  return b.run(cases, on_record);
}

std::vector<Record> run_cases(bench::Runner& runner, std::span<const Case> cases,
                              const bench::RunOptions& run, const BridgeOptions& bridge,
                              std::shared_ptr<const bench::Environment> env,
                              const RecordCallback& on_record) {
  std::unique_ptr<PeerBridge> peers;
  std::vector<Record> out;
  out.reserve(cases.size());
  for (std::size_t i = 0; i < cases.size();) {
    if (!is_peer(cases[i].backend)) {
      out.push_back(runner.run(cases[i]));
      if (on_record) on_record(out.back(), json(), i);
      ++i;
      continue;
    }
    std::size_t j = i;
    while (j < cases.size() && is_peer(cases[j].backend)) ++j;
    if (!peers) peers = std::make_unique<PeerBridge>(bridge, run, env);
    for (Record& r : peers->run(cases.subspan(i, j - i), on_record, i)) out.push_back(std::move(r));
    i = j;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------

namespace {

// Runs `python -m longattn_peers ARGS...` to completion; returns (wait status, stdout text).
std::pair<int, std::string> run_python(const BridgeOptions& bridge,
                                       const std::vector<std::string>& args) {
  const std::string dir = make_work_dir();
  const std::string log = (fs::path(dir) / "out.log").string();
  std::vector<std::string> argv{python_of(bridge), "-m", "longattn_peers"};
  argv.insert(argv.end(), args.begin(), args.end());
  int status = 0;
  {
    ChildProcess p(argv, child_env(bridge), log);
    p.close_input();
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::minutes(10);
    for (;;) {
      if (auto st = p.poll()) {
        status = *st;
        break;
      }
      if (std::chrono::steady_clock::now() > deadline) {
        p.kill();
        status = *p.poll();
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
  std::ifstream in(log);
  std::stringstream text;
  text << in.rdbuf();
  std::error_code ec;
  fs::remove_all(dir, ec);
  return {status, text.str()};
}

}  // namespace

std::vector<PeerStatus> probe_peers(const BridgeOptions& bridge) {
  std::vector<PeerStatus> out;
  std::string why;
  try {
    auto [status, text] = run_python(bridge, {"list", "--json", "--device", bridge.device});
    // Library warnings may precede it: the answer is the last line that parses.
    std::istringstream lines(text);
    json answer;
    for (std::string line; std::getline(lines, line);) {
      if (line.empty() || line.front() != '{') continue;
      try {
        answer = json::parse(line);
      } catch (const json::parse_error&) {
      }
    }
    if (answer.contains("peers")) {
      for (const json& p : answer["peers"])
        out.push_back({p.value("name", ""), p.value("available", false), p.value("version", ""),
                       p.value("reason", ""), p.value("summary", "")});
      return out;
    }
    why = fmt::format("{} -m longattn_peers list failed ({}): {}", python_of(bridge),
                      ChildProcess::describe(status), text.substr(0, 400));
  } catch (const std::exception& e) {
    why = e.what();
  }
  for (const PeerInfo& p : kPeers) out.push_back({std::string(p.name), false, "", why, std::string(p.summary)});
  return out;
}

std::vector<json> conformance(const std::vector<std::string>& mask_files, int heads_q, int heads_kv,
                              const BridgeOptions& bridge) {
  std::vector<std::string> args{"conformance", "--json", "--heads-q", std::to_string(heads_q),
                                "--heads-kv", std::to_string(heads_kv)};
  for (const std::string& f : mask_files) args.push_back(fs::absolute(f).string());
  auto [status, text] = run_python(bridge, args);
  std::vector<json> rows;
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    if (line.empty() || line.front() != '{') continue;
    try {
      json j = json::parse(line);
      if (j.contains("peer") && j.contains("status")) rows.push_back(std::move(j));
    } catch (const json::parse_error&) {
    }
  }
  // Exit 1 means a mismatch was found (the rows say where); anything else without rows failed.
  if (rows.empty())
    throw std::runtime_error(fmt::format("conformance check failed ({}): {}",
                                         ChildProcess::describe(status), text.substr(0, 600)));
  return rows;
}

}  // namespace longattn::peers
