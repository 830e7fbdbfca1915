#pragma once
// The context-parallel part of a report, from `longattn cp` / `longattn suite cp` records (those
// with a "cp" object):
//   weak scaling   per mask and direction: TF/s per GPU against the GPU count for the best
//                  placement overall and the best of each algorithm (over its splits and
//                  dispatches), with the single-GPU kernel at the per-GPU length as a dashed
//                  reference line when the runs hold bench records of that kernel
//   communication  per algorithm and direction: bytes one rank sent against the GPU count, counted
//                  (solid) and modelled (dashed), one pair per split (U, inner ring w)
//   fastest        the best placement per mask and GPU count (HTML table and markdown)
// Only series with data are made, and only charts with a series.
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "longattn/report/chart.hpp"

namespace longattn::report {

struct LabelledRecord {
  const nlohmann::json* record;
  std::string run;  // run label, empty when the report has one run
};

bool is_cp_record(const nlohmann::json& record);

struct ChartSection {
  std::string title;
  std::string note;                                     // a sentence under the title
  std::vector<std::pair<std::string, LineChart>> charts;  // (file stem, chart)
};

struct CpReport {
  std::vector<ChartSection> sections;  // weak scaling (fwd, bwd), communication
  std::string fastest_html;            // empty without ok CP records
  std::string fastest_markdown;
};

// `records` may hold kernel records too: they give the reference lines.
CpReport cp_report(std::span<const LabelledRecord> records);

}  // namespace longattn::report
