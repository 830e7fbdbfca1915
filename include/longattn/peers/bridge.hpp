#pragma once
// The peer bridge: cases whose backend is a Python peer (PyTorch SDPA, FlexAttention,
// FlashAttention 2/3/4, FlashInfer) run in `python3 -m longattn_peers serve`, a child process
// speaking python/longattn_peers/PROTOCOL.md. The harness's inputs, timing options and CPU
// reference are the same as for longattn's own backends, so every comparison is on one footing:
//   - Q, K, V, dO are the harness's seeded inputs (bench make_inputs), written as .npy;
//   - each case's mask travels as the canonical mask JSON; the peer derives its own format;
//   - the peer's O, LSE, dQ, dK, dV come back as .npy and are checked by the harness's Checker;
//   - a crash, OOM or hang of a peer ends only its own case (error / oom), the child process is
//     restarted for the cases after it.
#include <cstddef>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "longattn/bench/case.hpp"
#include "longattn/bench/environment.hpp"
#include "longattn/bench/result.hpp"
#include "longattn/bench/runner.hpp"

namespace longattn::peers {

struct PeerInfo {
  std::string_view name;
  std::string_view summary;
};

// Every peer the bridge knows, available here or not (see probe_peers).
std::span<const PeerInfo> peer_list();
bool is_peer(std::string_view backend);
// "torch.sdpa.flash, torch.sdpa.cudnn, ..."
std::string peer_names();

struct BridgeOptions {
  std::string python;       // interpreter; empty: $LONGATTN_PYTHON, else python3
  std::string python_path;  // folder holding longattn_peers; empty: $LONGATTN_PEERS_PATH, else
                            // the source tree's python/ (compiled in)
  std::string work_dir;     // folder for tensors and results; empty: a fresh one in /dev/shm when
                            // it has room, else in the temp folder; removed afterwards
  std::string device = "cuda";  // "cpu": development and tests only (host clock, no memory)
  double case_timeout_s = 1800;  // a case with no result after this long is killed (error)
  Index dense_limit = Index(1) << 31;  // most elements of a dense boolean mask (heads * S * S)
  bool keep_files = false;       // keep the work folder (request, tensors, peers.log)
};

// Called after each case, in order: the record and what it has no field for (the peer's mask
// format, where its LSE came from, the allocator's memory figures, the Python environment;
// null for cases of longattn's own backends).
using RecordCallback =
    std::function<void(const bench::Record&, const nlohmann::json& details, std::size_t index)>;

// One bridge session: one child process (started on first use, restarted after a crash), one
// work folder. Cases are sent in groups that share a mask draw and an input set.
class PeerBridge {
 public:
  PeerBridge(BridgeOptions bridge, bench::RunOptions run,
             std::shared_ptr<const bench::Environment> env);
  ~PeerBridge();
  PeerBridge(const PeerBridge&) = delete;
  PeerBridge& operator=(const PeerBridge&) = delete;

  // Every case's backend must be a peer (InputError otherwise). `first_index` offsets the index
  // passed to on_record.
  std::vector<bench::Record> run(std::span<const bench::Case> cases,
                                 const RecordCallback& on_record = {},
                                 std::size_t first_index = 0);

  const std::string& work_dir() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// The cases of a whole sweep, in order: peers through one PeerBridge, longattn's own backends
// through `runner`. This is what `longattn bench --backend ...` calls.
std::vector<bench::Record> run_cases(bench::Runner& runner, std::span<const bench::Case> cases,
                                     const bench::RunOptions& run, const BridgeOptions& bridge,
                                     std::shared_ptr<const bench::Environment> env,
                                     const RecordCallback& on_record = {});

// Only peers (a convenience over PeerBridge).
std::vector<bench::Record> run_peer_cases(std::span<const bench::Case> cases,
                                          const bench::RunOptions& run,
                                          const BridgeOptions& bridge,
                                          std::shared_ptr<const bench::Environment> env,
                                          const RecordCallback& on_record = {});

// The record's JSON (bench::to_json) with the details under "peer" (omitted when null).
nlohmann::json to_json(const bench::Record& r, const nlohmann::json& details);

struct PeerStatus {
  std::string name;
  bool available = false;
  std::string version;
  std::string reason;   // why not available
  std::string summary;
};
// Asks the Python side which peers are usable here (`list --json`); when Python itself cannot run,
// every peer is reported unavailable with that reason.
std::vector<PeerStatus> probe_peers(const BridgeOptions& bridge);

// The conformance rows (PROTOCOL.md, `conformance --json`) for masks given as JSON files (each
// row's "mask" is its file's name without .json): per mask and peer, status exact / mismatch /
// unsupported, the format or the reason, differing pairs. Throws std::runtime_error when the
// Python side fails.
std::vector<nlohmann::json> conformance(const std::vector<std::string>& mask_files, int heads_q,
                                        int heads_kv, const BridgeOptions& bridge);

}  // namespace longattn::peers
