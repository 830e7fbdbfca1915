#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <string>
#include <vector>

#include "longattn/error.hpp"
#include "longattn/sampler.hpp"

using namespace longattn;

namespace {

double total_weight(const Histogram& h) {
  double sum = 0;
  for (const auto& b : h.bins) sum += b.probability;
  return sum;
}

// Mean and standard deviation of one document length: a bin by weight, then a length uniform in
// [max(begin, 1), end - 1].
struct Moments {
  double mean = 0;
  double sd = 0;
};
Moments length_moments(const Histogram& h) {
  const double total = total_weight(h);
  double m1 = 0, m2 = 0;
  for (const auto& b : h.bins) {
    const double lo = double(std::max<Index>(b.lengths.begin, 1));
    const double hi = double(b.lengths.end - 1);
    const double n = hi - lo + 1;
    const double mean = (lo + hi) / 2;
    const double var = (n * n - 1) / 12;
    m1 += b.probability / total * mean;
    m2 += b.probability / total * (var + mean * mean);
  }
  return {m1, std::sqrt(m2 - m1 * m1)};
}

// Expects an InputError whose message contains every one of `needles`.
template <class F>
void expect_input_error(F&& f, std::initializer_list<std::string> needles) {
  try {
    f();
    ADD_FAILURE() << "no InputError thrown";
  } catch (const InputError& e) {
    const std::string what = e.what();
    for (const auto& n : needles)
      EXPECT_NE(what.find(n), std::string::npos) << "'" << n << "' not in: " << what;
  }
}

void check_cover(const Documents& d, Index seqlen) {
  ASSERT_EQ(d.seqlen(), seqlen);
  ASSERT_EQ(Index(d.starts().size()), d.count() + 1);
  EXPECT_EQ(d.starts().front(), 0);
  EXPECT_EQ(std::accumulate(d.lengths().begin(), d.lengths().end(), Index(0)), seqlen);
  for (Index i = 0; i < d.count(); ++i) {
    ASSERT_GE(d.lengths()[i], 1);
    ASSERT_EQ(d.starts()[i + 1] - d.starts()[i], d.lengths()[i]);
  }
}

}  // namespace

// The built-in bins must be exactly those of issue 2, item 5.
TEST(Histogram, BuiltinBinsMatchTheIssue) {
  struct Expect {
    const Histogram& h;
    std::size_t bins;
    HistogramBin first, last;
    double sum;
  };
  const Expect cases[] = {
      {pile_histogram(), 41, {{0, 32}, .029931}, {{14208, 9323168}, .002246}, 0.999555},
      {prolong64k_histogram(), 44, {{0, 64}, .041225}, {{50272, 61920}, .001531}, 0.999991},
      {prolong512k_histogram(), 42, {{0, 32}, .010066}, {{10912, 475872}, .007308}, 0.999508},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.h.name);
    ASSERT_EQ(c.h.bins.size(), c.bins);
    EXPECT_EQ(c.h.bins.front().lengths, c.first.lengths);
    EXPECT_DOUBLE_EQ(c.h.bins.front().probability, c.first.probability);
    EXPECT_EQ(c.h.bins.back().lengths, c.last.lengths);
    EXPECT_DOUBLE_EQ(c.h.bins.back().probability, c.last.probability);
    EXPECT_NEAR(total_weight(c.h), c.sum, 1e-9);
    // Contiguous from 0, each bin non-empty.
    Index next = 0;
    for (const auto& b : c.h.bins) {
      EXPECT_EQ(b.lengths.begin, next);
      EXPECT_GT(b.lengths.end, b.lengths.begin);
      EXPECT_GT(b.probability, 0);
      next = b.lengths.end;
    }
  }
  // The expected lengths these bins imply (computed from the issue's text independently).
  EXPECT_NEAR(length_moments(pile_histogram()).mean, 11218.151, 1e-3);
  EXPECT_NEAR(length_moments(prolong64k_histogram()).mean, 1016.776, 1e-3);
  EXPECT_NEAR(length_moments(prolong512k_histogram()).mean, 2380.575, 1e-3);
}

TEST(Histogram, BuiltinByName) {
  EXPECT_EQ(&builtin_histogram("pile"), &pile_histogram());
  EXPECT_EQ(&builtin_histogram("prolong64k"), &prolong64k_histogram());
  EXPECT_EQ(&builtin_histogram("prolong512k"), &prolong512k_histogram());
  expect_input_error([] { builtin_histogram("wiki"); }, {"wiki", "pile"});
}

TEST(Histogram, ChosenBySeqlen) {
  EXPECT_EQ(&histogram_for(1), &pile_histogram());
  EXPECT_EQ(&histogram_for(12 * 1024), &pile_histogram());
  EXPECT_EQ(&histogram_for(12 * 1024 + 1), &prolong64k_histogram());
  EXPECT_EQ(&histogram_for(64 * 1024), &prolong64k_histogram());
  EXPECT_EQ(&histogram_for(64 * 1024 + 1), &prolong512k_histogram());
  EXPECT_EQ(&histogram_for(1 << 20), &prolong512k_histogram());
  EXPECT_THROW(histogram_for(0), InputError);
}

TEST(HistogramCsv, ParsesHeaderCommentsAndBlankLines) {
  const Histogram h = parse_histogram_csv(
      "# my corpus\r\n"
      "begin, end, probability\r\n"
      "\n"
      "  100 , 200 , 0.25  # long ones\n"
      "1,50,0.5\n"
      "50,100,0\n"
      "200,1000,.25",
      "mine");
  EXPECT_EQ(h.name, "mine");
  ASSERT_EQ(h.bins.size(), 4u);  // sorted by begin
  EXPECT_EQ(h.bins[0].lengths, (Range{1, 50}));
  EXPECT_DOUBLE_EQ(h.bins[0].probability, 0.5);
  EXPECT_EQ(h.bins[1].lengths, (Range{50, 100}));
  EXPECT_DOUBLE_EQ(h.bins[1].probability, 0.0);
  EXPECT_EQ(h.bins[2].lengths, (Range{100, 200}));
  EXPECT_EQ(h.bins[3].lengths, (Range{200, 1000}));
  EXPECT_DOUBLE_EQ(h.bins[3].probability, 0.25);

  // No header at all.
  const Histogram plain = parse_histogram_csv("0,32,1\n");
  EXPECT_EQ(plain.name, "custom");
  ASSERT_EQ(plain.bins.size(), 1u);
  EXPECT_EQ(plain.bins[0].lengths, (Range{0, 32}));
}

TEST(HistogramCsv, MalformedInputNamesTheLine) {
  const auto bad = [](const char* text, std::initializer_list<std::string> needles) {
    SCOPED_TRACE(text);
    expect_input_error([&] { parse_histogram_csv(text); }, needles);
  };
  bad("0,32", {"line 1", "3 fields"});
  bad("0,32,0.5,1", {"line 1", "3 fields"});
  bad("0,32,0.5,", {"line 1", "3 fields"});
  bad("0,32,.5\nx,64,.5", {"line 2", "begin 'x'"});
  bad("0,32,.5\n32,6x,.5", {"line 2", "end '6x'"});
  bad("0,32,.5\n32.5,64,.5", {"line 2", "begin '32.5'"});
  bad("begin,end,p\n0,32,abc", {"line 2", "probability 'abc'"});
  bad("0,32,.5\nbegin,end,p", {"line 2"});  // a header only as the first row
  bad("-4,32,.5", {"line 1", "negative"});
  bad("0,32,-0.1", {"line 1", "non-negative"});
  bad("0,32,nan", {"line 1", "finite"});
  bad("0,32,inf", {"line 1", "finite"});
  bad("#c\n32,32,.5", {"line 2", "empty bin"});
  bad("40,32,.5", {"line 1", "empty bin"});
  bad("0,1,.5", {"line 1", "no length >= 1"});
  bad("0,32,.5\n16,48,.5", {"line 2", "[16, 48)", "overlaps", "[0, 32)", "line 1"});
  bad("100,200,.5\n#\n0,150,.5", {"line 3", "overlaps", "line 1"});
  bad("0,32,0\n32,64,0", {"zero total"});
  bad("", {"no bins"});
  bad("# nothing\nbegin,end,probability\n\n", {"no bins"});
}

TEST(HistogramCsv, LoadsFileAndReportsUnreadable) {
  const auto path = std::filesystem::temp_directory_path() / "longattn_test_histogram.csv";
  {
    std::ofstream out(path);
    out << "begin,end,probability\n1,10,1\n10,20,3\n";
  }
  const Histogram h = load_histogram_csv(path.string());
  std::filesystem::remove(path);
  ASSERT_EQ(h.bins.size(), 2u);
  EXPECT_DOUBLE_EQ(h.bins[1].probability, 3.0);
  expect_input_error([&] { load_histogram_csv(path.string()); }, {path.string()});
}

TEST(Documents, Construction) {
  const Documents d({3, 1, 4});
  EXPECT_EQ(d.count(), 3);
  EXPECT_EQ(d.seqlen(), 8);
  EXPECT_EQ(d.starts(), (std::vector<Index>{0, 3, 4, 8}));
  EXPECT_EQ(d.doc(2), (Range{4, 8}));
  const Index expected_doc[] = {0, 0, 0, 1, 2, 2, 2, 2};
  for (Index i = 0; i < 8; ++i) EXPECT_EQ(d.doc_of(i), expected_doc[i]) << i;
  EXPECT_THROW(d.doc_of(8), InputError);
  EXPECT_THROW(d.doc_of(-1), InputError);
  expect_input_error([] { Documents({3, 0, 4}); }, {"document 1"});
  EXPECT_THROW(Documents({5, -2}), InputError);

  const DocumentStats s = document_stats(d);
  EXPECT_EQ(s.count, 3);
  EXPECT_EQ(s.min_length, 1);
  EXPECT_EQ(s.max_length, 4);
  EXPECT_DOUBLE_EQ(s.mean_length, 8.0 / 3.0);
  const DocumentStats none = document_stats(Documents{});
  EXPECT_EQ(none.count, 0);
  EXPECT_EQ(none.max_length, 0);
}

TEST(Sampler, DeterministicPerSeed) {
  for (Index s : {Index(1), Index(4096), Index(100000)}) {
    const Histogram& h = histogram_for(s);
    EXPECT_EQ(sample_documents(h, s, 17).lengths(), sample_documents(h, s, 17).lengths());
  }
  // Different seeds give different documents (many documents make a coincidence impossible).
  const Histogram& h = histogram_for(65536);
  EXPECT_NE(sample_documents(h, 65536, 1).lengths(), sample_documents(h, 65536, 2).lengths());
}

// Regression pin: the documents of one (histogram, S, seed) must stay the same across versions
// and machines, or every document mask of the benchmark changes. The values agree with an
// independent Python implementation of the same procedure.
TEST(Sampler, PinnedDocuments) {
  EXPECT_EQ(sample_documents(pile_histogram(), 3000, 7).lengths(),
            (std::vector<Index>{280, 992, 47, 52, 943, 485, 201}));
  EXPECT_EQ(sample_documents(prolong512k_histogram(), 3000, 42).lengths(),
            (std::vector<Index>{201, 1462, 923, 169, 236, 9}));
}

TEST(Sampler, FillsExactlyAndKeepsLengthsInTheirBins) {
  // Bins with gaps, so a length outside every bin is visible.
  const Histogram h = parse_histogram_csv("5,8,1\n20,21,1\n0,3,2\n100,130,0\n");
  for (Index s : {1, 2, 7, 64, 1000, 12345}) {
    for (std::uint64_t seed = 0; seed < 20; ++seed) {
      const Documents d = sample_documents(h, s, seed);
      check_cover(d, s);
      for (Index i = 0; i + 1 < d.count(); ++i) {
        const Index len = d.lengths()[i];
        EXPECT_TRUE((len >= 1 && len <= 2) || (len >= 5 && len <= 7) || len == 20) << len;
      }
      EXPECT_LE(d.lengths().back(), 20);  // cut, so at most a full draw
    }
  }
  for (Index s : {Index(1), Index(777), Index(12288), Index(65536), Index(1) << 20}) {
    const Documents d = sample_documents(histogram_for(s), s, 3);
    check_cover(d, s);
  }
}

TEST(Sampler, LastDocumentIsCut) {
  // Every document is drawn as 10 long, so S = 25 gives 10, 10, 5.
  const Histogram h = parse_histogram_csv("10,11,1");
  EXPECT_EQ(sample_documents(h, 25, 9).lengths(), (std::vector<Index>{10, 10, 5}));
  EXPECT_EQ(sample_documents(h, 30, 9).lengths(), (std::vector<Index>{10, 10, 10}));
  EXPECT_EQ(sample_documents(h, 3, 9).lengths(), (std::vector<Index>{3}));
}

TEST(Sampler, RejectsBadInput) {
  EXPECT_THROW(sample_documents(pile_histogram(), 0, 1), InputError);
  EXPECT_THROW(sample_documents(pile_histogram(), -5, 1), InputError);
  expect_input_error([] { sample_documents(Histogram{"empty", {}}, 10, 1); }, {"empty", "no bins"});
  expect_input_error(
      [] {
        sample_documents(Histogram{"h", {{{0, 1}, 1.0}}}, 10, 1);
      },
      {"bin 0", "no length"});
  expect_input_error(
      [] {
        sample_documents(Histogram{"h", {{{1, 5}, -1.0}}}, 10, 1);
      },
      {"bin 0", "weight"});
  expect_input_error(
      [] {
        sample_documents(Histogram{"h", {{{1, 5}, 0.0}}}, 10, 1);
      },
      {"total weight"});
}

// Over millions of documents, bin frequencies and the mean length match the histogram. Limits are
// 5 standard errors (computed from the histogram); the heavy Pile tail makes its mean noisy.
TEST(Sampler, StatisticsMatchHistogram) {
  for (const Histogram* h :
       {&pile_histogram(), &prolong64k_histogram(), &prolong512k_histogram()}) {
    SCOPED_TRACE(h->name);
    constexpr double kDocs = 2e6;
    const Moments expect = length_moments(*h);
    const Index seqlen = Index(kDocs * expect.mean);
    const Documents d = sample_documents(*h, seqlen, 2024);
    check_cover(d, seqlen);

    const Index n = d.count() - 1;  // all but the cut last document
    ASSERT_GT(n, Index(kDocs * 0.9));
    const double total = total_weight(*h);
    std::vector<Index> per_bin(h->bins.size());
    double sum = 0;
    for (Index i = 0; i < n; ++i) {
      const Index len = d.lengths()[i];
      sum += double(len);
      // The bins are contiguous from 0: the last one starting at or before len holds it.
      const auto it =
          std::upper_bound(h->bins.begin(), h->bins.end(), len,
                           [](Index l, const HistogramBin& b) { return l < b.lengths.begin; });
      const std::size_t b = std::size_t(it - h->bins.begin()) - 1;
      ASSERT_TRUE(h->bins[b].lengths.contains(len)) << "length " << len << " in no bin";
      ++per_bin[b];
    }
    const double mean = sum / double(n);
    EXPECT_NEAR(mean, expect.mean, 5 * expect.sd / std::sqrt(double(n)));
    EXPECT_NEAR(mean / expect.mean, 1.0, 0.06);  // "within a few percent"
    for (std::size_t b = 0; b < h->bins.size(); ++b) {
      const double p = h->bins[b].probability / total;
      EXPECT_NEAR(double(per_bin[b]) / double(n), p, 5 * std::sqrt(p * (1 - p) / double(n)))
          << "bin " << b;
    }
  }
}
