// append_nfc_hf: utf8proc's NFC between boundaries; see nfc.h.
#include "model/nfc.h"

#include <utf8proc.h>

#include <algorithm>
#include <cstdint>
#include <iterator>
#include <vector>

#include "model/code_ranges.h"
#include "model/error.h"

namespace mole {
namespace {

constexpr CodeRange kAssignedInUnicode9[] = {
#include "model/unicode9_assigned.inc"
};

// Appends utf8proc's NFC of s (valid UTF-8). utf8proc_map would do it in one call, but it puts combining marks in
// canonical order with an exchange sort, quadratic in the length of a run of marks (160,000 alternating U+0301
// U+0316 took 38 s: a hostile prompt could hang mole). So utf8proc decomposes each character, each run of
// non-starters is ordered here by a stable sort on combining class (the canonical ordering algorithm, as
// utf8proc's sort orders them), and utf8proc composes, in one linear pass. utf8proc before 2.9 wrongly composes an
// LV syllable with U+11A7, which is not a trailing consonant; append_nfc_hf makes U+11A7 a boundary.
void append_utf8proc_nfc(std::string_view s, std::string& out) {
  if (s.empty()) return;
  std::vector<utf8proc_int32_t> cps;
  cps.reserve(s.size());
  const auto* bytes = reinterpret_cast<const utf8proc_uint8_t*>(s.data());
  for (size_t i = 0; i < s.size();) {
    utf8proc_int32_t cp = 0;
    const utf8proc_ssize_t len = utf8proc_iterate(bytes + i, static_cast<utf8proc_ssize_t>(s.size() - i), &cp);
    if (len <= 0) throw Error("tokenizer: cannot NFC-normalize text: invalid UTF-8");
    i += static_cast<size_t>(len);
    // A canonical decomposition is at most 4 code points long; utf8proc says how many it needs if more.
    utf8proc_int32_t buf[16];
    int boundclass = 0;
    const utf8proc_ssize_t n = utf8proc_decompose_char(cp, buf, 16, UTF8PROC_DECOMPOSE, &boundclass);
    if (n < 0 || n > 16) throw Error(std::string("tokenizer: cannot NFC-normalize text: ") + utf8proc_errmsg(n));
    cps.insert(cps.end(), buf, buf + n);
  }
  auto ccc = [](utf8proc_int32_t cp) { return utf8proc_get_property(cp)->combining_class; };
  for (auto run = cps.begin(); run != cps.end();) {
    if (ccc(*run) == 0) {
      ++run;
      continue;
    }
    auto end = std::find_if(run, cps.end(), [&](utf8proc_int32_t cp) { return ccc(cp) == 0; });
    std::stable_sort(run, end, [&](utf8proc_int32_t a, utf8proc_int32_t b) { return ccc(a) < ccc(b); });
    run = end;
  }
  const utf8proc_ssize_t n =
      utf8proc_normalize_utf32(cps.data(), static_cast<utf8proc_ssize_t>(cps.size()),
                               static_cast<utf8proc_option_t>(UTF8PROC_STABLE | UTF8PROC_COMPOSE));
  if (n < 0) throw Error(std::string("tokenizer: cannot NFC-normalize text: ") + utf8proc_errmsg(n));
  for (utf8proc_ssize_t k = 0; k < n; ++k) {
    utf8proc_uint8_t enc[4];
    out.append(reinterpret_cast<const char*>(enc), static_cast<size_t>(utf8proc_encode_char(cps[size_t(k)], enc)));
  }
}

}  // namespace

bool assigned_in_unicode9(char32_t cp) {
  return in_ranges(std::begin(kAssignedInUnicode9), std::end(kAssignedInUnicode9), cp);
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
