// `longattn report RUN...`: an HTML page with inline SVG charts, a markdown summary and the
// charts as standalone SVG files, from one or more run folders.
#include <fmt/core.h>

#include <filesystem>
#include <fstream>

#include "commands/commands.hpp"
#include "longattn/error.hpp"
#include "longattn/report/run_report.hpp"

namespace longattn::cli {

namespace {

void write_file(const std::filesystem::path& path, const std::string& text) {
  std::ofstream f(path);
  f << text;
  if (!f) throw InputError(fmt::format("cannot write '{}'", path.string()));
}

}  // namespace

void add_report_command(CLI::App& app) {
  struct Options {
    std::vector<std::string> runs;
    std::string out = "report";
    bool no_svg = false;
  };
  auto o = std::make_shared<Options>();
  CLI::App* cmd = app.add_subcommand(
      "report", "Turn benchmark runs into an HTML report with charts and a markdown summary");
  cmd->add_option("runs", o->runs,
                  "run folders (holding records.jsonl) or .jsonl files; several runs are compared "
                  "side by side")
      ->required();
  cmd->add_option("--out", o->out,
                  "output folder: report.html, summary.md and charts/*.svg")
      ->capture_default_str();
  cmd->add_flag("--no-svg", o->no_svg, "do not write the charts as separate SVG files");
  cmd->callback([o] {
    std::vector<report::Run> runs;
    for (const std::string& path : o->runs) runs.push_back(report::load_run(path));
    const report::Report rep = report::build_report(runs);
    namespace fs = std::filesystem;
    fs::create_directories(o->out);
    write_file(fs::path(o->out) / "report.html", rep.html);
    write_file(fs::path(o->out) / "summary.md", rep.markdown);
    if (!o->no_svg) {
      fs::create_directories(fs::path(o->out) / "charts");
      for (const auto& [stem, svg] : rep.charts)
        write_file(fs::path(o->out) / "charts" / (stem + ".svg"), svg);
    }
    std::size_t records = 0;
    for (const auto& r : runs) records += r.records.size();
    fmt::print("report: {} records from {} run(s) -> {}/report.html, summary.md, {} charts\n",
               records, runs.size(), o->out, o->no_svg ? 0 : rep.charts.size());
  });
}

}  // namespace longattn::cli
