// The host executor: cpu backends run synchronously, timed with the steady clock; "L2 flush"
// overwrites a 64 MiB buffer (larger than the last-level cache of common CPUs) between calls.
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <new>

#include "executor.hpp"

namespace longattn::bench {
namespace {

class HostExecutor final : public Executor {
 public:
  Device device() const override { return Device::cpu; }
  Stream stream() const override { return nullptr; }

  void* allocate(std::size_t bytes) override {
    void* p = std::malloc(bytes == 0 ? 1 : bytes);
    if (!p) throw OutOfMemory("host allocation of " + std::to_string(bytes) + " bytes failed");
    return p;
  }
  void release(void* p) noexcept override { std::free(p); }
  void upload(void* dst, const void* src, std::size_t bytes) override { std::memcpy(dst, src, bytes); }
  void download(void* dst, const void* src, std::size_t bytes) override { std::memcpy(dst, src, bytes); }
  void fill(void* dst, unsigned char byte, std::size_t bytes) override { std::memset(dst, byte, bytes); }
  void synchronize() override {}

  std::vector<double> time(const std::function<void(Stream)>& body, const TimingOptions& opt) override {
    using Clock = std::chrono::steady_clock;
    auto timed = [&] {
      if (opt.l2_flush) flush();
      const auto t0 = Clock::now();
      body(nullptr);
      return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    };
    double estimate = 0;
    for (int i = 0; i < opt.warmup; ++i) {
      const double ms = timed();
      estimate = i == 0 ? ms : std::min(estimate, ms);
    }
    std::vector<double> out(std::size_t(planned_reps(estimate, opt)));
    for (double& ms : out) ms = timed();
    return out;
  }

 private:
  void flush() {
    if (flush_.empty()) flush_.resize(std::size_t(64) << 20);
    ++flush_value_;
    std::memset(flush_.data(), flush_value_, flush_.size());
  }
  std::vector<unsigned char> flush_;
  unsigned char flush_value_ = 0;
};

}  // namespace

std::unique_ptr<Executor> make_host_executor() { return std::make_unique<HostExecutor>(); }

}  // namespace longattn::bench

#ifndef LONGATTN_WITH_CUDA
#include <stdexcept>
namespace longattn::bench {
std::unique_ptr<Executor> make_gpu_executor() {
  throw std::runtime_error("this longattn was built without CUDA (LONGATTN_CUDA=OFF)");
}
void reset_gpu_device() noexcept {}
}  // namespace longattn::bench
#endif
