#include "longattn/cp/dispatch.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <numeric>

#include "longattn/error.hpp"

namespace longattn::cp {

std::string_view to_string(DispatchKind k) {
  switch (k) {
    case DispatchKind::contiguous: return "contiguous";
    case DispatchKind::zigzag: return "zigzag";
    case DispatchKind::balanced: return "balanced";
  }
  return "?";
}

DispatchKind parse_dispatch(std::string_view name) {
  for (DispatchKind k : {DispatchKind::contiguous, DispatchKind::zigzag, DispatchKind::balanced})
    if (name == to_string(k)) return k;
  throw InputError(
      fmt::format("unknown dispatch '{}' (valid: contiguous, zigzag, balanced)", name));
}

Index total_tokens(std::span<const Range> chunks) {
  Index n = 0;
  for (Range r : chunks) n += r.size();
  return n;
}

Chunks normalized(Chunks chunks) {
  Chunks out;
  for (Range r : chunks) {
    if (r.empty()) continue;
    if (!out.empty() && out.back().end == r.begin)
      out.back().end = r.end;
    else
      out.push_back(r);
  }
  return out;
}

Chunks Dispatch::unit_chunks(int unit) const {
  Chunks out;
  for (int m = 0; m < members; ++m) {
    const Chunks& c = chunks(unit * members + m);
    out.insert(out.end(), c.begin(), c.end());
  }
  return normalized(std::move(out));
}

Chunks Dispatch::all_chunks() const {
  Chunks out;
  for (const Chunks& c : rank_chunks) out.insert(out.end(), c.begin(), c.end());
  return normalized(std::move(out));
}

Index rows_area(const SliceMask& mask, std::span<const Range> chunks) {
  Index area = 0;
  for (Range r : chunks) area += mask.restrict(r, {0, mask.seqlen_k()}).area();
  return area;
}

namespace {

// Assigns `per_unit` of the equal chunks (areas given) to each unit, minimising the largest unit
// area: greedy largest-first, then improving swaps with the largest unit.
std::vector<std::vector<int>> balance(const std::vector<Index>& area, int units, int per_unit) {
  const int n = int(area.size());
  std::vector<int> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return area[a] > area[b]; });
  std::vector<std::vector<int>> owned(units);
  std::vector<Index> load(units, 0);
  for (int c : order) {
    int best = -1;
    for (int u = 0; u < units; ++u)
      if (int(owned[u].size()) < per_unit && (best < 0 || load[u] < load[best])) best = u;
    owned[best].push_back(c);
    load[best] += area[c];
  }
  for (int iter = 0; iter < 4 * n; ++iter) {
    int hi = int(std::max_element(load.begin(), load.end()) - load.begin());
    Index best_peak = load[hi];
    int bi = -1, bj = -1, bl = -1;
    for (int i = 0; i < int(owned[hi].size()); ++i)
      for (int j = 0; j < units; ++j) {
        if (j == hi) continue;
        for (int l = 0; l < int(owned[j].size()); ++l) {
          Index d = area[owned[hi][i]] - area[owned[j][l]];
          if (d <= 0) continue;
          Index peak = std::max(load[hi] - d, load[j] + d);
          if (peak < best_peak) best_peak = peak, bi = i, bj = j, bl = l;
        }
      }
    if (bi < 0) break;
    Index d = area[owned[hi][bi]] - area[owned[bj][bl]];
    std::swap(owned[hi][bi], owned[bj][bl]);
    load[hi] -= d;
    load[bj] += d;
  }
  for (auto& o : owned) std::sort(o.begin(), o.end());
  return owned;
}

// The unit's tokens cut into `members` equal consecutive slices of its token order.
std::vector<Chunks> split_members(const Chunks& unit, int members) {
  const Index per = total_tokens(unit) / members;
  std::vector<Chunks> out(members);
  int m = 0;
  Index room = per;
  for (Range r : unit) {
    while (!r.empty()) {
      Index take = std::min(room, r.size());
      out[m].push_back({r.begin, r.begin + take});
      r.begin += take;
      room -= take;
      if (room == 0 && m + 1 < members) ++m, room = per;
    }
  }
  for (auto& c : out) c = normalized(std::move(c));
  return out;
}

}  // namespace

Dispatch make_dispatch(DispatchKind kind, const SliceMask& mask, int units, int members,
                       int chunks_per_unit) {
  const Index S = mask.seqlen_q();
  if (mask.seqlen_k() != S)
    throw InputError(fmt::format("CP needs a square mask, got {} queries x {} keys", S,
                                 mask.seqlen_k()));
  if (units < 1 || members < 1)
    throw InputError(fmt::format("bad mesh {} x {}", members, units));
  const Index N = Index(units) * members;
  if (S % N != 0)
    throw InputError(fmt::format("S = {} is not divisible by the {} ranks", S, N));
  Dispatch d;
  d.kind = kind;
  d.seqlen = S;
  d.units = units;
  d.members = members;
  std::vector<Chunks> unit(units);
  switch (kind) {
    case DispatchKind::contiguous: {
      const Index t = S / units;
      for (int u = 0; u < units; ++u) unit[u] = {{u * t, (u + 1) * t}};
      break;
    }
    case DispatchKind::zigzag: {
      if (S % (2 * Index(units)) != 0)
        throw InputError(fmt::format(
            "zigzag needs S divisible by 2 x {} ring positions; S = {} is not", units, S));
      const Index c = S / (2 * Index(units));
      for (int u = 0; u < units; ++u)
        unit[u] = normalized({{u * c, (u + 1) * c}, {(2 * units - 1 - u) * c, (2 * units - u) * c}});
      break;
    }
    case DispatchKind::balanced: {
      if (chunks_per_unit < 1)
        throw InputError(fmt::format("balanced dispatch needs >= 1 chunk per rank, got {}",
                                     chunks_per_unit));
      const Index m = Index(units) * chunks_per_unit;
      if (S % m != 0)
        throw InputError(fmt::format(
            "balanced dispatch cuts S = {} into {} x {} equal chunks; S is not divisible by {}",
            S, units, chunks_per_unit, m));
      const Index c = S / m;
      std::vector<Index> area(m);
      for (Index i = 0; i < m; ++i) {
        Range r{i * c, (i + 1) * c};
        area[i] = rows_area(mask, {&r, 1});
      }
      auto owned = balance(area, units, chunks_per_unit);
      for (int u = 0; u < units; ++u) {
        Chunks ch;
        for (int i : owned[u]) ch.push_back({i * c, (i + 1) * c});
        unit[u] = normalized(std::move(ch));
      }
      break;
    }
  }
  d.rank_chunks.reserve(N);
  for (int u = 0; u < units; ++u)
    for (Chunks& c : split_members(unit[u], members)) d.rank_chunks.push_back(std::move(c));
  return d;
}

SliceMask local_mask(const SliceMask& mask, std::span<const Range> q_chunks,
                     std::span<const Range> k_chunks) {
  std::vector<Slice> slices;
  Index qo = 0;
  for (Range q : q_chunks) {
    Index ko = 0;
    for (Range k : k_chunks) {
      const SliceMask part = mask.restrict(q, k);
      for (const Slice& s : part.slices())
        slices.push_back({s.q.shifted(qo), s.k.shifted(ko), s.type});
      ko += k.size();
    }
    qo += q.size();
  }
  std::sort(slices.begin(), slices.end(), [](const Slice& a, const Slice& b) {
    return a.q.begin != b.q.begin ? a.q.begin < b.q.begin : a.k.begin < b.k.begin;
  });
  return SliceMask(total_tokens(q_chunks), total_tokens(k_chunks), std::move(slices));
}

std::vector<float> gather_rows(std::span<const Range> chunks, std::span<const float> global,
                               std::size_t width) {
  std::vector<float> out;
  out.reserve(std::size_t(total_tokens(chunks)) * width);
  for (Range r : chunks)
    out.insert(out.end(), global.begin() + r.begin * width, global.begin() + r.end * width);
  return out;
}

void scatter_rows(std::span<const Range> chunks, std::span<const float> local,
                  std::span<float> global, std::size_t width) {
  std::size_t at = 0;
  for (Range r : chunks) {
    std::copy_n(local.begin() + at, r.size() * width, global.begin() + r.begin * width);
    at += r.size() * width;
  }
}

}  // namespace longattn::cp
