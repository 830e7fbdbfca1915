#pragma once
// The communication model: bytes each rank sends in one forward and one backward pass of each
// algorithm, as closed formulas (docs/cp.md derives them). Every `longattn cp` run compares them
// with the bytes its communicators counted; they must agree exactly.
//
// With N = U x R ranks, s = S / N tokens per rank, Hq, Hkv, D, b = bytes per activation element,
// f = 4 (fp32 partial sums), q = Hq / U query heads and k = max(Hkv / U, 1) KV heads per Ulysses
// member (k > Hkv / U means K/V heads are replicated), and T = U s tokens per ring position:
//   Ulysses part (U > 1), forward:   (U-1) s D b (q + 2k)   Q, K, V to heads
//                                  + (U-1) s D b q          O back to sequence
//                         backward:  (U-1) s D b q          dO to heads
//                                  + (U-1) s D b (q + 2k)   dQ, dK, dV back to sequence
//   Ring part (R > 1; ring_p2p, usp, loongtrain), forward:  2 T k D b     K, V circulate
//                         backward:  2 T k D b + (R-1) 2 T k D f         K, V and dK, dV
//   ring_allgather (U = 1), forward: (N-1) 2 s Hkv D b                         all-gather K, V
//                         backward:  (N-1) 2 s Hkv D b + (N-1) 2 s Hkv D f     again + reduce-scatter
// LoongTrain's double ring sends the same volume as one ring (R-1 block transfers each way); it
// changes which links carry them (inner windows intra-node, the outer ring across).
#include <string>
#include <vector>

#include "longattn/cp/communicator.hpp"
#include "longattn/cp/topology.hpp"
#include "longattn/flops.hpp"

namespace longattn::cp {

struct CommShape {
  Topology topology;
  Index seqlen = 0;   // S, total tokens
  HeadConfig heads;
  int dtype_bytes = 2;
};

struct CommVolume {
  CommStats forward;   // per operation kind, bytes sent by one rank (calls counted too)
  CommStats backward;
};

// Throws InputError when S is not divisible by N or the heads cannot be split.
CommVolume comm_model(const CommShape& s);

}  // namespace longattn::cp
