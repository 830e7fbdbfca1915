#pragma once
// The single-device attention a context-parallel algorithm calls for each (query tokens, key
// tokens) pair it holds: a kernel with a setup phase outside timing (a plan for one shape and
// sub-mask) and forward/backward calls on the device's buffers.
//
// Contract (layouts of reference.hpp, in the Device's memory, Q/K/V/dO in the activation dtype):
//   forward(q, k, v) -> O in step_dtype(), LSE fp32 [heads_q][seqlen_q]: attention of the plan's
//     rows against the given keys only (a partial result the algorithm merges).
//   backward(q, k, v, o, lse, dO) -> dQ, dK, dV in step_dtype(), overwritten: this key block's
//     contribution, computed from the FINAL O and LSE of the rows (D = rowsum(dO * O) then belongs
//     to the full row, so the contributions of all key blocks sum to the exact gradient).
// Plans are only made for non-empty sub-masks; the algorithms skip empty steps.
#include <cstddef>
#include <memory>
#include <stdexcept>
#include <string>

#include "longattn/cp/device.hpp"
#include "longattn/mask.hpp"
#include "longattn/reference.hpp"

namespace longattn::cp {

class LocalPlan {
 public:
  virtual ~LocalPlan() = default;
  virtual void forward(TensorRef q, TensorRef k, TensorRef v, TensorRef o, TensorRef lse) = 0;
  // The forward of a head slice: Q and O start at the slice's first head of tensors whose rows are
  // q_row_stride elements apart (the plan's heads_q x head_dim of each row are read and written).
  // Only where LocalAttention::slices_heads().
  virtual void forward_slice(TensorRef q, TensorRef k, TensorRef v, TensorRef o, TensorRef lse,
                             std::size_t q_row_stride) {
    (void)q, (void)k, (void)v, (void)o, (void)lse, (void)q_row_stride;
    throw std::logic_error("this kernel's forward takes packed rows only");
  }
  virtual void backward(TensorRef q, TensorRef k, TensorRef v, TensorRef o, TensorRef lse,
                        TensorRef d_o, TensorRef dq, TensorRef dk, TensorRef dv) = 0;
};

class LocalAttention {
 public:
  virtual ~LocalAttention() = default;
  virtual std::string name() const = 0;
  // dtype of the per-step O and dQ/dK/dV it writes for activations of dtype `activations`.
  virtual DType step_dtype(DType activations) const = 0;
  // Whether its plans' forward_slice reads Q and writes O in place, rows apart (else the caller
  // packs a slice's rows first).
  virtual bool slices_heads() const { return false; }
  // Setup outside timing for one (shape, non-empty mask); with `backward` the plan serves both
  // passes, else the forward only. Throws bench::Unsupported when the kernel cannot run it (the
  // reason says why), InputError for bad input.
  virtual std::unique_ptr<LocalPlan> plan(const AttentionShape& shape, const SliceMask& mask,
                                          DType dtype, bool backward) = 0;
};

// The CPU reference (fp32): reference_forward / reference_backward over the sub-mask's row
// intervals. threads: the reference's worker threads (1 when ranks share a few cores).
// slices_heads: its plans take head slices in place (forward_slice), as the flash kernels do,
// so that the algorithms' in-place paths run on CPUs too; else the algorithms pack them.
std::unique_ptr<LocalAttention> make_reference_attention(int threads, bool slices_heads = false);

// A GPU kernel by name ("flash", or a bench backend such as "cudnn" or "naive", which then must
// accept the sub-masks' shapes). Throws InputError in a build without CUDA or for an unknown name.
std::unique_ptr<LocalAttention> make_gpu_attention(const std::string& kernel, Device& device);

// The kernel a GPU run takes when none is named: the fastest of longattn's own that runs on this
// GPU, flash_hopper on sm_90 (when built), flash elsewhere.
std::string default_gpu_kernel();

}  // namespace longattn::cp
