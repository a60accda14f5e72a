// Device buffers, each with its own VkDeviceMemory (no suballocator yet), and the split of a buffer too large for one
// allocation or one storage-buffer binding (a 15 GB lookup table) into chunks.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "vk-runtime/check.h"

namespace mole {

class Device;

// Where a buffer's memory lives. Every host-visible kind is HOST_COHERENT (no flush or invalidate needed) and
// persistently mapped.
enum class MemoryKind {
  DeviceLocal,   // device memory, not mapped: weights, activations, a device-placed table
  HostVisible,   // host memory, cached if possible: the host-placed table, staging
  HostToDevice,  // host-visible, device-local if possible (BAR/ReBAR), else host memory: per-step inputs
  Readback,      // host memory, cached: results the host reads
};
const char* memory_kind_name(MemoryKind kind);

// Owns a VkBuffer and its VkDeviceMemory (unmapped and freed with it). The Device must outlive it.
class Buffer {
 public:
  // `what` names the buffer in errors and debuggers. Throws mole::Error naming `what`, its size in MiB and the
  // device's heap size when there is not enough memory (see out_of_memory_message()). When a device-local-preferring
  // kind finds its heap full it falls back to the next memory type with the kind's required flags.
  static Buffer create(const Device& device, VkDeviceSize size, VkBufferUsageFlags usage, MemoryKind kind,
                       const char* what);

  // A buffer over `size` bytes of host memory at `host` that the caller owns (VK_EXT_external_memory_host,
  // HOST_ALLOCATION import): no allocation, no copy; the memory must stay valid, unchanged by the host while the
  // device may read it, until the buffer is destroyed. `host` and `size` must be multiples of the device's
  // minImportedHostPointerAlignment. Not mapped (the caller has the pointer) and not counted in any heap's use.
  // Throws mole::Error saying why the device will not import it (no extension, no importable memory type for
  // `usage`, the driver refused); the caller then copies instead.
  static Buffer import_host(const Device& device, const void* host, VkDeviceSize size, VkBufferUsageFlags usage,
                            const char* what);

  Buffer(Buffer&& other) noexcept;
  Buffer& operator=(Buffer&& other) noexcept;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  ~Buffer();

  VkBuffer handle() const { return buffer_; }
  VkDeviceSize size() const { return size_; }
  // Persistently mapped for the host-visible kinds, nullptr for DeviceLocal and imported memory.
  void* mapped() const { return mapped_; }
  MemoryKind kind() const { return kind_; }
  VkMemoryPropertyFlags memory_flags() const { return flags_; }  // of the memory type it got
  // The buffer's GPU address: only with VK_BUFFER_USAGE_SHADER_DEVICE_ADDRESS_BIT (bufferDeviceAddress on), else 0.
  VkDeviceAddress device_address() const { return address_; }
  VkDescriptorBufferInfo descriptor(VkDeviceSize offset = 0, VkDeviceSize range = VK_WHOLE_SIZE) const {
    return {buffer_, offset, range};
  }

 private:
  Buffer() = default;
  void destroy();

  VkDevice device_ = VK_NULL_HANDLE;
  VkBuffer buffer_ = VK_NULL_HANDLE;
  VkDeviceMemory memory_ = VK_NULL_HANDLE;
  VkDeviceSize size_ = 0, allocated_ = 0;  // allocated_: the memory's size, counted in its heap
  void* mapped_ = nullptr;
  MemoryKind kind_ = MemoryKind::DeviceLocal;
  VkMemoryPropertyFlags flags_ = 0;
  VkDeviceAddress address_ = 0;
  std::atomic<uint64_t>* heap_counter_ = nullptr;  // the Device's counter for this memory's heap
};

// Throws mole::Error when a buffer a shader binds whole, `bytes` long, is past the device's maxStorageBufferRange
// (lavapipe: 128 MiB): a shader would see only part of it. The message names `what`, both sizes and what to change.
void check_binding_range(const Device& device, VkDeviceSize bytes, const std::string& what);

// The size of each chunk create_chunked() makes: the smallest of the device's maxMemoryAllocationSize and
// maxStorageBufferRange (each rounded down to 1 MiB) and `chunk_limit` (0: no limit of its own), rounded down to a
// multiple of 256 bytes and of `granule` (a row size, so that no row straddles two chunks).
// Throws mole::Error if one granule does not fit.
VkDeviceSize chunk_bytes(const Device& device, VkDeviceSize chunk_limit, VkDeviceSize granule = 1);

// `total` bytes as buffers of chunk_bytes() each (the last one shorter): byte i is in chunk i / chunk_bytes().
// Each chunk is named "<what> (chunk k of n)". Throws like Buffer::create (chunks made so far are freed).
std::vector<Buffer> create_chunked(const Device& device, VkDeviceSize total, VkDeviceSize chunk_limit,
                                   VkBufferUsageFlags usage, MemoryKind kind, const char* what,
                                   VkDeviceSize granule = 1);

// "vulkan: out of memory allocating <what> (N MiB) on <device>: memory heap H is G GiB (DEVICE_LOCAL), U MiB of it
// already used by mole. ... `--lut host` or `--lut disk` ...".
std::string out_of_memory_message(const Device& device, const char* what, VkDeviceSize size, uint32_t heap);

}  // namespace mole
