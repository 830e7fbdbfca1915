#pragma once
// A minimal parallel loop for the harness's host work (inputs, checks): [0, n) split into
// contiguous chunks over the hardware threads.
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace longattn::bench {

template <class F>  // f(begin, end)
void parallel_chunks(std::int64_t n, F&& f, int threads = 0) {
  if (threads <= 0) threads = int(std::max(1u, std::thread::hardware_concurrency()));
  threads = int(std::min<std::int64_t>(threads, std::max<std::int64_t>(1, n)));
  if (threads == 1) {
    f(std::int64_t(0), n);
    return;
  }
  std::vector<std::thread> pool;
  std::exception_ptr error;
  std::mutex mu;
  const std::int64_t chunk = (n + threads - 1) / threads;
  for (int t = 0; t < threads; ++t) {
    const std::int64_t b = t * chunk, e = std::min(n, b + chunk);
    if (b >= e) break;
    pool.emplace_back([&, b, e] {
      try {
        f(b, e);
      } catch (...) {
        std::lock_guard lock(mu);
        if (!error) error = std::current_exception();
      }
    });
  }
  for (auto& th : pool) th.join();
  if (error) std::rethrow_exception(error);
}

// Dynamic scheduling in fixed-size pieces, for loops with uneven work per index (masked rows).
template <class F>  // f(index)
void parallel_for(std::int64_t n, F&& f, int threads = 0) {
  if (threads <= 0) threads = int(std::max(1u, std::thread::hardware_concurrency()));
  threads = int(std::min<std::int64_t>(threads, std::max<std::int64_t>(1, n)));
  std::atomic<std::int64_t> next{0};
  parallel_chunks(threads, [&](std::int64_t, std::int64_t) {
    for (std::int64_t i; (i = next.fetch_add(1)) < n;) f(i);
  }, threads);
}

}  // namespace longattn::bench
