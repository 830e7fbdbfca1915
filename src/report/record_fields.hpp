#pragma once
// Reading optional fields of result records: a missing or null field takes the fallback; a field
// of the wrong type is a malformed record and says which field it was.
#include <fmt/format.h>

#include <nlohmann/json.hpp>
#include <string>

#include "longattn/error.hpp"

namespace longattn::report {

template <class T>
T get_or(const nlohmann::json& j, const char* key, T fallback) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  try {
    return it->get<T>();
  } catch (const nlohmann::json::exception&) {
    throw InputError(fmt::format("record field '{}' has the wrong type: {}", key, it->dump()));
  }
}

// The commit a record was measured at ("" when its environment does not say).
inline std::string commit_of(const nlohmann::json& record) {
  auto env = record.find("environment");
  return env != record.end() && env->is_object() ? get_or<std::string>(*env, "git_commit", "")
                                                 : std::string();
}

}  // namespace longattn::report
