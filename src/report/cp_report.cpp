#include "longattn/report/cp_report.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <optional>
#include <set>
#include <tuple>

#include "longattn/patterns.hpp"
#include "longattn/report/svg.hpp"
#include "record_fields.hpp"

namespace longattn::report {

using nlohmann::json;

namespace {

std::optional<double> number_at(const json& j, std::initializer_list<const char*> path) {
  const json* at = &j;
  for (const char* key : path) {
    if (!at->is_object()) return std::nullopt;
    auto it = at->find(key);
    if (it == at->end()) return std::nullopt;
    at = &*it;
  }
  if (!at->is_number()) return std::nullopt;
  return at->get<double>();
}

std::string with_run(const std::string& label, const std::string& run) {
  return run.empty() ? label : fmt::format("{} @ {}", label, run);
}

// The shape shared by every point of a weak-scaling chart.
struct ShapeKey {
  std::string pattern, heads;
  int head_dim = 0;
  std::string dtype;
  long long tokens_per_gpu = 0;
  auto operator<=>(const ShapeKey&) const = default;
};

ShapeKey shape_of(const json& r, long long tokens_per_gpu) {
  const json& c = r["case"];
  return {get_or<std::string>(c, "pattern", "?"),
          fmt::format("{}:{}", get_or(c, "heads_q", 0), get_or(c, "heads_kv", 0)),
          get_or(c, "head_dim", 0), get_or<std::string>(c, "dtype", ""), tokens_per_gpu};
}

// Document masks are only the same mask when their documents come from the same histogram.
bool same_mask(const json& a, const json& b) {
  const std::string pattern = get_or<std::string>(a["case"], "pattern", "");
  bool documents = false;
  for (const PatternInfo& p : all_patterns())
    if (p.name == pattern) documents = p.uses_documents;
  if (!documents) return true;
  const json none;
  const json& pa = a["case"].value("params", json::object());
  const json& pb = b["case"].value("params", json::object());
  return pa.value("histogram", none) == pb.value("histogram", none) &&
         pa.value("doc_lens", none) == pb.value("doc_lens", none);
}

std::string placement(const json& cp) {
  return fmt::format("{} {} {}", get_or<std::string>(cp, "algorithm", "?"),
                     get_or<std::string>(cp, "topology", "?"), get_or<std::string>(cp, "dispatch", "?"));
}

// The split of an algorithm, which stays meaningful across GPU counts: U, and w for LoongTrain.
std::string split_of(const json& cp) {
  const std::string a = get_or<std::string>(cp, "algorithm", "?");
  if (a == "usp") return fmt::format("usp U={}", get_or(cp, "ulysses", 0));
  if (a == "loongtrain")
    return fmt::format("loongtrain U={} w={}", get_or(cp, "ulysses", 0), get_or(cp, "window", 0));
  return a;
}

constexpr std::pair<const char*, const char*> kPhases[] = {{"fwd", "forward"}, {"bwd", "backward"}};

std::string stem_of(std::string s) {
  std::replace_if(s.begin(), s.end(),
                  [](char ch) { return !std::isalnum((unsigned char)ch) && ch != '_' && ch != '-'; },
                  '-');
  return s;
}

}  // namespace

bool is_cp_record(const json& r) {
  auto it = r.find("cp");
  return it != r.end() && it->is_object();
}

CpReport cp_report(std::span<const LabelledRecord> records) {
  CpReport out;
  // (phase, shape) -> series label -> GPUs -> TF/s (the best record at that point)
  using Points = std::map<double, double>;
  std::map<std::pair<std::string, ShapeKey>, std::map<std::string, Points>> scaling;
  // (phase, shape, run) -> GPUs, for the reference lines; kernel names wanted per shape
  std::map<std::tuple<std::string, ShapeKey, std::string>, std::set<double>> scaling_gpus;
  std::map<std::tuple<std::string, ShapeKey, std::string>, std::pair<std::string, const json*>> wanted;
  // (phase, algorithm, heads, D, dtype, tokens) -> series -> GPUs -> MB
  std::map<std::tuple<std::string, std::string, ShapeKey>, std::map<std::string, Points>> volume;
  std::map<std::string, int> series_order;  // measured before model, in first-seen order
  // fastest: (shape, GPUs, run) -> phase -> (TF/s, placement)
  std::map<std::tuple<ShapeKey, int, std::string>, std::map<std::string, std::pair<double, std::string>>>
      fastest;

  for (const LabelledRecord& lr : records) {
    const json& r = *lr.record;
    if (!is_cp_record(r)) continue;
    const json& cp = r["cp"];
    const int gpus = get_or(cp, "ranks", 0);
    if (gpus < 1) continue;
    const long long tokens = get_or<long long>(cp, "tokens_per_rank", 0);
    const ShapeKey shape = shape_of(r, tokens);
    const bool ok = r.value("status", "") == "ok";
    for (auto [phase, key] : kPhases) {
      const json& p = cp.value(key, json());
      if (!p.is_object()) continue;
      if (ok) {
        if (auto tf = number_at(p, {"tflops_per_gpu"})) {
          auto& series = scaling[{phase, shape}];
          auto keep_max = [&](const std::string& label) {
            auto [it, fresh] = series[label].try_emplace(double(gpus), *tf);
            if (!fresh) it->second = std::max(it->second, *tf);
          };
          keep_max(with_run("best placement", lr.run));
          keep_max(with_run(get_or<std::string>(cp, "algorithm", "?"), lr.run));
          scaling_gpus[{phase, shape, lr.run}].insert(double(gpus));
          wanted[{phase, shape, lr.run}] = {get_or<std::string>(cp, "kernel", ""), &r};
          auto& best = fastest[{shape, gpus, lr.run}][phase];
          if (*tf > best.first) best = {*tf, placement(cp)};
        }
      }
      // Bytes are counted whatever the verdict: a count that differs from the model makes a
      // case `wrong`, which is what this chart shows.
      const auto model = number_at(p, {"bytes_model", "total_bytes"});
      std::optional<double> measured = number_at(p, {"bytes_measured", "total_bytes"});
      if (auto it = p.find("rank_bytes"); it != p.end() && it->is_array() && !it->empty()) {
        double most = 0;
        for (const json& b : *it)
          if (b.is_number()) most = std::max(most, b.get<double>());
        measured = most;
      }
      ShapeKey comm_shape = shape;
      comm_shape.pattern.clear();  // the bytes do not depend on the mask
      auto& series = volume[{phase, get_or<std::string>(cp, "algorithm", "?"), comm_shape}];
      const std::string split = with_run(split_of(cp), lr.run);
      if (measured) {
        series[split + " counted"][double(gpus)] = std::max(series[split + " counted"][double(gpus)], *measured / 1e6);
        series_order.try_emplace(split + " counted", int(series_order.size()));
      }
      if (model) {
        series[split + " model"][double(gpus)] = *model / 1e6;
        series_order.try_emplace(split + " model", int(series_order.size()));
      }
    }
  }

  // The single-GPU kernel at the per-GPU length, for each weak-scaling chart that has one.
  std::map<std::pair<std::string, ShapeKey>, std::vector<Series>> references;
  for (auto& [key, cp_record] : wanted) {
    const auto& [phase, shape, run] = key;
    const auto& [kernel, example] = cp_record;
    if (kernel.empty()) continue;
    const char* phase_key = std::string(phase) == "fwd" ? "forward" : "backward";
    std::optional<double> best;
    for (const LabelledRecord& lr : records) {
      const json& r = *lr.record;
      if (is_cp_record(r) || lr.run != run || r.value("status", "") != "ok" ||
          r.value("backend", "") != kernel)
        continue;
      if (shape_of(r, get_or<long long>(r["case"], "seqlen", 0)) != shape || !same_mask(r, *example))
        continue;
      if (auto tf = number_at(r, {phase_key, "tflops"})) best = std::max(best.value_or(0), *tf);
    }
    if (!best) continue;
    Series s{with_run(fmt::format("{} kernel, 1 GPU, S={}", kernel, short_count(double(shape.tokens_per_gpu))), run),
             {}, true};
    for (double g : scaling_gpus[key]) s.points.push_back({g, *best});
    references[{phase, shape}].push_back(std::move(s));
  }

  for (auto [phase, key] : kPhases) {
    ChartSection section{
        fmt::format("Context parallelism: {} weak scaling", key),
        "TF/s per GPU (global mask-aware FLOPs over N &times; the slowest rank's median) against "
        "the GPU count, the tokens per GPU fixed. Each algorithm is its best split and dispatch "
        "at each count; dashed: the single-GPU kernel at the per-GPU length.",
        {}};
    for (auto& [k, series] : scaling) {
      if (k.first != phase) continue;
      const ShapeKey& s = k.second;
      LineChart chart{fmt::format("{} {} CP, {}/GPU H={} D={} {}", s.pattern, phase,
                                  short_count(double(s.tokens_per_gpu)), s.heads, s.head_dim, s.dtype),
                      "GPUs", "TF/s per GPU", true, {}};
      // "best placement" first, then the algorithms.
      for (auto& [label, points] : series)
        if (label.rfind("best placement", 0) == 0)
          chart.series.push_back({label, {points.begin(), points.end()}});
      for (auto& [label, points] : series)
        if (label.rfind("best placement", 0) != 0)
          chart.series.push_back({label, {points.begin(), points.end()}});
      for (const Series& ref : references[k]) chart.series.push_back(ref);
      if (chart.empty()) continue;
      section.charts.push_back(
          {stem_of(fmt::format("cp_scaling_{}_{}_{}_{}_{}", s.pattern, phase, s.tokens_per_gpu,
                               s.heads, s.head_dim)),
           std::move(chart)});
    }
    if (!section.charts.empty()) out.sections.push_back(std::move(section));
  }

  ChartSection comm{"Context parallelism: communication volume per rank",
                    "Bytes one rank sends in one pass (MB = 10<sup>6</sup> B), counted by the "
                    "communicators (solid; the largest rank) and predicted by the model (dashed, "
                    "`longattn comm`), for each split: U = Ulysses degree, w = inner ring.",
                    {}};
  for (auto& [k, series] : volume) {
    const auto& [phase, algorithm, s] = k;
    LineChart chart{fmt::format("{} {} bytes per rank, {}/GPU H={} D={} {}", algorithm, phase,
                                short_count(double(s.tokens_per_gpu)), s.heads, s.head_dim, s.dtype),
                    "GPUs", "MB per rank", true, {}};
    std::vector<std::pair<int, Series>> ordered;
    for (auto& [label, points] : series)
      ordered.push_back({series_order[label],
                         {label, {points.begin(), points.end()}, label.ends_with(" model")}});
    std::sort(ordered.begin(), ordered.end(), [](auto& a, auto& b) { return a.first < b.first; });
    for (auto& [_, sr] : ordered) chart.series.push_back(std::move(sr));
    if (chart.empty()) continue;
    comm.charts.push_back({stem_of(fmt::format("cp_bytes_{}_{}_{}_{}_{}", algorithm, phase,
                                               s.tokens_per_gpu, s.heads, s.head_dim)),
                           std::move(chart)});
  }
  if (!comm.charts.empty()) out.sections.push_back(std::move(comm));

  if (!fastest.empty()) {
    out.fastest_html =
        "<h2>Context parallelism: fastest placement per mask and GPU count</h2><table><tr>"
        "<th>mask</th><th>heads</th><th>tokens/GPU</th><th>GPUs</th><th>forward</th>"
        "<th>backward</th></tr>";
    out.fastest_markdown =
        "\n## Context parallelism: fastest placement per mask and GPU count (TF/s per GPU)\n\n"
        "| mask | heads | tokens/GPU | GPUs | forward | backward |\n|---|---|---|---|---|---|\n";
    for (auto& [k, phases] : fastest) {
      const auto& [s, gpus, run] = k;
      auto cell = [&](const char* phase) -> std::string {
        auto it = phases.find(phase);
        return it == phases.end() ? ""
                                  : fmt::format("{} ({:.0f})", with_run(it->second.second, run),
                                                it->second.first);
      };
      out.fastest_html += fmt::format(
          "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
          xml_escape(s.pattern), xml_escape(s.heads), short_count(double(s.tokens_per_gpu)), gpus,
          xml_escape(cell("fwd")), xml_escape(cell("bwd")));
      out.fastest_markdown += fmt::format("| {} | {} | {} | {} | {} | {} |\n", s.pattern, s.heads,
                                          short_count(double(s.tokens_per_gpu)), gpus, cell("fwd"),
                                          cell("bwd"));
    }
    out.fastest_html += "</table>";
  }
  return out;
}

}  // namespace longattn::report
