#include "longattn/sampler.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <fstream>
#include <limits>
#include <optional>
#include <sstream>

#include "longattn/error.hpp"
#include "longattn/rng.hpp"

namespace longattn {
namespace {

struct RawBin {
  Index begin;
  Index end;
  double probability;
};

// The bins of issue 2, item 5, copied by script from its text: probability per length bin [a, b).
constexpr RawBin k_pile[] = {
    {0, 32, .029931},          {32, 64, .063955},     {64, 96, .064939},     {96, 128, .070109},
    {128, 160, .071745},       {160, 192, .070039},   {192, 224, .067682},   {224, 256, .059416},
    {256, 288, .053688},       {288, 320, .038126},   {320, 352, .030705},   {352, 384, .025864},
    {384, 416, .022355},       {416, 448, .019422},   {448, 480, .017154},   {480, 512, .015142},
    {512, 544, .013648},       {544, 576, .012338},   {576, 608, .011102},   {608, 640, .010029},
    {640, 704, .017699},       {704, 768, .015366},   {768, 832, .013425},   {832, 896, .011622},
    {896, 960, .010074},       {960, 1056, .01299},   {1056, 1152, .010747}, {1152, 1280, .011763},
    {1280, 1440, .012227},     {1440, 1600, .010025}, {1600, 1792, .010877}, {1792, 2016, .010893},
    {2016, 2304, .0106},       {2304, 2720, .010606}, {2720, 3264, .01054},  {3264, 3904, .010051},
    {3904, 4704, .010083},     {4704, 5792, .010228}, {5792, 7584, .010093}, {7584, 14208, .010011},
    {14208, 9323168, .002246},
};
constexpr RawBin k_prolong64k[] = {
    {0, 64, .041225},      {64, 96, .05438},      {96, 128, .057541},     {128, 160, .055729},
    {160, 192, .052027},   {192, 224, .04831},    {224, 256, .044587},    {256, 288, .041382},
    {288, 320, .038608},   {320, 352, .035},      {352, 384, .032118},    {384, 416, .030124},
    {416, 448, .028552},   {448, 480, .026684},   {480, 512, .026249},    {512, 544, .024683},
    {544, 576, .021875},   {576, 608, .019907},   {608, 640, .018437},    {640, 672, .016788},
    {672, 704, .015729},   {704, 736, .014684},   {736, 768, .013679},    {768, 800, .012685},
    {800, 832, .011853},   {832, 864, .010844},   {864, 928, .019182},    {928, 992, .016678},
    {992, 1056, .015301},  {1056, 1120, .012752}, {1120, 1184, .010927},  {1184, 1280, .013861},
    {1280, 1376, .011269}, {1376, 1504, .012483}, {1504, 1632, .010406},  {1632, 1792, .010112},
    {1792, 2016, .010995}, {2016, 2304, .010428}, {2304, 2720, .010183},  {2720, 3392, .010054},
    {3392, 4768, .010122}, {4768, 8928, .010019}, {8928, 50272, .010008}, {50272, 61920, .001531},
};
constexpr RawBin k_prolong512k[] = {
    {0, 32, .010066},       {32, 64, .03596},         {64, 96, .058496},     {96, 128, .062776},
    {128, 160, .060632},    {160, 192, .05615},       {192, 224, .051602},   {224, 256, .046961},
    {256, 288, .043527},    {288, 320, .039809},      {320, 352, .035857},   {352, 384, .032632},
    {384, 416, .0305},      {416, 448, .028518},      {448, 480, .026541},   {480, 512, .026257},
    {512, 544, .02424},     {544, 576, .021284},      {576, 608, .019171},   {608, 640, .017614},
    {640, 672, .015991},    {672, 704, .014906},      {704, 736, .01386},    {736, 768, .012765},
    {768, 800, .0118},      {800, 832, .010991},      {832, 896, .019169},   {896, 960, .016308},
    {960, 1024, .014782},   {1024, 1088, .012799},    {1088, 1152, .010717}, {1152, 1248, .013402},
    {1248, 1344, .010878},  {1344, 1472, .01175},     {1472, 1632, .011866}, {1632, 1824, .010432},
    {1824, 2080, .010402},  {2080, 2464, .010383},    {2464, 3104, .010364}, {3104, 4544, .010031},
    {4544, 10912, .010011}, {10912, 475872, .007308},
};

template <std::size_t N>
Histogram make_histogram(std::string name, const RawBin (&raw)[N]) {
  Histogram h{std::move(name), {}};
  h.bins.reserve(N);
  for (const RawBin& b : raw) h.bins.push_back({{b.begin, b.end}, b.probability});
  return h;
}

// The documents' own Rng stream ("docs" in ASCII), so other draws seeded with the same seed (prefix
// lengths, block scores) use other streams and never shift the documents.
constexpr std::uint64_t kDocumentStream = 0x646f6373;

// Sampling needs bins that hold a length >= 1 and non-negative finite weights with a positive sum.
void check_sampleable(const Histogram& hist) {
  if (hist.bins.empty()) throw InputError(fmt::format("histogram '{}' has no bins", hist.name));
  double total = 0;
  for (std::size_t i = 0; i < hist.bins.size(); ++i) {
    const HistogramBin& b = hist.bins[i];
    if (b.lengths.begin < 0 || b.lengths.end < 2 || b.lengths.end <= b.lengths.begin)
      throw InputError(fmt::format("histogram '{}': bin {} [{}, {}) holds no length >= 1",
                                   hist.name, i, b.lengths.begin, b.lengths.end));
    if (!std::isfinite(b.probability) || b.probability < 0)
      throw InputError(fmt::format("histogram '{}': bin {} has weight {}, expected finite and >= 0",
                                   hist.name, i, b.probability));
    total += b.probability;
  }
  if (!(total > 0) || !std::isfinite(total))
    throw InputError(fmt::format("histogram '{}' has no positive total weight", hist.name));
}

std::string_view trim(std::string_view s) {
  const auto is_space = [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\v'; };
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

// Parses the whole of s as a T, or nothing.
template <class T>
std::optional<T> parse_number(std::string_view s) {
  T value{};
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
  if (ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
  return value;
}

}  // namespace

const Histogram& pile_histogram() {
  static const Histogram h = make_histogram("pile", k_pile);
  return h;
}

const Histogram& prolong64k_histogram() {
  static const Histogram h = make_histogram("prolong64k", k_prolong64k);
  return h;
}

const Histogram& prolong512k_histogram() {
  static const Histogram h = make_histogram("prolong512k", k_prolong512k);
  return h;
}

const Histogram& histogram_for(Index seqlen) {
  if (seqlen <= 0) throw InputError(fmt::format("seqlen must be positive, got {}", seqlen));
  // "12K" and "64K" are binary: 12K = 12 * 1024 = 12,288 and 64K = 65,536 tokens, the same K as
  // the paper's sequence lengths (S = 64K is 65,536, which still uses ProLong-64K).
  constexpr Index k = 1024;
  if (seqlen <= 12 * k) return pile_histogram();
  if (seqlen <= 64 * k) return prolong64k_histogram();
  return prolong512k_histogram();
}

const Histogram& builtin_histogram(std::string_view name) {
  if (name == "pile") return pile_histogram();
  if (name == "prolong64k") return prolong64k_histogram();
  if (name == "prolong512k") return prolong512k_histogram();
  throw InputError(
      fmt::format("unknown histogram '{}' (built in: pile, prolong64k, prolong512k)", name));
}

Histogram parse_histogram_csv(std::string_view text, std::string name) {
  struct Row {
    HistogramBin bin;
    int line;
  };
  std::vector<Row> rows;
  bool seen_content = false;
  int line_no = 0;
  for (std::size_t pos = 0; pos < text.size();) {
    const std::size_t nl = std::min(text.find('\n', pos), text.size());
    std::string_view line = text.substr(pos, nl - pos);
    pos = nl + 1;
    ++line_no;
    line = trim(line.substr(0, line.find('#')));  // '#' starts a comment
    if (line.empty()) continue;
    const auto fail = [&](const std::string& what) {
      return InputError(fmt::format("histogram CSV '{}', line {}: {}", name, line_no, what));
    };

    std::vector<std::string_view> fields;
    for (std::size_t at = 0;;) {
      const std::size_t comma = line.find(',', at);
      fields.push_back(trim(line.substr(at, comma - at)));
      if (comma == std::string_view::npos) break;
      at = comma + 1;
    }
    // A first row whose first field is not a number is the header.
    const bool first = !seen_content;
    seen_content = true;
    if (first && !parse_number<double>(fields[0])) continue;

    if (fields.size() != 3)
      throw fail(fmt::format("expected 3 fields 'begin,end,probability', got {} in '{}'",
                             fields.size(), line));
    const auto begin = parse_number<Index>(fields[0]);
    if (!begin) throw fail(fmt::format("begin '{}' is not an integer", fields[0]));
    const auto end = parse_number<Index>(fields[1]);
    if (!end) throw fail(fmt::format("end '{}' is not an integer", fields[1]));
    const auto weight = parse_number<double>(fields[2]);
    if (!weight) throw fail(fmt::format("probability '{}' is not a number", fields[2]));
    if (*begin < 0) throw fail(fmt::format("begin {} is negative", *begin));
    if (*end <= *begin)
      throw fail(fmt::format("empty bin [{}, {}): end must exceed begin", *begin, *end));
    if (*end < 2) throw fail(fmt::format("bin [{}, {}) holds no length >= 1", *begin, *end));
    if (!std::isfinite(*weight) || *weight < 0)
      throw fail(fmt::format("probability {} must be finite and non-negative", fields[2]));
    rows.push_back({{{*begin, *end}, *weight}, line_no});
  }

  if (rows.empty()) throw InputError(fmt::format("histogram CSV '{}' has no bins", name));
  std::stable_sort(rows.begin(), rows.end(), [](const Row& a, const Row& b) {
    return a.bin.lengths.begin < b.bin.lengths.begin;
  });
  double total = 0;
  for (std::size_t i = 0; i < rows.size(); ++i) {
    total += rows[i].bin.probability;
    if (i > 0 && rows[i - 1].bin.lengths.overlaps(rows[i].bin.lengths)) {
      const Row& a = rows[i - 1];
      const Row& b = rows[i];
      const Row& later = a.line > b.line ? a : b;
      const Row& earlier = a.line > b.line ? b : a;
      throw InputError(
          fmt::format("histogram CSV '{}', line {}: bin [{}, {}) overlaps bin [{}, {}) "
                      "of line {}",
                      name, later.line, later.bin.lengths.begin, later.bin.lengths.end,
                      earlier.bin.lengths.begin, earlier.bin.lengths.end, earlier.line));
    }
  }
  if (!(total > 0) || !std::isfinite(total))
    throw InputError(fmt::format("histogram CSV '{}' has zero total probability", name));

  Histogram h{std::move(name), {}};
  h.bins.reserve(rows.size());
  for (const Row& r : rows) h.bins.push_back(r.bin);
  return h;
}

Histogram load_histogram_csv(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError(fmt::format("cannot read histogram file '{}'", path));
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) throw InputError(fmt::format("error reading histogram file '{}'", path));
  return parse_histogram_csv(text.str(), path);
}

Documents::Documents(std::vector<Index> lengths) : lengths_(std::move(lengths)) {
  starts_.reserve(lengths_.size() + 1);
  starts_.push_back(0);
  for (std::size_t d = 0; d < lengths_.size(); ++d) {
    const Index len = lengths_[d];
    if (len <= 0) throw InputError(fmt::format("document {} has length {}, expected >= 1", d, len));
    if (len > std::numeric_limits<Index>::max() - starts_.back())
      throw InputError("document lengths overflow a 64-bit total");
    starts_.push_back(starts_.back() + len);
  }
}

Index Documents::doc_of(Index i) const {
  if (i < 0 || i >= seqlen())
    throw InputError(fmt::format("position {} is outside the documents' [0, {})", i, seqlen()));
  // The last start <= i: starts_ is strictly increasing.
  return Index(std::upper_bound(starts_.begin(), starts_.end(), i) - starts_.begin()) - 1;
}

Documents sample_documents(const Histogram& hist, Index seqlen, std::uint64_t seed) {
  if (seqlen <= 0) throw InputError(fmt::format("seqlen must be positive, got {}", seqlen));
  check_sampleable(hist);

  // Pick a bin by weight: the first whose running total exceeds u in [0, total). Zero-weight bins
  // never exceed it, so they are never picked.
  std::vector<double> cumulative;
  cumulative.reserve(hist.bins.size());
  double total = 0;
  for (const HistogramBin& b : hist.bins) cumulative.push_back(total += b.probability);
  // (The fallback for u rounding up to the total: the last bin with weight.)
  std::size_t last_weighted = hist.bins.size() - 1;
  while (hist.bins[last_weighted].probability <= 0) --last_weighted;

  Rng rng(seed, kDocumentStream);
  std::vector<Index> lengths;
  Index filled = 0;
  while (filled < seqlen) {
    const double u = rng.uniform01() * cumulative.back();
    std::size_t b =
        std::size_t(std::upper_bound(cumulative.begin(), cumulative.end(), u) - cumulative.begin());
    if (b >= hist.bins.size()) b = last_weighted;
    const Range bin = hist.bins[b].lengths;
    const Index length = rng.uniform_int(std::max<Index>(bin.begin, 1), bin.end - 1);
    lengths.push_back(std::min(length, seqlen - filled));  // the last document is cut to fit
    filled += lengths.back();
  }
  return Documents(std::move(lengths));
}

DocumentStats document_stats(const Documents& docs) {
  DocumentStats s;
  s.count = docs.count();
  if (s.count == 0) return s;
  const auto [lo, hi] = std::minmax_element(docs.lengths().begin(), docs.lengths().end());
  s.min_length = *lo;
  s.max_length = *hi;
  s.mean_length = double(docs.seqlen()) / double(s.count);
  return s;
}

}  // namespace longattn
