// cu_seqlens, recognised from the mask's rows: every row must allow exactly its document's keys
// (full documents) or its document's keys up to itself (causal documents). Working on the merged
// row intervals rather than on the slices makes the answer independent of how the slices split
// the mask. Documents of length one are both; a mask made only of them is reported as full.
#include "longattn/views/cu_seqlens.hpp"

#include <fmt/format.h>

#include "longattn/error.hpp"
#include "longattn/views/row_intervals.hpp"

namespace longattn {

namespace {

std::string describe(Range r) { return fmt::format("[{}, {})", r.begin, r.end); }

// Offsets of full documents, or why the rows are not that.
std::variant<std::vector<Index>, std::string> full_documents(const RowIntervals& rows) {
  std::vector<Index> offsets{0};
  const Index s = rows.seqlen_q();
  for (Index start = 0; start < s;) {
    const Range doc = rows.row(start)[0];
    if (doc.begin != start)
      return fmt::format("row {} allows keys {}, not a document starting at {}", start,
                         describe(doc), start);
    for (Index i = start; i < doc.end; ++i)
      if (rows.row(i)[0] != doc)
        return fmt::format("row {} allows keys {}, not its document {}", i,
                           describe(rows.row(i)[0]), describe(doc));
    offsets.push_back(doc.end);
    start = doc.end;
  }
  return offsets;
}

// Offsets of causal documents, or why the rows are not that.
std::variant<std::vector<Index>, std::string> causal_documents(const RowIntervals& rows) {
  std::vector<Index> offsets{0};
  const Index s = rows.seqlen_q();
  for (Index i = 0; i < s; ++i) {
    const Range keys = rows.row(i)[0];
    if (keys.begin == i && i > 0) offsets.push_back(i);  // a new document starts here
    if (keys != Range{offsets.back(), i + 1})
      return fmt::format("row {} allows keys {}, not its document's prefix {}", i, describe(keys),
                         describe({offsets.back(), i + 1}));
  }
  offsets.push_back(s);
  return offsets;
}

}  // namespace

std::variant<CuSeqlens, NotDocumentMask> cu_seqlens(const SliceMask& m) {
  if (m.seqlen_q() != m.seqlen_k())
    return NotDocumentMask{
        fmt::format("the mask is not square ({} queries, {} keys)", m.seqlen_q(), m.seqlen_k())};
  const RowIntervals rows = row_intervals(m);
  for (Index i = 0; i < rows.seqlen_q(); ++i)
    if (rows.row(i).size() != 1)
      return NotDocumentMask{fmt::format("row {} has {} key intervals, a document mask has one", i,
                                         rows.row(i).size())};
  auto full = full_documents(rows);
  if (auto* offsets = std::get_if<std::vector<Index>>(&full))
    return CuSeqlens{std::move(*offsets), false};
  auto causal = causal_documents(rows);
  if (auto* offsets = std::get_if<std::vector<Index>>(&causal))
    return CuSeqlens{std::move(*offsets), true};
  return NotDocumentMask{fmt::format("as full documents: {}; as causal documents: {}",
                                     std::get<std::string>(full), std::get<std::string>(causal))};
}

SliceMask document_mask(const CuSeqlens& c) {
  if (c.offsets.empty() || c.offsets.front() != 0) throw InputError("cu_seqlens must start at 0");
  std::vector<Slice> slices;
  for (size_t d = 0; d + 1 < c.offsets.size(); ++d) {
    const Range doc{c.offsets[d], c.offsets[d + 1]};
    if (doc.empty())
      throw InputError(fmt::format("cu_seqlens must increase strictly: offset {} is {} after {}",
                                   d + 1, doc.end, doc.begin));
    slices.push_back({doc, doc, c.causal ? SliceType::causal : SliceType::full});
  }
  return SliceMask(c.offsets.back(), std::move(slices));
}

}  // namespace longattn
