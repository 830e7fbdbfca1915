#pragma once
// Where a result was measured: recorded with every case (DESIGN.md section 5).
#include <nlohmann/json_fwd.hpp>
#include <string>

namespace longattn::bench {

struct Environment {
  std::string longattn_version;
  std::string git_commit;
  std::string hostname;
  int cpu_threads = 0;
  std::string compiler;
  std::string timestamp;       // UTC, ISO 8601, when the run started
  bool gpu = false;            // a CUDA device is present and this build has the GPU backends
  std::string gpu_name;
  int gpu_sm_count = 0;
  int gpu_cc = 0;              // compute capability, e.g. 90
  double gpu_memory_gib = 0;
  double gpu_l2_mib = 0;
  std::string driver;          // CUDA driver API version and the kernel driver's, "13.0 (580.159.04)"
  std::string cuda_runtime;
  std::string cudnn;           // "none" when the library cannot be loaded
  std::string cublas;
  std::string nccl;
};

// git_commit: the build's commit (the CLI passes LONGATTN_GIT_COMMIT); when that is "unknown" (a
// tree built without .git), the environment variable LONGATTN_GIT_COMMIT is used, marked as such.
Environment collect_environment(const std::string& git_commit);
bool gpu_present();  // false on CPU-only builds and on machines without a usable CUDA device
nlohmann::json to_json(const Environment& e);

}  // namespace longattn::bench
