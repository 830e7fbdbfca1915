// The CPU device: host memory, fp32 only, every operation done on return.
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <limits>
#include <new>

#include "longattn/bench/backend.hpp"
#include "longattn/cp/device.hpp"
#include "longattn/error.hpp"

namespace longattn::cp {

namespace {

void need_f32(TensorRef t, const char* what) {
  if (t.dtype != DType::fp32)
    throw InputError(fmt::format("the cpu device holds fp32 tensors only ({} is {})", what,
                                 bench::to_string(t.dtype)));
}

void same_count(TensorRef a, TensorRef b, const char* what) {
  if (a.count != b.count)
    throw std::logic_error(fmt::format("{}: {} vs {} elements", what, a.count, b.count));
}

class CpuStopwatch final : public Stopwatch {
 public:
  void start() override { t0_ = std::chrono::steady_clock::now(); }
  void stop() override { t1_ = std::chrono::steady_clock::now(); }
  double elapsed_ms() override {
    return std::chrono::duration<double, std::milli>(t1_ - t0_).count();
  }

 private:
  std::chrono::steady_clock::time_point t0_, t1_;
};

class CpuDevice final : public Device {
 public:
  std::string name() const override { return "cpu"; }
  bool gpu() const override { return false; }

  Buffer allocate(std::size_t count, DType dtype) override {
    if (dtype != DType::fp32)
      throw InputError(fmt::format("the cpu device holds fp32 tensors only, not {}",
                                   bench::to_string(dtype)));
    const std::size_t bytes = std::max<std::size_t>(count, 1) * element_size(dtype);
    void* p = ::operator new(bytes, std::nothrow);
    if (!p) throw bench::OutOfMemory(fmt::format("cpu: {} bytes", bytes));
    mem_.allocated += bytes;
    mem_.peak_allocated = std::max(mem_.peak_allocated, mem_.allocated);
    return Buffer({p, count, dtype}, [this, bytes](void* q) {
      ::operator delete(q);
      mem_.allocated -= bytes;
    });
  }

  void upload(TensorRef dst, std::span<const float> src) override {
    need_f32(dst, "upload");
    if (src.size() != dst.count) throw std::logic_error("upload: size mismatch");
    std::copy(src.begin(), src.end(), dst.f32());
  }

  void download(std::span<float> dst, TensorRef src) override {
    need_f32(src, "download");
    if (dst.size() != src.count) throw std::logic_error("download: size mismatch");
    std::copy_n(src.f32(), src.count, dst.data());
  }

  void fill(TensorRef t, float value) override {
    need_f32(t, "fill");
    std::fill_n(t.f32(), t.count, value);
  }

  void convert(TensorRef dst, TensorRef src) override {
    need_f32(dst, "convert");
    need_f32(src, "convert");
    same_count(dst, src, "convert");
    if (dst.data != src.data) std::memmove(dst.data, src.data, src.bytes());
  }

  void copy_rows(Rows dst, Rows src, std::size_t row_elems, std::size_t rows,
                 bool accumulate) override {
    need_f32(dst.t, "copy_rows");
    need_f32(src.t, "copy_rows");
    auto fits = [&](const Rows& r) {
      return rows == 0 || r.offset + (rows - 1) * r.pitch + row_elems <= r.t.count;
    };
    if (!fits(dst) || !fits(src)) throw std::out_of_range("copy_rows: rows outside the tensor");
    for (std::size_t r = 0; r < rows; ++r) {
      float* d = dst.t.f32() + dst.offset + r * dst.pitch;
      const float* s = src.t.f32() + src.offset + r * src.pitch;
      if (accumulate)
        for (std::size_t i = 0; i < row_elems; ++i) d[i] += s[i];
      else
        std::memmove(d, s, row_elems * sizeof(float));
    }
  }

  void add(TensorRef acc, TensorRef x) override {
    need_f32(acc, "add");
    need_f32(x, "add");
    same_count(acc, x, "add");
    float* a = acc.f32();
    const float* b = x.f32();
    for (std::size_t i = 0; i < acc.count; ++i) a[i] += b[i];
  }

  RowSet row_set(std::vector<Range> ranges, Index extent) override {
    return RowSet(std::move(ranges), extent);
  }

  void fill(TensorRef t, float value, const RowSet& rows) override {
    need_f32(t, "fill");
    const std::size_t w = rows.row_elems(t);
    for (Range r : rows.ranges())
      std::fill_n(t.f32() + r.begin * w, r.size() * w, value);
  }

  void convert(TensorRef dst, TensorRef src, const RowSet& rows) override {
    need_f32(dst, "convert");
    need_f32(src, "convert");
    same_count(dst, src, "convert");
    const std::size_t w = rows.row_elems(dst);
    if (dst.data == src.data) return;
    for (Range r : rows.ranges())
      std::memmove(dst.f32() + r.begin * w, src.f32() + r.begin * w, r.size() * w * sizeof(float));
  }

  void add(TensorRef acc, TensorRef x, const RowSet& rows) override {
    need_f32(acc, "add");
    need_f32(x, "add");
    same_count(acc, x, "add");
    const std::size_t w = rows.row_elems(acc);
    for (Range r : rows.ranges()) {
      float* a = acc.f32() + r.begin * w;
      const float* b = x.f32() + r.begin * w;
      for (std::size_t i = 0; i < r.size() * w; ++i) a[i] += b[i];
    }
  }

  void merge(TensorRef o_acc, TensorRef lse_acc, TensorRef o_step, TensorRef lse_step, Index rows,
             int heads, int dim) override {
    merge(o_acc, lse_acc, o_step, lse_step, heads, dim, RowSet({{0, rows}}, rows), false);
  }

  void merge(TensorRef o_acc, TensorRef lse_acc, TensorRef o_step, TensorRef lse_step, int heads,
             int dim, const RowSet& set, bool first) override {
    need_f32(o_acc, "merge");
    need_f32(o_step, "merge");
    const Index rows = set.extent();
    const std::size_t n = std::size_t(rows) * heads;
    if (lse_acc.count != n || lse_step.count != n || o_acc.count != n * dim ||
        o_step.count != n * dim)
      throw std::logic_error("merge: tensor sizes do not match rows x heads x dim");
    float* oa = o_acc.f32();
    float* la = lse_acc.f32();
    const float* os = o_step.f32();
    const float* ls = lse_step.f32();
    constexpr float ninf = -std::numeric_limits<float>::infinity();
    for (int h = 0; h < heads; ++h)
      for (Range range : set.ranges())
        for (Index r = range.begin; r < range.end; ++r) {
          const float b = ls[h * rows + r];
          float& a = la[h * rows + r];
          float* o = oa + (std::size_t(r) * heads + h) * dim;
          const float* s = os + (std::size_t(r) * heads + h) * dim;
          if (first) {  // a merge into (0, -inf)
            for (int d = 0; d < dim; ++d) o[d] = b == ninf ? 0.f : s[d];
            a = b;
            continue;
          }
          if (b == ninf) continue;
          const float m = std::max(a, b);
          const float wa = a == ninf ? 0.f : std::exp(a - m);
          const float wb = std::exp(b - m);
          const float sum = wa + wb;
          const float ca = wa / sum, cb = wb / sum;
          for (int d = 0; d < dim; ++d) o[d] = o[d] * ca + s[d] * cb;
          a = m + std::log(sum);
        }
  }

  void synchronize() override {}
  std::unique_ptr<Stopwatch> stopwatch() override { return std::make_unique<CpuStopwatch>(); }
  MemoryUse memory() const override { return mem_; }
  void reset_peak() override { mem_.peak_allocated = mem_.allocated; }

 private:
  MemoryUse mem_;
};

}  // namespace

std::unique_ptr<Device> make_cpu_device() { return std::make_unique<CpuDevice>(); }

}  // namespace longattn::cp
