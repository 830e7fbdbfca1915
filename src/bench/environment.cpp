#include "longattn/bench/environment.hpp"

#include <dlfcn.h>
#include <fmt/format.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <ctime>
#include <nlohmann/json.hpp>
#include <thread>

#ifdef LONGATTN_WITH_CUDA
#include <cuda_runtime.h>
#endif

#include "longattn/bench/memory.hpp"

namespace longattn::bench {
namespace {

[[maybe_unused]] std::string cuda_version_string(int v) {
  return fmt::format("{}.{}", v / 1000, (v % 1000) / 10);
}

// The version of a shared library's `int f(void)` version function, loaded by soname, or "none".
// Asking the loader (rather than linking) finds the library the process actually uses.
// RTLD_NODELETE: a library unloaded at dlclose would leave what it allocated at load time
// unreachable, which LeakSanitizer reports as a leak of the process.
template <class Format>
std::string library_version(std::initializer_list<const char*> sonames, const char* symbol, Format fmt_version) {
  for (const char* so : sonames) {
    void* h = dlopen(so, RTLD_NOW | RTLD_NOLOAD);
    if (!h) h = dlopen(so, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
    if (!h) continue;
    std::string out = "unknown";
    if (void* f = dlsym(h, symbol)) out = fmt_version(f);
    dlclose(h);
    return out;
  }
  return "none";
}

// The kernel driver's version ("580.159.04") through NVML, loaded only if present.
[[maybe_unused]] std::string nvidia_driver_version() {
  void* h = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
  if (!h) return {};
  std::string out;
  auto init = reinterpret_cast<int (*)()>(dlsym(h, "nvmlInit_v2"));
  auto get = reinterpret_cast<int (*)(char*, unsigned)>(dlsym(h, "nvmlSystemGetDriverVersion"));
  auto shutdown = reinterpret_cast<int (*)()>(dlsym(h, "nvmlShutdown"));
  if (init && get && init() == 0) {
    char buf[96] = {};
    if (get(buf, sizeof buf) == 0) out = buf;
    if (shutdown) shutdown();
  }
  dlclose(h);
  return out;
}

std::string utc_now() {
  const std::time_t t = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

}  // namespace

bool gpu_present() {
#ifdef LONGATTN_WITH_CUDA
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    (void)cudaGetLastError();
    return false;
  }
  return n > 0;
#else
  return false;
#endif
}

Environment collect_environment(const std::string& git_commit) {
  Environment e;
  e.longattn_version = "0.1.0";
  e.git_commit = git_commit;
  // A tree copied to a remote GPU machine may carry no .git, or a stale one: the caller's word
  // wins over the commit found at configure time.
  if (const char* env = std::getenv("LONGATTN_GIT_COMMIT"); env && *env)
    e.git_commit = std::string(env) + " (from LONGATTN_GIT_COMMIT)";
  char host[256] = {};
  if (gethostname(host, sizeof host - 1) == 0) e.hostname = host;
  e.cpu_threads = int(std::thread::hardware_concurrency());
#if defined(__clang__)
  e.compiler = fmt::format("clang {}.{}.{}", __clang_major__, __clang_minor__, __clang_patchlevel__);
#elif defined(__GNUC__)
  e.compiler = fmt::format("gcc {}.{}.{}", __GNUC__, __GNUC_MINOR__, __GNUC_PATCHLEVEL__);
#endif
  e.timestamp = utc_now();
  e.cudnn = library_version({"libcudnn.so.9", "libcudnn.so"}, "cudnnGetVersion", [](void* f) {
    const std::size_t v = reinterpret_cast<std::size_t (*)()>(f)();
    return fmt::format("{}.{}.{}", v / 10000, (v % 10000) / 100, v % 100);
  });
  e.nccl = library_version({"libnccl.so.2", "libnccl.so"}, "ncclGetVersion", [](void* f) {
    int v = 0;
    reinterpret_cast<int (*)(int*)>(f)(&v);
    return fmt::format("{}.{}.{}", v / 10000, (v % 10000) / 100, v % 100);
  });
  e.cublas = library_version({"libcublas.so.13", "libcublas.so.12", "libcublas.so"}, "cublasGetProperty",
                             [](void* f) {
                               auto get = reinterpret_cast<int (*)(int, int*)>(f);
                               int ma = 0, mi = 0, pa = 0;
                               get(0, &ma);
                               get(1, &mi);
                               get(2, &pa);
                               return fmt::format("{}.{}.{}", ma, mi, pa);
                             });
#ifdef LONGATTN_WITH_CUDA
  int v = 0;
  if (cudaDriverGetVersion(&v) == cudaSuccess) e.driver = cuda_version_string(v);
  if (const std::string kernel_driver = nvidia_driver_version(); !kernel_driver.empty())
    e.driver += " (" + kernel_driver + ")";
  if (cudaRuntimeGetVersion(&v) == cudaSuccess) e.cuda_runtime = cuda_version_string(v);
  if (gpu_present()) {
    int dev = 0;
    cudaDeviceProp p{};
    if (cudaGetDevice(&dev) == cudaSuccess && cudaGetDeviceProperties(&p, dev) == cudaSuccess) {
      e.gpu = true;
      e.gpu_name = p.name;
      e.gpu_sm_count = p.multiProcessorCount;
      e.gpu_cc = p.major * 10 + p.minor;
      e.gpu_memory_gib = double(p.totalGlobalMem) / kGiB;
      e.gpu_l2_mib = double(p.l2CacheSize) / (1024.0 * 1024.0);
    }
  }
  (void)cudaGetLastError();
#endif
  return e;
}

nlohmann::json to_json(const Environment& e) {
  return {{"longattn", e.longattn_version}, {"git_commit", e.git_commit},
          {"hostname", e.hostname},         {"cpu_threads", e.cpu_threads},
          {"compiler", e.compiler},         {"timestamp", e.timestamp},
          {"gpu", e.gpu},                   {"gpu_name", e.gpu_name},
          {"gpu_sm_count", e.gpu_sm_count}, {"gpu_compute_capability", e.gpu_cc},
          {"gpu_memory_gib", e.gpu_memory_gib}, {"gpu_l2_mib", e.gpu_l2_mib},
          {"driver", e.driver},             {"cuda_runtime", e.cuda_runtime},
          {"cudnn", e.cudnn},               {"cublas", e.cublas},
          {"nccl", e.nccl}};
}

}  // namespace longattn::bench
