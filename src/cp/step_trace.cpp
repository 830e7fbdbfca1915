// StepTrace: a stopwatch per step, started where the previous one stopped (device.hpp).
#include <algorithm>

#include "longattn/cp/device.hpp"

namespace longattn::cp {

StepTrace::StepTrace() = default;
StepTrace::~StepTrace() = default;

void StepTrace::begin(Device& device) {
  device_ = &device;
  closed_.clear();
  open_ = device.stopwatch();
  open_->start();
}

void StepTrace::mark(std::string_view label) {
  if (!device_) return;
  open_->stop();
  closed_.emplace_back(std::string(label), std::move(open_));
  open_ = device_->stopwatch();
  open_->start();
}

std::vector<TracedStep> StepTrace::end() {
  std::vector<TracedStep> steps;
  if (!device_) return steps;
  mark("unmarked");  // whatever ran after the last mark
  for (auto& [label, watch] : closed_) {
    const double ms = watch->elapsed_ms();
    auto it = std::find_if(steps.begin(), steps.end(),
                           [&](const TracedStep& s) { return s.label == label; });
    if (it == steps.end()) steps.push_back({label, ms});
    else it->ms += ms;
  }
  std::erase_if(steps, [](const TracedStep& s) { return s.label == "unmarked" && s.ms < 1e-3; });
  device_ = nullptr;
  open_.reset();
  closed_.clear();
  return steps;
}

}  // namespace longattn::cp
