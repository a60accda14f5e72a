// NFC exactly as Hugging Face `tokenizers` computes it. Its NFC normalizer uses the crate
// unicode-normalization-alignments 0.1.12, whose tables are Unicode 9.0.0 (tables.rs: UNICODE_VERSION = (9, 0, 0)),
// while utf8proc has newer ones (2.8: Unicode 15.0). Normalization data never changes for an assigned code point,
// so the two differ only on code points assigned after 9.0: Hugging Face treats those as unassigned, i.e. as
// starters (combining class 0) that neither decompose nor compose. Such a code point is therefore a boundary that
// nothing reorders or composes across, and NFC-9.0(text) is utf8proc's NFC of the pieces between them, with them
// kept as they are. (Checked against tokenizers 0.23.2's own NFC on 11 million probe strings covering every code
// point: tools/tokenizer-cases/check_nfc.js.)
#pragma once

#include <string>
#include <string_view>

namespace mole {

// True for a code point assigned in Unicode 9.0 or earlier (model/unicode9_assigned.inc, from
// tools/unicode9/gen_assigned.pl).
bool assigned_in_unicode9(char32_t cp);

// Appends the NFC form of `s` (valid UTF-8) as Hugging Face computes it, to `out`.
void append_nfc_hf(std::string_view s, std::string& out);

}  // namespace mole
