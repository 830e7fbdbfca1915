#pragma once
// Human-friendly sizes shared by the CLI and suite files: lengths with K/M/G suffixes
// (powers of 1024) and head configurations "Hq:Hkv".
#include <string>
#include <string_view>

#include "longattn/flops.hpp"
#include "longattn/range.hpp"

namespace longattn {

// "4096", "16K", "1M" -> 4096, 16384, 1048576. Throws InputError naming `what` otherwise.
Index parse_length(std::string_view text, std::string_view what = "--seqlen");
// "64:8" -> {64, 8}; "64" -> {64, 64}. Validated (Hq a positive multiple of Hkv).
HeadConfig parse_heads(std::string_view text, int head_dim = 128);
// 16384 -> "16K", 1536 -> "1536", 1048576 -> "1M".
std::string short_length(Index n);

}  // namespace longattn
