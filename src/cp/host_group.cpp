#include "longattn/cp/host_group.hpp"

#include <fmt/format.h>

#include <chrono>
#include <climits>
#include <thread>

#include "longattn/cp/communicator.hpp"
#include "mpi_util.hpp"

namespace longattn::cp {

namespace detail {

void check_mpi(int code, std::string_view what) {
  if (code == MPI_SUCCESS) return;
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(code, msg, &len);
  throw CommError(fmt::format("MPI error in {}: {}", what, std::string_view(msg, len)));
}

void wait_all(std::span<MPI_Request> requests, double timeout_s, int rank, std::string_view what) {
  using clock = std::chrono::steady_clock;
  const auto deadline = clock::now() + std::chrono::duration<double>(timeout_s);
  auto nap = std::chrono::microseconds(1);
  for (;;) {
    int done = 0;
    check_mpi(MPI_Testall(int(requests.size()), requests.data(), &done, MPI_STATUSES_IGNORE),
              what);
    if (done) return;
    if (clock::now() > deadline)
      throw CommError(fmt::format(
          "rank {}: {} did not complete within {} s: a peer is hung or dead, or the ranks run "
          "different configurations",
          rank, what, timeout_s));
    // Back off to at most 1 ms so that ranks sharing a few cores leave them to the busy ones.
    std::this_thread::sleep_for(nap);
    nap = std::min(nap * 2, std::chrono::microseconds(1000));
  }
}

int mpi_count(std::size_t bytes, std::string_view what) {
  if (bytes > std::size_t(INT_MAX))
    throw CommError(fmt::format("{}: a message of {} bytes exceeds MPI's int count", what, bytes));
  return int(bytes);
}

}  // namespace detail

using detail::check_mpi;
using detail::wait_all;

MpiSession::MpiSession() {
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (!initialized) {
    int provided = 0;
    check_mpi(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided), "MPI_Init");
  }
}

MpiSession::~MpiSession() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Finalize();
}

struct HostGroup::State {
  MPI_Comm comm = MPI_COMM_NULL;
  int rank = 0;
  int size = 1;
  int local_rank = 0;
  int local_size = 1;
  double timeout_s = 0;
  ~State() {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (comm != MPI_COMM_NULL && !finalized) MPI_Comm_free(&comm);
  }
};

HostGroup::HostGroup(std::unique_ptr<State> s) : state_(std::move(s)) {}
HostGroup::HostGroup(HostGroup&&) noexcept = default;
HostGroup& HostGroup::operator=(HostGroup&&) noexcept = default;
HostGroup::~HostGroup() = default;

HostGroup HostGroup::world(double timeout_s) {
  auto s = std::make_unique<State>();
  s->timeout_s = timeout_s;
  check_mpi(MPI_Comm_dup(MPI_COMM_WORLD, &s->comm), "MPI_Comm_dup");
  MPI_Comm_rank(s->comm, &s->rank);
  MPI_Comm_size(s->comm, &s->size);
  MPI_Comm node;
  check_mpi(MPI_Comm_split_type(s->comm, MPI_COMM_TYPE_SHARED, s->rank, MPI_INFO_NULL, &node),
            "MPI_Comm_split_type");
  MPI_Comm_rank(node, &s->local_rank);
  MPI_Comm_size(node, &s->local_size);
  MPI_Comm_free(&node);
  return HostGroup(std::move(s));
}

int HostGroup::rank() const { return state_->rank; }
int HostGroup::size() const { return state_->size; }
int HostGroup::local_rank() const { return state_->local_rank; }
int HostGroup::local_size() const { return state_->local_size; }
double HostGroup::timeout_s() const { return state_->timeout_s; }
std::intptr_t HostGroup::native() const { return detail::as_handle(state_->comm); }

void HostGroup::barrier() const {
  MPI_Request r;
  check_mpi(MPI_Ibarrier(state_->comm, &r), "barrier");
  wait_all({&r, 1}, state_->timeout_s, state_->rank, "host barrier");
}

void HostGroup::broadcast(std::span<std::byte> data, int root) const {
  MPI_Request r;
  check_mpi(MPI_Ibcast(data.data(), detail::mpi_count(data.size(), "broadcast"), MPI_BYTE, root,
                       state_->comm, &r),
            "broadcast");
  wait_all({&r, 1}, state_->timeout_s, state_->rank, "host broadcast");
}

std::vector<std::string> HostGroup::all_gather(const std::string& mine) const {
  const int n = state_->size;
  long long len = (long long)mine.size();
  std::vector<long long> lens(n);
  MPI_Request r;
  check_mpi(MPI_Iallgather(&len, 1, MPI_LONG_LONG, lens.data(), 1, MPI_LONG_LONG, state_->comm, &r),
            "all_gather");
  wait_all({&r, 1}, state_->timeout_s, state_->rank, "host all-gather of sizes");
  std::vector<int> counts(n), displs(n);
  std::size_t total = 0;
  for (int i = 0; i < n; ++i) {
    counts[i] = detail::mpi_count(std::size_t(lens[i]), "all_gather");
    displs[i] = detail::mpi_count(total, "all_gather");
    total += std::size_t(lens[i]);
  }
  std::string all(total, '\0');
  check_mpi(MPI_Iallgatherv(mine.data(), counts[state_->rank], MPI_CHAR, all.data(), counts.data(),
                            displs.data(), MPI_CHAR, state_->comm, &r),
            "all_gather");
  wait_all({&r, 1}, state_->timeout_s, state_->rank, "host all-gather");
  std::vector<std::string> out(n);
  for (int i = 0; i < n; ++i) out[i] = all.substr(displs[i], counts[i]);
  return out;
}

void HostGroup::all_reduce_sum(std::span<double> values) const {
  MPI_Request r;
  check_mpi(MPI_Iallreduce(MPI_IN_PLACE, values.data(), int(values.size()), MPI_DOUBLE, MPI_SUM,
                           state_->comm, &r),
            "all_reduce");
  wait_all({&r, 1}, state_->timeout_s, state_->rank, "host all-reduce");
}

void HostGroup::all_reduce_max(std::span<double> values) const {
  MPI_Request r;
  check_mpi(MPI_Iallreduce(MPI_IN_PLACE, values.data(), int(values.size()), MPI_DOUBLE, MPI_MAX,
                           state_->comm, &r),
            "all_reduce");
  wait_all({&r, 1}, state_->timeout_s, state_->rank, "host all-reduce");
}

namespace {

template <class T>
std::vector<T> gather_impl(const HostGroup& g, MPI_Comm comm, std::span<const T> values, int root,
                           MPI_Datatype type) {
  std::vector<T> out(g.rank() == root ? values.size() * g.size() : 0);
  MPI_Request r;
  check_mpi(MPI_Igather(values.data(), detail::mpi_count(values.size(), "gather"), type,
                        out.data(), detail::mpi_count(values.size(), "gather"), type, root, comm,
                        &r),
            "gather");
  wait_all({&r, 1}, g.timeout_s(), g.rank(), "host gather");
  return out;
}

}  // namespace

std::vector<double> HostGroup::gather(std::span<const double> values, int root) const {
  return gather_impl(*this, state_->comm, values, root, MPI_DOUBLE);
}

std::vector<float> HostGroup::gather(std::span<const float> values, int root) const {
  return gather_impl(*this, state_->comm, values, root, MPI_FLOAT);
}

void HostGroup::abort(int code) const {
  MPI_Abort(state_->comm, code);
  std::abort();  // MPI_Abort does not return; this keeps [[noreturn]] honest
}

}  // namespace longattn::cp
