#pragma once
// Repetition policy and order statistics of a timed phase (DESIGN.md section 5): warm-up, at
// least min_reps repetitions, more for short cases up to a time budget, median / p20 / p80.
#include <span>
#include <vector>

namespace longattn::bench {

struct TimingOptions {
  int warmup = 2;              // untimed calls before the timed ones (also sizes the rep count)
  int min_reps = 20;
  int max_reps = 1000;
  double time_budget_s = 0.5;  // per timed phase: reps = clamp(budget / estimate, min, max)
  bool l2_flush = true;        // overwrite a buffer of 2x the L2 size before every repetition
};
// Throws InputError naming the bad field (min_reps < 1, max_reps < min_reps, negative budget...).
void validate(const TimingOptions& o);

// Repetitions to run given one call's estimated time in milliseconds.
int planned_reps(double estimate_ms, const TimingOptions& o);

struct TimingSummary {
  int reps = 0;
  double median_ms = 0;
  double p20_ms = 0;
  double p80_ms = 0;
  double min_ms = 0;
  double max_ms = 0;
  double mean_ms = 0;
};

// q-quantile (q in [0, 1]) of sorted samples, interpolating linearly between closest ranks (the
// numpy default). Throws InputError when empty or q is outside [0, 1].
double quantile(std::span<const double> sorted, double q);
TimingSummary summarize(std::vector<double> samples_ms);  // throws InputError when empty

}  // namespace longattn::bench
