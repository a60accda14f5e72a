// Sets of code points as sorted, disjoint, inclusive ranges (the generated Unicode tables: unicode9_assigned.inc,
// pretokenize_classes.inc), and membership by binary search.
#pragma once

#include <algorithm>
#include <iterator>

namespace mole {

struct CodeRange {
  char32_t first, last;
};

// Whether cp lies in one of the ranges [begin, end).
inline bool in_ranges(const CodeRange* begin, const CodeRange* end, char32_t cp) {
  const CodeRange* it = std::upper_bound(begin, end, cp, [](char32_t c, const CodeRange& r) { return c < r.first; });
  return it != begin && cp <= std::prev(it)->last;
}

}  // namespace mole
