#pragma once
// Document lengths drawn from binned corpus length histograms (DESIGN.md section 3).
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "longattn/range.hpp"

namespace longattn {

struct HistogramBin {
  Range lengths;       // document lengths in [begin, end)
  double probability;  // weight; the bins need not sum to exactly 1
};

struct Histogram {
  std::string name;
  std::vector<HistogramBin> bins;
};

const Histogram& pile_histogram();          // S <= 12K
const Histogram& prolong64k_histogram();    // 12K < S <= 64K
const Histogram& prolong512k_histogram();   // S > 64K and all CP runs
const Histogram& histogram_for(Index seqlen);
// Looks up "pile", "prolong64k", "prolong512k"; throws InputError for other names.
const Histogram& builtin_histogram(std::string_view name);

// CSV rows "begin,end,probability" (a header line is allowed). Throws InputError naming the line
// of a malformed file: bad numbers, end <= begin, negative weight, overlapping bins, no weight.
Histogram parse_histogram_csv(std::string_view text, std::string name = "custom");
Histogram load_histogram_csv(const std::string& path);

// Packed documents covering [0, S) exactly, in order.
class Documents {
 public:
  Documents() = default;
  explicit Documents(std::vector<Index> lengths);  // throws InputError on a length <= 0

  const std::vector<Index>& lengths() const { return lengths_; }
  const std::vector<Index>& starts() const { return starts_; }  // size n + 1, last = S
  Index count() const { return Index(lengths_.size()); }
  Index seqlen() const { return starts_.empty() ? 0 : starts_.back(); }
  Range doc(Index d) const { return {starts_[d], starts_[d + 1]}; }
  Index doc_of(Index i) const;  // binary search

 private:
  std::vector<Index> lengths_;
  std::vector<Index> starts_;
};

// Picks a bin by weight, a length uniform in it (at least 1), repeats until S tokens are filled and
// cuts the last document to fit. Deterministic in (histogram, S, seed).
Documents sample_documents(const Histogram& hist, Index seqlen, std::uint64_t seed);

struct DocumentStats {
  Index count = 0;
  Index min_length = 0;
  double mean_length = 0;
  Index max_length = 0;
};
DocumentStats document_stats(const Documents& docs);

}  // namespace longattn
