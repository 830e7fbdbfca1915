#include "longattn/bench/result.hpp"

#include <fmt/format.h>

#include <cmath>
#include <nlohmann/json.hpp>

namespace longattn::bench {

std::string_view to_string(Status s) {
  switch (s) {
    case Status::ok: return "ok";
    case Status::unsupported: return "unsupported";
    case Status::oom: return "oom";
    case Status::error: return "error";
    case Status::wrong: return "wrong";
  }
  return "?";
}

MaskStats mask_stats(const GeneratedMask& g) {
  MaskStats m;
  m.area = total_area(g.mask);
  m.density = density_of(g.mask);
  m.heads = mask_heads(g.mask);
  if (const auto* s = std::get_if<SliceMask>(&g.mask)) {
    m.slices = Index(s->slices().size());
  } else {
    const auto& b = std::get<BlockSparseMask>(g.mask);
    for (int h = 0; h < b.num_heads(); ++h) m.slices += b.kept_blocks(h);
  }
  if (g.documents) m.documents = document_stats(*g.documents);
  m.prefixes = g.prefixes;
  return m;
}

std::string short_size(Index n) {
  if (n > 0 && n % (Index(1) << 20) == 0) return fmt::format("{}M", n >> 20);
  if (n > 0 && n % 1024 == 0) return fmt::format("{}K", n >> 10);
  return fmt::format("{}", n);
}

namespace {

using nlohmann::json;

json number_or_null(double x) { return std::isfinite(x) ? json(x) : json(nullptr); }

json to_json(const OutputCheck& c) {
  return {{"error", number_or_null(c.error)},
          {"plain", number_or_null(c.plain)},
          {"tolerance", number_or_null(c.tolerance)},
          {"pass", c.pass()}};
}

json to_json(const PhaseResult& p) {
  const TimingSummary& t = p.timing;
  return {{"median_ms", t.median_ms}, {"p20_ms", t.p20_ms}, {"p80_ms", t.p80_ms},
          {"min_ms", t.min_ms},       {"max_ms", t.max_ms}, {"mean_ms", t.mean_ms},
          {"reps", t.reps},           {"tflops", number_or_null(p.tflops)}};
}

json params_json(const MaskSpec& spec) {
  const MaskParams& p = spec.params;
  json j = {{"window", p.window},
            {"global", p.global},
            {"block", p.block},
            {"sparse_block", p.sparse_block},
            {"min_block", p.min_block},
            {"average_block", p.average_block},
            {"keep", p.keep},
            {"sparse_causal", p.sparse_causal},
            {"sparse_heads", p.sparse_heads}};
  // Written only when not the default, so that the records made before block selection existed
  // keep their resume keys (suite.cpp: a case's key is its JSON).
  if (p.selection != BlockSelection::random) j["selection"] = to_string(p.selection);
  j["prefix"] = p.prefix ? json(*p.prefix) : json(nullptr);
  j["doc_lens"] = p.doc_lens ? json(*p.doc_lens) : json(nullptr);
  j["histogram"] = p.histogram ? json(p.histogram->name) : json(nullptr);
  return j;
}


}  // namespace

nlohmann::json to_json(const CheckResult& c) {
  json j;
  for (auto [name, o] : {std::pair{"o", &c.o}, {"dq", &c.dq}, {"dk", &c.dk}, {"dv", &c.dv}})
    j[name] = *o ? to_json(**o) : json(nullptr);
  j["lse_max_abs"] = c.lse_max_abs ? number_or_null(*c.lse_max_abs) : json(nullptr);
  j["full"] = c.full;
  j["q_rows"] = c.q_rows;
  j["k_rows"] = c.k_rows;
  j["kv_group"] = c.kv_group;
  j["passed"] = c.passed();
  return j;
}

nlohmann::json to_json(const Record& r) {
  const Case& c = r.c;
  json j;
  j["backend"] = c.backend;
  j["backend_version"] = r.backend_version;
  j["status"] = std::string(to_string(r.status));
  j["reason"] = r.reason;
  j["case"] = {{"pattern", std::string(to_string(c.mask.pattern))},
               {"seqlen", c.mask.seqlen},
               {"seed", c.mask.seed},
               {"draw", c.draw},
               {"data_seed", c.data_seed},
               {"params", params_json(c.mask)},
               {"heads_q", c.heads.heads_q},
               {"heads_kv", c.heads.heads_kv},
               {"head_dim", c.heads.head_dim},
               {"batch", 1},
               {"dtype", std::string(to_string(c.dtype))},
               {"direction", std::string(to_string(c.direction))}};
  json mask = {{"area", r.mask.area},       {"density", r.mask.density},
               {"heads", r.mask.heads},     {"slices", r.mask.slices},
               {"prefixes", r.mask.prefixes}};
  if (r.mask.documents) {
    const DocumentStats& d = *r.mask.documents;
    mask["documents"] = {{"count", d.count}, {"min", d.min_length}, {"mean", d.mean_length},
                         {"max", d.max_length}};
  } else {
    mask["documents"] = nullptr;
  }
  j["mask"] = mask;
  j["flops"] = {{"forward", r.flops.forward}, {"backward", r.flops.backward}, {"total", r.flops.total}};
  j["issued_area"] = r.issued_area ? json(*r.issued_area) : json(nullptr);
  j["forward"] = r.forward ? to_json(*r.forward) : json(nullptr);
  j["backward"] = r.backward ? to_json(*r.backward) : json(nullptr);
  j["memory"] = {{"peak_gib", r.memory.case_gib ? json(*r.memory.case_gib) : json(nullptr)},
                 {"forward_peak_gib", r.memory.forward_gib ? json(*r.memory.forward_gib) : json(nullptr)},
                 {"backward_peak_gib", r.memory.backward_gib ? json(*r.memory.backward_gib) : json(nullptr)},
                 {"method", r.env && r.env->gpu ? std::string(kMemoryMethod) : std::string("not measured (host)")}};
  j["check"] = r.check ? to_json(*r.check) : json(nullptr);
  const TimingOptions& t = r.timing_options;
  j["timing"] = {{"warmup", t.warmup}, {"min_reps", t.min_reps}, {"max_reps", t.max_reps},
                 {"time_budget_s", t.time_budget_s}, {"l2_flush", t.l2_flush},
                 {"clock", "CUDA events around the kernel launches (host steady clock for cpu)"}};
  j["environment"] = r.env ? to_json(*r.env) : json(nullptr);
  return j;
}

std::string csv_header() {
  return "backend,status,pattern,seqlen,seed,draw,heads_q,heads_kv,head_dim,dtype,direction,"
         "area,density,documents,fwd_median_ms,fwd_p20_ms,fwd_p80_ms,fwd_reps,fwd_tflops,"
         "bwd_median_ms,bwd_p20_ms,bwd_p80_ms,bwd_reps,bwd_tflops,peak_gib,err_o,err_dq,err_dk,err_dv,tol_o,tol_dq,tol_dk,tol_dv,check_full,reason";
}

std::string csv_row(const Record& r) {
  const Case& c = r.c;
  std::vector<std::string> f;
  auto add = [&](auto&&... xs) { (f.push_back(fmt::format("{}", xs)), ...); };
  add(c.backend, to_string(r.status), to_string(c.mask.pattern), c.mask.seqlen, c.mask.seed, c.draw,
      c.heads.heads_q, c.heads.heads_kv, c.heads.head_dim, to_string(c.dtype), to_string(c.direction),
      r.mask.area);
  f.push_back(fmt::format("{:.6f}", r.mask.density));
  f.push_back(r.mask.documents ? fmt::format("{}", r.mask.documents->count) : "");
  for (const auto* p : {&r.forward, &r.backward}) {
    if (!*p) {
      f.insert(f.end(), 5, "");
      continue;
    }
    const TimingSummary& t = (*p)->timing;
    f.push_back(fmt::format("{:.6f}", t.median_ms));
    f.push_back(fmt::format("{:.6f}", t.p20_ms));
    f.push_back(fmt::format("{:.6f}", t.p80_ms));
    f.push_back(fmt::format("{}", t.reps));
    f.push_back(fmt::format("{:.3f}", (*p)->tflops));
  }
  f.push_back(r.memory.case_gib ? fmt::format("{:.4f}", *r.memory.case_gib) : "");
  const std::optional<OutputCheck> CheckResult::*outs[] = {&CheckResult::o, &CheckResult::dq,
                                                           &CheckResult::dk, &CheckResult::dv};
  for (bool tol : {false, true})
    for (auto m : outs) {
      const bool has = r.check && ((*r.check).*m).has_value();
      f.push_back(has ? fmt::format("{:.4e}", tol ? ((*r.check).*m)->tolerance : ((*r.check).*m)->error)
                      : "");
    }
  f.push_back(r.check ? (r.check->full ? "all" : "sampled") : "");
  std::string reason = r.reason;
  for (char& ch : reason)
    if (ch == '"') ch = '\'';
  f.push_back("\"" + reason + "\"");
  std::string line;
  for (const std::string& x : f) line += (line.empty() ? "" : ",") + x;
  return line;
}

// Fixed-width columns; the header lines start with '#' so tools can skip them.
std::string table_header() {
  return fmt::format(
      "#{:>7} {:>22} {:>6} {:>6} {:>4} {:>5} {:>6} {:>4} {:>9} {:>8} {:>9} {:>8} {:>8} {:>9} {:>9} "
      "{:>11}\n"
      "#{:>7} {:>22} {:>6} {:>6} {:>4} {:>5} {:>6} {:>4} {:>9} {:>8} {:>9} {:>8} {:>8} {:>9} {:>9} "
      "{:>11}",
      "backend", "mask", "S", "heads", "D", "dtype", "dir", "draw", "fwd", "fwd", "bwd", "bwd",
      "peak", "err", "err", "status", "", "", "", "", "", "", "", "", "(ms)", "(TF/s)", "(ms)",
      "(TF/s)", "(GiB)", "O", "dQ", "");
}

std::string table_row(const Record& r) {
  const Case& c = r.c;
  auto ms = [](const std::optional<PhaseResult>& p) {
    return p ? fmt::format("{:.3f}", p->timing.median_ms) : std::string("-");
  };
  auto tf = [](const std::optional<PhaseResult>& p) {
    if (!p) return std::string("-");
    return p->tflops >= 100 ? fmt::format("{:.1f}", p->tflops) : fmt::format("{:.3g}", p->tflops);
  };
  auto e = [&](const std::optional<OutputCheck> CheckResult::*m) {
    return r.check && ((*r.check).*m) ? fmt::format("{:.2e}", ((*r.check).*m)->error) : std::string("-");
  };
  std::string line = fmt::format(
      " {:>7} {:>22} {:>6} {:>6} {:>4} {:>5} {:>6} {:>4} {:>9} {:>8} {:>9} {:>8} {:>8} {:>9} {:>9} "
      "{:>11}",
      c.backend, to_string(c.mask.pattern), short_size(c.mask.seqlen),
      fmt::format("{}:{}", c.heads.heads_q, c.heads.heads_kv), c.heads.head_dim, to_string(c.dtype),
      to_string(c.direction), c.draw, ms(r.forward), tf(r.forward), ms(r.backward), tf(r.backward),
      r.memory.case_gib ? fmt::format("{:.2f}", *r.memory.case_gib) : std::string("-"),
      e(&CheckResult::o), e(&CheckResult::dq), to_string(r.status));
  if (r.status != Status::ok && !r.reason.empty()) line += "  # " + r.reason;
  return line;
}

}  // namespace longattn::bench
