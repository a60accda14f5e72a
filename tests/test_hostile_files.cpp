// Hostile files (issue 13), each class checked against what it must give, independently of any one file: JSON
// nested past the limit in every JSON file mole reads, safetensors headers of 100,000 tensors, symbolic-link loops
// and directories where files should be, and shard names that leave the checkpoint directory. Each must be a
// mole::Error naming the file, within seconds; never a crash, a std::filesystem exception or a file read elsewhere.
#include <doctest/doctest.h>
#include <sys/stat.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "model/config.h"
#include "model/error.h"
#include "model/paths.h"
#include "model/safetensors.h"
#include "model/tokenizer.h"
#include "model/user_files.h"
#include "tests/test_helpers.h"

using namespace mole;
using mole::test::check_contains;
using mole::test::error_of;
using mole::test::TempDir;
namespace fs = std::filesystem;

namespace {

void write_text(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  REQUIRE(out.good());
}

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// n levels of arrays ([[[1]]]) or of objects ({"a":{"a":1}}).
std::string nested(int n, bool objects) {
  std::string s;
  for (int i = 0; i < n; i++) s += objects ? "{\"a\":" : "[";
  s += "1";
  for (int i = 0; i < n; i++) s += objects ? "}" : "]";
  return s;
}

// A safetensors file: the length prefix, the header text, then `data_bytes` zero bytes.
void write_safetensors_raw(const std::string& path, const std::string& header, size_t data_bytes) {
  std::string bytes(8, '\0');
  for (int i = 0; i < 8; i++) bytes[size_t(i)] = char(uint64_t(header.size()) >> (8 * i));
  bytes += header;
  bytes.append(data_bytes, '\0');
  write_text(path, bytes);
}

// Replaces `path` by a symbolic link to itself: every access fails with ELOOP.
void make_loop(const std::string& path) {
  fs::remove_all(path);
  fs::create_symlink(fs::path(path).filename(), path);
}

std::string neox_tokenizer() {
  return data_dir() + "/gpt-neox-tokenizer/tokenizer.json";
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

const std::string kLevels = std::to_string(kMaxJsonDepth) + " levels";

}  // namespace

TEST_CASE("hostile: JSON nested past the limit is a mole::Error naming the source; at the limit it parses") {
  for (bool objects : {false, true}) {
    CAPTURE(objects);
    CHECK(parse_json(nested(kMaxJsonDepth, objects), "s.json", "doc").is_structured());
    for (int depth : {kMaxJsonDepth + 1, 100'000}) {
      CAPTURE(depth);
      check_contains(error_of([&] { parse_json(nested(depth, objects), "s.json", "doc"); }), {"s.json: doc", kLevels});
    }
  }
  check_contains(error_of([&] { parse_json("{\"a\":", "s.json", "doc", "a hint"); }),
                 {"s.json: doc is not valid JSON", "; a hint"});
  std::string repeated;
  parse_json(R"({"a":1,"b":{"c":2,"c":3},"a":4,"b":5})", "s", "doc", "", &repeated);
  CHECK(repeated == "a");
  parse_json(R"({"a":1,"b":{"c":2,"c":3}})", "s", "doc", "", &repeated);
  CHECK(repeated.empty());  // only top-level keys are tracked
}

TEST_CASE("hostile: every JSON file mole reads rejects 100,000 nested brackets, naming the file") {
  TempDir tmp;
  const std::string deep_arrays = nested(100'000, false), deep_objects = nested(100'000, true);
  SUBCASE("safetensors header") {
    const std::string path = tmp / "model.safetensors";
    write_safetensors_raw(path, "{\"w\":" + deep_objects + "}", 0);
    check_contains(error_of([&] { SafetensorsFile::open(path); }), {path, kLevels});
    write_safetensors_raw(path, deep_arrays, 0);
    check_contains(error_of([&] { SafetensorsFile::open(path); }), {path, kLevels});
  }
  SUBCASE("config.json, in a field mole does not read") {
    const std::string dir = test::synth(tmp, "m", Form::Infer);
    nlohmann::json cfg = nlohmann::json::parse(read_text(dir + "/config.json"));
    std::string text = cfg.dump();
    text.insert(text.size() - 1, ",\"task_specific_params\":" + deep_objects);
    write_text(dir + "/config.json", text);
    check_contains(error_of([&] { Config::load_dir(dir); }), {dir + "/config.json", kLevels});
  }
  SUBCASE("model.safetensors.index.json") {
    write_text(tmp / "model.safetensors.index.json",
               R"({"weight_map":{"a":"s.safetensors"},"metadata":)" + deep_arrays + "}");
    check_contains(error_of([&] { TensorSet::open_dir(tmp.path); }), {tmp / "model.safetensors.index.json", kLevels});
  }
  SUBCASE("tokenizer.json") {
    write_text(tmp / "tokenizer.json", "{\"model\":" + deep_objects + "}");
    check_contains(error_of([&] { Tokenizer::load(tmp / "tokenizer.json"); }), {tmp / "tokenizer.json", kLevels});
  }
  SUBCASE("tokenizer_config.json beside a good tokenizer.json") {
    fs::copy_file(neox_tokenizer(), tmp / "tokenizer.json");
    write_text(tmp / "tokenizer_config.json", "{\"eos_token\":" + deep_arrays + "}");
    check_contains(error_of([&] { Tokenizer::load(tmp / "tokenizer.json"); }),
                   {tmp / "tokenizer_config.json", kLevels});
  }
}

TEST_CASE("hostile: a safetensors header of 100,000 tensors is checked in linear time") {
  // Before the fix, nlohmann's callback parser re-scanned the top-level object at the end of every entry: ~60 s for
  // 100,000 tensors. Linear validation takes well under a second (a few under the sanitizers).
  constexpr int kTensors = 100'000;
  TempDir tmp;
  const std::string path = tmp / "many.safetensors";
  std::string header = "{";
  for (int i = 0; i < kTensors; i++) {
    header += (i ? ",\"t" : "\"t") + std::to_string(i) + R"(":{"dtype":"F32","shape":[1],"data_offsets":[)" +
              std::to_string(4 * i) + "," + std::to_string(4 * i + 4) + "]}";
  }
  SUBCASE("all valid: opens") {
    write_safetensors_raw(path, header + "}", 4 * kTensors);
    const auto t0 = std::chrono::steady_clock::now();
    SafetensorsFile file = SafetensorsFile::open(path);
    CHECK(seconds_since(t0) < 10.0);
    CHECK(file.tensors().size() == size_t(kTensors));
    REQUIRE(file.find("t99999") != nullptr);
    CHECK(file.find("t99999")->data == file.find("t0")->data + 4 * 99999);
  }
  SUBCASE("the last entry repeats the first: rejected") {
    write_safetensors_raw(path, header + R"(,"t0":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", 4 * kTensors);
    const auto t0 = std::chrono::steady_clock::now();
    check_contains(error_of([&] { SafetensorsFile::open(path); }), {path, "'t0'", "twice"});
    CHECK(seconds_since(t0) < 10.0);
  }
  SUBCASE("one entry overlaps another: rejected") {
    write_safetensors_raw(path, header + R"(,"x":{"dtype":"F32","shape":[2],"data_offsets":[40,48]}})", 4 * kTensors);
    const auto t0 = std::chrono::steady_clock::now();
    check_contains(error_of([&] { SafetensorsFile::open(path); }), {path, "'x'", "overlap"});
    CHECK(seconds_since(t0) < 10.0);
  }
}

TEST_CASE("hostile: path_kind and read_file report loops, directories and absence with the path") {
  TempDir tmp;
  write_text(tmp / "file", "text");
  fs::create_directory(tmp / "dir");
  make_loop(tmp / "loop");
  fs::create_symlink("nowhere", tmp / "dangling");
  CHECK(path_kind(tmp / "file") == PathKind::File);
  CHECK(path_kind(tmp / "dir") == PathKind::Directory);
  CHECK(path_kind(tmp / "absent") == PathKind::Missing);
  CHECK(path_kind(tmp / "dangling") == PathKind::Missing);
  CHECK(path_kind(tmp / "file/below") == PathKind::Missing);
  CHECK(path_kind("/dev/null") == PathKind::Other);
  check_contains(error_of([&] { path_kind(tmp / "loop"); }), {tmp / "loop", "symbolic links"});
  check_contains(error_of([&] { path_kind(tmp / "loop/config.json"); }), {tmp / "loop/config.json", "symbolic links"});

  CHECK(read_file(tmp / "file", "a file") == "text");
  CHECK(read_file("/dev/null", "a prompt", true).empty());  // a stream (a prompt from -f) may be a device or a FIFO
  // A model's file may not: opening a FIFO would wait for a writer that never comes.
  check_contains(error_of([&] { read_file("/dev/null", "config.json"); }),
                 {"/dev/null", "is a device, not a regular file", "config.json"});
  CHECK(mkfifo((tmp / "fifo").c_str(), 0600) == 0);
  check_contains(error_of([&] { read_file(tmp / "fifo", "config.json"); }), {tmp / "fifo", "is a FIFO"});
  CHECK(not_a_regular_file(tmp / "file").empty());
  CHECK(not_a_regular_file(tmp / "absent").empty());
  CHECK(not_a_regular_file(tmp / "loop").empty());  // path_kind() and open() say what a loop is
  CHECK(not_a_regular_file(tmp / "dir") == "a directory");
  CHECK(not_a_regular_file(tmp / "dangling") == "a symbolic link to nowhere, which does not exist");
  check_contains(error_of([&] { read_file(tmp / "loop", "a prompt"); }), {tmp / "loop", "symbolic links"});
  check_contains(error_of([&] { read_file(tmp / "dir", "a prompt"); }), {tmp / "dir", "is a directory", "a prompt"});
  check_contains(error_of([&] { read_file(tmp / "absent", "a prompt"); }), {tmp / "absent", "cannot open a prompt"});
  // A file that never ends stops at the limit instead of filling memory.
  check_contains(error_of([&] { read_file("/dev/zero", "a prompt", true); }), {"/dev/zero", "MiB"});
}

// Where mole writes a file whole (bench -o, the pipeline cache): a link's target, and devices and FIFOs in place.
TEST_CASE("hostile: output_target follows links to their target and writes devices and FIFOs in place") {
  TempDir tmp;
  bool in_place = true;
  CHECK(output_target(tmp / "new.json", &in_place) == tmp / "new.json");
  CHECK_FALSE(in_place);
  fs::create_symlink("target.json", tmp / "link.json");  // dangling: the target is made
  CHECK(output_target(tmp / "link.json", &in_place) == tmp / "target.json");
  CHECK_FALSE(in_place);
  fs::create_directory(tmp / "sub");
  fs::create_symlink("sub/../sub/t.json", tmp / "link2");
  fs::create_symlink("link2", tmp / "link3");  // a chain
  CHECK(output_target(tmp / "link3", &in_place) == tmp / "sub/t.json");
  CHECK(output_target("/dev/null", &in_place) == "/dev/null");
  CHECK(in_place);
  CHECK(mkfifo((tmp / "fifo").c_str(), 0600) == 0);
  output_target(tmp / "fifo", &in_place);
  CHECK(in_place);
  make_loop(tmp / "loop");
  output_target(tmp / "loop", &in_place);  // stops after 40 links: no hang, not in place (the write says what)
  CHECK_FALSE(in_place);
}

TEST_CASE("hostile: symbolic-link loops where model files should be are errors naming the file") {
  TempDir tmp;
  const std::string dir = test::synth(tmp, "m", Form::Infer);
  fs::copy_file(neox_tokenizer(), dir + "/tokenizer.json", fs::copy_options::overwrite_existing);
  const std::string loops = "symbolic links";
  SUBCASE("the model directory") {
    make_loop(tmp / "self");
    check_contains(error_of([&] { Config::load_dir(tmp / "self"); }), {tmp / "self", loops});
    check_contains(error_of([&] { TensorSet::open_dir(tmp / "self"); }), {tmp / "self", loops});
  }
  SUBCASE("config.json") {
    make_loop(dir + "/config.json");
    check_contains(error_of([&] { Config::load_dir(dir); }), {dir + "/config.json", loops});
  }
  SUBCASE("model.safetensors") {
    make_loop(dir + "/model.safetensors");
    check_contains(error_of([&] { TensorSet::open_dir(dir); }), {dir + "/model.safetensors", loops});
  }
  SUBCASE("the shard index, and a shard") {
    fs::rename(dir + "/model.safetensors", dir + "/model-1.safetensors");
    make_loop(dir + "/model.safetensors.index.json");
    check_contains(error_of([&] { TensorSet::open_dir(dir); }), {dir + "/model.safetensors.index.json", loops});
    fs::remove(dir + "/model.safetensors.index.json");
    write_text(dir + "/model.safetensors.index.json", R"({"weight_map":{"lm_head.weight":"model-1.safetensors"}})");
    make_loop(dir + "/model-1.safetensors");
    check_contains(error_of([&] { TensorSet::open_dir(dir); }), {dir + "/model-1.safetensors", loops});
  }
  SUBCASE("tokenizer.json, tokenizer_config.json and special_tokens_map.json") {
    for (const char* name : {"tokenizer_config.json", "special_tokens_map.json", "tokenizer.json"}) {
      CAPTURE(name);
      const std::string saved = read_text(dir + "/" + name);
      make_loop(dir + "/" + name);
      check_contains(error_of([&] { Tokenizer::load(dir + "/tokenizer.json"); }), {dir + "/" + name, loops});
      fs::remove(dir + "/" + name);
      write_text(dir + "/" + name, saved);
    }
  }
  SUBCASE("config.json is a directory") {
    fs::remove(dir + "/config.json");
    fs::create_directory(dir + "/config.json");
    check_contains(error_of([&] { Config::load_dir(dir); }), {dir + "/config.json", "is a directory"});
  }
  SUBCASE("convert: a loop among the files it copies, and as -o") {
    const std::string train = test::synth(tmp, "t", Form::Train);
    make_loop(train + "/README.md");
    ConvertOptions o;
    o.progress = false;
    check_contains(error_of([&] { convert_checkpoint(train, tmp / "out", o); }), {train + "/README.md", loops});
    CHECK_FALSE(fs::exists(tmp / "out"));
    CHECK_FALSE(fs::exists(tmp / "out.partial"));
    fs::remove(train + "/README.md");
    make_loop(tmp / "out");
    check_contains(error_of([&] { convert_checkpoint(train, tmp / "out", o); }), {tmp / "out", loops});
  }
}

TEST_CASE("hostile: shard names that leave the checkpoint directory are rejected naming the index and entry") {
  TempDir tmp;
  const std::string dir = tmp / "m", index = dir + "/model.safetensors.index.json";
  fs::create_directories(dir + "/sub");
  const std::vector<float> one = {1.0f};
  // A valid shard outside the directory: opening it would succeed, so only the name check can reject it.
  write_safetensors(tmp / "outside.safetensors", {{"a", DType::F32, {1}, f32_to_bytes(one.data(), 1, DType::F32)}});
  write_safetensors(dir + "/sub/inside.safetensors", {{"a", DType::F32, {1}, f32_to_bytes(one.data(), 1, DType::F32)}});
  for (const std::string& name : {std::string("../outside.safetensors"), tmp / "outside.safetensors",
                                  std::string("sub/../../outside.safetensors"), std::string("./../outside.safetensors"),
                                  std::string("sub/../../m/../outside.safetensors")}) {
    CAPTURE(name);
    write_text(index, nlohmann::json{{"weight_map", {{"a", name}}}}.dump());
    check_contains(error_of([&] { TensorSet::open_dir(dir); }),
                   {index, "'a'", "'" + name + "'", "inside the checkpoint directory"});
  }
  write_text(index, R"({"weight_map":{"a":"sub/inside.safetensors\u0000/../../../outside.safetensors"}})");
  check_contains(error_of([&] { TensorSet::open_dir(dir); }), {index, "'a'", "NUL"});
  // A subfolder inside the directory is fine.
  write_text(index, R"({"weight_map":{"a":"sub/inside.safetensors"}})");
  CHECK(TensorSet::open_dir(dir).get("a").file == dir + "/sub/inside.safetensors");
}
