#pragma once
// The current device's SM count, which the work splitting of the backward plans targets; 0 (no
// splitting) when there is no device to ask.
#include <cuda_runtime_api.h>

namespace longattn::flash {

inline int current_device_sm_count() {
  int device = 0, sms = 0;
  if (cudaGetDevice(&device) != cudaSuccess ||
      cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device) != cudaSuccess)
    sms = 0;
  (void)cudaGetLastError();
  return sms;
}

}  // namespace longattn::flash
