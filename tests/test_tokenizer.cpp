// Checks mole::Tokenizer against tests/data/tokenizer_cases.json, which Hugging Face's own `tokenizers` library
// produced (tools/tokenizer-cases/gen.js) for GPT-NeoX's tokenizer, plus streaming, round trips and bad input.
#include <doctest/doctest.h>
#include <unistd.h>
#include <utf8proc.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "model/error.h"
#include "model/nfc.h"
#include "model/paths.h"
#include "model/pretokenize_classes.h"
#include "model/tokenizer.h"

namespace {

// From share/mole/ beside the test binary (the build copies them there), so a moved build or a bundle finds them.
std::string tokenizer_path() {
  return mole::data_dir() + "/gpt-neox-tokenizer/tokenizer.json";
}
std::string cases_path() {
  return mole::data_dir() + "/tests/tokenizer_cases.json";
}

const mole::Tokenizer& neox() {
  static const mole::Tokenizer tok = mole::Tokenizer::load(tokenizer_path());
  return tok;
}

struct Case {
  std::string text;
  std::vector<int32_t> ids;
  std::string decoded;
};

const nlohmann::json& cases_doc() {
  static const nlohmann::json doc = [] {
    std::ifstream in(cases_path());
    REQUIRE_MESSAGE(in.good(), "cannot open " << cases_path());
    return nlohmann::json::parse(in);
  }();
  return doc;
}

std::vector<Case> read_cases(const char* key) {
  std::vector<Case> out;
  for (const auto& c : cases_doc().at(key)) {
    out.push_back(
        {c.at("text").get<std::string>(), c.at("ids").get<std::vector<int32_t>>(), c.at("decoded").get<std::string>()});
  }
  return out;
}

const std::vector<Case>& cases() {
  static const std::vector<Case> all = read_cases("cases");
  return all;
}

// Encode, decode and stream-decode every case; returns how many matched fully.
size_t check_cases(const mole::Tokenizer& tok, const std::vector<Case>& all) {
  size_t passed = 0;
  for (const Case& c : all) {
    CAPTURE(c.text);
    std::vector<int32_t> ids = tok.encode(c.text);
    CHECK(ids == c.ids);
    std::string decoded = tok.decode(c.ids);
    CHECK(decoded == c.decoded);
    passed += ids == c.ids && decoded == c.decoded;
  }
  return passed;
}

std::string nfc(const std::string& s) {
  utf8proc_uint8_t* dst = nullptr;
  auto n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(s.data()), static_cast<utf8proc_ssize_t>(s.size()),
                        &dst, static_cast<utf8proc_option_t>(UTF8PROC_STABLE | UTF8PROC_COMPOSE));
  REQUIRE(n >= 0);
  std::string out(reinterpret_cast<const char*>(dst), static_cast<size_t>(n));
  std::free(dst);
  return out;
}

bool is_valid_utf8(const std::string& s) {
  const auto* p = reinterpret_cast<const utf8proc_uint8_t*>(s.data());
  for (utf8proc_ssize_t i = 0, n = static_cast<utf8proc_ssize_t>(s.size()); i < n;) {
    utf8proc_int32_t cp = 0;
    utf8proc_ssize_t len = utf8proc_iterate(p + i, n - i, &cp);
    if (len <= 0 || cp < 0) return false;
    i += len;
  }
  return true;
}

// A scratch file removed when the test ends.
struct TempFile {
  std::string path;
  TempFile(const std::string& name, const std::string& content)
      : path((std::filesystem::temp_directory_path() / ("mole_tok_" + std::to_string(::getpid()) + "_" + name))
                 .string()) {
    std::ofstream(path, std::ios::binary) << content;
  }
  ~TempFile() { std::remove(path.c_str()); }
};

std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void check_load_error(const std::string& path, const std::string& expected_fragment) {
  try {
    mole::Tokenizer::load(path);
    FAIL("loading " << path << " should have thrown");
  } catch (const mole::Error& e) {
    std::string msg = e.what();
    CHECK_MESSAGE(msg.find(path) != std::string::npos, msg);
    CHECK_MESSAGE(msg.find(expected_fragment) != std::string::npos, msg);
  }
}

}  // namespace

TEST_CASE("tokenizer: encode and decode match Hugging Face tokenizers on every recorded case") {
  const auto& all = cases();
  REQUIRE(all.size() >= 500);
  MESSAGE(check_cases(neox(), all) << " of " << all.size() << " Hugging Face cases match");
}

TEST_CASE("tokenizer: characters from every Unicode version after 9.0 normalize as Hugging Face's NFC leaves them") {
  // Hugging Face normalizes with Unicode 9.0 tables (model/nfc.h); utf8proc's newer ones would reorder or compose
  // each of these texts. Recorded with tokenizers (tools/tokenizer-cases/gen.js), for each version through 17.0.
  std::map<std::string, size_t> per_version;
  for (const auto& c : cases_doc().at("unicode_version_cases")) per_version[c.at("unicode").get<std::string>()]++;
  for (const char* version : {"10.0", "11.0", "12.0", "12.1", "13.0", "14.0", "15.0", "15.1", "16.0", "17.0"}) {
    CAPTURE(version);
    CHECK(per_version[version] > 0);
  }
  const std::vector<Case> all = read_cases("unicode_version_cases");
  CHECK(check_cases(neox(), all) == all.size());
  // The texts do differ under utf8proc's own NFC, so the cases would catch a tokenizer that used it.
  size_t differ = 0;
  for (const Case& c : all) differ += nfc(c.text) != c.decoded;
  CHECK(differ >= 20);
}

TEST_CASE("tokenizer: the pre-tokenizer's letters and numbers agree with utf8proc's Unicode wherever it knows them") {
  // model/pretokenize_classes.inc was read from Hugging Face's pre-tokenizer; utf8proc's General_Category is a
  // second, independent source for every code point its Unicode version assigns.
  using mole::PretokenizeClass;
  for (const mole::CodeRanges r :
       {mole::pretokenize_letters(), mole::pretokenize_numbers(), mole::pretokenize_spaces()}) {
    REQUIRE(r.end - r.begin > 0);
    for (const mole::CodeRange* it = r.begin; it != r.end; ++it) {
      REQUIRE(it->first <= it->last);
      REQUIRE(it->last <= 0x10FFFF);
      if (it != r.begin) REQUIRE(std::prev(it)->last + 1 < it->first);  // sorted, disjoint, merged
    }
  }
  size_t newer = 0, checked = 0, wrong = 0;
  char32_t first_wrong = 0;
  const auto spaces = mole::pretokenize_spaces();
  for (char32_t cp = 0x80; cp <= 0x10FFFF; ++cp) {
    if (cp >= 0xD800 && cp <= 0xDFFF) continue;
    const PretokenizeClass c = mole::pretokenize_class(cp);
    const bool in_spaces = mole::in_ranges(spaces.begin, spaces.end, cp);
    bool ok = in_spaces == mole::is_white_space(cp) && (c == PretokenizeClass::kSpace) == in_spaces;
    const auto cat = utf8proc_category(utf8proc_int32_t(cp));
    if (cat == UTF8PROC_CATEGORY_CN) {  // unassigned in utf8proc's version: newer letters and numbers are expected
      newer += c == PretokenizeClass::kLetter || c == PretokenizeClass::kNumber;
    } else {
      checked++;
      const bool letter = cat >= UTF8PROC_CATEGORY_LU && cat <= UTF8PROC_CATEGORY_LO;
      const bool number = cat >= UTF8PROC_CATEGORY_ND && cat <= UTF8PROC_CATEGORY_NO;
      ok = ok && (c == PretokenizeClass::kLetter) == letter && (c == PretokenizeClass::kNumber) == number;
    }
    if (!ok && wrong++ == 0) first_wrong = cp;
  }
  CHECK_MESSAGE(wrong == 0, wrong << " code points disagree, the first U+" << std::hex << uint32_t(first_wrong));
  MESSAGE(checked << " code points agree with utf8proc's Unicode " << std::string(utf8proc_unicode_version()) << "; "
                  << newer << " letters and numbers are newer than its tables");
  CHECK(checked > 140000);
  // Unicode 16.0: GARAY CAPITAL LETTER A and KIRAT RAI DIGIT ZERO; 17.0 (newer than Hugging Face's tables): other.
  CHECK(mole::pretokenize_class(0x10D4A) == PretokenizeClass::kLetter);
  CHECK(mole::pretokenize_class(0x16D70) == PretokenizeClass::kNumber);
  CHECK(mole::pretokenize_class(0x1E6C0) == PretokenizeClass::kOther);
}

TEST_CASE("tokenizer: NFC equals utf8proc's on Unicode 9.0 text, and long runs of marks take linear time") {
  // Random strings of characters that decompose, compose and reorder (no U+11A7, which utf8proc 2.8 mishandles).
  const std::vector<std::pair<char32_t, char32_t>> pools = {
      {0x41, 0x7A},     {0xC0, 0x17F},    {0x300, 0x36F},   {0x1E00, 0x1EFF},   {0x1F00, 0x1FFF}, {0x591, 0x5C7},
      {0x610, 0x61A},   {0x93C, 0x94D},   {0xE38, 0xE3A},   {0x1100, 0x1112},   {0x1161, 0x1175}, {0x11A8, 0x11C2},
      {0xAC00, 0xAC40}, {0x3099, 0x309A}, {0x304B, 0x3050}, {0x1D165, 0x1D16D}, {0x20D0, 0x20F0}};
  std::mt19937 rng(13);
  for (int iter = 0; iter < 20000; ++iter) {
    std::string text;
    for (int n = 1 + int(rng() % 12); n > 0; --n) {
      const auto& [lo, hi] = pools[rng() % pools.size()];
      utf8proc_uint8_t buf[4];
      text.append(reinterpret_cast<const char*>(buf),
                  size_t(utf8proc_encode_char(utf8proc_int32_t(lo + rng() % (hi - lo + 1)), buf)));
    }
    std::string got;
    mole::append_nfc_hf(text, got);
    CAPTURE(text);
    REQUIRE(got == nfc(text));
  }
  // 160,000 marks of classes 230 and 220, alternating: utf8proc's exchange sort took 38 s on them. Stably sorted,
  // the 220s come first, and the first 230 then composes with the base.
  std::string marks = "a";
  for (int i = 0; i < 80000; ++i) marks += "\u0301\u0316";
  std::string expected = "\u00e1";
  for (int i = 0; i < 80000; ++i) expected += "\u0316";
  for (int i = 1; i < 80000; ++i) expected += "\u0301";
  const auto t0 = std::chrono::steady_clock::now();
  std::string got;
  mole::append_nfc_hf(marks, got);
  CHECK(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() < 5.0);
  CHECK(got == expected);
}

TEST_CASE("tokenizer: the Unicode 9.0 assignment table's edges") {
  // Spot checks against the Unicode Character Database's DerivedAge.txt.
  for (char32_t cp :
       {0x0U, 0x377U, 0x37AU, 0x1DF5U, 0x1E94AU, 0xAC00U, 0xD7A3U, 0xD800U, 0xE000U, 0xFFFFU, 0x2B820U, 0x10FFFFU}) {
    CAPTURE(uint32_t(cp));
    CHECK(mole::assigned_in_unicode9(cp));
  }
  for (char32_t cp : {0x378U, 0x7FDU, 0x1DF6U, 0x32FFU, 0x11930U, 0x1E4ECU, 0x2EBF0U, 0x16D67U, 0x1E6E3U, 0xE0000U}) {
    CAPTURE(uint32_t(cp));
    CHECK_FALSE(mole::assigned_in_unicode9(cp));
  }
}

TEST_CASE("tokenizer: added tokens with lstrip, rstrip, single_word and normalized flags match Hugging Face") {
  // GPT-NeoX's own added tokens leave these flags off, so the generator also ran a variant with extra tokens.
  nlohmann::json doc = nlohmann::json::parse(read_all(tokenizer_path()));
  for (const auto& t : cases_doc().at("variant_added_tokens")) doc["added_tokens"].push_back(t);
  TempFile variant_file("variant.json", doc.dump());
  const mole::Tokenizer tok = mole::Tokenizer::load(variant_file.path);
  const std::vector<Case> all = read_cases("variant_cases");
  REQUIRE(all.size() >= 100);
  CHECK(check_cases(tok, all) == all.size());
  for (const auto& [id, token] : cases_doc().at("variant_id_to_token").items()) {
    CHECK(tok.id_to_token(std::stoi(id)) == token.get<std::string>());
  }
  CHECK(tok.token_to_id("cafe\u0301") == 50280);  // looked up by the content as given
  CHECK(tok.vocab_size() == 50282);
}

TEST_CASE("tokenizer: decode(encode(text)) is NFC(text) wherever Hugging Face's round trip is exact") {
  size_t exact = 0;
  for (const Case& c : cases()) {
    std::string normalized = nfc(c.text);
    if (c.decoded != normalized) continue;
    ++exact;
    CAPTURE(c.text);
    CHECK(neox().decode(neox().encode(c.text)) == normalized);
  }
  CHECK(exact > 0);
}

TEST_CASE("tokenizer: the stream decoder's output concatenates to decode()") {
  for (const Case& c : cases()) {
    CAPTURE(c.text);
    mole::Tokenizer::StreamDecoder stream(neox());
    std::string streamed;
    for (int32_t id : c.ids) {
      std::string piece = stream.push(id);
      // Every piece handed out is complete UTF-8 on its own.
      CHECK(is_valid_utf8(piece));
      streamed += piece;
    }
    streamed += stream.finish();
    CHECK(streamed == neox().decode(c.ids));
  }
}

TEST_CASE("tokenizer: stream decoder holds split characters and flushes incomplete ones as U+FFFD") {
  const auto& tok = neox();
  std::vector<int32_t> ids = tok.encode("\xF0\x9F\x98\x80");  // one emoji, several byte tokens
  REQUIRE(ids.size() > 1);
  mole::Tokenizer::StreamDecoder stream(tok);
  for (size_t i = 0; i + 1 < ids.size(); ++i) CHECK(stream.push(ids[i]).empty());
  CHECK(stream.push(ids.back()) == "\xF0\x9F\x98\x80");
  CHECK(stream.finish().empty());

  mole::Tokenizer::StreamDecoder cut(tok);
  CHECK(cut.push(ids[0]).empty());
  CHECK(cut.finish() == "\xEF\xBF\xBD");
  CHECK(tok.decode({ids[0]}) == "\xEF\xBF\xBD");
}

TEST_CASE("tokenizer: vocabulary, special tokens and lookups") {
  const auto& tok = neox();
  CHECK(tok.vocab_size() == 50277);
  REQUIRE(tok.bos_id().has_value());
  REQUIRE(tok.eos_id().has_value());
  CHECK(*tok.bos_id() == 0);
  CHECK(*tok.eos_id() == 0);
  CHECK(tok.token_to_id("<|endoftext|>") == 0);
  CHECK(tok.token_to_id("<|padding|>") == 1);
  CHECK(tok.token_to_id("\xC4\xA0world") == 1533);  // "Ġworld"
  CHECK_FALSE(tok.token_to_id("no such token here").has_value());
  CHECK(tok.id_to_token(1533) == "\xC4\xA0world");
  CHECK(tok.id_to_token(50276) == "  ");
  CHECK(tok.encode("Hello<|endoftext|>") == std::vector<int32_t>{12092, 0});
  CHECK_THROWS_AS(tok.id_to_token(-1), mole::Error);
  CHECK_THROWS_AS(tok.id_to_token(50277), mole::Error);
  // Hugging Face's decode skips unknown ids (recorded with tokenizers 0.23.2 for Node: decode([12092, 50290, 1533])
  // is "Hello world", decode([50290]) is ""), so a model's vocabulary padding decodes to nothing.
  CHECK(tok.decode({12092, 50290, 1533}) == "Hello world");
  CHECK(tok.decode({12092, 99999, 1533}) == "Hello world");
  CHECK(tok.decode({50290}).empty());
  mole::Tokenizer::StreamDecoder stream(tok);
  CHECK(stream.push(50290).empty());
  CHECK(stream.push(12092) == "Hello");
}

TEST_CASE("tokenizer: invalid UTF-8 input is a mole::Error naming the byte offset") {
  const auto& tok = neox();
  const std::vector<std::pair<std::string, size_t>> bad = {
      {"abc\xFF", 3},        {"\x80", 0},
      {"ok \xC3", 3},        {"\xC0\xAF", 0},
      {"x\xED\xA0\x80y", 1}, {"ab\xF4\x90\x80\x80", 2},
      {"\xE2\x82", 0},       {"caf\xC3\xA9\xE9", 5},
  };
  for (const auto& [text, offset] : bad) {
    CAPTURE(text);
    try {
      tok.encode(text);
      FAIL("encode should have thrown");
    } catch (const mole::Error& e) {
      CHECK_MESSAGE(std::string(e.what()).find("byte offset " + std::to_string(offset)) != std::string::npos, e.what());
    }
  }
}

TEST_CASE("tokenizer: bad tokenizer files are a mole::Error naming the file") {
  const std::string missing = (std::filesystem::temp_directory_path() / "mole_no_such_dir/tokenizer.json").string();
  check_load_error(missing, "cannot open");

  const std::string full = read_all(tokenizer_path());
  TempFile truncated("truncated.json", full.substr(0, full.size() / 2));
  check_load_error(truncated.path, "not valid JSON");

  TempFile wordpiece("wordpiece.json",
                     R"({"version":"1.0","added_tokens":[],"normalizer":null,"pre_tokenizer":null,)"
                     R"("post_processor":null,"decoder":null,)"
                     R"("model":{"type":"WordPiece","unk_token":"[UNK]","vocab":{"[UNK]":0,"a":1}}})");
  check_load_error(wordpiece.path, "WordPiece");

  TempFile not_object("array.json", "[1, 2, 3]");
  check_load_error(not_object.path, "not a JSON object");

  TempFile bad_merge("bad_merge.json", R"({"model":{"type":"BPE","vocab":{"a":0,"b":1},"merges":["a b"]},)"
                                       R"("pre_tokenizer":{"type":"ByteLevel"},"decoder":{"type":"ByteLevel"}})");
  check_load_error(bad_merge.path, "merge 1");

  TempFile wrong_type("wrong_type.json", R"({"model":{"type":"BPE","vocab":{"a":"zero"},"merges":[]}})");
  check_load_error(wrong_type.path, "not an integer");
}

TEST_CASE("tokenizer: impossible ids are a mole::Error naming the file and the token") {
  // A small byte-level BPE: model tokens a=0, b=1, ab=2, then whatever each case changes.
  auto doc = [](const std::string& vocab, const std::string& added = "[]", const std::string& post = "null") {
    return R"({"model":{"type":"BPE","vocab":)" + vocab + R"(,"merges":["a b"]},"added_tokens":)" + added +
           R"(,"pre_tokenizer":{"type":"ByteLevel"},"decoder":{"type":"ByteLevel"},"post_processor":)" + post + "}";
  };
  const std::string good = R"({"a":0,"b":1,"ab":2})";
  auto template_with = [](const std::string& ids) {
    return R"({"type":"TemplateProcessing","single":[{"SpecialToken":{"id":"<s>","type_id":0}},)"
           R"({"Sequence":{"id":"A","type_id":0}}],"pair":[],"special_tokens":{"<s>":{"id":"<s>","ids":)" +
           ids + R"(,"tokens":["<s>"]}}})";
  };
  const std::vector<std::pair<std::string, std::string>> bad = {
      {doc(R"({"a":0,"b":0,"ab":1})"), "already the id of token"},              // duplicate ids
      {doc(R"({"a":0,"b":2147483648,"ab":2})"), "outside [0, 2^31)"},           // 2^31
      {doc(R"({"a":0,"b":4294967297,"ab":2})"), "outside [0, 2^31)"},           // 2^32 + 1 wrapped to 1 before
      {doc(R"({"a":0,"b":-1,"ab":2})"), "outside [0, 2^31)"},                   // negative
      {doc(R"({"a":0,"b":1.5,"ab":2})"), "not an integer"},                     // truncated to 1 before
      {doc(R"({"a":0,"b":"1","ab":2})"), "not an integer"},                     // a string
      {doc(R"({"a":0,"b":true,"ab":2})"), "not an integer"},                    // a boolean
      {doc(R"({"a":0,"b":1,"ab":7})"), "outside the vocabulary"},               // a hole at 2..6
      {doc(good, R"([{"id":9,"content":"<x>"}])"), "outside the vocabulary"},   // past vocab + added
      {doc(good, R"([{"id":1,"content":"<x>"}])"), "already the id of token"},  // a model token's id, other content
      {doc(good, R"([{"id":3,"content":"<x>"},{"id":3,"content":"<y>"}])"), "already the id of token"},
      {doc(good, R"([{"id":3.0,"content":"<x>"}])"), "not an integer"},
      {doc(good, R"([{"id":3,"content":"<x>"}])", template_with("[99]")), "not a token of the vocabulary"},
      {doc(good, R"([{"id":3,"content":"<x>"}])", template_with("[4294967299]")), "outside [0, 2^31)"},
      {doc(good, R"([{"id":3,"content":"<x>"}])", template_with("[\"3\"]")), "not an integer"},
  };
  for (size_t i = 0; i < bad.size(); ++i) {
    CAPTURE(bad[i].first);
    TempFile file("ids_" + std::to_string(i) + ".json", bad[i].first);
    check_load_error(file.path, bad[i].second);
  }
  // What is allowed: an added token restating a model token, and one extending the vocabulary, used by the
  // post-processor.
  TempFile ok("ids_ok.json",
              doc(good, R"([{"id":2,"content":"ab"},{"id":3,"content":"<s>","special":true}])", template_with("[3]")));
  const mole::Tokenizer tok = mole::Tokenizer::load(ok.path);
  CHECK(tok.vocab_size() == 4);
  CHECK(tok.encode("ab") == std::vector<int32_t>{3, 2});
  CHECK(tok.encode("<s>a") == std::vector<int32_t>{3, 3, 0});
}

TEST_CASE("tokenizer: merges given as pairs load the same as merges given as strings") {
  nlohmann::json doc = nlohmann::json::parse(read_all(tokenizer_path()));
  auto& merges = doc["model"]["merges"];
  for (auto& m : merges) {
    std::string s = m.get<std::string>();
    size_t space = s.find(' ');
    m = nlohmann::json::array({s.substr(0, space), s.substr(space + 1)});
  }
  TempFile pairs("pairs.json", doc.dump());
  mole::Tokenizer tok = mole::Tokenizer::load(pairs.path);
  size_t checked = 0;
  for (const Case& c : cases()) {
    if (checked++ % 5 != 0) continue;
    CAPTURE(c.text);
    CHECK(tok.encode(c.text) == c.ids);
  }
  // No tokenizer_config.json beside the copy: BOS/EOS fall back to <|endoftext|>.
  CHECK(tok.bos_id() == 0);
}

TEST_CASE("tokenizer: copies encode concurrently with the same results") {
  const mole::Tokenizer copy = neox();  // shares the word cache
  std::vector<size_t> matched(2, 0);
  auto work = [&](const mole::Tokenizer& tok, size_t slot) {
    for (const Case& c : cases()) matched[slot] += tok.encode(c.text) == c.ids;
  };
  std::thread a(work, std::cref(neox()), 0), b(work, std::cref(copy), 1);
  a.join();
  b.join();
  CHECK(matched[0] == cases().size());
  CHECK(matched[1] == cases().size());
}

TEST_CASE("tokenizer: benchmark helper reports a positive rate") {
  CHECK(mole::tokenizer_benchmark_mb_per_s(neox(), "The quick brown fox jumps over the lazy dog. ", 0.05) > 0.0);
}
