#include "mpi_test_main.hpp"

#include <gtest/gtest.h>

#include "longattn/cp/host_group.hpp"

namespace longattn::cp {
namespace {
HostGroup* g_group = nullptr;
}  // namespace

HostGroup& test_group() { return *g_group; }

}  // namespace longattn::cp

int main(int argc, char** argv) {
  longattn::cp::MpiSession mpi;
  ::testing::InitGoogleTest(&argc, argv);
  auto group = longattn::cp::HostGroup::world(60);
  longattn::cp::g_group = &group;
  if (group.rank() != 0) {
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
  }
  int rc = RUN_ALL_TESTS();
  double worst[1] = {double(rc)};
  group.all_reduce_max(worst);
  return int(worst[0]);
}
