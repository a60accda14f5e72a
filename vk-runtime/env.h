// Settings from the environment (the MOLE_VK_* knobs for tests, tuning and trying limits). A value that is not one
// the variable takes is an error naming it, never silently read as 0 or ignored.
#pragma once

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <initializer_list>
#include <optional>
#include <string>

#include "model/error.h"

namespace mole::vulkan {

// $name as a number in [lo, hi] (a whole one when `whole`); nullopt when unset or empty. Throws mole::Error
// "NAME must be <accepts> (it is 'VALUE')" otherwise.
inline std::optional<double> env_number(const char* name, double lo, double hi, bool whole, const char* accepts) {
  const char* v = std::getenv(name);
  if (!v || !*v) return std::nullopt;
  char* end = nullptr;
  errno = 0;
  const double x = std::strtod(v, &end);
  if (end == v || *end != '\0' || errno != 0 || !std::isfinite(x) || x < lo || x > hi || (whole && x != std::floor(x)))
    throw Error(std::string(name) + " must be " + accepts + " (it is '" + v + "')");
  return x;
}

// $name as one of `choices`; the first when unset or empty. Throws mole::Error "NAME must be a, b or c (it is
// 'VALUE')" for anything else.
inline std::string env_choice(const char* name, std::initializer_list<const char*> choices) {
  const char* v = std::getenv(name);
  if (!v || !*v) return *choices.begin();
  std::string list;
  size_t i = 0;
  for (const char* c : choices) {
    if (std::string(c) == v) return c;
    list += (i == 0 ? "" : i + 1 == choices.size() ? " or " : ", ") + std::string(c);
    i++;
  }
  throw Error(std::string(name) + " must be " + list + " (it is '" + v + "')");
}

}  // namespace mole::vulkan
