// A build without CUDA: the GPU pieces are absent and asking for them is an input error.
#include "longattn/cp/communicator.hpp"
#include "longattn/cp/device.hpp"
#include "longattn/cp/local_attention.hpp"
#include "longattn/error.hpp"

namespace longattn::cp {

namespace {
[[noreturn]] void no_cuda(const char* what) {
  throw InputError(std::string(what) +
                   " needs a CUDA build of longattn (configure with -DLONGATTN_CUDA=ON); this "
                   "one runs context parallelism on CPUs over MPI only (--device cpu)");
}
}  // namespace

std::unique_ptr<Device> make_cuda_device(int, double) { no_cuda("the GPU device"); }
std::unique_ptr<Communicator> make_nccl_communicator(const HostGroup&, Device&, double) {
  no_cuda("NCCL");
}
std::unique_ptr<LocalAttention> make_gpu_attention(const std::string&, Device&) {
  no_cuda("a GPU attention kernel");
}
std::string default_gpu_kernel() { return "flash"; }  // named only; make_gpu_attention refuses
bool nccl_available() { return false; }
std::string nccl_version() { return "none"; }

}  // namespace longattn::cp
