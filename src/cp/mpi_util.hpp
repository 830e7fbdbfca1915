#pragma once
// MPI helpers shared by the host group and the MPI communicator: every wait polls with a deadline
// so that a peer that never arrives becomes a CommError instead of a hang.
#include <mpi.h>

#include <span>
#include <string_view>

namespace longattn::cp::detail {

// Throws CommError naming `what` when MPI returns an error.
void check_mpi(int code, std::string_view what);
// Waits for all requests; after timeout_s throws CommError: "rank R: WHAT did not complete ...".
void wait_all(std::span<MPI_Request> requests, double timeout_s, int rank, std::string_view what);
// MPI counts are int: throws CommError for larger messages.
int mpi_count(std::size_t bytes, std::string_view what);

// The host group hands its communicator out as MPI's portable integer (Fortran) handle.
inline MPI_Comm as_comm(std::intptr_t h) { return MPI_Comm_f2c(MPI_Fint(h)); }
inline std::intptr_t as_handle(MPI_Comm c) { return std::intptr_t(MPI_Comm_c2f(c)); }

}  // namespace longattn::cp::detail
