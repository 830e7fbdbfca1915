#include "longattn/report/run_report.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include "longattn/error.hpp"
#include "longattn/patterns.hpp"
#include "longattn/report/bar_chart.hpp"
#include "longattn/report/chart.hpp"
#include "longattn/report/cp_report.hpp"
#include "longattn/report/svg.hpp"
#include "record_fields.hpp"

namespace longattn::report {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// ---- reading records ------------------------------------------------------------------------

std::string heads_of(const json& c) {
  return fmt::format("{}:{}", get_or(c, "heads_q", 0), get_or(c, "heads_kv", 0));
}

bool is_sparse(const std::string& pattern) { return pattern.rfind("block_sparse", 0) == 0; }

// The phases a record measured: ("fwd", forward) and/or ("bwd", backward).
std::vector<std::pair<std::string, const json*>> phases(const json& r) {
  std::vector<std::pair<std::string, const json*>> out;
  for (auto [name, key] : {std::pair{"fwd", "forward"}, {"bwd", "backward"}})
    if (auto it = r.find(key); it != r.end() && it->is_object()) out.push_back({name, &*it});
  return out;
}

std::optional<double> tflops_of(const json& phase) {
  auto it = phase.find("tflops");
  if (it == phase.end() || !it->is_number()) return std::nullopt;
  return it->get<double>();
}

struct Row {
  const json* record;
  std::string run;  // label, empty when the report has one run
};

// Masks in DESIGN.md's order (names this version does not know last, alphabetically).
bool mask_order(const std::string& a, const std::string& b) {
  auto rank = [](const std::string& name) {
    try {
      return int(parse_pattern(name));
    } catch (const InputError&) {
      return 1 << 20;
    }
  };
  return std::pair{rank(a), a} < std::pair{rank(b), b};
}

std::string series_label(const std::string& backend, const std::string& run) {
  return run.empty() ? backend : fmt::format("{} @ {}", backend, run);
}

// ---- HTML helpers -----------------------------------------------------------------------------

constexpr const char* kStyle = R"(
body { font-family: system-ui, sans-serif; margin: 24px; color: #222; max-width: 1240px; }
h1 { font-size: 22px; } h2 { font-size: 18px; margin-top: 32px; border-bottom: 1px solid #ddd; }
.charts { display: flex; flex-wrap: wrap; gap: 12px; }
table { border-collapse: collapse; font-size: 13px; margin: 8px 0; }
td, th { border: 1px solid #ddd; padding: 3px 8px; text-align: left; }
td.ok { background: #d8f0d8; } td.unsupported { background: #eee; color: #777; }
td.oom { background: #ffe2b8; } td.error, td.wrong { background: #f8c8c8; }
td.mixed { background: #fff3b0; } code { font-size: 12px; }
)";

// Checks in the browser that every chart has data and records the verdict in the DOM (read by
// the headless-browser test).
constexpr const char* kSelfCheck = R"(
(function () {
  var charts = document.querySelectorAll('svg.chart');
  var empty = 0;
  charts.forEach(function (c) { if (c.querySelectorAll('[data-point]').length === 0) empty++; });
  var m = document.getElementById('self-check');
  m.setAttribute('data-charts', String(charts.length));
  m.setAttribute('data-empty-charts', String(empty));
  m.setAttribute('data-status', charts.length > 0 && empty === 0 ? 'ok' : 'fail');
})();
)";

std::string esc(std::string_view s) { return xml_escape(s); }

}  // namespace

Run load_run(const std::string& path) {
  fs::path file = path;
  if (fs::is_directory(file)) file /= "records.jsonl";
  std::ifstream in(file);
  if (!in) throw InputError(fmt::format("cannot read benchmark records '{}'", file.string()));
  Run run{fs::path(path).filename().string(), path, {}};
  if (run.label.empty() || run.label == "records.jsonl")
    run.label = fs::path(path).parent_path().filename().string();
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    json j = json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.is_object() || !j.contains("status") || !j.contains("case") ||
        !j.contains("backend"))
      throw InputError(fmt::format("{}:{}: not a benchmark record (expected a JSON object with "
                                   "backend, status and case)", file.string(), n));
    run.records.push_back(std::move(j));
  }
  return run;
}

namespace {

// The commits a run's records were measured at, in order of appearance, with their record
// counts when there are several (a resumed suite can span commits), e.g. "6faef99 (294), dc9c1f9 (189)".
std::string commits_of(const std::vector<json>& records) {
  std::vector<std::pair<std::string, int>> seen;
  for (const json& r : records) {
    const std::string c = commit_of(r);
    auto it = std::find_if(seen.begin(), seen.end(), [&](const auto& s) { return s.first == c; });
    if (it == seen.end()) seen.emplace_back(c, 1);
    else ++it->second;
  }
  if (seen.size() == 1) return seen.front().first;
  std::string out;
  for (const auto& [c, n] : seen) out += fmt::format("{}{} ({})", out.empty() ? "" : ", ", c, n);
  return out;
}

}  // namespace

Report build_report(std::span<const Run> runs) {
  std::vector<Row> rows;
  const bool several = runs.size() > 1;
  for (const Run& run : runs)
    for (const json& r : run.records) rows.push_back({&r, several ? run.label : ""});
  if (rows.empty()) throw InputError("the runs hold no benchmark records");

  Report out;
  std::string body;
  std::string md = "# longattn report\n\n";

  // ---- runs and their environments
  body += "<h2>Runs</h2><table><tr><th>run</th><th>records</th><th>GPU</th><th>CUDA</th>"
          "<th>cuDNN</th><th>driver</th><th>commit</th><th>when</th></tr>";
  md += "| run | records | GPU | commit |\n|---|---|---|---|\n";
  for (const Run& run : runs) {
    json env = json::object();
    for (const json& r : run.records)
      if (r.contains("environment") && r["environment"].is_object()) { env = r["environment"]; break; }
    const std::string gpu = get_or<std::string>(env, "gpu_name", "") .empty()
                                ? std::string("CPU only")
                                : get_or<std::string>(env, "gpu_name", "");
    body += fmt::format("<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>"
                        "<td><code>{}</code></td><td>{}</td></tr>",
                        esc(run.label), run.records.size(), esc(gpu),
                        esc(get_or<std::string>(env, "cuda_runtime", "")),
                        esc(get_or<std::string>(env, "cudnn", "")),
                        esc(get_or<std::string>(env, "driver", "")),
                        esc(commits_of(run.records)),
                        esc(get_or<std::string>(env, "timestamp", "")));
    md += fmt::format("| {} | {} | {} | {} |\n", run.label, run.records.size(), gpu,
                      commits_of(run.records));
  }
  body += "</table>";

  // ---- group ok records: (phase, pattern, heads, head_dim, dtype) -> series -> (S, TF/s)
  struct Key {
    std::string phase, pattern, heads;
    int head_dim;
    std::string dtype;
    auto operator<=>(const Key&) const = default;
  };
  std::map<Key, std::map<std::string, Series>> speed, memory;
  // per mask: (phase, heads, head_dim, dtype, S) -> backend -> mask -> TF/s
  struct LengthKey {
    std::string phase, heads;
    int head_dim;
    std::string dtype;
    long long seqlen;
    auto operator<=>(const LengthKey&) const = default;
  };
  std::map<LengthKey, std::map<std::string, std::map<std::string, double>>> per_mask;
  // sparse: (phase, pattern, S, heads) -> series (backend, block, causal) -> (keep, TF/s)
  std::map<Key, std::map<std::string, Series>> sparse;
  // winners: (phase, pattern, heads, S) -> the fastest and the commits of every contender
  struct Winner {
    double tflops = 0;
    std::string label;
    std::set<std::string> commits;  // more than one: the comparison spans commits (and calls)
  };
  std::map<std::tuple<std::string, std::string, std::string, long long>, Winner> winners;
  std::set<std::string> backends_seen;

  for (const Row& row : rows) {
    const json& r = *row.record;
    const json& c = r["case"];
    const std::string pattern = get_or<std::string>(c, "pattern", "?");
    const std::string backend = r["backend"].get<std::string>();
    const std::string label = series_label(backend, row.run);
    backends_seen.insert(label);
    // CP records (per-GPU TF/s of a whole job) have their own charts, below.
    if (r["status"] != "ok" || is_cp_record(r)) continue;
    const double s = double(get_or<long long>(c, "seqlen", 0));
    const std::string heads = heads_of(c);
    const int d = get_or(c, "head_dim", 0);
    const std::string dtype = get_or<std::string>(c, "dtype", "");
    for (auto& [phase, p] : phases(r)) {
      const auto tf = tflops_of(*p);
      if (!tf) continue;
      if (is_sparse(pattern)) {
        const json& prm = c.value("params", json::object());
        const long long block = pattern == "block_sparse_uniform" ? get_or<long long>(prm, "sparse_block", 0)
                                                                  : get_or<long long>(prm, "average_block", 0);
        const std::string sl = fmt::format("{} block {}{}", label, block,
                                           get_or(prm, "sparse_causal", false) ? " causal" : "");
        Key k{phase, pattern + " S=" + short_count(s), heads, d, dtype};
        sparse[k][sl].label = sl;
        sparse[k][sl].points.push_back({get_or(prm, "keep", 0.0), *tf});
        continue;
      }
      Key k{phase, pattern, heads, d, dtype};
      speed[k][label].label = label;
      speed[k][label].points.push_back({s, *tf});
      per_mask[{phase, heads, d, dtype, (long long)s}][label][pattern] = *tf;
      auto& w = winners[{phase, pattern, heads, (long long)s}];
      if (*tf > w.tflops) w.tflops = *tf, w.label = label;
      w.commits.insert(commit_of(r));
    }
    const json& mem = r.value("memory", json::object());
    if (auto it = mem.find("peak_gib"); it != mem.end() && it->is_number()) {
      Key k{"mem", pattern, heads_of(c), d, dtype};
      memory[k][label].label = label;
      memory[k][label].points.push_back({s, it->get<double>()});
    }
  }

  auto add_chart = [&](std::string stem, const std::string& svg) {
    std::replace_if(stem.begin(), stem.end(), [](char ch) { return !std::isalnum((unsigned char)ch) && ch != '_' && ch != '-'; }, '-');
    out.charts.push_back({stem, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n" +
                                    std::string(svg).insert(4, " xmlns=\"http://www.w3.org/2000/svg\"")});
  };
  auto chart_block = [&](const std::string& section, auto& groups, const std::string& x_label,
                         const std::string& y_label, bool log2_x, const std::string& stem_prefix) {
    if (groups.empty()) return;
    body += fmt::format("<h2>{}</h2><div class=\"charts\">", esc(section));
    for (auto& [k, series] : groups) {
      LineChart chart{fmt::format("{} {} H={} D={} {}", k.pattern, k.phase == "mem" ? "" : k.phase,
                                  k.heads, k.head_dim, k.dtype),
                      x_label, y_label, log2_x, {}};
      for (auto& [_, sr] : series) chart.series.push_back(sr);
      if (chart.empty()) continue;
      const std::string svg = chart.svg();
      body += svg;
      add_chart(fmt::format("{}{}_{}_{}_{}", stem_prefix, k.pattern, k.phase, k.heads, k.head_dim), svg);
    }
    body += "</div>";
  };
  // Charts per direction: all forward charts, then all backward ones.
  for (const char* phase : {"fwd", "bwd"}) {
    std::map<Key, std::map<std::string, Series>> part;
    for (auto& [k, v] : speed) if (k.phase == phase) part[k] = v;
    chart_block(fmt::format("{} TF/s against sequence length (mask-aware FLOPs)",
                            std::string(phase) == "fwd" ? "Forward" : "Backward"),
                part, "sequence length", "TF/s", true, "tflops_");
  }
  // Bars: every mask side by side at one length, where a run measured several masks there.
  for (const char* phase : {"fwd", "bwd"}) {
    std::string charts;
    for (auto& [k, by_backend] : per_mask) {
      if (k.phase != phase) continue;
      std::set<std::string, decltype(&mask_order)> masks(&mask_order);
      for (auto& [_, tf] : by_backend)
        for (auto& [mask, __] : tf) masks.insert(mask);
      if (masks.size() < 2) continue;
      BarChart chart{fmt::format("{} S={} H={} D={} {}", phase, short_count(double(k.seqlen)), k.heads,
                                 k.head_dim, k.dtype),
                     "TF/s", {masks.begin(), masks.end()}, {}};
      for (auto& [label, tf] : by_backend) {
        BarChart::Series series{label, {}};
        for (const std::string& mask : chart.categories) {
          auto it = tf.find(mask);
          series.values.push_back(it == tf.end() ? std::nullopt : std::optional(it->second));
        }
        chart.series.push_back(std::move(series));
      }
      const std::string svg = chart.svg();
      charts += svg;
      add_chart(fmt::format("masks_{}_{}_{}_{}_{}", phase, short_count(double(k.seqlen)), k.heads,
                            k.head_dim, k.dtype), svg);
    }
    if (charts.empty()) continue;
    body += fmt::format("<h2>{} TF/s per mask at each length</h2><div class=\"charts\">{}</div>",
                        std::string(phase) == "fwd" ? "Forward" : "Backward", charts);
  }
  chart_block("Peak memory above the case baseline", memory, "sequence length", "GiB", true, "memory_");
  chart_block("Block-sparse TF/s against keep ratio (kept blocks only)", sparse, "keep ratio", "TF/s",
              false, "sparse_");

  // ---- context parallelism
  std::vector<LabelledRecord> labelled;
  for (const Row& row : rows) labelled.push_back({row.record, row.run});
  const CpReport cp = cp_report(labelled);
  for (const ChartSection& section : cp.sections) {
    body += fmt::format("<h2>{}</h2><p>{}</p><div class=\"charts\">", esc(section.title), section.note);
    for (const auto& [stem, chart] : section.charts) {
      const std::string svg = chart.svg();
      body += svg;
      add_chart(stem, svg);
    }
    body += "</div>";
  }

  // ---- support matrix: backend x mask, status counts
  std::set<std::string> patterns;
  std::map<std::pair<std::string, std::string>, std::map<std::string, int>> status;
  std::map<std::pair<std::string, std::string>, std::string> reason;
  for (const Row& row : rows) {
    const json& r = *row.record;
    const std::string pattern = get_or<std::string>(r["case"], "pattern", "?");
    const auto key = std::pair{series_label(r["backend"].get<std::string>(), row.run), pattern};
    patterns.insert(pattern);
    status[key][r["status"].get<std::string>()]++;
    if (r["status"] != "ok" && reason[key].empty()) reason[key] = get_or<std::string>(r, "reason", "");
  }
  body += "<h2>Support matrix</h2><p>Cases per status for every backend and mask "
          "(hover for the first reason).</p><table><tr><th>backend</th>";
  md += "\n## Support matrix\n\n| backend |";
  for (const auto& p : patterns) {
    body += fmt::format("<th>{}</th>", esc(p));
    md += fmt::format(" {} |", p);
  }
  body += "</tr>";
  md += "\n|---|";
  for (size_t n = 0; n < patterns.size(); ++n) md += "---|";
  md += "\n";
  for (const auto& b : backends_seen) {
    body += fmt::format("<tr><td>{}</td>", esc(b));
    md += fmt::format("| {} |", b);
    for (const auto& p : patterns) {
      auto it = status.find({b, p});
      if (it == status.end()) { body += "<td></td>"; md += " |"; continue; }
      std::string text, cls;
      for (auto& [st, n] : it->second) text += fmt::format("{}{} {}", text.empty() ? "" : ", ", st, n);
      cls = it->second.size() == 1 ? it->second.begin()->first : "mixed";
      body += fmt::format("<td class=\"{}\" title=\"{}\">{}</td>", cls, esc(reason[{b, p}]), esc(text));
      md += fmt::format(" {} |", text);
    }
    body += "</tr>";
    md += "\n";
  }
  body += "</table>";

  // ---- winners per mask and length
  if (!winners.empty()) {
    body += "<h2>Fastest backend per mask and length</h2><table><tr><th>mask</th><th>heads</th>"
            "<th>S</th><th>forward</th><th>backward</th></tr>";
    md += "\n## Fastest backend per mask and length (median TF/s)\n\n| mask | heads | S | forward | backward |\n|---|---|---|---|---|\n";
    std::set<std::tuple<std::string, std::string, long long>> points;
    bool spans_commits = false;
    for (auto& [k, w] : winners) {
      points.insert({std::get<1>(k), std::get<2>(k), std::get<3>(k)});
      spans_commits |= w.commits.size() > 1;
    }
    for (auto& [pattern, heads, s] : points) {
      auto cell = [&](const char* phase) -> std::string {
        auto it = winners.find({phase, pattern, heads, s});
        if (it == winners.end()) return "";
        const Winner& w = it->second;
        return fmt::format("{} ({:.0f}){}", w.label, w.tflops, w.commits.size() > 1 ? " †" : "");
      };
      body += fmt::format("<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>", esc(pattern),
                          esc(heads), short_count(double(s)), esc(cell("fwd")), esc(cell("bwd")));
      md += fmt::format("| {} | {} | {} | {} | {} |\n", pattern, heads, short_count(double(s)), cell("fwd"),
                        cell("bwd"));
    }
    body += "</table>";
    if (spans_commits) {
      const char* note = "† the backends at this point were measured at different commits (a resumed "
                         "or combined run; see the runs table): the comparison spans calls.";
      body += fmt::format("<p>{}</p>", note);
      md += fmt::format("\n{}\n", note);
    }
  }
  body += cp.fastest_html;
  md += cp.fastest_markdown;

  out.html = fmt::format(
      "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
      "<title>longattn report</title><style>{}</style></head><body>"
      "<h1>longattn report</h1><p>Mask-aware TF/s: forward FLOPs = 4 &middot; area &middot; Hq "
      "&middot; D, backward = 2.5 &times; forward; medians of CUDA-event timings with the L2 cache "
      "flushed between repetitions.</p><div id=\"self-check\"></div>{}"
      "<script>{}</script></body></html>\n",
      kStyle, body, kSelfCheck);
  out.markdown = md;
  return out;
}

}  // namespace longattn::report
