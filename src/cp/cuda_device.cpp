// The CUDA device: one non-blocking compute stream on which every operation is enqueued; memory
// from cudaMalloc (counted); synchronisations bounded by the timeout (cuda_watch.hpp).
#include <cuda_runtime.h>
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <thread>
#include <vector>

#include "cuda_ops.hpp"
#include "cuda_watch.hpp"
#include "longattn/bench/backend.hpp"
#include "longattn/cp/communicator.hpp"
#include "longattn/cp/device.hpp"
#include "longattn/error.hpp"

namespace longattn::cp {

namespace detail {

void check_cuda(cudaError_t e, std::string_view what) {
  if (e == cudaSuccess) return;
  (void)cudaGetLastError();
  const std::string msg = fmt::format("{}: {}", what, cudaGetErrorString(e));
  if (e == cudaErrorMemoryAllocation) throw bench::OutOfMemory(msg);
  throw std::runtime_error(msg);
}

namespace {
template <class Query>
void wait_until(Query&& query, double timeout_s, std::string_view what) {
  using clock = std::chrono::steady_clock;
  const auto deadline = clock::now() + std::chrono::duration<double>(timeout_s);
  auto nap = std::chrono::microseconds(2);
  for (;;) {
    const cudaError_t e = query();
    if (e == cudaSuccess) return;
    if (e != cudaErrorNotReady) {
      abort_comms();
      check_cuda(e, what);
    }
    if (std::string err = comm_error(); !err.empty()) {
      abort_comms();
      throw CommError(fmt::format("{}: NCCL reported an error: {}", what, err));
    }
    if (clock::now() > deadline) {
      abort_comms();
      throw CommError(fmt::format(
          "{} did not complete within {} s: a peer is hung or dead, or the ranks run different "
          "configurations; the NCCL communicators were aborted",
          what, timeout_s));
    }
    std::this_thread::sleep_for(nap);
    nap = std::min(nap * 2, std::chrono::microseconds(500));
  }
}
}  // namespace

void wait_stream(cudaStream_t s, double timeout_s, std::string_view what) {
  wait_until([&] { return cudaStreamQuery(s); }, timeout_s, what);
}
void wait_event(cudaEvent_t e, double timeout_s, std::string_view what) {
  wait_until([&] { return cudaEventQuery(e); }, timeout_s, what);
}

}  // namespace detail

namespace {

using detail::check_cuda;

class CudaStopwatch final : public Stopwatch {
 public:
  CudaStopwatch(cudaStream_t s, double timeout_s, int rank) : s_(s), timeout_s_(timeout_s), rank_(rank) {
    check_cuda(cudaEventCreate(&a_), "cudaEventCreate");
    check_cuda(cudaEventCreate(&b_), "cudaEventCreate");
  }
  ~CudaStopwatch() override {
    cudaEventDestroy(a_);
    cudaEventDestroy(b_);
  }
  void start() override { check_cuda(cudaEventRecord(a_, s_), "cudaEventRecord"); }
  void stop() override { check_cuda(cudaEventRecord(b_, s_), "cudaEventRecord"); }
  double elapsed_ms() override {
    detail::wait_event(b_, timeout_s_, fmt::format("cuda:{}: the timed call", rank_));
    float ms = 0;
    check_cuda(cudaEventElapsedTime(&ms, a_, b_), "cudaEventElapsedTime");
    return ms;
  }

 private:
  cudaStream_t s_;
  cudaEvent_t a_ = nullptr, b_ = nullptr;
  double timeout_s_;
  int rank_;
};

class CudaDevice final : public Device {
 public:
  CudaDevice(int index, double timeout_s) : index_(index), timeout_s_(timeout_s) {
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0)
      throw InputError("no CUDA device is visible to this process");
    if (index < 0 || index >= count)
      throw InputError(fmt::format("this host's rank {} has no GPU: {} visible (start at most one "
                                   "rank per GPU)",
                                   index, count));
    check_cuda(cudaSetDevice(index), "cudaSetDevice");
    check_cuda(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate");
    int l2 = 0;
    cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, index);
    flush_bytes_ = std::size_t(std::max(l2, 1 << 20)) * 2;
    check_cuda(cudaMalloc(&flush_, flush_bytes_), "cudaMalloc (L2 flush buffer)");
    cudaDeviceProp prop{};
    cudaGetDeviceProperties(&prop, index);
    name_ = prop.name;
  }
  ~CudaDevice() override {
    cudaStreamSynchronize(stream_);
    cudaFree(flush_);
    cudaStreamDestroy(stream_);
  }

  std::string name() const override { return fmt::format("cuda:{} {}", index_, name_); }
  bool gpu() const override { return true; }
  Stream stream() const override { return stream_; }

  Buffer allocate(std::size_t count, DType dtype) override {
    const std::size_t bytes = std::max<std::size_t>(count, 1) * element_size(dtype);
    void* p = nullptr;
    check_cuda(cudaMalloc(&p, bytes), fmt::format("cudaMalloc of {} bytes", bytes));
    mem_.allocated += bytes;
    mem_.peak_allocated = std::max(mem_.peak_allocated, mem_.allocated);
    return Buffer({p, count, dtype}, [this, bytes](void* q) {
      cudaFree(q);
      mem_.allocated -= bytes;
    });
  }

  // Through an fp32 staging buffer on the device, converted there (the same rounding as every
  // other conversion).
  void upload(TensorRef dst, std::span<const float> src) override {
    if (src.size() != dst.count) throw std::logic_error("upload: size mismatch");
    if (dst.dtype == DType::fp32) {
      check_cuda(cudaMemcpyAsync(dst.data, src.data(), dst.bytes(), cudaMemcpyHostToDevice, stream_),
                 "upload");
      return synchronize();
    }
    Buffer tmp = allocate(src.size(), DType::fp32);
    check_cuda(cudaMemcpyAsync(tmp.ref().data, src.data(), src.size() * 4, cudaMemcpyHostToDevice,
                               stream_),
               "upload");
    convert(dst, tmp);
    synchronize();
  }

  void download(std::span<float> dst, TensorRef src) override {
    if (dst.size() != src.count) throw std::logic_error("download: size mismatch");
    Buffer tmp;
    TensorRef from = src;
    if (src.dtype != DType::fp32) {
      tmp = allocate(src.count, DType::fp32);
      convert(tmp, src);
      from = tmp;
    }
    check_cuda(cudaMemcpyAsync(dst.data(), from.data, dst.size() * 4, cudaMemcpyDeviceToHost, stream_),
               "download");
    synchronize();
  }

  void fill(TensorRef t, float value) override {
    if (value == 0.f) {
      check_cuda(cudaMemsetAsync(t.data, 0, t.bytes(), stream_), "cudaMemsetAsync");
      return;
    }
    cuda::fill(t.data, t.dtype, t.count, value, stream_);
  }

  void convert(TensorRef dst, TensorRef src) override {
    if (dst.count != src.count) throw std::logic_error("convert: size mismatch");
    if (dst.data == src.data && dst.dtype == src.dtype) return;
    if (dst.dtype == src.dtype) {
      check_cuda(cudaMemcpyAsync(dst.data, src.data, src.bytes(), cudaMemcpyDeviceToDevice, stream_),
                 "cudaMemcpyAsync");
      return;
    }
    cuda::convert(dst.data, dst.dtype, src.data, src.dtype, src.count, stream_);
  }

  void copy_rows(Rows dst, Rows src, std::size_t row_elems, std::size_t rows,
                 bool accumulate) override {
    auto fits = [&](const Rows& r) {
      return rows == 0 || r.offset + (rows - 1) * r.pitch + row_elems <= r.t.count;
    };
    if (!fits(dst) || !fits(src)) throw std::out_of_range("copy_rows: rows outside the tensor");
    if (rows == 0 || row_elems == 0) return;
    if (accumulate) {
      if (dst.t.dtype != DType::fp32) throw std::logic_error("copy_rows: accumulate into fp32 only");
      cuda::add_rows(dst.t.f32() + dst.offset, dst.pitch,
                     static_cast<const char*>(src.t.data) + src.offset * element_size(src.t.dtype),
                     src.t.dtype, src.pitch, row_elems, rows, stream_);
      return;
    }
    if (dst.t.dtype != src.t.dtype) throw std::logic_error("copy_rows: dtypes differ");
    const std::size_t e = element_size(dst.t.dtype);
    check_cuda(cudaMemcpy2DAsync(static_cast<char*>(dst.t.data) + dst.offset * e, dst.pitch * e,
                                 static_cast<const char*>(src.t.data) + src.offset * e,
                                 src.pitch * e, row_elems * e, rows, cudaMemcpyDeviceToDevice,
                                 stream_),
               "cudaMemcpy2DAsync");
  }

  void add(TensorRef acc, TensorRef x) override {
    if (acc.count != x.count) throw std::logic_error("add: size mismatch");
    cuda::add(acc.f32(), x.data, x.dtype, x.count, stream_);
  }

  void merge(TensorRef o_acc, TensorRef lse_acc, TensorRef o_step, TensorRef lse_step, Index rows,
             int heads, int dim) override {
    const std::size_t n = std::size_t(rows) * heads;
    if (lse_acc.count != n || lse_step.count != n || o_acc.count != n * dim ||
        o_step.count != n * dim)
      throw std::logic_error("merge: tensor sizes do not match rows x heads x dim");
    cuda::merge(o_acc.f32(), lse_acc.f32(), o_step.data, o_step.dtype, lse_step.f32(), rows, heads,
                dim, stream_);
  }

  // The device copy: begins[count], then starts[count + 1], as 64-bit integers (in a buffer of
  // fp32 elements, two per integer, so that it is counted like every other allocation).
  RowSet row_set(std::vector<Range> ranges, Index extent) override {
    RowSet host(std::move(ranges), extent);
    const auto list = host.ranges();
    std::vector<long long> words(2 * list.size() + 1);
    long long rows = 0;
    for (std::size_t i = 0; i < list.size(); ++i) {
      words[i] = list[i].begin;
      words[list.size() + i] = rows;
      rows += list[i].size();
    }
    words.back() = rows;
    Buffer copy = allocate(2 * words.size(), DType::fp32);
    check_cuda(cudaMemcpyAsync(copy.ref().data, words.data(), words.size() * sizeof(long long),
                               cudaMemcpyHostToDevice, stream_),
               "row set upload");
    synchronize();
    return RowSet({list.begin(), list.end()}, extent, std::move(copy));
  }

  void fill(TensorRef t, float value, const RowSet& rows) override {
    cuda::fill(t.data, t.dtype, rows.row_elems(t), value, list(rows), stream_);
  }

  void convert(TensorRef dst, TensorRef src, const RowSet& rows) override {
    if (dst.count != src.count) throw std::logic_error("convert: size mismatch");
    if (dst.data == src.data && dst.dtype == src.dtype) return;
    cuda::convert(dst.data, dst.dtype, src.data, src.dtype, rows.row_elems(dst), list(rows),
                  stream_);
  }

  void add(TensorRef acc, TensorRef x, const RowSet& rows) override {
    if (acc.count != x.count) throw std::logic_error("add: size mismatch");
    cuda::add(acc.f32(), x.data, x.dtype, rows.row_elems(acc), list(rows), stream_);
  }

  void merge(TensorRef o_acc, TensorRef lse_acc, TensorRef o_step, TensorRef lse_step, int heads,
             int dim, const RowSet& rows, bool first) override {
    const std::size_t n = std::size_t(rows.extent()) * heads;
    if (lse_acc.count != n || lse_step.count != n || o_acc.count != n * dim ||
        o_step.count != n * dim)
      throw std::logic_error("merge: tensor sizes do not match rows x heads x dim");
    cuda::merge(o_acc.f32(), lse_acc.f32(), o_step.data, o_step.dtype, lse_step.f32(), heads, dim,
                list(rows), first, stream_);
  }

  void synchronize() override {
    detail::wait_stream(stream_, timeout_s_, fmt::format("cuda:{}: device work", index_));
  }

  void flush_caches() override {
    check_cuda(cudaMemsetAsync(flush_, flip_ ^= 1, flush_bytes_, stream_), "L2 flush");
  }

  std::unique_ptr<Stopwatch> stopwatch() override {
    return std::make_unique<CudaStopwatch>(stream_, timeout_s_, index_);
  }
  MemoryUse memory() const override { return mem_; }
  void reset_peak() override { mem_.peak_allocated = mem_.allocated; }
  std::size_t device_used_bytes() const override {
    std::size_t free = 0, total = 0;
    if (cudaMemGetInfo(&free, &total) != cudaSuccess) return 0;
    return total - free;
  }

 private:
  static cuda::RowList list(const RowSet& rows) {
    if (rows.empty()) return {};
    if (!rows.device_copy().data)
      throw std::logic_error("a row set made by another device (make it with row_set())");
    const auto* words = static_cast<const long long*>(rows.device_copy().data);
    const int n = int(rows.ranges().size());
    return {words, words + n, n, rows.rows(), rows.extent()};
  }

  int index_;
  double timeout_s_;
  std::string name_;
  cudaStream_t stream_ = nullptr;
  void* flush_ = nullptr;
  std::size_t flush_bytes_ = 0;
  int flip_ = 0;
  MemoryUse mem_;
};

}  // namespace

std::unique_ptr<Device> make_cuda_device(int index, double timeout_s) {
  return std::make_unique<CudaDevice>(index, timeout_s);
}

}  // namespace longattn::cp
