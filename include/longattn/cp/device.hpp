#pragma once
// Where a rank's tensors live and the few elementwise operations the context-parallel algorithms
// need besides attention and communication: copies (also strided, for the Ulysses re-layouts),
// fp32 accumulation, dtype conversion and the online merge of partial attention outputs.
//
// Two implementations: the CPU device (host memory, fp32 only, synchronous) and the CUDA device
// (one compute stream; everything is enqueued on it). Communicators that need to order their own
// streams against the compute stream ask the device for it (stream()).
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "longattn/cp/row_set.hpp"
#include "longattn/cp/tensor.hpp"
#include "longattn/range.hpp"

struct CUstream_st;

namespace longattn::cp {

using Stream = CUstream_st*;

// A block of `rows` rows, `row_elems` elements each, at element `offset` of a tensor whose rows
// start every `pitch` elements.
struct Rows {
  TensorRef t;
  std::size_t offset = 0;
  std::size_t pitch = 0;
};

// Measures the time of what is enqueued between start() and stop() (CUDA events on a GPU, the
// steady clock on the CPU).
class Stopwatch {
 public:
  virtual ~Stopwatch() = default;
  virtual void start() = 0;
  virtual void stop() = 0;
  virtual double elapsed_ms() = 0;  // waits for stop() to be reached
};

class Device;

// Where one call's time goes, step by step, for the record (not its timing): between begin() and
// end(), mark(label) closes a step, the device work enqueued since the previous mark, under
// `label`. end() waits for the work and returns each label's total time in the order the labels
// first came. Outside a trace mark() does nothing, so the algorithms mark their steps always.
struct TracedStep {
  std::string label;
  double ms = 0;
};

class StepTrace {
 public:
  StepTrace();
  ~StepTrace();
  void begin(Device& device);
  void mark(std::string_view label);
  std::vector<TracedStep> end();

 private:
  Device* device_ = nullptr;
  std::unique_ptr<Stopwatch> open_;
  std::vector<std::pair<std::string, std::unique_ptr<Stopwatch>>> closed_;
};

struct MemoryUse {
  std::size_t allocated = 0;       // bytes currently allocated through this device
  std::size_t peak_allocated = 0;  // since the last reset_peak()
};

class Device {
 public:
  virtual ~Device() = default;
  virtual std::string name() const = 0;
  virtual bool gpu() const = 0;
  virtual Stream stream() const { return nullptr; }  // the compute stream (null on the CPU)

  // Uninitialised memory; throws bench::OutOfMemory when the device has none left.
  virtual Buffer allocate(std::size_t count, DType dtype) = 0;
  // Host fp32 <-> device tensor of any dtype (rounded to nearest even); synchronous.
  virtual void upload(TensorRef dst, std::span<const float> src) = 0;
  virtual void download(std::span<float> dst, TensorRef src) = 0;

  virtual void fill(TensorRef t, float value) = 0;
  // dst = src, converting the dtype when they differ; counts must match.
  virtual void convert(TensorRef dst, TensorRef src) = 0;
  // dst rows = src rows (same dtype), or dst rows += src rows when `accumulate` (dst fp32).
  virtual void copy_rows(Rows dst, Rows src, std::size_t row_elems, std::size_t rows,
                         bool accumulate) = 0;
  // acc += x elementwise; acc is fp32, x any dtype of the same count.
  virtual void add(TensorRef acc, TensorRef x) = 0;

  // Online softmax merge of one partial result into fp32 accumulators:
  //   lse = log(exp(lse_acc) + exp(lse_step)),
  //   o_acc = o_acc * exp(lse_acc - lse) + o_step * exp(lse_step - lse)
  // o_* are [rows][heads][dim], lse_* are [heads][rows]; a row whose lse_step is -inf is left
  // unchanged, and one whose both are -inf stays (0, -inf).
  virtual void merge(TensorRef o_acc, TensorRef lse_acc, TensorRef o_step, TensorRef lse_step,
                     Index rows, int heads, int dim) = 0;

  // The same operations restricted to the rows of `rows` (of tensors with rows.extent() rows);
  // the other rows are left as they are. For merge, LSEs are [heads][extent]; with `first` the
  // accumulators' rows are taken as empty (0, -inf) whatever they hold, so the step is written
  // into them as a merge into nothing gives it.
  virtual RowSet row_set(std::vector<Range> ranges, Index extent) = 0;
  virtual void fill(TensorRef t, float value, const RowSet& rows) = 0;
  virtual void convert(TensorRef dst, TensorRef src, const RowSet& rows) = 0;
  virtual void add(TensorRef acc, TensorRef x, const RowSet& rows) = 0;
  virtual void merge(TensorRef o_acc, TensorRef lse_acc, TensorRef o_step, TensorRef lse_step,
                     int heads, int dim, const RowSet& rows, bool first) = 0;

  // Waits for everything enqueued. On a GPU it gives up after the device's timeout with a clear
  // error (a communication that never completes means a peer hung or disagrees on the work).
  virtual void synchronize() = 0;
  // Evicts caches between repetitions (the GPU's L2); nothing on the CPU.
  virtual void flush_caches() {}

  virtual std::unique_ptr<Stopwatch> stopwatch() = 0;
  StepTrace& trace() { return trace_; }
  virtual MemoryUse memory() const = 0;
  virtual void reset_peak() = 0;
  // Device-wide used bytes as the driver reports them (sees every allocation, ours or a
  // library's); nullopt-like 0 on the CPU, where memory() is the measure.
  virtual std::size_t device_used_bytes() const { return 0; }

 private:
  StepTrace trace_;
};

std::unique_ptr<Device> make_cpu_device();
// The CUDA device `index` (ranks pick theirs from their node-local rank). Throws InputError in a
// build without CUDA or when no such device exists. timeout_s bounds every synchronisation.
std::unique_ptr<Device> make_cuda_device(int index, double timeout_s);

}  // namespace longattn::cp
