#include "longattn/bench/case.hpp"

#include <fmt/format.h>

#include "longattn/error.hpp"

namespace longattn::bench {

DType parse_dtype(std::string_view name) {
  for (DType t : {DType::bf16, DType::fp16, DType::fp32})
    if (name == to_string(t)) return t;
  throw InputError(fmt::format("unknown dtype '{}' (valid: bf16, fp16, fp32)", name));
}

Direction parse_direction(std::string_view name) {
  for (Direction d : {Direction::fwd, Direction::bwd, Direction::fwdbwd})
    if (name == to_string(d)) return d;
  if (name == "fwd+bwd" || name == "both") return Direction::fwdbwd;
  throw InputError(fmt::format("unknown direction '{}' (valid: fwd, bwd, fwdbwd)", name));
}

std::string describe(const Case& c) {
  return fmt::format("{} {} S={} H={}:{} D={} {} {} draw {}", c.backend, to_string(c.mask.pattern),
                     c.mask.seqlen, c.heads.heads_q, c.heads.heads_kv, c.heads.head_dim,
                     to_string(c.dtype), to_string(c.direction), c.draw);
}

}  // namespace longattn::bench
