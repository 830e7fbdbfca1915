#pragma once
// GoogleTest under mpirun: every rank runs every test; the world group is reachable from the
// tests through test_group(); only rank 0 prints, and any rank's failure fails the run.
#include "longattn/cp/host_group.hpp"

namespace longattn::cp {

HostGroup& test_group();

}  // namespace longattn::cp
