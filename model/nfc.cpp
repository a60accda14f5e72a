// append_nfc_hf: utf8proc's NFC between boundaries; see nfc.h.
#include "model/nfc.h"

#include <utf8proc.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <iterator>

#include "model/error.h"

namespace mole {
namespace {

struct Range {
  char32_t first, last;
};

constexpr Range kAssignedInUnicode9[] = {
#include "model/unicode9_assigned.inc"
};

// Appends utf8proc's NFC of s. utf8proc before 2.9 wrongly composes an LV syllable with U+11A7, which is not a
// trailing consonant; U+11A7 is a starter that composes with nothing, so it is a boundary too.
void append_utf8proc_nfc(std::string_view s, std::string& out) {
  if (s.empty()) return;
  utf8proc_uint8_t* dst = nullptr;
  auto n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(s.data()), static_cast<utf8proc_ssize_t>(s.size()),
                        &dst, static_cast<utf8proc_option_t>(UTF8PROC_STABLE | UTF8PROC_COMPOSE));
  if (n < 0) throw Error(std::string("tokenizer: cannot NFC-normalize text: ") + utf8proc_errmsg(n));
  out.append(reinterpret_cast<const char*>(dst), static_cast<size_t>(n));
  std::free(dst);
}

}  // namespace

bool assigned_in_unicode9(char32_t cp) {
  auto it = std::upper_bound(std::begin(kAssignedInUnicode9), std::end(kAssignedInUnicode9), cp,
                             [](char32_t c, const Range& r) { return c < r.first; });
  return it != std::begin(kAssignedInUnicode9) && cp <= std::prev(it)->last;
}

void append_nfc_hf(std::string_view s, std::string& out) {
  size_t begin = 0;  // start of the piece not yet normalized
  for (size_t i = 0; i < s.size();) {
    const auto b = static_cast<unsigned char>(s[i]);
    const size_t len = b < 0x80 ? 1 : b >= 0xF0 ? 4 : b >= 0xE0 ? 3 : 2;
    // Everything below U+0340 (lead bytes below 0xCD) was assigned by Unicode 1.1: no boundary there.
    bool boundary = false;
    if (len > 1 && !(len == 2 && b < 0xCD)) {
      char32_t cp = b & (0x7F >> len);
      for (size_t k = 1; k < len; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
      boundary = cp == 0x11A7 || !assigned_in_unicode9(cp);
    }
    if (boundary) {
      append_utf8proc_nfc(s.substr(begin, i - begin), out);
      out.append(s.substr(i, len));
      begin = i + len;
    }
    i += len;
  }
  append_utf8proc_nfc(s.substr(begin), out);
}

}  // namespace mole
