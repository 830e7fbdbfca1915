#pragma once
// What the CUDA device and the NCCL communicators share to turn a hang into an error: the live
// NCCL communicators (polled for asynchronous errors while waiting, aborted on a timeout) and a
// bounded wait for a stream or an event.
#include <cuda_runtime.h>

#include <string>
#include <string_view>

namespace longattn::cp::detail {

// An NCCL communicator (ncclComm_t, passed as void* so this header needs no nccl.h).
void register_comm(void* comm);
bool unregister_comm(void* comm);  // false when it was aborted meanwhile
// The first asynchronous error of a live communicator, or empty.
std::string comm_error();
// ncclCommAbort on every live communicator (after which their waits return).
void abort_comms();

// Waits for the stream (or event) with a deadline, polling the communicators; on an error or the
// timeout aborts them and throws CommError naming `what`.
void wait_stream(cudaStream_t s, double timeout_s, std::string_view what);
void wait_event(cudaEvent_t e, double timeout_s, std::string_view what);

// Throws (bench::OutOfMemory for cudaErrorMemoryAllocation) on an error.
void check_cuda(cudaError_t e, std::string_view what);

}  // namespace longattn::cp::detail
