#include "longattn/bench/timing.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "longattn/error.hpp"

namespace longattn::bench {

void validate(const TimingOptions& o) {
  if (o.warmup < 1) throw InputError(fmt::format("warm-up must be at least 1 call, got {}", o.warmup));
  if (o.min_reps < 1) throw InputError(fmt::format("--min-reps must be at least 1, got {}", o.min_reps));
  if (o.max_reps < o.min_reps)
    throw InputError(fmt::format("--reps ({}) must be at least --min-reps ({})", o.max_reps, o.min_reps));
  if (!(o.time_budget_s >= 0) || !std::isfinite(o.time_budget_s))
    throw InputError(fmt::format("--time-budget must be a non-negative number of seconds, got {}",
                                 o.time_budget_s));
}

int planned_reps(double estimate_ms, const TimingOptions& o) {
  if (!(estimate_ms > 0)) return o.max_reps;  // too short to see: as many as allowed
  const double fit = o.time_budget_s * 1000.0 / estimate_ms;
  if (fit >= o.max_reps) return o.max_reps;
  return std::max(o.min_reps, int(fit));
}

double quantile(std::span<const double> sorted, double q) {
  if (sorted.empty()) throw InputError("quantile of no samples");
  if (!(q >= 0 && q <= 1)) throw InputError(fmt::format("quantile {} is outside [0, 1]", q));
  const double pos = q * double(sorted.size() - 1);
  const std::size_t lo = std::size_t(std::floor(pos));
  const std::size_t hi = std::min(lo + 1, sorted.size() - 1);
  return sorted[lo] + (pos - double(lo)) * (sorted[hi] - sorted[lo]);
}

TimingSummary summarize(std::vector<double> samples) {
  if (samples.empty()) throw InputError("no timing samples to summarise");
  std::sort(samples.begin(), samples.end());
  TimingSummary s;
  s.reps = int(samples.size());
  s.median_ms = quantile(samples, 0.5);
  s.p20_ms = quantile(samples, 0.2);
  s.p80_ms = quantile(samples, 0.8);
  s.min_ms = samples.front();
  s.max_ms = samples.back();
  s.mean_ms = std::accumulate(samples.begin(), samples.end(), 0.0) / double(samples.size());
  return s;
}

}  // namespace longattn::bench
