// The CUDA executor: the timing and memory contract of DESIGN.md section 5.
//  - Time: a pair of events around each call of the body only; the L2 flush (cudaMemsetAsync over
//    a buffer of 2x the L2 size, made before the case's baseline) is enqueued before the start
//    event. All repetitions are enqueued back to back with no host synchronisation between them;
//    the flush in front of each gives the host a head start, so launches are not starved.
//  - Memory: see memory.hpp.
#include <cuda_runtime.h>
#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "executor.hpp"
#include "longattn/bench/memory.hpp"

namespace longattn::bench {
namespace {

[[noreturn]] void throw_cuda(cudaError_t e, const char* what) {
  const std::string msg = fmt::format("{}: {} ({})", what, cudaGetErrorString(e), cudaGetErrorName(e));
  if (e == cudaErrorMemoryAllocation) throw OutOfMemory(msg);
  // Errors that leave the context unusable: only a reset recovers.
  switch (e) {
    case cudaErrorIllegalAddress:
    case cudaErrorLaunchFailure:
    case cudaErrorIllegalInstruction:
    case cudaErrorMisalignedAddress:
    case cudaErrorInvalidAddressSpace:
    case cudaErrorInvalidPc:
    case cudaErrorHardwareStackError:
    case cudaErrorAssert:
    case cudaErrorLaunchTimeout:
    case cudaErrorECCUncorrectable:
    case cudaErrorUnknown:
      throw DeviceFault(msg);
    default:
      throw std::runtime_error(msg);
  }
}

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) {
    (void)cudaGetLastError();  // clear a non-sticky error so the next case starts clean
    throw_cuda(e, what);
  }
}

std::size_t used_bytes() {
  std::size_t free = 0, total = 0;
  if (cudaMemGetInfo(&free, &total) != cudaSuccess) return 0;
  return total - free;
}

// Polls device-wide used memory on its own thread and keeps the maximum.
class MemoryPoller {
 public:
  explicit MemoryPoller(int device) : device_(device), thread_([this] { loop(); }) {}
  ~MemoryPoller() {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
      active_ = false;
    }
    cv_.notify_all();
    thread_.join();
  }
  void sample() { bump(used_bytes()); }
  void set_active(bool on) {
    {
      std::lock_guard lock(mu_);
      active_ = on;
    }
    cv_.notify_all();
  }
  std::size_t take_max() { return max_.exchange(0); }

 private:
  void bump(std::size_t v) {
    std::size_t cur = max_.load();
    while (v > cur && !max_.compare_exchange_weak(cur, v)) {
    }
  }
  void loop() {
    cudaSetDevice(device_);
    std::unique_lock lock(mu_);
    while (!stop_) {
      cv_.wait(lock, [this] { return stop_ || active_; });
      while (active_ && !stop_) {
        lock.unlock();
        bump(used_bytes());
        std::this_thread::sleep_for(std::chrono::microseconds(50));
        lock.lock();
      }
    }
  }
  int device_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  bool active_ = false;
  std::atomic<std::size_t> max_{0};
  std::thread thread_;
};

class GpuExecutor final : public Executor {
 public:
  GpuExecutor() {
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
      (void)cudaGetLastError();
      throw std::runtime_error("no CUDA device is available");
    }
    check(cudaGetDevice(&device_), "cudaGetDevice");
    check(cudaFree(nullptr), "CUDA context creation");
    check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate");
    int l2 = 0;
    check(cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, device_), "L2 size query");
    flush_bytes_ = std::max<std::size_t>(2 * std::size_t(l2), std::size_t(32) << 20);
    check(cudaMalloc(&flush_, flush_bytes_), "L2 flush buffer");
    poller_ = std::make_unique<MemoryPoller>(device_);
  }
  ~GpuExecutor() override {
    poller_.reset();
    for (auto& [a, b] : events_) {
      cudaEventDestroy(a);
      cudaEventDestroy(b);
    }
    cudaFree(flush_);
    cudaStreamDestroy(stream_);
  }

  Device device() const override { return Device::gpu; }
  Stream stream() const override { return stream_; }

  void* allocate(std::size_t bytes) override {
    void* p = nullptr;
    check(cudaMalloc(&p, bytes == 0 ? 1 : bytes), "cudaMalloc");
    poller_->sample();
    return p;
  }
  void release(void* p) noexcept override { cudaFree(p); }
  void upload(void* dst, const void* src, std::size_t bytes) override {
    check(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice), "upload");
  }
  void download(void* dst, const void* src, std::size_t bytes) override {
    check(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost), "download");
  }
  void fill(void* dst, unsigned char byte, std::size_t bytes) override {
    check(cudaMemsetAsync(dst, byte, bytes, stream_), "cudaMemsetAsync");
  }
  void synchronize() override {
    check(cudaStreamSynchronize(stream_), "stream synchronize");
    check(cudaGetLastError(), "asynchronous error");
  }

  std::vector<double> time(const std::function<void(Stream)>& body, const TimingOptions& opt) override {
    // Warm-up: module loading, handle and plan set-up, clocks; also sizes the rep count.
    ensure_events(std::size_t(std::max(opt.warmup, opt.max_reps)));
    for (int i = 0; i < opt.warmup; ++i) enqueue(body, opt, std::size_t(i));
    synchronize();
    double estimate = 0;
    for (int i = 0; i < opt.warmup; ++i) {
      const double ms = elapsed(std::size_t(i));
      estimate = i == 0 ? ms : std::min(estimate, ms);
    }
    const int reps = planned_reps(estimate, opt);
    poller_->sample();
    poller_->set_active(false);  // nothing else runs on the host while we measure
    for (int i = 0; i < reps; ++i) enqueue(body, opt, std::size_t(i));
    try {
      synchronize();
    } catch (...) {
      poller_->set_active(true);
      throw;
    }
    poller_->set_active(true);
    poller_->sample();
    std::vector<double> out(std::size_t(reps), 0.0);
    for (int i = 0; i < reps; ++i) out[std::size_t(i)] = elapsed(std::size_t(i));
    return out;
  }

  void begin_case() override {
    synchronize();
    baseline_ = used_bytes();
    poller_->take_max();
    poller_->sample();
    poller_->set_active(true);
  }
  double phase_peak_gib() override {
    poller_->sample();
    const std::size_t peak = poller_->take_max();
    poller_->sample();  // the next phase starts from what is held now
    return peak > baseline_ ? double(peak - baseline_) / kGiB : 0.0;
  }
  void end_case() override { poller_->set_active(false); }
  void pause_polling() override { poller_->set_active(false); }
  void resume_polling() override { poller_->set_active(true); }

 private:
  void ensure_events(std::size_t n) {
    while (events_.size() < n) {
      cudaEvent_t a, b;
      check(cudaEventCreate(&a), "cudaEventCreate");
      check(cudaEventCreate(&b), "cudaEventCreate");
      events_.emplace_back(a, b);
    }
  }
  void enqueue(const std::function<void(Stream)>& body, const TimingOptions& opt, std::size_t i) {
    if (opt.l2_flush) {
      ++flush_value_;
      check(cudaMemsetAsync(flush_, flush_value_, flush_bytes_, stream_), "L2 flush");
    }
    check(cudaEventRecord(events_[i].first, stream_), "cudaEventRecord");
    body(stream_);
    check(cudaEventRecord(events_[i].second, stream_), "cudaEventRecord");
  }
  double elapsed(std::size_t i) {
    float ms = 0;
    check(cudaEventElapsedTime(&ms, events_[i].first, events_[i].second), "cudaEventElapsedTime");
    return double(ms);
  }

  int device_ = 0;
  cudaStream_t stream_ = nullptr;
  void* flush_ = nullptr;
  std::size_t flush_bytes_ = 0;
  unsigned char flush_value_ = 0;
  std::size_t baseline_ = 0;
  std::vector<std::pair<cudaEvent_t, cudaEvent_t>> events_;
  std::unique_ptr<MemoryPoller> poller_;
};

}  // namespace

std::unique_ptr<Executor> make_gpu_executor() { return std::make_unique<GpuExecutor>(); }

void reset_gpu_device() noexcept {
  cudaDeviceReset();
  (void)cudaGetLastError();
}

}  // namespace longattn::bench
