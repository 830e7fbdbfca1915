#pragma once
// Peak device memory of a case, above its baseline (DESIGN.md section 5).
//
// Method: device-wide used memory (total - free from cudaMemGetInfo) is read right before the
// case allocates anything (the baseline), then by a polling thread every ~50 us during setup,
// warm-up and checks, and at every phase boundary. Being device-wide it sees every allocation:
// our tensors, cuBLAS/cuDNN workspaces and handles, the CUDA caching of any library. The polling
// thread is paused during the timed repetitions so it cannot perturb them; the warm-up runs the
// same launches, so nothing allocated only inside a launch is missed. Allocations that live
// shorter than the polling interval inside one call can be missed; the driver reports memory in
// 2 MiB pages. cpu backends report no device memory.
#include <optional>
#include <string_view>

namespace longattn::bench {

inline constexpr std::string_view kMemoryMethod =
    "device-wide cudaMemGetInfo used bytes above the case baseline, over the whole case; polled "
    "every ~50 us during setup and warm-up plus at each allocation and phase boundary (paused "
    "during timed reps)";

// The case allocates everything it needs (inputs, outputs, gradient buffers when the backward
// runs, the backend's plan and workspaces) before its forward phase, so forward_gib covers that
// set-up plus the forward launches, and backward_gib what the backward launches reach on top of
// the same set. Run --direction fwd for the memory of a forward pass alone.
struct PeakMemory {
  std::optional<double> case_gib;      // whole case
  std::optional<double> forward_gib;   // set-up + forward phase
  std::optional<double> backward_gib;  // backward phase
};

inline constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;

}  // namespace longattn::bench
