#pragma once
// Where a case's tensors live and how its phases are timed: the host (cpu backends, host clock)
// or a CUDA device (events, L2 flush, device-wide memory polling). Internal to the harness.
#include <cstddef>
#include <functional>
#include <memory>
#include <stdexcept>
#include <vector>

#include "longattn/bench/backend.hpp"
#include "longattn/bench/timing.hpp"

namespace longattn::bench {

// A sticky device error (illegal address, launch failure): the context is unusable until reset.
struct DeviceFault : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class Executor {
 public:
  virtual ~Executor() = default;
  virtual Device device() const = 0;
  virtual Stream stream() const = 0;

  virtual void* allocate(std::size_t bytes) = 0;  // throws OutOfMemory
  virtual void release(void* p) noexcept = 0;
  virtual void upload(void* dst, const void* src, std::size_t bytes) = 0;
  virtual void download(void* dst, const void* src, std::size_t bytes) = 0;
  virtual void fill(void* dst, unsigned char byte, std::size_t bytes) = 0;
  // Waits for all enqueued work; throws OutOfMemory, DeviceFault or std::runtime_error.
  virtual void synchronize() = 0;

  // opt.warmup untimed calls (each after an L2 flush when enabled), then planned_reps() timed
  // calls; returns each timed call's milliseconds. Only `body` is inside the timed region.
  virtual std::vector<double> time(const std::function<void(Stream)>& body,
                                   const TimingOptions& opt) = 0;

  // Peak memory (see memory.hpp). begin_case takes the baseline; phase_peak_gib returns the peak
  // above it since the previous call (or begin_case). Without a measurement: negative.
  virtual void begin_case() {}
  virtual double phase_peak_gib() { return -1; }
  virtual void end_case() {}
  virtual void pause_polling() {}
  virtual void resume_polling() {}
};

std::unique_ptr<Executor> make_host_executor();
// Throws std::runtime_error when this build has no CUDA or no device is usable.
std::unique_ptr<Executor> make_gpu_executor();
// After a DeviceFault: resets the device (every handle and allocation on it is gone).
void reset_gpu_device() noexcept;

// Frees what it allocated on scope exit, so a failing case leaks nothing into the next.
class DeviceBuffers {
 public:
  explicit DeviceBuffers(Executor& e) : exec_(e) {}
  ~DeviceBuffers() { release_all(); }
  DeviceBuffers(const DeviceBuffers&) = delete;
  DeviceBuffers& operator=(const DeviceBuffers&) = delete;
  void* allocate(std::size_t bytes) {
    void* p = exec_.allocate(bytes);
    owned_.push_back(p);
    return p;
  }
  void release_all() noexcept {
    for (void* p : owned_) exec_.release(p);
    owned_.clear();
  }

 private:
  Executor& exec_;
  std::vector<void*> owned_;
};

}  // namespace longattn::bench
