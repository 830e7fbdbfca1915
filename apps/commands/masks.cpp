// longattn masks list | show | export: the 14 patterns, a mask's statistics and pictures of it.
#include <fmt/format.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>

#include "commands/commands.hpp"
#include "commands/mask_options.hpp"
#include "longattn/error.hpp"
#include "longattn/mask_json.hpp"
#include "longattn/report/density_grid.hpp"
#include "longattn/report/mask_picture.hpp"
#include "longattn/report/mask_record.hpp"

namespace longattn::cli {
namespace {

// Terminal columns taken by UTF-8 text (one per code point; the rules use no wide characters).
std::size_t display_width(std::string_view s) {
  return std::size_t(std::count_if(s.begin(), s.end(), [](char c) { return (c & 0xC0) != 0x80; }));
}

std::string pad(std::string_view s, std::size_t width) {
  std::string out(s);
  out.append(width - std::min(width, display_width(s)), ' ');
  return out;
}

void list_patterns(bool json) {
  const auto patterns = all_patterns();
  if (json) {
    nlohmann::json out = nlohmann::json::array();
    for (const PatternInfo& p : patterns)
      out.push_back({{"name", p.name}, {"family", to_string(p.family)}, {"rule", p.rule},
                     {"parameters", p.parameters}, {"uses_documents", p.uses_documents}});
    fmt::print("{}\n", out.dump(2));
    return;
  }
  std::size_t w_name = 7, w_family = 6, w_rule = 4;
  for (const PatternInfo& p : patterns) {
    w_name = std::max(w_name, display_width(p.name));
    w_family = std::max(w_family, display_width(to_string(p.family)));
    w_rule = std::max(w_rule, display_width(p.rule));
  }
  fmt::print("{:>2}  {}  {}  {}  {}\n", "#", pad("pattern", w_name), pad("family", w_family),
             pad("allowed iff", w_rule), "parameters (default)");
  int n = 0;
  for (const PatternInfo& p : patterns)
    fmt::print("{:>2}  {}  {}  {}  {}\n", ++n, pad(p.name, w_name), pad(to_string(p.family), w_family),
               pad(p.rule, w_rule), p.parameters.empty() ? "-" : p.parameters);
  fmt::print("\nDocument patterns sample lengths (--seed, --histogram) or take --doc-lens; "
             "`longattn masks show PATTERN --help` lists every flag.\n");
}

// "window=1024 global=512"; long lists are shortened.
std::string parameters_text(const nlohmann::json& params) {
  std::string out;
  for (const auto& [key, value] : params.items()) {
    std::string v;
    if (value.is_array() && value.size() > 8) {
      for (std::size_t i = 0; i < 8; ++i) v += (i ? "," : "") + value[i].dump();
      v += fmt::format(",... ({} values)", value.size());
    } else if (value.is_array()) {
      for (std::size_t i = 0; i < value.size(); ++i) v += (i ? "," : "") + value[i].dump();
    } else if (value.is_string()) {
      v = value.get<std::string>();
    } else {
      v = value.dump();
    }
    out += fmt::format("{}{}={}", out.empty() ? "" : " ", key, v);
  }
  return out.empty() ? "(none)" : out;
}

nlohmann::json flops_record(const Flops& f, const HeadConfig& h) {
  return {{"heads_q", h.heads_q}, {"heads_kv", h.heads_kv}, {"head_dim", h.head_dim},
          {"forward", f.forward}, {"backward", f.backward}, {"total", f.total}};
}

struct ShowOptions {
  MaskOptions mask;
  HeadOptions heads;
  bool json = false;
  Index slices = 8;
  int head = 0;
  Index width = 64;
  bool no_picture = false;
  bool ascii = false;
};

struct Picture {
  Index rows, cols;
  int chars_per_cell;
};

// Terminal characters are about twice as tall as wide: two characters per cell when the mask is
// small enough to show every pair, else twice as many cell columns as rows.
Picture terminal_picture(Index seqlen, Index width) {
  if (2 * seqlen <= width) return {seqlen, seqlen, 2};
  return {std::min(seqlen, std::max<Index>(width / 2, 1)), std::min(seqlen, width), 1};
}

void show_mask(const ShowOptions& o) {
  if (o.slices < 0) throw InputError(fmt::format("--slices must be >= 0, got {}", o.slices));
  if (o.width < 2 || o.width > 1000) throw InputError(fmt::format("--width must be in [2, 1000], got {}", o.width));
  const ResolvedMask r = resolve_mask(o.mask);
  const GeneratedMask& g = r.generated;
  const HeadConfig heads = to_head_config(o.heads, mask_heads(g.mask));
  const Flops flops = attention_flops(g.mask, heads);
  MaskRecordOptions ro;
  ro.max_slices = o.slices;
  if (r.file) ro.source_file = *r.file;
  nlohmann::json rec = mask_record(g, ro);
  rec["flops"] = flops_record(flops, heads);
  if (o.head < 0 || o.head >= mask_heads(g.mask))
    throw InputError(fmt::format("--head {} out of range: the mask has {} head(s)", o.head, mask_heads(g.mask)));

  if (o.json) {
    fmt::print("{}\n", rec.dump(2));
    return;
  }

  if (r.file) {
    fmt::print("{:<12}{}\n", "source", *r.file);
  } else {
    const PatternInfo& pi = info(g.spec.pattern);
    fmt::print("{:<12}{} ({}): {}\n", "pattern", pi.name, to_string(pi.family), pi.rule);
    fmt::print("{:<12}{}\n", "parameters", parameters_text(rec["parameters"]));
    fmt::print("{:<12}{}\n", "seed", g.spec.seed);
  }
  const Index seqlen = seqlen_of(g.mask);
  fmt::print("{:<12}{}\n", "seqlen", with_commas(seqlen));
  fmt::print("{:<12}{}   density {:.6f}{}\n", "area", with_commas(total_area(g.mask)), density_of(g.mask),
             mask_heads(g.mask) > 1 ? fmt::format("   (summed over {} heads)", mask_heads(g.mask)) : "");
  if (const auto* s = std::get_if<SliceMask>(&g.mask)) {
    fmt::print("{:<12}{}\n", "slices", with_commas(Index(s->slices().size())));
    for (std::size_t i = 0; i < s->slices().size() && Index(i) < o.slices; ++i) {
      const Slice& sl = s->slices()[i];
      fmt::print("{:<12}[{}, {}) x [{}, {}) {}\n", "", sl.q.begin, sl.q.end, sl.k.begin, sl.k.end,
                 to_string(sl.type));
    }
    if (Index(s->slices().size()) > o.slices) fmt::print("{:<12}... (--slices N lists more)\n", "");
  } else {
    const auto& b = rec["blocks"];
    fmt::print("{:<12}{} per head, {} kept over {} head(s) (block density {:.4f}){}\n", "blocks",
               with_commas(b["count"].get<Index>()), with_commas(b["kept"].get<Index>()),
               mask_heads(g.mask), b["block_density"].get<double>(), b["causal"].get<bool>() ? ", causal" : "");
  }
  if (g.documents) {
    const auto& d = rec["documents"];
    fmt::print("{:<12}{}   length min {} / mean {:.1f} / max {}\n", "documents",
               with_commas(d["count"].get<Index>()), with_commas(d["min"].get<Index>()),
               d["mean"].get<double>(), with_commas(d["max"].get<Index>()));
  }
  if (!g.prefixes.empty()) {
    const auto& p = rec["prefixes"];
    std::string first;
    for (const auto& v : p["first"]) first += (first.empty() ? "" : ", ") + v.dump();
    fmt::print("{:<12}{}   min {} / mean {:.1f} / max {}   first: {}{}\n", "prefixes",
               with_commas(p["count"].get<Index>()), with_commas(p["min"].get<Index>()),
               p["mean"].get<double>(), with_commas(p["max"].get<Index>()), first,
               p["count"].get<std::size_t>() > p["first"].size() ? ", ..." : "");
  }
  fmt::print("{:<12}heads {}:{}, head dim {}: forward {:.4e}, backward {:.4e}, total {:.4e}\n", "FLOPs",
             heads.heads_q, heads.heads_kv, heads.head_dim, flops.forward, flops.backward, flops.total);

  if (o.no_picture) return;
  const Picture pic = terminal_picture(seqlen, o.width);
  const DensityGrid grid = density_grid(g.mask, o.head, pic.rows, pic.cols);
  const bool exact = grid.rows() == seqlen && grid.cols() == seqlen;
  fmt::print("\n{}{}: {}\n", mask_heads(g.mask) > 1 ? fmt::format("head {}, ", o.head) : "",
             exact ? "every pair" : fmt::format("{} x {} cells of about {} x {} pairs", grid.rows(),
                                                grid.cols(), with_commas(seqlen / grid.rows()),
                                                with_commas(seqlen / grid.cols())),
             o.ascii ? "' ' none, '.' < 1/3, ':' < 2/3, '#' < 1, '@' all allowed"
                     : "' ' none, ░ < 1/3, ▒ < 2/3, ▓ < 1, █ all allowed");
  fmt::print("{}", render_text(grid, pic.chars_per_cell, o.ascii ? TextShading::ascii : TextShading::unicode));
}

struct ExportOptions {
  MaskOptions mask;
  std::string format;
  std::string output;
  int size = 512;
  Index cells = 0;  // 0 = by format
  int head = 0;
  bool compact = false;
};

std::string format_of(const ExportOptions& o) {
  if (!o.format.empty()) return o.format;
  for (const char* ext : {"json", "svg", "png"})
    if (o.output.size() > std::strlen(ext) + 1 && o.output.ends_with(std::string(".") + ext)) return ext;
  return "json";
}

void write_text(const std::string& path, const std::string& text) {
  if (path.empty() || path == "-") {
    std::fwrite(text.data(), 1, text.size(), stdout);
    return;
  }
  std::ofstream file(path, std::ios::binary);
  if (!file) throw InputError(fmt::format("--output: cannot open '{}' for writing", path));
  file << text;
  if (!file) throw InputError(fmt::format("--output: cannot write '{}'", path));
}

void export_mask(const ExportOptions& o) {
  const std::string format = format_of(o);
  if (format != "json" && format != "svg" && format != "png")
    throw InputError(fmt::format("--format: '{}' is not one of json, svg, png", format));
  // Bounds keep the picture's memory small: an 8192^2 RGB image is 192 MiB, a 4096^2 grid 128 MiB.
  if (o.size < 1 || o.size > 8192) throw InputError(fmt::format("--size must be in [1, 8192], got {}", o.size));
  if (o.cells < 0 || o.cells > 4096) throw InputError(fmt::format("--cells must be in [1, 4096], got {}", o.cells));
  if (format == "png" && (o.output.empty() || o.output == "-"))
    throw InputError("--format png needs --output FILE.png");

  const ResolvedMask r = resolve_mask(o.mask);
  const GeneratedMask& g = r.generated;
  if (format == "json") {
    write_text(o.output, to_json(g.mask).dump(o.compact ? -1 : 2) + "\n");
    return;
  }
  if (o.head < 0 || o.head >= mask_heads(g.mask))
    throw InputError(fmt::format("--head {} out of range: the mask has {} head(s)", o.head, mask_heads(g.mask)));
  const Index seqlen = seqlen_of(g.mask);
  // SVG draws a rectangle per run of equal cells in a row, so its default grid is coarser.
  const Index cells = std::min(seqlen, o.cells > 0 ? o.cells : std::min<Index>(o.size, format == "svg" ? 256 : o.size));
  const DensityGrid grid = density_grid(g.mask, o.head, cells, cells);
  if (format == "svg") {
    const std::string caption =
        r.file ? fmt::format("{}: S = {}, density {:.4f}", *r.file, seqlen, density_of(g.mask))
               : fmt::format("{}: S = {}, seed {}, density {:.4f}{}", to_string(g.spec.pattern), seqlen,
                             g.spec.seed, density_of(g.mask),
                             mask_heads(g.mask) > 1 ? fmt::format(", head {}", o.head) : "");
    write_text(o.output, mask_svg(grid, o.size, caption));
    return;
  }
  const int scale = std::max(1, o.size / int(grid.cols()));
  write_png(o.output, mask_image(grid, scale));
}

}  // namespace

void add_masks_command(CLI::App& app) {
  CLI::App* masks = app.add_subcommand("masks", "mask patterns: list them, show statistics, export");
  masks->require_subcommand(1);

  auto list_json = std::make_shared<bool>(false);
  CLI::App* list = masks->add_subcommand("list", "the 14 patterns with their rules, parameters and defaults");
  list->add_flag("--json", *list_json, "print a JSON array");
  list->callback([list_json] { list_patterns(*list_json); });

  auto show = std::make_shared<ShowOptions>();
  CLI::App* show_cmd = masks->add_subcommand(
      "show", "statistics of one mask (area, density, slices, documents, FLOPs) and a picture of it");
  add_mask_options(*show_cmd, show->mask);
  add_head_options(*show_cmd, show->heads);
  show_cmd->add_flag("--json", show->json, "print one JSON record instead of text");
  show_cmd->add_option("--slices", show->slices, "slices to list")->capture_default_str();
  show_cmd->add_option("--head", show->head, "block-sparse: KV head to draw")->capture_default_str();
  show_cmd->add_option("--width", show->width, "picture width in terminal columns")->capture_default_str();
  show_cmd->add_flag("--no-picture", show->no_picture, "statistics only");
  show_cmd->add_flag("--ascii", show->ascii, "draw with ASCII characters only");
  show_cmd->callback([show] { show_mask(*show); });

  auto exp = std::make_shared<ExportOptions>();
  CLI::App* export_cmd = masks->add_subcommand(
      "export", "write a mask as a JSON slice list (MagiAttention-style) or as an SVG/PNG picture");
  add_mask_options(*export_cmd, exp->mask);
  export_cmd->add_option("--format", exp->format, "json, svg or png (default: from --output's extension, else json)");
  export_cmd->add_option("-o,--output", exp->output, "file to write (default: stdout for json and svg)");
  export_cmd->add_option("--size", exp->size, "picture size in pixels")->capture_default_str();
  export_cmd->add_option("--cells", exp->cells,
                         "picture grid resolution per side (default: min(S, size), at most 256 for SVG)");
  export_cmd->add_option("--head", exp->head, "block-sparse: KV head to draw")->capture_default_str();
  export_cmd->add_flag("--compact", exp->compact, "json: one line, no indentation");
  export_cmd->callback([exp] { export_mask(*exp); });
}

}  // namespace longattn::cli
