// longattn flops: exact area and forward/backward FLOPs (DESIGN.md section 5) of a mask and head
// configuration, optionally with the area a tiled kernel issues.
#include <fmt/format.h>

#include <memory>

#include "commands/commands.hpp"
#include "commands/mask_options.hpp"
#include "longattn/error.hpp"
#include "longattn/report/mask_record.hpp"
#include "longattn/views/tile_map.hpp"

namespace longattn::cli {
namespace {

struct FlopsOptions {
  MaskOptions mask;
  HeadOptions heads;
  std::string tile;  // "128x128": also report the issued area of that tile map
  bool json = false;
};

TileShape parse_tile(std::string_view text) {
  const std::size_t x = text.find('x');
  if (x == text.npos) throw InputError(fmt::format("--tile: '{}' is not MqxNk (e.g. 128x128)", text));
  const Index rows = parse_seqlen(text.substr(0, x), "--tile");
  const Index cols = parse_seqlen(text.substr(x + 1), "--tile");
  if (rows <= 0 || cols <= 0) throw InputError(fmt::format("--tile: '{}' needs positive sizes", text));
  return {rows, cols};
}

// Tera-FLOPs with enough digits to read, and the exact count next to it in JSON.
std::string tflop(double f) { return fmt::format("{:.6g} TFLOP", f / 1e12); }

void run_flops(const FlopsOptions& o) {
  const ResolvedMask r = resolve_mask(o.mask);
  const GeneratedMask& g = r.generated;
  const HeadConfig heads = to_head_config(o.heads, mask_heads(g.mask));
  const Flops f = attention_flops(g.mask, heads);

  std::optional<TileMap> tiles;
  if (!o.tile.empty()) {
    const TileShape shape = parse_tile(o.tile);
    const auto* s = std::get_if<SliceMask>(&g.mask);
    if (!s) throw InputError("--tile applies to static masks; block-sparse kernels issue their kept blocks");
    tiles = tile_map(*s, shape);
  }

  MaskRecordOptions ro;
  ro.max_slices = 0;
  if (r.file) ro.source_file = *r.file;
  nlohmann::json rec = mask_record(g, ro);
  rec["flops"] = {{"heads_q", heads.heads_q}, {"heads_kv", heads.heads_kv}, {"head_dim", heads.head_dim},
                  {"forward", f.forward},     {"backward", f.backward},     {"total", f.total}};
  if (tiles) {
    const Flops issued = flops_from_area(double(tiles->issued_area()) * heads.heads_q, heads.head_dim);
    rec["issued"] = {{"tile", {tiles->shape.rows, tiles->shape.cols}},
                     {"full_tiles", tiles->total_full()},
                     {"partial_tiles", tiles->total_partial()},
                     {"area", tiles->issued_area()},
                     {"forward", issued.forward},
                     {"backward", issued.backward},
                     {"total", issued.total}};
  }
  if (o.json) {
    fmt::print("{}\n", rec.dump(2));
    return;
  }

  const Index seqlen = seqlen_of(g.mask);
  const std::string what = r.file ? *r.file : fmt::format("{} (seed {})", to_string(g.spec.pattern), g.spec.seed);
  fmt::print("{:<10}{}, S = {}\n", "mask", what, with_commas(seqlen));
  fmt::print("{:<10}{}   density {:.6f}\n", "area", with_commas(total_area(g.mask)), density_of(g.mask));
  fmt::print("{:<10}{} query, {} KV, head dim {}\n", "heads", heads.heads_q, heads.heads_kv, heads.head_dim);
  fmt::print("{:<10}{:.6e} FLOPs   {}\n", "forward", f.forward, tflop(f.forward));
  fmt::print("{:<10}{:.6e} FLOPs   {}\n", "backward", f.backward, tflop(f.backward));
  fmt::print("{:<10}{:.6e} FLOPs   {}\n", "fwd+bwd", f.total, tflop(f.total));
  if (tiles) {
    const auto& is = rec["issued"];
    fmt::print("{:<10}{}x{} tiles: {} full + {} partial, area {} ({:.2f}x the mask's), forward {}\n",
               "issued", tiles->shape.rows, tiles->shape.cols, with_commas(tiles->total_full()),
               with_commas(tiles->total_partial()), with_commas(tiles->issued_area()),
               total_area(g.mask) > 0 ? double(tiles->issued_area()) / double(total_area(g.mask)) : 0.0,
               tflop(is["forward"].get<double>()));
  }
}

}  // namespace

void add_flops_command(CLI::App& app) {
  auto o = std::make_shared<FlopsOptions>();
  CLI::App* cmd = app.add_subcommand(
      "flops", "exact area and forward/backward FLOPs of a mask for a head configuration");
  add_mask_options(*cmd, o->mask);
  add_head_options(*cmd, o->heads);
  cmd->add_option("--tile", o->tile, "also report the issued area of MqxNk tiles, e.g. 128x128");
  cmd->add_flag("--json", o->json, "print one JSON record instead of text");
  cmd->callback([o] { run_flops(*o); });
}

}  // namespace longattn::cli
