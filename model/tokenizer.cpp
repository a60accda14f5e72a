// Byte-level BPE tokenizer, a faithful re-implementation of Hugging Face `tokenizers` for GPT-NeoX-style
// tokenizer.json files. The encode pipeline follows HF's order: non-normalized added tokens are cut from the raw text,
// the rest is NFC-normalized, normalized added tokens are cut, the GPT-2 pattern splits words, BPE merges each word.
#include "model/tokenizer.h"

#include <utf8proc.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <filesystem>
#include <mutex>
#include <nlohmann/json.hpp>
#include <unordered_map>
#include <utility>

#include "model/error.h"
#include "model/nfc.h"
#include "model/pretokenize_classes.h"
#include "model/user_files.h"

namespace mole {
namespace {

using Json = nlohmann::json;

// Words longer than this are not cached (they are rare and would make the cache's memory unbounded).
constexpr size_t kMaxCachedWordBytes = 64;
constexpr size_t kMaxCacheEntries = 1 << 18;
constexpr int32_t kMaxTokenId = 1 << 24;  // far above any real vocab; guards against absurd ids in a corrupt file

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
template <typename V>
using StringMap = std::unordered_map<std::string, V, StringHash, std::equal_to<>>;

// One step of a UTF-8 scan at s[i]: a valid character of `len` bytes, or an ill-formed "maximal subpart" of `len`
// bytes (the unit that Rust's from_utf8_lossy, and so HF's decode, replaces by one U+FFFD). `truncated` marks a
// subpart that is only ill-formed because the input ends inside it.
struct Utf8Step {
  size_t len;
  bool valid;
  bool truncated;
};

Utf8Step utf8_step(std::string_view s, size_t i) {
  auto b = static_cast<unsigned char>(s[i]);
  if (b < 0x80) return {1, true, false};
  size_t need = 0;
  unsigned char lo = 0x80, hi = 0xBF;
  if (b >= 0xC2 && b <= 0xDF) {
    need = 1;
  } else if (b >= 0xE0 && b <= 0xEF) {
    need = 2;
    if (b == 0xE0) lo = 0xA0;
    if (b == 0xED) hi = 0x9F;  // no surrogates
  } else if (b >= 0xF0 && b <= 0xF4) {
    need = 3;
    if (b == 0xF0) lo = 0x90;
    if (b == 0xF4) hi = 0x8F;  // nothing above U+10FFFF
  } else {
    return {1, false, false};
  }
  for (size_t k = 1; k <= need; ++k) {
    if (i + k >= s.size()) return {k, false, true};
    auto c = static_cast<unsigned char>(s[i + k]);
    if (c < lo || c > hi) return {k, false, false};
    lo = 0x80;
    hi = 0xBF;
  }
  return {need + 1, true, false};
}

// Appends `bytes` as text, each ill-formed subpart replaced by U+FFFD. Returns how many trailing bytes form an
// incomplete character that was held back instead (only when hold_incomplete).
size_t append_lossy(std::string_view bytes, bool hold_incomplete, std::string& out) {
  size_t i = 0;
  while (i < bytes.size()) {
    size_t run = i;  // copy runs of valid text at once
    Utf8Step st{};
    while (run < bytes.size() && (st = utf8_step(bytes, run)).valid) run += st.len;
    out.append(bytes.substr(i, run - i));
    i = run;
    if (i == bytes.size()) break;
    if (st.truncated && hold_incomplete) return bytes.size() - i;
    out.append("\xEF\xBF\xBD");
    i += st.len;
  }
  return 0;
}

void validate_utf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    Utf8Step st = utf8_step(s, i);
    if (!st.valid) {
      throw Error("tokenizer: invalid UTF-8 in input text at byte offset " + std::to_string(i) +
                  (st.truncated ? " (truncated character)" : ""));
    }
    i += st.len;
  }
}

// Decodes the character at s[i] of valid UTF-8, setting `len`.
char32_t decode_char(std::string_view s, size_t i, size_t& len) {
  auto b = static_cast<unsigned char>(s[i]);
  len = b < 0x80 ? 1 : b >= 0xF0 ? 4 : b >= 0xE0 ? 3 : 2;
  if (len == 1) return b;
  char32_t cp = b & (0x7F >> len);
  for (size_t k = 1; k < len; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
  return cp;
}

// Start of the character before s[pos].
size_t prev_char(std::string_view s, size_t pos) {
  do --pos;
  while (pos > 0 && (static_cast<unsigned char>(s[pos]) & 0xC0) == 0x80);
  return pos;
}

void append_char(char32_t cp, std::string& out) {
  std::array<utf8proc_uint8_t, 4> buf{};
  auto n = utf8proc_encode_char(static_cast<utf8proc_int32_t>(cp), buf.data());
  out.append(reinterpret_cast<const char*>(buf.data()), static_cast<size_t>(n));
}

constexpr uint32_t category_bit(utf8proc_category_t c) {
  return uint32_t{1} << c;
}
constexpr uint32_t kLetterCategories = category_bit(UTF8PROC_CATEGORY_LU) | category_bit(UTF8PROC_CATEGORY_LL) |
                                       category_bit(UTF8PROC_CATEGORY_LT) | category_bit(UTF8PROC_CATEGORY_LM) |
                                       category_bit(UTF8PROC_CATEGORY_LO);
// Unicode \w as Rust's regex crate reads it (HF's single_word test), by utf8proc's General_Category: Alphabetic,
// marks, decimal digits and connector punctuation (plus joiners and Other_Alphabetic symbols, handled in
// is_word_char).
constexpr uint32_t kWordCategories = kLetterCategories | category_bit(UTF8PROC_CATEGORY_NL) |
                                     category_bit(UTF8PROC_CATEGORY_ND) | category_bit(UTF8PROC_CATEGORY_MN) |
                                     category_bit(UTF8PROC_CATEGORY_MC) | category_bit(UTF8PROC_CATEGORY_ME) |
                                     category_bit(UTF8PROC_CATEGORY_PC);

uint32_t category_bits(char32_t cp) {
  return category_bit(utf8proc_category(static_cast<utf8proc_int32_t>(cp)));
}

bool is_word_char(char32_t cp) {
  if (cp == 0x200C || cp == 0x200D || (cp >= 0x24B6 && cp <= 0x24E9) || (cp >= 0x1F130 && cp <= 0x1F189)) return true;
  return (category_bits(cp) & kWordCategories) != 0;
}

// End of the match of 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ at s[i]: the
// alternatives are tried in order, as the regex engine does, and every character matches one of them.
size_t gpt2_match_end(std::string_view s, size_t i) {
  const size_t n = s.size();
  if (s[i] == '\'' && i + 1 < n) {
    char a = s[i + 1];
    if (a == 's' || a == 't' || a == 'm' || a == 'd') return i + 2;
    if (i + 2 < n) {
      char b = s[i + 2];
      if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return i + 3;
    }
  }
  size_t len = 0;
  PretokenizeClass c = pretokenize_class(decode_char(s, i, len));
  size_t j = i + len;
  if (s[i] == ' ' && j < n) {
    size_t next_len = 0;
    PretokenizeClass next = pretokenize_class(decode_char(s, j, next_len));
    if (next != PretokenizeClass::kSpace) {
      c = next;
      j += next_len;
    }
  }
  if (c != PretokenizeClass::kSpace) {
    while (j < n) {
      size_t l = 0;
      if (pretokenize_class(decode_char(s, j, l)) != c) break;
      j += l;
    }
    return j;
  }
  // A whitespace run: all of it at the end of the text; otherwise \s+(?!\S) leaves its last character to the word
  // that follows, unless the run is a single character, which \s+ then takes.
  size_t last = i;
  while (j < n) {
    size_t l = 0;
    if (pretokenize_class(decode_char(s, j, l)) != PretokenizeClass::kSpace) break;
    last = j;
    j += l;
  }
  if (j == n || last == i) return j;
  return last;
}

struct ByteLevelTable {
  std::array<char32_t, 256> byte_to_char{};
  std::unordered_map<char32_t, uint8_t> char_to_byte;

  ByteLevelTable() {
    char32_t extra = 256;
    for (int b = 0; b < 256; ++b) {
      bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      byte_to_char[b] = printable ? static_cast<char32_t>(b) : extra++;
      char_to_byte[byte_to_char[b]] = static_cast<uint8_t>(b);
    }
  }
};

const ByteLevelTable& byte_level() {
  static const ByteLevelTable table;
  return table;
}

// The bytes HF's ByteLevel decoder gives for one token: its characters mapped back to bytes, or, when any character
// is outside the table (added tokens such as runs of spaces), the token's own UTF-8.
std::string token_to_bytes(const std::string& token) {
  const auto& table = byte_level().char_to_byte;
  std::string out;
  for (size_t i = 0; i < token.size();) {
    size_t len = 0;
    auto it = table.find(decode_char(token, i, len));
    if (it == table.end()) return token;
    out.push_back(static_cast<char>(it->second));
    i += len;
  }
  return out;
}

struct AddedToken {
  std::string content;
  int32_t id = 0;
  bool single_word = false, lstrip = false, rstrip = false, normalized = true, special = false;
};

// Byte trie over added-token contents, scanned leftmost-longest like HF's Aho-Corasick automaton.
class Trie {
 public:
  void insert(std::string_view pattern, int32_t token_index) {
    if (pattern.empty()) return;
    if (nodes_.empty()) nodes_.emplace_back();
    int32_t node = 0;
    for (char ch : pattern) {
      auto b = static_cast<uint8_t>(ch);
      int32_t next = child(node, b);
      if (next < 0) {
        next = static_cast<int32_t>(nodes_.size());
        nodes_[node].children.emplace_back(b, next);
        nodes_.emplace_back();
      }
      node = next;
    }
    if (nodes_[node].token < 0) nodes_[node].token = token_index;
    first_byte_[static_cast<uint8_t>(pattern[0])] = true;
  }

  // Non-overlapping leftmost-longest matches as (begin, end, token index).
  std::vector<std::array<size_t, 3>> find_all(std::string_view s) const {
    std::vector<std::array<size_t, 3>> out;
    if (nodes_.empty()) return out;
    for (size_t i = 0; i < s.size();) {
      int32_t node = first_byte_[static_cast<uint8_t>(s[i])] ? 0 : -1, best_token = -1;
      size_t best_end = i + 1;
      for (size_t j = i; node >= 0 && j < s.size(); ++j) {
        node = child(node, static_cast<uint8_t>(s[j]));
        if (node >= 0 && nodes_[node].token >= 0) {
          best_token = nodes_[node].token;
          best_end = j + 1;
        }
      }
      if (best_token >= 0) out.push_back({i, best_end, static_cast<size_t>(best_token)});
      i = best_end;
    }
    return out;
  }

 private:
  struct Node {
    std::vector<std::pair<uint8_t, int32_t>> children;
    int32_t token = -1;
  };
  int32_t child(int32_t node, uint8_t b) const {
    for (const auto& [byte, next] : nodes_[node].children) {
      if (byte == b) return next;
    }
    return -1;
  }
  std::vector<Node> nodes_;
  std::array<bool, 256> first_byte_{};
};

struct Merge {
  int32_t rank;
  int32_t new_id;
};

uint64_t pair_key(int32_t a, int32_t b) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
}

[[noreturn]] void fail(const std::string& path, const std::string& what) {
  throw Error(path + ": " + what);
}

// A token in an error message: quoted, cut short, control characters escaped (a NUL would end the message).
std::string shown(const std::string& token) {
  std::string out = "\"";
  for (size_t i = 0; i < token.size() && i < 60; ++i) {
    auto c = static_cast<unsigned char>(token[i]);
    if (c < 0x20 || c == 0x7F) {
      static const char kHex[] = "0123456789abcdef";
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 15];
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + (token.size() > 60 ? "...\"" : "\"");
}

// A JSON value in an error message, cut short.
std::string brief(const Json& v) {
  std::string s = v.dump(-1, ' ', false, Json::error_handler_t::replace);
  return s.size() > 40 ? s.substr(0, 37) + "..." : s;
}

std::string type_of(const Json& j) {
  return j.is_object() && j.contains("type") && j["type"].is_string() ? j["type"].get<std::string>() : "";
}

// The steps of a normalizer or post-processor: a "Sequence" lists them under `list_key`; null means none.
std::vector<Json> steps_of(const Json& j, const char* list_key) {
  if (j.is_null()) return {};
  if (type_of(j) != "Sequence") return {j};
  return j.at(list_key).get<std::vector<Json>>();
}

}  // namespace

struct Tokenizer::Impl {
  std::string path;
  std::vector<std::string> tokens;  // by id, as HF's id_to_token gives them (normalized added tokens normalized)
  std::vector<std::string> bytes;   // by id, what the ByteLevel decoder makes of each
  std::vector<bool> has_id;
  StringMap<int32_t> token_ids;                // added tokens' content (as given) and model tokens
  std::array<int32_t, 256> byte_ids{};         // id of each single byte's token, -1 when the vocab lacks it
  std::unordered_map<uint64_t, Merge> merges;  // (left id, right id) -> merge
  std::vector<AddedToken> added;
  Trie raw_trie, normalized_trie;
  bool nfc = false, add_prefix_space = false, use_regex = true, fuse_unk = false;
  std::optional<int32_t> unk_id, bos, eos;
  std::vector<int32_t> prefix_ids, suffix_ids;  // from a TemplateProcessing post-processor

  mutable std::mutex cache_mutex;
  mutable StringMap<std::vector<int32_t>> cache;

  // Gives `id` to `token`; `where` names the entry for errors. An id already given to a different token is an error
  // (an added token may restate a model token's id with the same content, as GPT-NeoX's <|endoftext|> does).
  void set_token(int32_t id, const std::string& token, const std::string& where) {
    if (id < 0 || id >= kMaxTokenId) fail(path, where + " has id " + std::to_string(id) + ", far past any vocabulary");
    if (static_cast<size_t>(id) >= tokens.size()) {
      tokens.resize(id + 1);
      has_id.resize(id + 1, false);
    }
    if (has_id[id] && tokens[id] != token) {
      fail(path, where + " has id " + std::to_string(id) + ", which is already the id of token " + shown(tokens[id]) +
                     "; every id names one token");
    }
    tokens[id] = token;
    has_id[id] = true;
  }
  // An id as tokenizer.json gives it: an integer in [0, limit). Anything else (a fraction, a string, a negative
  // number, 2^31 or more, or an id past the vocabulary) would be truncated, wrapped or leave a hole.
  int32_t parse_id(const Json& v, int64_t limit, const std::string& where, const std::string& limit_meaning) const {
    if (!v.is_number_integer()) fail(path, where + " has id " + brief(v) + ", which is not an integer");
    const bool negative = !v.is_number_unsigned() && v.get<int64_t>() < 0;
    if (negative || (v.is_number_unsigned() ? v.get<uint64_t>() > uint64_t(INT32_MAX) : v.get<int64_t>() > INT32_MAX))
      fail(path, where + " has id " + v.dump() + ", outside [0, 2^31)");
    const int64_t id = v.get<int64_t>();
    if (id >= limit) {
      fail(path, where + " has id " + std::to_string(id) + ", outside the vocabulary (" + limit_meaning +
                     ", so ids 0 to " + std::to_string(limit - 1) + ")");
    }
    return static_cast<int32_t>(id);
  }

  void load_model(const Json& model);
  void load_added(const Json& list);
  void load_pipeline(const Json& doc);
  void load_post_processor(const Json& pp);
  void load_bos_eos();

  template <typename Emit>
  void split_added(std::string_view s, const Trie& trie, Emit&& emit) const;
  void encode_piece(std::string_view piece, std::vector<int32_t>& out) const;
  void bpe(std::string_view word, std::vector<int32_t>& out) const;
  void bpe_uncached(std::string_view word, std::vector<int32_t>& out) const;
  const Merge* find_merge(int32_t a, int32_t b) const {
    auto it = merges.find(pair_key(a, b));
    return it == merges.end() ? nullptr : &it->second;
  }
};

void Tokenizer::Impl::load_model(const Json& model) {
  if (!model.is_object()) fail(path, "missing \"model\" object");
  std::string type = type_of(model);
  if (type.empty() && model.contains("merges")) type = "BPE";  // HF also accepts an untagged BPE model
  if (type != "BPE") fail(path, "model.type is \"" + type + "\"; only byte-level \"BPE\" tokenizers are supported");
  if (model.contains("dropout") && !model["dropout"].is_null() && model["dropout"].get<double>() != 0.0) {
    fail(path, "BPE dropout is not supported");
  }
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    if (model.contains(key) && !model[key].is_null() && !model[key].get<std::string>().empty()) {
      fail(path, std::string("BPE ") + key + " is not supported");
    }
  }
  if (model.value("byte_fallback", false)) fail(path, "BPE byte_fallback is not supported");
  // Only byte-level models that pair ignore_merges with a Split pre-tokenizer (Llama 3) use it.
  if (model.value("ignore_merges", false)) fail(path, "BPE ignore_merges is not supported");
  fuse_unk = model.value("fuse_unk", false);
  if (!model.contains("vocab") || !model["vocab"].is_object()) fail(path, "model.vocab is missing or not an object");
  if (!model.contains("merges") || !model["merges"].is_array()) fail(path, "model.merges is missing or not an array");

  const StringMap<int32_t>& vocab = token_ids;  // only model tokens so far; added tokens come later
  // Ids are 0..N-1 for N tokens: with no id repeated (set_token), every one below N is used exactly once.
  const int64_t n = static_cast<int64_t>(model["vocab"].size());
  for (const auto& [token, id_json] : model["vocab"].items()) {
    const std::string where = "model.vocab token " + shown(token);
    const int32_t id = parse_id(id_json, n, where, "model.vocab has " + std::to_string(n) + " tokens");
    set_token(id, token, where);
    token_ids.emplace(token, id);
  }
  const auto& table = byte_level();
  for (int b = 0; b < 256; ++b) {
    std::string ch;
    append_char(table.byte_to_char[b], ch);
    auto it = vocab.find(ch);
    byte_ids[b] = it == vocab.end() ? -1 : it->second;
  }
  if (model.contains("unk_token") && model["unk_token"].is_string()) {
    auto it = vocab.find(model["unk_token"].get<std::string>());
    if (it == vocab.end()) fail(path, "model.unk_token is not in model.vocab");
    unk_id = it->second;
  }

  merges.reserve(model["merges"].size());
  for (size_t rank = 0; rank < model["merges"].size(); ++rank) {
    const Json& m = model["merges"][rank];
    std::string a, b;
    if (m.is_string()) {
      auto s = m.get<std::string>();
      size_t space = s.find(' ');
      if (space == std::string::npos || s.find(' ', space + 1) != std::string::npos) {
        fail(path, "merge " + std::to_string(rank + 1) + " \"" + s + "\" is not two tokens separated by a space");
      }
      a = s.substr(0, space);
      b = s.substr(space + 1);
    } else if (m.is_array() && m.size() == 2) {
      a = m[0].get<std::string>();
      b = m[1].get<std::string>();
    } else {
      fail(path, "merge " + std::to_string(rank + 1) + " is neither \"a b\" nor [\"a\", \"b\"]");
    }
    auto ia = vocab.find(a), ib = vocab.find(b), ic = vocab.find(a + b);
    if (ia == vocab.end() || ib == vocab.end() || ic == vocab.end()) {
      fail(path, "merge " + std::to_string(rank + 1) + " (\"" + a + "\", \"" + b + "\") uses a token not in the vocab");
    }
    // A repeated pair keeps its last rank, as HF's HashMap collect does.
    merges[pair_key(ia->second, ib->second)] = Merge{static_cast<int32_t>(rank), ic->second};
  }
}

void Tokenizer::Impl::load_pipeline(const Json& doc) {
  for (const Json& n : steps_of(doc.value("normalizer", Json()), "normalizers")) {
    if (type_of(n) != "NFC") fail(path, "normalizer \"" + type_of(n) + "\" is not supported (only NFC)");
    nfc = true;
  }
  const Json pre = doc.value("pre_tokenizer", Json());
  if (type_of(pre) != "ByteLevel") fail(path, "pre_tokenizer must be ByteLevel, not \"" + type_of(pre) + "\"");
  add_prefix_space = pre.value("add_prefix_space", false);
  use_regex = pre.value("use_regex", true);
  const Json dec = doc.value("decoder", Json());
  if (type_of(dec) != "ByteLevel") fail(path, "decoder must be ByteLevel, not \"" + type_of(dec) + "\"");
}

void Tokenizer::Impl::load_added(const Json& list) {
  if (list.is_null()) return;
  if (!list.is_array()) fail(path, "added_tokens is not an array");
  // Added tokens either restate a model token or extend the vocabulary past it, without leaving holes.
  const int64_t limit = static_cast<int64_t>(tokens.size() + list.size());
  for (size_t i = 0; i < list.size(); i++) {
    const Json& t = list[i];
    if (!t.is_object() || !t.contains("content") || !t["content"].is_string() || !t.contains("id"))
      fail(path, "added_tokens[" + std::to_string(i) +
                     "] is not an object with a \"content\" string and an \"id\" (the file is damaged; download it "
                     "again)");
    AddedToken tok;
    tok.content = t["content"].get<std::string>();
    const std::string where = "added token " + shown(tok.content);
    tok.id = parse_id(t.at("id"), limit, where,
                      std::to_string(tokens.size()) + " model tokens and " + std::to_string(list.size()) + " added");
    tok.single_word = t.value("single_word", false);
    tok.lstrip = t.value("lstrip", false);
    tok.rstrip = t.value("rstrip", false);
    tok.special = t.value("special", false);
    tok.normalized = t.value("normalized", !tok.special);
    if (tok.content.empty()) fail(path, "added token " + std::to_string(tok.id) + " is empty");
    auto index = static_cast<int32_t>(added.size());
    if (tok.normalized) {
      // HF matches a normalized token's normalized content against normalized text, and decodes that form too.
      std::string norm_content;
      if (nfc) append_nfc_hf(tok.content, norm_content);
      set_token(tok.id, nfc ? norm_content : tok.content, where);
      normalized_trie.insert(tokens[tok.id], index);
    } else {
      set_token(tok.id, tok.content, where);
      raw_trie.insert(tok.content, index);
    }
    token_ids[tok.content] = tok.id;
    added.push_back(std::move(tok));
  }
}

void Tokenizer::Impl::load_post_processor(const Json& pp) {
  for (const Json& p : steps_of(pp, "processors")) {
    std::string type = type_of(p);
    if (type == "ByteLevel") continue;  // only trims offsets, which this tokenizer does not report
    if (type != "TemplateProcessing") fail(path, "post_processor \"" + type + "\" is not supported");
    bool after_sequence = false;
    for (const Json& item : p.at("single")) {
      if (item.contains("Sequence")) {
        after_sequence = true;
        continue;
      }
      const std::string name = item.at("SpecialToken").at("id").get<std::string>();
      const Json& special = p.at("special_tokens").at(name);
      for (const Json& id_json : special.at("ids")) {
        const std::string where = "post_processor special token " + shown(name);
        const int32_t id = parse_id(id_json, INT32_MAX, where, "");  // then checked against the ids given
        if (static_cast<size_t>(id) >= tokens.size() || !has_id[id])
          fail(path, where + " has id " + std::to_string(id) + ", which is not a token of the vocabulary");
        (after_sequence ? suffix_ids : prefix_ids).push_back(id);
      }
    }
  }
}

void Tokenizer::Impl::load_bos_eos() {
  namespace fs = std::filesystem;
  const fs::path dir = fs::path(path).parent_path();
  std::vector<Json> configs;
  for (const char* name : {"tokenizer_config.json", "special_tokens_map.json"}) {
    const std::string file = (dir / name).string();
    if (path_kind(file) == PathKind::Missing) continue;
    configs.push_back(load_json_file(file, name));
    if (!configs.back().is_object()) fail(file, "is not a JSON object");
  }
  auto lookup = [&](const char* key) -> std::optional<int32_t> {
    std::string name;
    bool named = false;
    for (const Json& config : configs) {
      if (named || !config.contains(key)) continue;
      named = true;
      const Json& v = config[key];  // a string, or an AddedToken object, or null for none
      if (v.is_string()) name = v.get<std::string>();
      if (v.is_object() && v.contains("content") && v["content"].is_string()) name = v["content"].get<std::string>();
    }
    // Named nowhere: GPT-NeoX-family files mark document boundaries with this special token.
    for (const AddedToken& t : added) {
      if (!named && t.special && t.content == "<|endoftext|>") name = t.content;
    }
    auto it = token_ids.find(name);
    return name.empty() || it == token_ids.end() ? std::nullopt : std::optional<int32_t>(it->second);
  };
  bos = lookup("bos_token");
  eos = lookup("eos_token");
}

// HF's AddedVocabulary::find_matches: cuts `s` into plain pieces (id -1) and added tokens, honouring each token's
// single_word, lstrip and rstrip flags.
template <typename Emit>
void Tokenizer::Impl::split_added(std::string_view s, const Trie& trie, Emit&& emit) const {
  size_t start_offset = 0;
  for (const auto& [begin, end, index] : trie.find_all(s)) {
    const AddedToken& tok = added[index];
    size_t start = begin, stop = end;
    size_t len = 0;
    if (tok.single_word) {
      bool start_ok = start == 0 || !is_word_char(decode_char(s, prev_char(s, start), len));
      bool stop_ok = stop == s.size() || !is_word_char(decode_char(s, stop, len));
      if (!start_ok || !stop_ok) continue;
    }
    if (tok.lstrip) {
      size_t p = start;
      while (p > 0 && is_white_space(decode_char(s, prev_char(s, p), len))) p = prev_char(s, p);
      start = std::max(p, start_offset);  // spaces already taken by the previous match stay there
    }
    if (tok.rstrip) {
      while (stop < s.size() && is_white_space(decode_char(s, stop, len))) stop += len;
    }
    if (start_offset < start) emit(s.substr(start_offset, start - start_offset), -1);
    emit(std::string_view(), tok.id);
    start_offset = stop;
  }
  if (start_offset < s.size()) emit(s.substr(start_offset), -1);
}

void Tokenizer::Impl::encode_piece(std::string_view piece, std::vector<int32_t>& out) const {
  std::string prefixed;
  if (add_prefix_space && !piece.empty() && piece[0] != ' ') {
    prefixed = " ";
    prefixed.append(piece);
    piece = prefixed;
  }
  if (!use_regex) {
    if (!piece.empty()) bpe(piece, out);
    return;
  }
  for (size_t i = 0; i < piece.size();) {
    size_t end = gpt2_match_end(piece, i);
    bpe(piece.substr(i, end - i), out);
    i = end;
  }
}

void Tokenizer::Impl::bpe(std::string_view word, std::vector<int32_t>& out) const {
  if (word.size() == 1) {  // most punctuation and spaces: no merge possible
    int32_t id = byte_ids[static_cast<uint8_t>(word[0])];
    if (id >= 0) {
      out.push_back(id);
      return;
    }
  }
  if (word.size() > kMaxCachedWordBytes) {
    bpe_uncached(word, out);
    return;
  }
  {
    std::lock_guard<std::mutex> lock(cache_mutex);
    auto it = cache.find(word);
    if (it != cache.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  size_t first = out.size();
  bpe_uncached(word, out);
  std::lock_guard<std::mutex> lock(cache_mutex);
  if (cache.size() < kMaxCacheEntries) cache.emplace(word, std::vector<int32_t>(out.begin() + first, out.end()));
}

// HF's Word::merge_all: repeatedly merges the adjacent pair of lowest rank, leftmost first, using a min-heap of
// candidate pairs and skipping candidates that earlier merges made stale.
void Tokenizer::Impl::bpe_uncached(std::string_view word, std::vector<int32_t>& out) const {
  struct Symbol {
    int32_t id, prev, next;
  };
  std::vector<Symbol> syms;
  syms.reserve(word.size());
  for (char ch : word) {
    int32_t id = byte_ids[static_cast<uint8_t>(ch)];
    if (id < 0) {
      // The vocab lacks this byte: HF emits unk (fused when asked) or, with no unk token, drops it.
      if (!unk_id || (fuse_unk && !syms.empty() && syms.back().id == *unk_id)) continue;
      id = *unk_id;
    }
    int32_t n = static_cast<int32_t>(syms.size());
    syms.push_back({id, n - 1, -1});
    if (n > 0) syms[n - 1].next = n;
  }
  struct Candidate {
    int32_t rank, pos, new_id;
    bool operator>(const Candidate& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  std::vector<Candidate> heap;
  auto push = [&](int32_t pos) {
    if (pos < 0 || syms[pos].next < 0) return;
    if (const Merge* m = find_merge(syms[pos].id, syms[syms[pos].next].id)) {
      heap.push_back({m->rank, pos, m->new_id});
      std::push_heap(heap.begin(), heap.end(), std::greater<>());
    }
  };
  for (int32_t i = 0; i + 1 < static_cast<int32_t>(syms.size()); ++i) push(i);
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), std::greater<>());
    Candidate top = heap.back();
    heap.pop_back();
    Symbol& left = syms[top.pos];
    if (left.id < 0 || left.next < 0) continue;
    const Merge* m = find_merge(left.id, syms[left.next].id);
    if (m == nullptr || m->new_id != top.new_id) continue;  // stale: a neighbour merged since
    int32_t right = left.next;
    left.id = top.new_id;
    left.next = syms[right].next;
    if (left.next >= 0) syms[left.next].prev = top.pos;
    syms[right].id = -1;
    push(left.prev);
    push(top.pos);
  }
  for (int32_t i = syms.empty() ? -1 : 0; i >= 0; i = syms[i].next) out.push_back(syms[i].id);
}

Tokenizer::Tokenizer(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}

Tokenizer Tokenizer::load(const std::string& path) {
  auto impl = std::make_shared<Impl>();
  impl->path = path;
  Json doc = load_json_file(path, "tokenizer file");
  try {
    if (!doc.is_object()) fail(path, "tokenizer file is not a JSON object");
    impl->load_model(doc.value("model", Json()));
    impl->load_pipeline(doc);
    impl->load_added(doc.value("added_tokens", Json()));
    impl->bytes.resize(impl->tokens.size());
    for (size_t id = 0; id < impl->tokens.size(); ++id) impl->bytes[id] = token_to_bytes(impl->tokens[id]);
    impl->load_post_processor(doc.value("post_processor", Json()));
    impl->load_bos_eos();
  } catch (const Json::exception& e) {
    fail(path, std::string("unexpected tokenizer.json content: ") + e.what());
  }
  return Tokenizer(std::move(impl));
}

std::vector<int32_t> Tokenizer::encode(std::string_view text) const {
  validate_utf8(text);
  const Impl& im = *impl_;
  std::vector<int32_t> out(im.prefix_ids);
  out.reserve(text.size() / 3 + 8);
  im.split_added(text, im.raw_trie, [&](std::string_view piece, int32_t id) {
    if (id >= 0) {
      out.push_back(id);
      return;
    }
    // Below U+0300 every character is NFC-stable and cannot combine, so most text skips normalization.
    std::string normalized;
    bool needs_nfc =
        im.nfc && std::any_of(piece.begin(), piece.end(), [](char c) { return static_cast<unsigned char>(c) >= 0xCC; });
    if (needs_nfc) {
      append_nfc_hf(piece, normalized);
      piece = normalized;
    }
    im.split_added(piece, im.normalized_trie, [&](std::string_view sub, int32_t sub_id) {
      if (sub_id >= 0) {
        out.push_back(sub_id);
      } else {
        im.encode_piece(sub, out);
      }
    });
  });
  out.insert(out.end(), im.suffix_ids.begin(), im.suffix_ids.end());
  return out;
}

const std::string& Tokenizer::token_bytes(int32_t id) const {
  if (id < 0 || id >= vocab_size() || !impl_->has_id[id]) {
    throw Error("tokenizer: token id " + std::to_string(id) + " is out of range (vocab size " +
                std::to_string(vocab_size()) + ")");
  }
  return impl_->bytes[id];
}

// Hugging Face's decode skips ids the tokenizer does not know (its id_to_token filter_map), which matters for a
// model whose vocabulary is padded past the tokenizer's (GPT-NeoX: 50304 vs 50277).
const std::string& Tokenizer::token_bytes_or_empty(int32_t id) const {
  static const std::string kEmpty;
  if (id < 0 || id >= vocab_size() || !impl_->has_id[id]) return kEmpty;
  return impl_->bytes[id];
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids) const {
  std::string bytes;
  for (int32_t id : ids) bytes += token_bytes_or_empty(id);
  std::string out;
  append_lossy(bytes, false, out);
  return out;
}

int32_t Tokenizer::vocab_size() const {
  return static_cast<int32_t>(impl_->tokens.size());
}

std::optional<int32_t> Tokenizer::token_to_id(std::string_view token) const {
  auto it = impl_->token_ids.find(token);
  return it == impl_->token_ids.end() ? std::nullopt : std::optional<int32_t>(it->second);
}

std::string Tokenizer::id_to_token(int32_t id) const {
  token_bytes(id);  // range check
  return impl_->tokens[id];
}

std::optional<int32_t> Tokenizer::bos_id() const {
  return impl_->bos;
}
std::optional<int32_t> Tokenizer::eos_id() const {
  return impl_->eos;
}

Tokenizer::StreamDecoder::StreamDecoder(const Tokenizer& tok) : tok_(&tok) {}

std::string Tokenizer::StreamDecoder::push(int32_t id) {
  pending_ += tok_->token_bytes_or_empty(id);
  std::string out;
  size_t held = append_lossy(pending_, true, out);
  pending_.erase(0, pending_.size() - held);
  return out;
}

std::string Tokenizer::StreamDecoder::finish() {
  std::string out;
  append_lossy(pending_, false, out);
  pending_.clear();
  return out;
}

double tokenizer_benchmark_mb_per_s(const Tokenizer& tok, std::string_view text, double seconds) {
  using Clock = std::chrono::steady_clock;
  const auto start = Clock::now();
  size_t bytes = 0, tokens = 0;
  double elapsed = 0.0;
  do {
    tokens += tok.encode(text).size();
    bytes += text.size();
    elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  } while (elapsed < seconds);
  return elapsed > 0.0 && tokens > 0 ? static_cast<double>(bytes) / elapsed / 1e6 : 0.0;
}

}  // namespace mole
