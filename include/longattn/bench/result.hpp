#pragma once
// The record of one case (status, measurements, errors, mask statistics, environment) and its
// three renderings: a JSON object (one line of records.jsonl), a CSV row, and a fixed-width
// terminal table row under a `#` header (nccl-tests style).
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "longattn/bench/case.hpp"
#include "longattn/bench/check.hpp"
#include "longattn/bench/environment.hpp"
#include "longattn/bench/memory.hpp"
#include "longattn/bench/timing.hpp"
#include "longattn/flops.hpp"
#include "longattn/sampler.hpp"

namespace longattn::bench {

// ok: measured and correct. unsupported: the backend cannot run the case (reason says why).
// oom: device memory ran out. error: anything else failed (message). wrong: measured, but an
// error is over its tolerance.
enum class Status { ok, unsupported, oom, error, wrong };
std::string_view to_string(Status s);

struct MaskStats {
  Index area = 0;              // allowed pairs (summed over KV heads for per-head masks)
  double density = 0;          // area / (heads * S^2)
  int heads = 1;               // 1 for static masks
  Index slices = 0;            // canonical slices (static) or kept blocks (dynamic)
  std::optional<DocumentStats> documents;
  std::vector<Index> prefixes;
};
MaskStats mask_stats(const GeneratedMask& g);

struct PhaseResult {
  TimingSummary timing;
  double tflops = 0;  // FLOPs of the phase / median time
};

struct Record {
  Case c;
  Status status = Status::ok;
  std::string reason;             // unsupported / oom / error / wrong: why
  std::string backend_version;
  MaskStats mask;
  Flops flops;
  std::optional<Index> issued_area;
  std::optional<PhaseResult> forward;
  std::optional<PhaseResult> backward;
  PeakMemory memory;
  std::optional<CheckResult> check;
  TimingOptions timing_options;
  std::shared_ptr<const Environment> env;
};

nlohmann::json to_json(const Record& r);
nlohmann::json to_json(const CheckResult& c);

std::string csv_header();
std::string csv_row(const Record& r);

std::string table_header();  // two lines starting with '#'
std::string table_row(const Record& r);

// 16384 -> "16K", 1536 -> "1536", 1048576 -> "1M"
std::string short_size(Index n);

}  // namespace longattn::bench
