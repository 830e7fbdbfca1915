#include "longattn/cp/communicator.hpp"

namespace longattn::cp {

std::string_view to_string(CommOp op) {
  switch (op) {
    case CommOp::all_to_all: return "all_to_all";
    case CommOp::p2p: return "p2p";
    case CommOp::all_gather: return "all_gather";
    case CommOp::reduce_scatter: return "reduce_scatter";
  }
  return "?";
}

std::uint64_t CommStats::total_bytes() const {
  std::uint64_t n = 0;
  for (auto b : bytes) n += b;
  return n;
}

CommStats& CommStats::operator+=(const CommStats& o) {
  for (int i = 0; i < kCommOps; ++i) bytes[i] += o.bytes[i], calls[i] += o.calls[i];
  return *this;
}

CommStats operator-(CommStats a, const CommStats& b) {
  for (int i = 0; i < kCommOps; ++i) a.bytes[i] -= b.bytes[i], a.calls[i] -= b.calls[i];
  return a;
}

}  // namespace longattn::cp
