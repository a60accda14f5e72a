#include "model/pretokenize_classes.h"

#include <algorithm>
#include <array>
#include <iterator>

namespace mole {
namespace {

#include "model/pretokenize_classes.inc"

template <size_t N>
bool in(const CodeRange (&ranges)[N], char32_t cp) {
  return in_ranges(std::begin(ranges), std::end(ranges), cp);
}

}  // namespace

bool is_white_space(char32_t cp) {
  if (cp < 0x80) return cp == ' ' || (cp >= 0x09 && cp <= 0x0D);
  constexpr std::array<char32_t, 8> kOthers = {0x85, 0xA0, 0x1680, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000};
  return (cp >= 0x2000 && cp <= 0x200A) || std::find(kOthers.begin(), kOthers.end(), cp) != kOthers.end();
}

PretokenizeClass pretokenize_class(char32_t cp) {
  if (cp < 0x80) {
    if ((cp | 0x20) >= 'a' && (cp | 0x20) <= 'z') return PretokenizeClass::kLetter;
    if (cp >= '0' && cp <= '9') return PretokenizeClass::kNumber;
    return is_white_space(cp) ? PretokenizeClass::kSpace : PretokenizeClass::kOther;
  }
  if (is_white_space(cp)) return PretokenizeClass::kSpace;
  if (in(kPretokenizeLetters, cp)) return PretokenizeClass::kLetter;
  return in(kPretokenizeNumbers, cp) ? PretokenizeClass::kNumber : PretokenizeClass::kOther;
}

CodeRanges pretokenize_letters() {
  return {std::begin(kPretokenizeLetters), std::end(kPretokenizeLetters)};
}
CodeRanges pretokenize_numbers() {
  return {std::begin(kPretokenizeNumbers), std::end(kPretokenizeNumbers)};
}
CodeRanges pretokenize_spaces() {
  return {std::begin(kPretokenizeSpaces), std::end(kPretokenizeSpaces)};
}

}  // namespace mole
