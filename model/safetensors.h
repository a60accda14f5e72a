// The safetensors layer: validated read-only mmap access to single and sharded checkpoints, and a streaming
// writer that only ever exposes a complete file (it writes PATH.tmp and renames it over PATH on finish()).
// Format: u64 little-endian header length N, N bytes of JSON header, then the data section; tensor
// data_offsets are relative to the data section start (8 + N).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mole {

enum class DType { F32, F16, BF16 };

size_t dtype_size(DType dtype);
const char* dtype_name(DType dtype);  // "F32", "F16", "BF16"
// Accepts "F32"/"f32"/"float32", "F16"/"f16"/"float16", "BF16"/"bf16"/"bfloat16" (flags and configs).
// File headers are stricter: only the canonical upper-case names are accepted there.
std::optional<DType> parse_dtype(std::string_view name);

// A tensor inside an mmap'd file; valid while the SafetensorsFile (or TensorSet) holding it is alive.
// Elements are little-endian, row-major, contiguous; data may be unaligned.
struct TensorView {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  const uint8_t* data = nullptr;
  size_t nbytes = 0;
  std::string file;  // path of the file holding it, for error messages
  // The whole file's mapping, which holds data (page-aligned begin; readable up to mapping_bytes rounded up to a
  // page): what a device importing host memory needs to know about its surroundings. Null for views made elsewhere.
  const uint8_t* mapping = nullptr;
  size_t mapping_bytes = 0;
  int64_t numel() const;
  // Converts elements [first, first+count) to float32 into out. Asserts the range is inside the tensor.
  void to_f32(int64_t first, int64_t count, float* out) const;
};

// One mmap'd (read-only, MAP_PRIVATE) safetensors file, validated on open. Move-only RAII: munmaps and closes
// on destruction. Moving keeps the mapping, so TensorView pointers survive a move.
class SafetensorsFile {
 public:
  static SafetensorsFile open(const std::string& path);
  SafetensorsFile(SafetensorsFile&& other) noexcept;
  SafetensorsFile& operator=(SafetensorsFile&& other) noexcept;
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;
  ~SafetensorsFile();

  const std::vector<TensorView>& tensors() const { return tensors_; }  // in data-offset order
  const TensorView* find(std::string_view name) const;                 // nullptr if absent
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const std::string& path() const { return path_; }
  // Tells the kernel a tensor is read at random (lookup tables): no readahead. No-op on failure.
  void advise_random(const TensorView& tensor) const;

 private:
  SafetensorsFile() = default;
  void release();

  std::string path_;
  int fd_ = -1;
  void* base_ = nullptr;  // the whole file, mapped
  size_t size_ = 0;
  std::vector<TensorView> tensors_;
  std::map<std::string, size_t, std::less<>> index_;  // name -> position in tensors_
  std::map<std::string, std::string> metadata_;
};

// All tensors of a checkpoint directory: DIR/model.safetensors, else DIR/model.safetensors.index.json
// ({"metadata":..., "weight_map": {tensor: shard file}}) with every shard opened once, else the single other
// *.safetensors file in DIR. Each tensor appears exactly once across shards, in the shard the index names.
class TensorSet {
 public:
  static TensorSet open_dir(const std::string& dir);
  const TensorView* find(std::string_view name) const;
  const TensorView& get(std::string_view name) const;  // throws Error: "DIR: missing tensor 'X' (...)"
  std::vector<std::string> names() const;              // sorted
  size_t total_bytes() const;
  const std::string& dir() const { return dir_; }
  const std::vector<SafetensorsFile>& files() const { return files_; }

 private:
  void add_file(SafetensorsFile file);

  std::string dir_;
  std::vector<SafetensorsFile> files_;
  std::map<std::string, const TensorView*, std::less<>> by_name_;  // points into files_[i].tensors()
};

// Streams tensors into `path` through `path + ".tmp"`, renamed over `path` only by finish(). The header is
// written first from the entry list (offsets contiguous in entry order); then the data of the entries in
// order via write(), in chunks of any size. An unfinished writer's destructor removes the .tmp file.
class SafetensorsWriter {
 public:
  struct Entry {
    std::string name;
    DType dtype = DType::F32;
    std::vector<int64_t> shape;
  };
  SafetensorsWriter(const std::string& path, std::vector<Entry> entries,
                    std::map<std::string, std::string> metadata = {{"format", "pt"}});
  SafetensorsWriter(SafetensorsWriter&& other) noexcept;
  SafetensorsWriter& operator=(SafetensorsWriter&& other) noexcept;
  SafetensorsWriter(const SafetensorsWriter&) = delete;
  SafetensorsWriter& operator=(const SafetensorsWriter&) = delete;
  ~SafetensorsWriter();

  void write(const void* data, size_t nbytes);  // throws Error on disk full / write error (with path)
  void finish();                                // checks every byte was written, fsyncs, renames

 private:
  void flush_buffer();
  void write_fd(const uint8_t* data, size_t nbytes);
  void fail_and_throw(const std::string& message);
  void abandon();  // closes and removes the .tmp file
  std::string current_tensor() const;

  std::string path_;
  std::string tmp_path_;
  int fd_ = -1;
  bool active_ = false;  // owns a .tmp file that is not yet renamed
  std::vector<Entry> entries_;
  std::vector<uint64_t> ends_;  // data-section end offset of each entry
  uint64_t total_ = 0;          // data-section bytes the entries declare
  uint64_t written_ = 0;        // data-section bytes accepted so far
  std::vector<uint8_t> buffer_;
};

// Convenience for small files (tests, synthetic checkpoints): writes everything at once, through the writer.
struct OwnedTensor {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;
};
void write_safetensors(const std::string& path, const std::vector<OwnedTensor>& tensors,
                       const std::map<std::string, std::string>& metadata = {{"format", "pt"}});

// Converts float32 values to dtype bytes (little-endian, round to nearest even) — used by writers.
std::vector<uint8_t> f32_to_bytes(const float* src, size_t n, DType dtype);
void f32_to_bytes(const float* src, size_t n, DType dtype, uint8_t* dst);

}  // namespace mole
