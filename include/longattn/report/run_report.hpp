#pragma once
// Reports over benchmark runs: a self-contained HTML page (inline SVG charts, no network needed)
// and a markdown summary with the winners per mask and length. Several runs (machines, versions)
// can be compared in one report: their series are labelled by run.
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <utility>
#include <vector>

namespace longattn::report {

struct Run {
  std::string label;                   // shown in legends when several runs are compared
  std::string path;
  std::vector<nlohmann::json> records;  // one per case, as `longattn bench` writes them
};

// `path` is a run folder holding records.jsonl (what `longattn bench --out` and `longattn suite`
// write) or a .jsonl file. Throws InputError naming the file and line of a malformed record.
Run load_run(const std::string& path);

struct Report {
  std::string html;
  std::string markdown;
  std::vector<std::pair<std::string, std::string>> charts;  // (file stem, standalone SVG)
};

// Throws InputError when the runs hold no records.
Report build_report(std::span<const Run> runs);

}  // namespace longattn::report
