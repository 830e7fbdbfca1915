#pragma once
// What the flash-family backends (flash, flash_hopper) share on the host: the kernels' shape and
// dtype from a benchmark problem, and their parameter blocks filled from the case's tensors.
#include <stdexcept>

#include "longattn/bench/backend.hpp"
#include "longattn/kernels/flash.hpp"

namespace longattn::bench {

inline flash::Shape flash_shape(const AttentionShape& s) {
  return {std::int32_t(s.seqlen_q), std::int32_t(s.seqlen_k), s.heads_q, s.heads_kv, s.head_dim,
          s.softmax_scale()};
}

inline flash::DType flash_dtype(DType t) {
  return t == DType::bf16 ? flash::DType::bf16 : flash::DType::fp16;
}

inline flash::FwdParams forward_params(const flash::Shape& shape, flash::DType dtype,
                                       const Tensors& t, const flash::MaskView& mask) {
  flash::FwdParams p;
  p.shape = shape;
  p.dtype = dtype;
  p.q = t.q;
  p.k = t.k;
  p.v = t.v;
  p.o = t.o;
  p.lse = t.lse;
  p.mask = mask;
  p.q_row_stride = t.q_row_stride;
  return p;
}

inline flash::BwdParams backward_params(const flash::Shape& shape, flash::DType dtype,
                                        const Tensors& t, void* workspace,
                                        const flash::MaskView& mask) {
  if (t.q_row_stride != 0)
    throw std::logic_error("the flash backward takes packed rows only (Tensors::q_row_stride)");
  flash::BwdParams p;
  p.shape = shape;
  p.dtype = dtype;
  p.q = t.q;
  p.k = t.k;
  p.v = t.v;
  p.o = t.o;
  p.lse = t.lse;
  p.d_o = t.d_o;
  p.dq = t.dq;
  p.dk = t.dk;
  p.dv = t.dv;
  p.workspace = workspace;
  p.mask = mask;
  return p;
}

}  // namespace longattn::bench
