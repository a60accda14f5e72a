// Tests for model/safetensors: round trips, exact f16/bf16 bit patterns, every malformed-file error, sharded
// directories, the writer's never-half-written guarantee, and a fixed-seed corruption fuzz loop.
#include <doctest/doctest.h>
#include <stdlib.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <initializer_list>
#include <limits>
#include <nlohmann/json.hpp>
#include <random>

#include "model/error.h"
#include "model/safetensors.h"

namespace {

namespace fs = std::filesystem;
using mole::DType;

// A fresh directory under /tmp, removed with everything in it when the test ends.
struct TempDir {
  std::string path;
  TempDir() {
    char tmpl[] = "/tmp/mole_st_XXXXXX";
    REQUIRE(mkdtemp(tmpl) != nullptr);
    path = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string file(const std::string& name) const { return path + "/" + name; }
  std::string subdir(const std::string& name) const {
    fs::create_directories(file(name));
    return file(name);
  }
};

void write_bytes(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
  REQUIRE(out.good());
}

std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

// A safetensors file built by hand: length prefix (as given, default the real one), header text, data bytes.
std::vector<uint8_t> raw_file(const std::string& header, size_t data_bytes = 0,
                              std::optional<uint64_t> length_prefix = std::nullopt) {
  const uint64_t len = length_prefix.value_or(header.size());
  std::vector<uint8_t> out;
  out.reserve(8 + header.size() + data_bytes);
  for (int i = 0; i < 8; i++) out.push_back(uint8_t(len >> (8 * i)));
  for (char c : header) out.push_back(uint8_t(c));
  for (size_t i = 0; i < data_bytes; i++) out.push_back(uint8_t(i * 7 + 1));
  return out;
}

// Runs fn, requires a mole::Error, and returns its message.
std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const mole::Error& e) {
    return e.what();
  } catch (const std::exception& e) {
    FAIL("expected mole::Error, got another exception: " << e.what());
    return {};
  }
  FAIL("expected mole::Error, nothing was thrown");
  return {};
}

void check_contains(const std::string& message, std::initializer_list<std::string> parts) {
  for (const std::string& part : parts) {
    INFO("message: " << message);
    CHECK(message.find(part) != std::string::npos);
  }
}

uint16_t u16_at(const std::vector<uint8_t>& b, size_t i) {
  return uint16_t(b[2 * i] | (b[2 * i + 1] << 8));
}

std::vector<float> all_f32(const mole::TensorView& t) {
  std::vector<float> out(size_t(t.numel()));
  t.to_f32(0, t.numel(), out.data());
  return out;
}

mole::OwnedTensor make_tensor(const std::string& name, DType dtype, std::vector<int64_t> shape,
                              const std::vector<float>& values) {
  return {name, dtype, std::move(shape), mole::f32_to_bytes(values.data(), values.size(), dtype)};
}

}  // namespace

TEST_CASE("dtype helpers") {
  CHECK(mole::dtype_size(DType::F32) == 4);
  CHECK(mole::dtype_size(DType::F16) == 2);
  CHECK(mole::dtype_size(DType::BF16) == 2);
  CHECK(std::string(mole::dtype_name(DType::F32)) == "F32");
  CHECK(std::string(mole::dtype_name(DType::F16)) == "F16");
  CHECK(std::string(mole::dtype_name(DType::BF16)) == "BF16");
  for (const char* s : {"F32", "f32", "float32"}) CHECK(mole::parse_dtype(s) == DType::F32);
  for (const char* s : {"F16", "f16", "float16"}) CHECK(mole::parse_dtype(s) == DType::F16);
  for (const char* s : {"BF16", "bf16", "bfloat16"}) CHECK(mole::parse_dtype(s) == DType::BF16);
  for (const char* s : {"", "F64", "fp16", "Float32", "half"}) CHECK(!mole::parse_dtype(s).has_value());
}

TEST_CASE("f32_to_bytes produces known bit patterns, rounding ties to even") {
  const float p24 = std::ldexp(1.0f, -24), p25 = std::ldexp(1.0f, -25), inf = std::numeric_limits<float>::infinity();
  struct Case {
    float value;
    uint16_t f16;
    uint16_t bf16;
  };
  const Case cases[] = {
      {1.0f, 0x3C00, 0x3F80},
      {-2.0f, 0xC000, 0xC000},
      {0.0f, 0x0000, 0x0000},
      {-0.0f, 0x8000, 0x8000},
      {65504.0f, 0x7BFF, 0x4780},                          // largest finite f16; in bf16 it rounds up to 65536
      {65520.0f, 0x7C00, 0x4780},                          // halfway to the next f16 step overflows to inf
      {p24, 0x0001, 0x3380},                               // smallest f16 subnormal
      {std::ldexp(1.0f, -14), 0x0400, 0x3880},             // smallest f16 normal
      {p25, 0x0000, 0x3300},                               // tie between 0 and 2^-24 rounds to even (0)
      {3 * p25, 0x0002, 0x33C0},                           // tie between 1 and 2 subnormal steps rounds to even (2)
      {1.0f + std::ldexp(1.0f, -11), 0x3C00, 0x3F80},      // f16 tie, even is down
      {1.0f + 3 * std::ldexp(1.0f, -11), 0x3C02, 0x3F80},  // f16 tie, even is up
      {1.0f + std::ldexp(1.0f, -8), 0x3C04, 0x3F80},       // bf16 tie, even is down
      {1.0f + 3 * std::ldexp(1.0f, -8), 0x3C0C, 0x3F82},   // bf16 tie, even is up
      {0.1f, 0x2E66, 0x3DCD},
      {inf, 0x7C00, 0x7F80},
      {-inf, 0xFC00, 0xFF80},
  };
  for (const Case& c : cases) {
    CAPTURE(c.value);
    auto h = mole::f32_to_bytes(&c.value, 1, DType::F16);
    auto b = mole::f32_to_bytes(&c.value, 1, DType::BF16);
    REQUIRE(h.size() == 2);
    REQUIRE(b.size() == 2);
    CHECK(u16_at(h, 0) == c.f16);
    CHECK(u16_at(b, 0) == c.bf16);
  }
  const float one = 1.0f;
  CHECK(mole::f32_to_bytes(&one, 1, DType::F32) == std::vector<uint8_t>{0x00, 0x00, 0x80, 0x3F});
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const uint16_t hn = u16_at(mole::f32_to_bytes(&nan, 1, DType::F16), 0);
  const uint16_t bn = u16_at(mole::f32_to_bytes(&nan, 1, DType::BF16), 0);
  CHECK(((hn & 0x7C00) == 0x7C00 && (hn & 0x03FF) != 0));
  CHECK(((bn & 0x7F80) == 0x7F80 && (bn & 0x007F) != 0));
  CHECK(mole::f32_to_bytes(nullptr, 0, DType::F16).empty());
}

TEST_CASE("round trip of all dtypes, odd shapes and zero-size tensors") {
  TempDir tmp;
  std::vector<float> f32_vals(3 * 5 * 7), f16_vals(13);
  for (size_t i = 0; i < f32_vals.size(); i++) f32_vals[i] = float(i) * 0.5f - 20.0f;
  for (size_t i = 0; i < f16_vals.size(); i++) f16_vals[i] = (float(i) - 6.0f) * 0.25f;  // exact in f16
  const std::vector<float> bf16_vals = {1.0f, -2.0f, 0.5f, 3.0f, -0.125f, 256.0f};       // exact in bf16
  std::vector<mole::OwnedTensor> tensors = {
      make_tensor("f32.odd", DType::F32, {3, 5, 7}, f32_vals),
      make_tensor("f16.row", DType::F16, {1, 13}, f16_vals),
      make_tensor("empty", DType::F32, {0, 4}, {}),
      make_tensor("bf16.cube", DType::BF16, {2, 1, 3}, bf16_vals),
      make_tensor("empty16", DType::BF16, {4, 0}, {}),
      make_tensor("scalar", DType::F16, {}, {1.5f}),
  };
  const std::string path = tmp.file("model.safetensors");
  mole::write_safetensors(path, tensors, {{"format", "pt"}, {"note", "hi"}});
  CHECK(!fs::exists(path + ".tmp"));

  // Layout as the official reader expects it: 8-aligned header, contiguous offsets in entry order.
  const auto bytes = read_bytes(path);
  uint64_t n = 0;
  for (int i = 0; i < 8; i++) n |= uint64_t(bytes[size_t(i)]) << (8 * i);
  CHECK(n % 8 == 0);
  auto header = nlohmann::json::parse(bytes.begin() + 8, bytes.begin() + 8 + int64_t(n));
  CHECK(header["__metadata__"] == nlohmann::json({{"format", "pt"}, {"note", "hi"}}));
  uint64_t expect_begin = 0;
  for (const auto& t : tensors) {
    CAPTURE(t.name);
    const auto& e = header[t.name];
    CHECK(e["dtype"] == mole::dtype_name(t.dtype));
    CHECK(e["shape"] == nlohmann::json(t.shape));
    CHECK(e["data_offsets"][0] == expect_begin);
    expect_begin += t.bytes.size();
    CHECK(e["data_offsets"][1] == expect_begin);
  }
  CHECK(bytes.size() == 8 + n + expect_begin);
  // bf16.cube starts after f32.odd (420 bytes) and f16.row (26 bytes); its first value 1.0 is 0x3F80.
  CHECK(bytes[8 + n + 446] == 0x80);
  CHECK(bytes[8 + n + 447] == 0x3F);

  auto file = mole::SafetensorsFile::open(path);
  CHECK(file.path() == path);
  CHECK(file.metadata() == std::map<std::string, std::string>{{"format", "pt"}, {"note", "hi"}});
  REQUIRE(file.tensors().size() == tensors.size());
  CHECK(file.find("nope") == nullptr);
  const auto* a = file.find("f32.odd");
  const auto* h = file.find("f16.row");
  const auto* b = file.find("bf16.cube");
  const auto* e = file.find("empty");
  const auto* e16 = file.find("empty16");
  const auto* s = file.find("scalar");
  REQUIRE((a && h && b && e && e16 && s));
  CHECK(a->dtype == DType::F32);
  CHECK(a->shape == std::vector<int64_t>{3, 5, 7});
  CHECK(a->nbytes == 420);
  CHECK(a->file == path);
  CHECK(all_f32(*a) == f32_vals);
  CHECK(h->dtype == DType::F16);
  CHECK(all_f32(*h) == f16_vals);
  CHECK(b->dtype == DType::BF16);
  CHECK(b->shape == std::vector<int64_t>{2, 1, 3});
  CHECK(all_f32(*b) == bf16_vals);
  CHECK(e->numel() == 0);
  CHECK(e->nbytes == 0);
  CHECK(e16->numel() == 0);
  CHECK(e16->dtype == DType::BF16);
  CHECK(s->shape.empty());
  CHECK(s->numel() == 1);
  CHECK(all_f32(*s) == std::vector<float>{1.5f});
  float part[4];
  h->to_f32(3, 4, part);
  CHECK(std::vector<float>(part, part + 4) == std::vector<float>(f16_vals.begin() + 3, f16_vals.begin() + 7));
  e->to_f32(0, 0, nullptr);
  file.advise_random(*a);
  file.advise_random(*e);

  // Views stay valid when the file object moves.
  mole::SafetensorsFile moved = std::move(file);
  CHECK(all_f32(*moved.find("f32.odd")) == f32_vals);
}

TEST_CASE("reading known bit patterns written by hand") {
  TempDir tmp;
  // f16: 1.0, 65504, 2^-24, -0.333251953125 ; bf16: 3.140625, -1.0 ; f32: 0.1f
  const std::vector<uint8_t> data = {0x00, 0x3C, 0xFF, 0x7B, 0x01, 0x00, 0x55, 0xB5,
                                     0x49, 0x40, 0x80, 0xBF, 0xCD, 0xCC, 0xCC, 0x3D};
  // A header length that is not a multiple of 8 (other writers do this), so the data is unaligned.
  std::string header = R"({"h":{"dtype":"F16","shape":[4],"data_offsets":[0,8]},"b":{"dtype":"BF16","shape":[2],)"
                       R"("data_offsets":[8,12]},"f":{"dtype":"F32","shape":[1],"data_offsets":[12,16]}} )";
  if (header.size() % 8 == 0) header += ' ';
  auto bytes = raw_file(header);
  bytes.insert(bytes.end(), data.begin(), data.end());
  write_bytes(tmp.file("x.safetensors"), bytes);
  auto file = mole::SafetensorsFile::open(tmp.file("x.safetensors"));
  CHECK(file.metadata().empty());
  CHECK(all_f32(*file.find("h")) == std::vector<float>{1.0f, 65504.0f, std::ldexp(1.0f, -24), -0.333251953125f});
  CHECK(all_f32(*file.find("b")) == std::vector<float>{3.140625f, -1.0f});
  CHECK(all_f32(*file.find("f")) == std::vector<float>{0.1f});
  CHECK(file.tensors()[0].name == "h");  // data-offset order
}

TEST_CASE("malformed files produce mole::Error naming the file and tensor") {
  TempDir tmp;
  struct Bad {
    const char* label;
    std::vector<uint8_t> bytes;
    std::vector<std::string> expect;  // substrings besides the file name
  };
  const std::string w4 = R"("data_offsets":[0,4])";
  const std::vector<Bad> cases = {
      {"short", {1, 2, 3, 4, 5}, {"shorter than"}},
      {"empty", {}, {"shorter than"}},
      {"len_past_end", raw_file("{}", 2, 100), {"past the end"}},
      {"len_absurd", raw_file("{}", 0, 200'000'000), {"absurd"}},
      {"len_huge", raw_file("{}", 0, ~uint64_t(0)), {"absurd"}},
      {"not_json", raw_file("{not json"), {"not valid JSON"}},
      {"binary_garbage", raw_file(std::string("\xff\xfe\x00\x01", 4)), {"not valid JSON"}},
      {"trailing_garbage", raw_file("{} x"), {"not valid JSON"}},
      {"not_object", raw_file("[1,2]"), {"must be a JSON object"}},
      {"entry_not_object", raw_file(R"({"w":5})"), {"'w'", "must be an object"}},
      {"missing_dtype", raw_file(R"({"w":{"shape":[1],)" + w4 + "}}", 4), {"'w'", "dtype"}},
      {"missing_shape", raw_file(R"({"w":{"dtype":"F32",)" + w4 + "}}", 4), {"'w'", "shape"}},
      {"missing_offsets", raw_file(R"({"w":{"dtype":"F32","shape":[1]}})", 4), {"'w'", "data_offsets"}},
      {"dtype_number", raw_file(R"({"w":{"dtype":3,"shape":[1],)" + w4 + "}}", 4), {"'w'", "dtype"}},
      {"shape_not_array", raw_file(R"({"w":{"dtype":"F32","shape":4,)" + w4 + "}}", 4), {"'w'", "shape"}},
      {"shape_string", raw_file(R"({"w":{"dtype":"F32","shape":["1"],)" + w4 + "}}", 4), {"'w'", "shape"}},
      {"shape_float", raw_file(R"({"w":{"dtype":"F32","shape":[1.5],)" + w4 + "}}", 4), {"'w'", "integers"}},
      {"offsets_three",
       raw_file(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4,8]}})", 8),
       {"'w'", "data_offsets"}},
      {"offsets_negative",
       raw_file(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[-4,0]}})", 8),
       {"'w'", "data_offsets"}},
      {"offsets_object",
       raw_file(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":{"a":1}}})", 8),
       {"'w'", "data_offsets"}},
      {"unknown_dtype",
       raw_file(R"({"w":{"dtype":"Q7","shape":[1],)" + w4 + "}}", 4),
       {"'w'", "'Q7'", "F32", "F16", "BF16"}},
      {"unsupported_dtype",
       raw_file(R"({"w":{"dtype":"F64","shape":[1],"data_offsets":[0,8]}})", 8),
       {"'w'", "'F64'", "F32", "F16", "BF16"}},
      {"lowercase_dtype", raw_file(R"({"w":{"dtype":"f32","shape":[1],)" + w4 + "}}", 4), {"'w'", "'f32'"}},
      {"negative_dim", raw_file(R"({"w":{"dtype":"F32","shape":[-1,2],)" + w4 + "}}", 4), {"'w'", "negative"}},
      {"begin_after_end",
       raw_file(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[8,4]}})", 8),
       {"'w'", "after end"}},
      {"end_past_eof",
       raw_file(R"({"w":{"dtype":"F32","shape":[100],"data_offsets":[0,400]}})", 4),
       {"'w'", "past the end"}},
      {"wrong_size",
       raw_file(R"({"w":{"dtype":"F32","shape":[2],)" + w4 + "}}", 8),
       {"'w'", "non-contiguous or wrong size"}},
      {"overlap",
       raw_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                12),
       {"'a'", "'b'", "overlap"}},
      {"numel_overflow",
       raw_file(R"({"w":{"dtype":"F32","shape":[4294967296,4294967296],)" + w4 + "}}", 4),
       {"'w'", "overflow"}},
      {"bytes_overflow",
       raw_file(R"({"w":{"dtype":"F32","shape":[4611686018427387904],)" + w4 + "}}", 4),
       {"'w'", "overflow"}},
      {"dim_past_int64",
       raw_file(R"({"w":{"dtype":"F32","shape":[18446744073709551615],)" + w4 + "}}", 4),
       {"'w'", "overflow"}},
      {"metadata_not_object", raw_file(R"({"__metadata__":[1]})"), {"__metadata__"}},
      {"metadata_not_string", raw_file(R"({"__metadata__":{"format":1}})"), {"__metadata__", "'format'"}},
      {"duplicate_tensor",
       raw_file(R"({"w":{"dtype":"F32","shape":[1],)" + w4 + R"(},"w":{"dtype":"F32","shape":[1],)" + w4 + "}}", 4),
       {"'w'", "twice"}},
  };
  for (const Bad& c : cases) {
    CAPTURE(c.label);
    const std::string path = tmp.file(std::string("bad_") + c.label + ".safetensors");
    write_bytes(path, c.bytes);
    std::string msg = error_of([&] { mole::SafetensorsFile::open(path); });
    check_contains(msg, {path});
    for (const std::string& part : c.expect) check_contains(msg, {part});
  }
  check_contains(error_of([&] { mole::SafetensorsFile::open(tmp.file("absent.safetensors")); }),
                 {tmp.file("absent.safetensors"), "cannot open"});
  check_contains(error_of([&] { mole::SafetensorsFile::open(tmp.path); }), {tmp.path});
}

TEST_CASE("gaps and zero-size tensors inside others are accepted") {
  TempDir tmp;
  const std::string header = R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                             R"("z":{"dtype":"F16","shape":[0],"data_offsets":[2,2]},)"
                             R"("b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})";
  write_bytes(tmp.file("g.safetensors"), raw_file(header, 16));
  auto file = mole::SafetensorsFile::open(tmp.file("g.safetensors"));
  CHECK(file.tensors().size() == 3);
  CHECK(file.find("z")->nbytes == 0);
}

namespace {

// Two shards: a, b in shard 1 and c, d in shard 2, values 1..n per tensor offset by 10 * index.
const std::string kShard1 = "model-00001-of-00002.safetensors";
const std::string kShard2 = "model-00002-of-00002.safetensors";

void write_shards(const std::string& dir, const std::vector<std::string>& names1,
                  const std::vector<std::string>& names2) {
  auto shard = [](const std::vector<std::string>& names) {
    std::vector<mole::OwnedTensor> out;
    for (const auto& n : names) out.push_back(make_tensor(n, DType::BF16, {2}, {float(n[0] - 'a'), 1.0f}));
    return out;
  };
  mole::write_safetensors(dir + "/" + kShard1, shard(names1));
  mole::write_safetensors(dir + "/" + kShard2, shard(names2));
}

void write_index(const std::string& dir, const std::map<std::string, std::string>& weight_map) {
  nlohmann::json j = {{"metadata", {{"total_size", 32}}}, {"weight_map", weight_map}};
  const std::string text = j.dump(2);
  write_bytes(dir + "/model.safetensors.index.json", std::vector<uint8_t>(text.begin(), text.end()));
}

const std::map<std::string, std::string> kGoodMap = {{"a", kShard1}, {"b", kShard1}, {"c", kShard2}, {"d", kShard2}};

}  // namespace

TEST_CASE("sharded checkpoint loads every tensor, each shard opened once") {
  TempDir tmp;
  write_shards(tmp.path, {"a", "b"}, {"c", "d"});
  write_index(tmp.path, kGoodMap);
  auto set = mole::TensorSet::open_dir(tmp.path);
  CHECK(set.dir() == tmp.path);
  CHECK(set.files().size() == 2);
  CHECK(set.names() == std::vector<std::string>{"a", "b", "c", "d"});
  CHECK(set.total_bytes() == 16);
  for (const char* n : {"a", "b", "c", "d"}) {
    CAPTURE(n);
    REQUIRE(set.find(n) != nullptr);
    CHECK(all_f32(set.get(n)) == std::vector<float>{float(n[0] - 'a'), 1.0f});
  }
  CHECK(set.get("c").file == tmp.file(kShard2));
  CHECK(set.find("e") == nullptr);
  check_contains(error_of([&] { set.get("cc"); }), {tmp.path, "missing tensor 'cc'", "'c'"});

  mole::TensorSet moved = std::move(set);  // views survive a move of the set
  CHECK(all_f32(moved.get("d")) == std::vector<float>{3.0f, 1.0f});
}

TEST_CASE("sharded checkpoint errors") {
  TempDir tmp;
  const std::string index = "model.safetensors.index.json";
  SUBCASE("missing shard file") {
    write_shards(tmp.path, {"a", "b"}, {"c", "d"});
    auto map = kGoodMap;
    map["e"] = "model-00003-of-00003.safetensors";
    write_index(tmp.path, map);
    check_contains(error_of([&] { mole::TensorSet::open_dir(tmp.path); }),
                   {index, "model-00003-of-00003.safetensors", "'e'", "missing"});
  }
  SUBCASE("tensor in the index but not in its shard") {
    write_shards(tmp.path, {"a", "b"}, {"c", "d"});
    auto map = kGoodMap;
    map["e"] = kShard1;
    write_index(tmp.path, map);
    check_contains(error_of([&] { mole::TensorSet::open_dir(tmp.path); }), {index, "'e'", kShard1});
  }
  SUBCASE("tensor in a shard but not in the index") {
    write_shards(tmp.path, {"a", "b"}, {"c", "d"});
    auto map = kGoodMap;
    map.erase("d");
    write_index(tmp.path, map);
    check_contains(error_of([&] { mole::TensorSet::open_dir(tmp.path); }), {index, "'d'", kShard2, "not in the index"});
  }
  SUBCASE("tensor in a different shard than the index says") {
    write_shards(tmp.path, {"a", "b"}, {"c", "d"});
    auto map = kGoodMap;
    map["c"] = kShard1;
    write_index(tmp.path, map);
    check_contains(error_of([&] { mole::TensorSet::open_dir(tmp.path); }), {index, "'c'", kShard1, kShard2});
  }
  SUBCASE("duplicate tensor across shards") {
    write_shards(tmp.path, {"a", "b"}, {"a", "c", "d"});
    write_index(tmp.path, kGoodMap);
    check_contains(error_of([&] { mole::TensorSet::open_dir(tmp.path); }), {tmp.path, "'a'", kShard1, kShard2, "both"});
  }
  SUBCASE("index is not JSON") {
    write_bytes(tmp.file(index), {'{', 'x'});
    check_contains(error_of([&] { mole::TensorSet::open_dir(tmp.path); }), {tmp.file(index), "JSON"});
  }
  SUBCASE("index without weight_map") {
    write_bytes(tmp.file(index), {'{', '}'});
    check_contains(error_of([&] { mole::TensorSet::open_dir(tmp.path); }), {tmp.file(index), "weight_map"});
  }
  SUBCASE("weight_map value not a string") {
    const std::string text = R"({"weight_map":{"a":1}})";
    write_bytes(tmp.file(index), std::vector<uint8_t>(text.begin(), text.end()));
    check_contains(error_of([&] { mole::TensorSet::open_dir(tmp.path); }), {tmp.file(index), "'a'"});
  }
  SUBCASE("corrupt shard") {
    write_shards(tmp.path, {"a", "b"}, {"c", "d"});
    write_index(tmp.path, kGoodMap);
    write_bytes(tmp.file(kShard2), {1, 2, 3});
    check_contains(error_of([&] { mole::TensorSet::open_dir(tmp.path); }), {tmp.file(kShard2), "shorter"});
  }
}

TEST_CASE("checkpoint directory discovery") {
  TempDir tmp;
  SUBCASE("empty directory says what was expected") {
    check_contains(error_of([&] { mole::TensorSet::open_dir(tmp.path); }),
                   {tmp.path, "model.safetensors", "model.safetensors.index.json", "*.safetensors"});
  }
  SUBCASE("directory with only other files") {
    write_bytes(tmp.file("config.json"), {'{', '}'});
    check_contains(error_of([&] { mole::TensorSet::open_dir(tmp.path); }), {tmp.path, "model.safetensors"});
  }
  SUBCASE("missing directory") {
    check_contains(error_of([&] { mole::TensorSet::open_dir(tmp.file("nope")); }), {tmp.file("nope"), "not exist"});
  }
  SUBCASE("a file instead of a directory") {
    write_bytes(tmp.file("f"), {1});
    check_contains(error_of([&] { mole::TensorSet::open_dir(tmp.file("f")); }), {tmp.file("f"), "not a directory"});
  }
  SUBCASE("a single other safetensors file") {
    mole::write_safetensors(tmp.file("weights.safetensors"), {make_tensor("x", DType::F32, {1}, {2.0f})});
    auto set = mole::TensorSet::open_dir(tmp.path);
    CHECK(set.names() == std::vector<std::string>{"x"});
  }
  SUBCASE("two other safetensors files and no index") {
    mole::write_safetensors(tmp.file("a.safetensors"), {make_tensor("x", DType::F32, {1}, {2.0f})});
    mole::write_safetensors(tmp.file("b.safetensors"), {make_tensor("y", DType::F32, {1}, {2.0f})});
    check_contains(error_of([&] { mole::TensorSet::open_dir(tmp.path); }),
                   {tmp.path, "a.safetensors", "b.safetensors", "model.safetensors.index.json"});
  }
  SUBCASE("model.safetensors wins over other files") {
    mole::write_safetensors(tmp.file("model.safetensors"), {make_tensor("x", DType::F32, {1}, {2.0f})});
    mole::write_safetensors(tmp.file("other.safetensors"), {make_tensor("y", DType::F32, {1}, {2.0f})});
    CHECK(mole::TensorSet::open_dir(tmp.path).names() == std::vector<std::string>{"x"});
  }
}

TEST_CASE("writer streams chunks of any size and never leaves a half-written file") {
  TempDir tmp;
  const std::string path = tmp.file("w.safetensors");
  std::vector<float> vals(1000);
  for (size_t i = 0; i < vals.size(); i++) vals[i] = float(i) - 500.0f;
  const std::vector<mole::OwnedTensor> tensors = {make_tensor("x", DType::F16, {10, 100}, vals),
                                                  make_tensor("y", DType::F32, {7}, {1, 2, 3, 4, 5, 6, 7}),
                                                  make_tensor("z", DType::BF16, {3}, {1, 2, 3})};
  std::vector<mole::SafetensorsWriter::Entry> entries;
  std::vector<uint8_t> all;
  for (const auto& t : tensors) {
    entries.push_back({t.name, t.dtype, t.shape});
    all.insert(all.end(), t.bytes.begin(), t.bytes.end());
  }

  SUBCASE("odd chunk sizes give the same bytes as write_safetensors") {
    mole::write_safetensors(tmp.file("ref.safetensors"), tensors);
    mole::SafetensorsWriter w(path, entries);
    size_t pos = 0, step = 1;
    while (pos < all.size()) {
      size_t n = std::min(step, all.size() - pos);
      w.write(all.data() + pos, n);
      pos += n;
      step = step * 3 + 1;
    }
    w.write(nullptr, 0);
    CHECK(!fs::exists(path));
    CHECK(fs::exists(path + ".tmp"));
    w.finish();
    CHECK(!fs::exists(path + ".tmp"));
    CHECK(read_bytes(path) == read_bytes(tmp.file("ref.safetensors")));
    check_contains(error_of([&] { w.write(all.data(), 1); }), {path});
    check_contains(error_of([&] { w.finish(); }), {path});
  }
  SUBCASE("tensors larger than the write buffer, in chunks that straddle it") {
    std::vector<float> big(700'000);                                             // 2.8 MB of F32, then 1.4 MB of BF16
    for (size_t i = 0; i < big.size(); i++) big[i] = float(int(i % 256) - 128);  // exact in bf16
    const auto f32 = mole::f32_to_bytes(big.data(), big.size(), DType::F32);
    const auto b16 = mole::f32_to_bytes(big.data(), big.size(), DType::BF16);
    mole::SafetensorsWriter w(path, {{"big", DType::F32, {700, 1000}}, {"big16", DType::BF16, {700'000}}});
    w.write(f32.data(), 3);
    w.write(f32.data() + 3, 1'500'000);
    for (size_t pos = 1'500'003; pos < f32.size(); pos += 100'001) {
      w.write(f32.data() + pos, std::min<size_t>(100'001, f32.size() - pos));
    }
    w.write(b16.data(), b16.size());
    w.finish();
    auto file = mole::SafetensorsFile::open(path);
    CHECK(all_f32(*file.find("big")) == big);
    CHECK(all_f32(*file.find("big16")) == big);
  }
  SUBCASE("destroyed before finish leaves neither file") {
    {
      mole::SafetensorsWriter w(path, entries);
      w.write(all.data(), 100);
      CHECK(fs::exists(path + ".tmp"));
    }
    CHECK(!fs::exists(path));
    CHECK(!fs::exists(path + ".tmp"));
  }
  SUBCASE("finish with bytes missing throws and leaves no file") {
    mole::SafetensorsWriter w(path, entries);
    w.write(all.data(), all.size() - 1);
    check_contains(error_of([&] { w.finish(); }), {path, "'z'", "incomplete"});
    CHECK(!fs::exists(path));
    CHECK(!fs::exists(path + ".tmp"));
  }
  SUBCASE("writing past the declared tensors throws and leaves no file") {
    mole::SafetensorsWriter w(path, entries);
    w.write(all.data(), all.size());
    check_contains(error_of([&] { w.write(all.data(), 1); }), {path, "overruns"});
    CHECK(!fs::exists(path));
    CHECK(!fs::exists(path + ".tmp"));
  }
  SUBCASE("an existing file is replaced only by finish") {
    mole::write_safetensors(path, {make_tensor("old", DType::F32, {1}, {9.0f})});
    const auto old_bytes = read_bytes(path);
    {
      mole::SafetensorsWriter w(path, entries);
      w.write(all.data(), all.size());
      CHECK(read_bytes(path) == old_bytes);
    }
    CHECK(read_bytes(path) == old_bytes);
    mole::write_safetensors(path, tensors);
    CHECK(mole::SafetensorsFile::open(path).find("old") == nullptr);
  }
  SUBCASE("moved writer finishes; the moved-from one removes nothing") {
    mole::SafetensorsWriter a(path, entries);
    a.write(all.data(), 10);
    mole::SafetensorsWriter b(std::move(a));
    {
      mole::SafetensorsWriter sink = std::move(b);
      b = std::move(sink);
    }
    b.write(all.data() + 10, all.size() - 10);
    b.finish();
    CHECK(all_f32(*mole::SafetensorsFile::open(path).find("y")) == std::vector<float>{1, 2, 3, 4, 5, 6, 7});
  }
  SUBCASE("disk full names the file") {
    if (!fs::exists("/dev/full")) return;
    fs::create_symlink("/dev/full", path + ".tmp");
    std::string msg = error_of([&] {
      mole::SafetensorsWriter w(path, entries);
      w.write(all.data(), all.size());
      w.finish();
    });
    check_contains(msg, {path + ".tmp", "disk full"});
    CHECK(!fs::exists(path));
  }
  SUBCASE("unwritable location and bad entries") {
    check_contains(error_of([&] { mole::SafetensorsWriter(tmp.file("no/such/dir/x.safetensors"), entries); }),
                   {"no/such/dir/x.safetensors"});
    check_contains(error_of([&] {
                     mole::SafetensorsWriter(path, {{"a", DType::F32, {1}}, {"a", DType::F32, {1}}});
                   }),
                   {path, "'a'", "twice"});
    check_contains(error_of([&] { mole::SafetensorsWriter(path, {{"n", DType::F32, {-1}}}); }), {path, "'n'"});
    check_contains(error_of([&] { mole::SafetensorsWriter(path, {{"__metadata__", DType::F32, {1}}}); }), {path});
    check_contains(error_of([&] {
                     mole::write_safetensors(path, {{"t", DType::F16, {3}, {1, 2, 3, 4}}});
                   }),
                   {path, "'t'", "needs 6"});
    CHECK(!fs::exists(path));
    CHECK(!fs::exists(path + ".tmp"));
  }
  SUBCASE("no tensors and empty metadata") {
    mole::write_safetensors(path, {}, {});
    auto file = mole::SafetensorsFile::open(path);
    CHECK(file.tensors().empty());
    CHECK(file.metadata().empty());
  }
}

TEST_CASE("fuzz: corrupted files either open or throw mole::Error") {
  TempDir tmp;
  std::vector<float> vals(24);
  for (size_t i = 0; i < vals.size(); i++) vals[i] = float(i);
  const std::string good = tmp.file("good.safetensors");
  mole::write_safetensors(good, {make_tensor("model.embed", DType::BF16, {4, 6}, vals),
                                 make_tensor("model.norm", DType::F32, {6}, {1, 2, 3, 4, 5, 6}),
                                 make_tensor("model.empty", DType::F16, {0}, {}),
                                 make_tensor("lm_head", DType::F16, {2, 3}, {1, 2, 3, 4, 5, 6})});
  const auto base = read_bytes(good);
  const std::string json_chars = "{}[],:\"0123456789-e. ";
  std::mt19937 rng(20240607);
  const std::string path = tmp.file("fuzz.safetensors");
  int opened = 0, rejected = 0;
  for (int iter = 0; iter < 2000; iter++) {
    auto bytes = base;
    const size_t pos = rng() % bytes.size();
    switch (rng() % 4) {
      case 0:
        bytes[pos] ^= uint8_t(1u << (rng() % 8));
        break;
      case 1:
        bytes[pos] = uint8_t(json_chars[rng() % json_chars.size()]);
        break;
      case 2:
        bytes.resize(pos);
        break;
      default:
        for (int k = 0; k < 4; k++) bytes[rng() % bytes.size()] = uint8_t(rng());
        break;
    }
    write_bytes(path, bytes);
    try {
      auto file = mole::SafetensorsFile::open(path);
      for (const auto& t : file.tensors()) {
        CHECK(t.nbytes == size_t(t.numel()) * mole::dtype_size(t.dtype));
        std::vector<float> out(size_t(t.numel()));
        t.to_f32(0, t.numel(), out.data());
      }
      opened++;
    } catch (const mole::Error& e) {
      CHECK(std::string(e.what()).find(path) != std::string::npos);
      rejected++;
    } catch (const std::exception& e) {
      FAIL("iteration " << iter << ": non-mole exception: " << e.what());
    }
  }
  MESSAGE("fuzz: " << opened << " opened, " << rejected << " rejected");
  CHECK(opened > 0);
  CHECK(rejected > 0);
}
