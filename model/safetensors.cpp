// Safetensors reading (mmap, strict header validation, sharded directories) and atomic streaming writing.
// Every check here guards against a file a user handed us, so failures are mole::Error naming the file and
// tensor; misuse by our own code (out-of-range to_f32) is an assertion.
#include "model/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cassert>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>
#include <utility>

#include "model/error.h"
#include "model/half.h"
#include "model/progress.h"
#include "model/user_files.h"

static_assert(std::endian::native == std::endian::little, "safetensors data is little-endian; so is this host");

namespace mole {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

// Real headers are a few hundred KB even for thousands of tensors; anything near this is corruption.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;
constexpr size_t kWriteBufferBytes = size_t(1) << 20;
constexpr const char* kIndexName = "model.safetensors.index.json";
constexpr const char* kSingleName = "model.safetensors";

std::string errno_text(int err) {
  return std::strerror(err);
}

std::string in_quotes(std::string_view s) {
  std::string out = "'";  // appended, not "'" + s: GCC 12 warns falsely (-Wrestrict) about that form here
  out.append(s);
  return out + "'";
}

// A JSON value for an error message, cut short so a garbage header cannot flood the terminal.
std::string brief(const json& v) {
  std::string s = v.dump(-1, ' ', false, json::error_handler_t::replace);
  if (s.size() > 60) s = s.substr(0, 57) + "...";
  return s;
}

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); i++) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

// numel * dtype_size, or nullopt on a negative dimension or overflow.
std::optional<uint64_t> checked_nbytes(const std::vector<int64_t>& shape, DType dtype) {
  int64_t numel = 1;
  for (int64_t d : shape) {
    if (d < 0 || __builtin_mul_overflow(numel, d, &numel)) return std::nullopt;
  }
  int64_t bytes = 0;
  if (__builtin_mul_overflow(numel, int64_t(dtype_size(dtype)), &bytes)) return std::nullopt;
  return uint64_t(bytes);
}

std::optional<DType> parse_header_dtype(std::string_view s) {
  if (s == "F32") return DType::F32;
  if (s == "F16") return DType::F16;
  if (s == "BF16") return DType::BF16;
  return std::nullopt;
}

bool is_known_safetensors_dtype(std::string_view s) {
  static const char* const kKnown[] = {"BOOL", "U8",  "I8", "I16",     "U16",     "I32",     "I64",     "U32",    "U64",
                                       "F64",  "C64", "F4", "F6_E2M3", "F6_E3M2", "F8_E4M3", "F8_E5M2", "F8_E8M0"};
  return std::find(std::begin(kKnown), std::end(kKnown), s) != std::end(kKnown);
}

struct ParsedEntry {
  TensorView view;
  uint64_t begin = 0;
  uint64_t end = 0;
};

// Validates one header entry against the data section [data_start, data_start + data_size).
ParsedEntry parse_entry(const std::string& path, const std::string& name, const json& e, const uint8_t* data_start,
                        uint64_t data_size) {
  auto fail = [&](const std::string& what) -> Error {
    return Error(path + ": tensor " + in_quotes(name) + ": " + what);
  };
  if (!e.is_object()) throw fail("entry must be an object with dtype, shape and data_offsets, got " + brief(e));
  for (const char* key : {"dtype", "shape", "data_offsets"}) {
    if (!e.contains(key)) throw fail(std::string("missing \"") + key + "\" in header entry " + brief(e));
  }

  ParsedEntry out;
  TensorView& v = out.view;
  v.name = name;
  v.file = path;

  const json& dt = e["dtype"];
  if (!dt.is_string()) throw fail("\"dtype\" must be a string, got " + brief(dt));
  const std::string dtype_str = dt.get<std::string>();
  auto dtype = parse_header_dtype(dtype_str);
  if (!dtype) {
    if (is_known_safetensors_dtype(dtype_str)) {
      throw fail("unsupported dtype " + in_quotes(dtype_str) +
                 " (only F32, F16 and BF16 are supported; convert the checkpoint to one of them)");
    }
    throw fail("unknown dtype " + in_quotes(dtype_str) + " (supported: F32, F16, BF16)");
  }
  v.dtype = *dtype;

  const json& sh = e["shape"];
  if (!sh.is_array()) throw fail("\"shape\" must be an array of integers, got " + brief(sh));
  for (const json& d : sh) {
    if (!d.is_number_integer()) throw fail("\"shape\" must be an array of integers, got " + brief(sh));
    if (d.is_number_unsigned()) {
      if (d.get<uint64_t>() > uint64_t(INT64_MAX)) throw fail("shape " + brief(sh) + " is too large (overflow)");
      v.shape.push_back(int64_t(d.get<uint64_t>()));
    } else {
      if (d.get<int64_t>() < 0) throw fail("shape " + brief(sh) + " has a negative dimension");
      v.shape.push_back(d.get<int64_t>());
    }
  }
  auto need = checked_nbytes(v.shape, v.dtype);
  if (!need) throw fail("shape " + shape_text(v.shape) + " has too many elements (overflow)");

  const json& off = e["data_offsets"];
  if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() || !off[1].is_number_unsigned()) {
    throw fail("\"data_offsets\" must be [begin, end] with non-negative integers, got " + brief(off));
  }
  out.begin = off[0].get<uint64_t>();
  out.end = off[1].get<uint64_t>();
  if (out.begin > out.end) {
    throw fail("data_offsets begin " + std::to_string(out.begin) + " is after end " + std::to_string(out.end));
  }
  if (out.end > data_size) {
    throw fail("data_offsets end " + std::to_string(out.end) + " is past the end of the file (data section is " +
               std::to_string(data_size) + " bytes; is the file truncated?)");
  }
  if (out.end - out.begin != *need) {
    throw fail("data_offsets span " + std::to_string(out.end - out.begin) + " bytes but shape " + shape_text(v.shape) +
               " of " + dtype_name(v.dtype) + " needs " + std::to_string(*need) +
               " bytes (non-contiguous or wrong size)");
  }
  v.data = data_start + out.begin;
  v.nbytes = size_t(*need);
  return out;
}

// Parses the header JSON, reporting a repeated top-level key (which nlohmann would silently overwrite).
json parse_header_json(const std::string& path, const char* begin, const char* end) {
  std::string repeated;
  json header = parse_json(std::string_view(begin, size_t(end - begin)), path, "header",
                           "the file is corrupt or not safetensors", &repeated);
  if (!header.is_object()) throw Error(path + ": header must be a JSON object, got " + brief(header));
  if (!repeated.empty()) throw Error(path + ": tensor " + in_quotes(repeated) + " appears twice in the header");
  return header;
}

std::map<std::string, std::string> parse_metadata(const std::string& path, const json& m) {
  if (!m.is_object()) throw Error(path + ": \"__metadata__\" must be an object of strings, got " + brief(m));
  std::map<std::string, std::string> out;
  for (const auto& [key, value] : m.items()) {
    if (!value.is_string()) {
      throw Error(path + ": \"__metadata__\" value for " + in_quotes(key) + " must be a string, got " + brief(value));
    }
    out[key] = value.get<std::string>();
  }
  return out;
}

// True for a regular file (or a link to one); false when absent or something else; throws Error naming the path
// for a symbolic-link loop and other errors, which would otherwise read as "missing".
bool is_file(const fs::path& p) {
  return path_kind(p.string()) == PathKind::File;
}

// A shard named by the index must be a file inside the checkpoint directory: a downloaded model must not make mole
// read files elsewhere. Subfolders are allowed; an absolute path, a ".." component or a NUL character is not.
// (Symbolic links inside the directory are followed: Hugging Face's cache links each file to a blob outside it.)
void check_shard_name(const std::string& index_path, const std::string& tensor, const std::string& shard) {
  auto fail = [&](const std::string& why) {
    return Error(index_path + ": weight_map entry for tensor " + in_quotes(tensor) + " names " + why +
                 "; shards must be files inside the checkpoint directory");
  };
  // Named without echoing it: a NUL would cut the message short.
  if (shard.find('\0') != std::string::npos) throw fail("a shard with a NUL character in its name");
  const std::string named = "shard " + in_quotes(shard) + ", ";
  const fs::path p(shard);
  if (p.is_absolute()) throw fail(named + "an absolute path");
  for (const fs::path& part : p) {
    if (part == "..") throw fail(named + "which leaves the checkpoint directory through \"..\"");
  }
}

}  // namespace

// Three dtypes only: adding one means revisiting these, to_f32 and f32_to_bytes.
size_t dtype_size(DType dtype) {
  return dtype == DType::F32 ? 4 : 2;
}

const char* dtype_name(DType dtype) {
  return dtype == DType::F32 ? "F32" : dtype == DType::F16 ? "F16" : "BF16";
}

std::optional<DType> parse_dtype(std::string_view s) {
  if (s == "F32" || s == "f32" || s == "float32") return DType::F32;
  if (s == "F16" || s == "f16" || s == "float16") return DType::F16;
  if (s == "BF16" || s == "bf16" || s == "bfloat16") return DType::BF16;
  return std::nullopt;
}

int64_t TensorView::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;  // validated against overflow on open
  return n;
}

void TensorView::to_f32(int64_t first, int64_t count, float* out) const {
  assert(first >= 0 && count >= 0 && first <= numel() - count);
  if (count == 0) return;
  const uint8_t* src = data + size_t(first) * dtype_size(dtype);
  switch (dtype) {
    case DType::F32:
      std::memcpy(out, src, size_t(count) * 4);
      return;
    case DType::F16:
      for (int64_t i = 0; i < count; i++) {
        uint16_t h;
        std::memcpy(&h, src + 2 * i, 2);
        out[i] = f16_to_f32(h);
      }
      return;
    case DType::BF16:
      for (int64_t i = 0; i < count; i++) {
        uint16_t h;
        std::memcpy(&h, src + 2 * i, 2);
        out[i] = bf16_to_f32(h);
      }
      return;
  }
}

// ---- SafetensorsFile ----

SafetensorsFile SafetensorsFile::open(const std::string& path) {
  SafetensorsFile f;  // owns fd/mapping from here on, so every throw below releases them
  f.path_ = path;
  f.fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (f.fd_ < 0) throw Error(path + ": cannot open: " + errno_text(errno));
  struct stat st {};
  if (fstat(f.fd_, &st) != 0) throw Error(path + ": cannot stat: " + errno_text(errno));
  if (!S_ISREG(st.st_mode)) throw Error(path + ": not a regular file");
  const uint64_t size = uint64_t(st.st_size);
  if (size < 8) {
    throw Error(path + ": file is " + std::to_string(size) +
                " bytes, shorter than the 8-byte safetensors header length; it is truncated or not safetensors");
  }
  f.size_ = size_t(size);
  void* base = mmap(nullptr, f.size_, PROT_READ, MAP_PRIVATE, f.fd_, 0);
  if (base == MAP_FAILED) throw Error(path + ": cannot mmap " + std::to_string(size) + " bytes: " + errno_text(errno));
  f.base_ = base;
  const auto* bytes = static_cast<const uint8_t*>(base);

  uint64_t header_len = 0;
  std::memcpy(&header_len, bytes, 8);
  if (header_len > kMaxHeaderBytes) {
    throw Error(path + ": header length " + std::to_string(header_len) + " is absurd (over " +
                std::to_string(kMaxHeaderBytes) + " bytes); the file is corrupt or not safetensors");
  }
  if (header_len > size - 8) {
    throw Error(path + ": header length " + std::to_string(header_len) + " runs past the end of the file (" +
                std::to_string(size) + " bytes); the file is truncated or not safetensors");
  }
  const char* header_begin = reinterpret_cast<const char*>(bytes + 8);
  json header = parse_header_json(path, header_begin, header_begin + header_len);

  const uint8_t* data_start = bytes + 8 + header_len;
  const uint64_t data_size = size - 8 - header_len;
  std::vector<ParsedEntry> entries;
  try {
    for (const auto& [key, value] : header.items()) {
      if (key == "__metadata__") {
        f.metadata_ = parse_metadata(path, value);
        continue;
      }
      entries.push_back(parse_entry(path, key, value, data_start, data_size));
    }
  } catch (const json::exception& e) {  // defensive: the checks above should leave nothing for nlohmann to reject
    throw Error(path + ": malformed header: " + e.what());
  }

  std::sort(entries.begin(), entries.end(), [](const ParsedEntry& a, const ParsedEntry& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.view.name < b.view.name;
  });
  // Zero-size tensors occupy no bytes, so only non-empty ranges can overlap.
  const ParsedEntry* prev = nullptr;
  for (const ParsedEntry& e : entries) {
    if (e.begin == e.end) continue;
    if (prev && e.begin < prev->end) {
      throw Error(path + ": tensors " + in_quotes(prev->view.name) + " [" + std::to_string(prev->begin) + ", " +
                  std::to_string(prev->end) + ") and " + in_quotes(e.view.name) + " [" + std::to_string(e.begin) +
                  ", " + std::to_string(e.end) + ") overlap; the header is corrupt");
    }
    prev = &e;
  }
  f.tensors_.reserve(entries.size());
  for (ParsedEntry& e : entries) {
    f.index_.emplace(e.view.name, f.tensors_.size());
    e.view.mapping = bytes;
    e.view.mapping_bytes = f.size_;
    f.tensors_.push_back(std::move(e.view));
  }
  return f;
}

SafetensorsFile::SafetensorsFile(SafetensorsFile&& other) noexcept
    : path_(std::move(other.path_)),
      fd_(std::exchange(other.fd_, -1)),
      base_(std::exchange(other.base_, nullptr)),
      size_(std::exchange(other.size_, 0)),
      tensors_(std::move(other.tensors_)),
      index_(std::move(other.index_)),
      metadata_(std::move(other.metadata_)) {}

SafetensorsFile& SafetensorsFile::operator=(SafetensorsFile&& other) noexcept {
  if (this != &other) {
    release();
    path_ = std::move(other.path_);
    fd_ = std::exchange(other.fd_, -1);
    base_ = std::exchange(other.base_, nullptr);
    size_ = std::exchange(other.size_, 0);
    tensors_ = std::move(other.tensors_);
    index_ = std::move(other.index_);
    metadata_ = std::move(other.metadata_);
  }
  return *this;
}

SafetensorsFile::~SafetensorsFile() {
  release();
}

void SafetensorsFile::release() {
  if (base_) munmap(base_, size_);
  if (fd_ >= 0) ::close(fd_);
  base_ = nullptr;
  fd_ = -1;
  size_ = 0;
  tensors_.clear();
  index_.clear();
}

const TensorView* SafetensorsFile::find(std::string_view name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

void SafetensorsFile::advise_random(const TensorView& t) const {
  const auto* lo = static_cast<const uint8_t*>(base_);
  if (!lo || t.nbytes == 0 || t.data < lo || t.data + t.nbytes > lo + size_) return;
  const uintptr_t page = uintptr_t(sysconf(_SC_PAGESIZE));
  const uintptr_t start = uintptr_t(t.data) & ~(page - 1);
  const uintptr_t end = uintptr_t(t.data) + t.nbytes;
  // Lookup tables are read a few rows at a time in token order; readahead would only waste page cache.
  (void)madvise(reinterpret_cast<void*>(start), end - start, MADV_RANDOM);
}

// ---- TensorSet ----

void TensorSet::add_file(SafetensorsFile file) {
  files_.push_back(std::move(file));
  // Views live in each file's heap-allocated tensor vector, which moving the file (or files_) does not move.
  for (const TensorView& t : files_.back().tensors()) {
    auto [it, inserted] = by_name_.emplace(t.name, &t);
    if (!inserted) {
      throw Error(dir_ + ": tensor " + in_quotes(t.name) + " appears in both " + it->second->file + " and " + t.file +
                  "; each tensor must be stored exactly once");
    }
  }
}

TensorSet TensorSet::open_dir(const std::string& dir) {
  TensorSet set;
  set.dir_ = dir;
  const PathKind kind = path_kind(dir);
  if (kind == PathKind::Missing) throw Error(dir + ": checkpoint directory does not exist");
  if (kind != PathKind::Directory) throw Error(dir + ": not a directory (expected a checkpoint directory)");
  const fs::path root(dir);
  for (const char* name : {kSingleName, kIndexName}) {  // there, but not a file: say so, not "none found"
    const std::string what = not_a_regular_file((root / name).string());
    if (!what.empty()) throw Error((root / name).string() + ": is " + what + ", not a file; " + name + " must be one");
  }

  if (is_file(root / kSingleName)) {
    set.add_file(SafetensorsFile::open((root / kSingleName).string()));
    return set;
  }

  const std::string index_path = (root / kIndexName).string();
  if (is_file(index_path)) {
    const json index = load_json_file(index_path, "shard index");
    if (!index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object()) {
      throw Error(index_path + ": expected an object with a \"weight_map\" object {tensor: shard file}");
    }
    std::map<std::string, std::string> weight_map;  // tensor -> shard file name
    std::map<std::string, std::string> shards;      // shard file name -> first tensor listed for it
    for (const auto& [tensor, shard] : index["weight_map"].items()) {
      if (!shard.is_string() || shard.get<std::string>().empty()) {
        throw Error(index_path + ": weight_map entry for tensor " + in_quotes(tensor) +
                    " must be a shard file name, got " + brief(shard));
      }
      check_shard_name(index_path, tensor, shard.get<std::string>());
      weight_map[tensor] = shard.get<std::string>();
      shards.emplace(shard.get<std::string>(), tensor);
    }
    if (weight_map.empty()) throw Error(index_path + ": weight_map lists no tensors");
    for (const auto& [shard, first_tensor] : shards) {
      const fs::path shard_path = root / shard;
      if (!is_file(shard_path)) {
        throw Error(index_path + ": shard " + in_quotes(shard) + " (listed for tensor " + in_quotes(first_tensor) +
                    ") is missing: expected " + shard_path.string() + "; the download may be incomplete");
      }
      set.add_file(SafetensorsFile::open(shard_path.string()));
      for (const TensorView& t : set.files_.back().tensors()) {
        auto it = weight_map.find(t.name);
        if (it == weight_map.end()) {
          throw Error(index_path + ": tensor " + in_quotes(t.name) + " is in shard " + in_quotes(shard) +
                      " but not in the index weight_map");
        }
        if (it->second != shard) {
          throw Error(index_path + ": tensor " + in_quotes(t.name) + " is in shard " + in_quotes(shard) +
                      " but the index maps it to " + in_quotes(it->second));
        }
      }
    }
    for (const auto& [tensor, shard] : weight_map) {
      if (!set.by_name_.count(tensor)) {
        throw Error(index_path + ": tensor " + in_quotes(tensor) + " is listed for shard " + in_quotes(shard) + " (" +
                    (root / shard).string() + ") but that shard does not contain it");
      }
    }
    return set;
  }

  std::vector<std::string> candidates;
  std::error_code ec;
  for (fs::directory_iterator it(root, ec), end; !ec && it != end; it.increment(ec)) {
    if (it->path().extension() == ".safetensors" && is_file(it->path())) {
      candidates.push_back(it->path().filename().string());
    }
  }
  if (ec) throw Error(dir + ": cannot list directory: " + ec.message());
  std::sort(candidates.begin(), candidates.end());
  if (candidates.size() == 1) {
    set.add_file(SafetensorsFile::open((root / candidates[0]).string()));
    return set;
  }
  std::string expected = std::string("expected ") + kSingleName + ", or " + kIndexName +
                         " with its shards, or a single *.safetensors file";
  if (candidates.empty()) {
    // PyTorch's own format is a pickle, which can run code when read: mole reads safetensors only, and says how to
    // get them.
    for (const char* pickle : {"pytorch_model.bin", "pytorch_model.bin.index.json"}) {
      if (is_file(root / pickle)) {
        throw Error(dir + ": no safetensors checkpoint found, only PyTorch's " + pickle +
                    ", which mole does not read (a pickle can run code); save the model again with safetensors, "
                    "e.g. model.save_pretrained(DIR, safe_serialization=True) in transformers");
      }
    }
    throw Error(dir + ": no safetensors checkpoint found; " + expected);
  }
  std::string list;
  for (const auto& c : candidates) list += (list.empty() ? "" : ", ") + c;
  throw Error(dir + ": found " + std::to_string(candidates.size()) + " *.safetensors files (" + list + ") but no " +
              kIndexName + " saying how they fit together; " + expected);
}

const TensorView* TensorSet::find(std::string_view name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : it->second;
}

const TensorView& TensorSet::get(std::string_view name) const {
  if (const TensorView* t = find(name)) return *t;
  // In sorted order, the names sharing the longest prefix with `name` sit right around where it would go.
  std::string hint;
  auto it = by_name_.lower_bound(name);
  auto common = [&](const std::string& s) {
    return size_t(std::mismatch(s.begin(), s.end(), name.begin(), name.end()).first - s.begin());
  };
  size_t best = 0;
  if (it != by_name_.end()) best = common(it->first), hint = it->first;
  if (it != by_name_.begin() && common(std::prev(it)->first) > best) hint = std::prev(it)->first;
  std::string msg = dir_ + ": missing tensor " + in_quotes(name) + " (the checkpoint has " +
                    std::to_string(by_name_.size()) + " tensors";
  if (!hint.empty()) msg += "; nearest name is " + in_quotes(hint);
  throw Error(msg + "; is this checkpoint for this model, and complete?)");
}

std::vector<std::string> TensorSet::names() const {
  std::vector<std::string> out;
  out.reserve(by_name_.size());
  for (const auto& [name, view] : by_name_) out.push_back(name);
  return out;
}

size_t TensorSet::total_bytes() const {
  size_t total = 0;
  for (const auto& [name, view] : by_name_) total += view->nbytes;
  return total;
}

// ---- SafetensorsWriter ----

SafetensorsWriter::SafetensorsWriter(const std::string& path, std::vector<Entry> entries,
                                     std::map<std::string, std::string> metadata)
    : path_(path), tmp_path_(path + ".tmp"), entries_(std::move(entries)) {
  json header = json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::set<std::string_view> names;
  for (const Entry& e : entries_) {
    if (e.name.empty() || e.name == "__metadata__") throw Error(path_ + ": invalid tensor name " + in_quotes(e.name));
    if (!names.insert(e.name).second) throw Error(path_ + ": tensor " + in_quotes(e.name) + " is listed twice");
    auto nbytes = checked_nbytes(e.shape, e.dtype);
    if (!nbytes) {
      throw Error(path_ + ": tensor " + in_quotes(e.name) + " has an invalid shape " + shape_text(e.shape) +
                  " (negative or overflowing)");
    }
    header[e.name] = {{"dtype", dtype_name(e.dtype)}, {"shape", e.shape}, {"data_offsets", {total_, total_ + *nbytes}}};
    total_ += *nbytes;
    ends_.push_back(total_);
  }
  std::string text;
  try {
    text = header.dump();
  } catch (const json::exception& e) {
    throw Error(path_ + ": cannot encode header (tensor names and metadata must be UTF-8): " + e.what());
  }
  // The official reader wants the data section 8-byte aligned, so pad the header with spaces.
  text.append((8 - text.size() % 8) % 8, ' ');
  const uint64_t len = text.size();
  buffer_.reserve(std::max(kWriteBufferBytes, text.size() + 8));
  buffer_.resize(8);
  std::memcpy(buffer_.data(), &len, 8);
  buffer_.insert(buffer_.end(), text.begin(), text.end());

  // Opening is the last step that can fail, so a throwing constructor never leaves a .tmp file behind.
  fd_ = ::open(tmp_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ < 0) throw Error(tmp_path_ + ": cannot create: " + errno_text(errno));
  active_ = true;
  // The file's whole size is known: reserve it now, so a disk that cannot hold it fails here, before a conversion
  // spends minutes computing the table. A file system that cannot reserve (EOPNOTSUPP; a device such as /dev/full)
  // is written as it comes, and a full disk is then found by the write.
  const uint64_t file_bytes = buffer_.size() + total_;
  if (::fallocate(fd_, 0, 0, off_t(file_bytes)) != 0 && (errno == ENOSPC || errno == EDQUOT)) {
    const int err = errno;
    struct statvfs fs {};
    const std::string free_text =
        ::fstatvfs(fd_, &fs) == 0 ? ", " + human_bytes(double(fs.f_bavail) * double(fs.f_frsize)) + " free" : "";
    fail_and_throw(tmp_path_ + ": cannot reserve " + human_bytes(double(file_bytes)) + " (" + errno_text(err) +
                   free_text + "): free space or write to another disk");
  }
}

SafetensorsWriter::SafetensorsWriter(SafetensorsWriter&& other) noexcept
    : path_(std::move(other.path_)),
      tmp_path_(std::move(other.tmp_path_)),
      fd_(std::exchange(other.fd_, -1)),
      active_(std::exchange(other.active_, false)),
      entries_(std::move(other.entries_)),
      ends_(std::move(other.ends_)),
      total_(other.total_),
      written_(other.written_),
      buffer_(std::move(other.buffer_)) {}

SafetensorsWriter& SafetensorsWriter::operator=(SafetensorsWriter&& other) noexcept {
  if (this != &other) {
    abandon();
    path_ = std::move(other.path_);
    tmp_path_ = std::move(other.tmp_path_);
    fd_ = std::exchange(other.fd_, -1);
    active_ = std::exchange(other.active_, false);
    entries_ = std::move(other.entries_);
    ends_ = std::move(other.ends_);
    total_ = other.total_;
    written_ = other.written_;
    buffer_ = std::move(other.buffer_);
  }
  return *this;
}

SafetensorsWriter::~SafetensorsWriter() {
  abandon();
}

void SafetensorsWriter::abandon() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  if (active_) ::unlink(tmp_path_.c_str());
  active_ = false;
}

void SafetensorsWriter::fail_and_throw(const std::string& message) {
  abandon();
  throw Error(message);
}

std::string SafetensorsWriter::current_tensor() const {
  auto it = std::upper_bound(ends_.begin(), ends_.end(), written_);
  return it == ends_.end() ? std::string() : entries_[size_t(it - ends_.begin())].name;
}

void SafetensorsWriter::write_fd(const uint8_t* data, size_t nbytes) {
  while (nbytes > 0) {
    ssize_t n = ::write(fd_, data, nbytes);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int err = n < 0 ? errno : EIO;
      fail_and_throw(tmp_path_ + ": write failed: " + errno_text(err) +
                     (err == ENOSPC || err == EDQUOT ? " (disk full: free space or write to another disk)" : ""));
    }
    data += n;
    nbytes -= size_t(n);
  }
}

void SafetensorsWriter::flush_buffer() {
  write_fd(buffer_.data(), buffer_.size());
  buffer_.clear();
}

void SafetensorsWriter::write(const void* data, size_t nbytes) {
  if (!active_) throw Error(path_ + ": write after finish() or after a failed write");
  if (nbytes > total_ - written_) {
    fail_and_throw(path_ + ": write of " + std::to_string(nbytes) + " bytes overruns the declared tensors by " +
                   std::to_string(nbytes - (total_ - written_)) + " bytes");
  }
  const auto* src = static_cast<const uint8_t*>(data);
  if (buffer_.size() + nbytes > kWriteBufferBytes) flush_buffer();
  if (nbytes >= kWriteBufferBytes) {
    write_fd(src, nbytes);
  } else {
    buffer_.insert(buffer_.end(), src, src + nbytes);
  }
  written_ += nbytes;
}

void SafetensorsWriter::finish() {
  if (!active_) throw Error(path_ + ": finish() on a writer that already finished or failed");
  if (written_ != total_) {
    fail_and_throw(path_ + ": only " + std::to_string(written_) + " of " + std::to_string(total_) +
                   " data bytes were written (tensor " + in_quotes(current_tensor()) +
                   " is incomplete); the file was not created");
  }
  flush_buffer();
  if (::fsync(fd_) != 0) fail_and_throw(tmp_path_ + ": fsync failed: " + errno_text(errno));
  const int fd = std::exchange(fd_, -1);
  if (::close(fd) != 0) fail_and_throw(tmp_path_ + ": close failed: " + errno_text(errno));
  if (::rename(tmp_path_.c_str(), path_.c_str()) != 0) {
    fail_and_throw(path_ + ": cannot rename " + tmp_path_ + " into place: " + errno_text(errno));
  }
  active_ = false;
  // Make the rename itself durable; a failure here leaves a complete file, so it is not an error.
  fs::path parent = fs::path(path_).parent_path();
  int dir_fd = ::open(parent.empty() ? "." : parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd >= 0) {
    (void)::fsync(dir_fd);
    ::close(dir_fd);
  }
}

void write_safetensors(const std::string& path, const std::vector<OwnedTensor>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  std::vector<SafetensorsWriter::Entry> entries;
  for (const OwnedTensor& t : tensors) {
    auto need = checked_nbytes(t.shape, t.dtype);
    if (need && *need != t.bytes.size()) {
      throw Error(path + ": tensor " + in_quotes(t.name) + " has " + std::to_string(t.bytes.size()) +
                  " bytes but shape " + shape_text(t.shape) + " of " + dtype_name(t.dtype) + " needs " +
                  std::to_string(*need));
    }
    entries.push_back({t.name, t.dtype, t.shape});
  }
  SafetensorsWriter writer(path, std::move(entries), metadata);
  for (const OwnedTensor& t : tensors) writer.write(t.bytes.data(), t.bytes.size());
  writer.finish();
}

std::vector<uint8_t> f32_to_bytes(const float* src, size_t n, DType dtype) {
  std::vector<uint8_t> out(n * dtype_size(dtype));
  f32_to_bytes(src, n, dtype, out.data());
  return out;
}

void f32_to_bytes(const float* src, size_t n, DType dtype, uint8_t* dst) {
  switch (dtype) {
    case DType::F32:
      if (n) std::memcpy(dst, src, n * 4);
      return;
    case DType::F16:
      for (size_t i = 0; i < n; i++) {
        const uint16_t h = f32_to_f16(src[i]);
        std::memcpy(dst + 2 * i, &h, 2);
      }
      return;
    case DType::BF16:
      for (size_t i = 0; i < n; i++) {
        const uint16_t h = f32_to_bf16(src[i]);
        std::memcpy(dst + 2 * i, &h, 2);
      }
      return;
  }
}

}  // namespace mole
