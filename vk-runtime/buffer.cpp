// Buffer creation, memory-type choice per MemoryKind, out-of-memory messages and chunking (see buffer.h).
#include "vk-runtime/buffer.h"

#include <algorithm>
#include <cassert>
#include <cstdio>
#include <numeric>
#include <utility>

#include "model/error.h"
#include "model/memory_budget.h"
#include "vk-runtime/device.h"
#include "vk-runtime/loader.h"

namespace mole {
namespace {

constexpr VkMemoryPropertyFlags kHostCoherent =
    VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT;

struct MemoryFlags {
  VkMemoryPropertyFlags required, preferred;
};

MemoryFlags kind_flags(MemoryKind kind) {
  switch (kind) {
    case MemoryKind::DeviceLocal:
      return {VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT, 0};
    case MemoryKind::HostVisible:
      return {kHostCoherent, VK_MEMORY_PROPERTY_HOST_CACHED_BIT};
    case MemoryKind::HostToDevice:
      return {kHostCoherent, VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT};
    case MemoryKind::Readback:
      return {kHostCoherent, VK_MEMORY_PROPERTY_HOST_CACHED_BIT};
  }
  return {0, 0};
}

std::string mib(VkDeviceSize bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f MiB", double(bytes) / double(1 << 20));
  return buf;
}

bool out_of_memory(VkResult r) {
  return r == VK_ERROR_OUT_OF_DEVICE_MEMORY || r == VK_ERROR_OUT_OF_HOST_MEMORY;
}

// A VkBuffer of `size` bytes for `usage`, shared by the compute and transfer families when they differ; `next`
// chains onto its create info. Throws like Buffer::create.
VkBuffer new_buffer(const Device& device, VkDeviceSize size, VkBufferUsageFlags usage, const std::string& name,
                    const void* next) {
  std::vector<uint32_t> families = device.buffer_families();
  VkBufferCreateInfo bi{};
  bi.sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO;
  bi.pNext = next;
  bi.size = size;
  bi.usage = usage;
  bi.sharingMode = families.size() > 1 ? VK_SHARING_MODE_CONCURRENT : VK_SHARING_MODE_EXCLUSIVE;
  bi.queueFamilyIndexCount = families.size() > 1 ? uint32_t(families.size()) : 0;
  bi.pQueueFamilyIndices = families.size() > 1 ? families.data() : nullptr;
  VkBuffer buffer = VK_NULL_HANDLE;
  VkResult r = vk().vkCreateBuffer(device.handle(), &bi, nullptr, &buffer);
  if (out_of_memory(r)) throw Error(out_of_memory_message(device, name.c_str(), size, 0));
  VK_CHECK_CTX(r, name);
  set_object_name(device.handle(), VK_OBJECT_TYPE_BUFFER, uint64_t(buffer), name.c_str());
  return buffer;
}

VkDeviceAddress buffer_address(VkDevice device, VkBuffer buffer) {
  VkBufferDeviceAddressInfo ai{};
  ai.sType = VK_STRUCTURE_TYPE_BUFFER_DEVICE_ADDRESS_INFO;
  ai.buffer = buffer;
  return vk().vkGetBufferDeviceAddress(device, &ai);
}

}  // namespace

const char* memory_kind_name(MemoryKind kind) {
  switch (kind) {
    case MemoryKind::DeviceLocal:
      return "device-local";
    case MemoryKind::HostVisible:
      return "host-visible";
    case MemoryKind::HostToDevice:
      return "host-to-device";
    case MemoryKind::Readback:
      return "readback";
  }
  return "?";
}

std::string out_of_memory_message(const Device& device, const char* what, VkDeviceSize size, uint32_t heap) {
  const DeviceInfo& info = device.info();
  std::string msg = std::string("vulkan: out of memory allocating ") + what + " (" + mib(size) + ") on " + info.name;
  if (heap < info.heaps.size()) {
    char gib[32];
    std::snprintf(gib, sizeof gib, "%.1f GiB", double(info.heaps[heap].size) / double(1ull << 30));
    msg += ": its memory heap " + std::to_string(heap) + " is " + gib;
    msg += info.heaps[heap].flags & VK_MEMORY_HEAP_DEVICE_LOCAL_BIT ? " (device memory)" : " (host memory)";
    if (uint64_t used = device.heap_allocated(heap)) msg += ", " + mib(used) + " of it already used by mole";
  }
  msg +=
      ". Keep the lookup table out of device memory with `--lut host` (host memory) or `--lut disk` (read from "
      "the file as needed), or use a smaller model";
  return msg;
}

Buffer Buffer::create(const Device& device, VkDeviceSize size, VkBufferUsageFlags usage, MemoryKind kind,
                      const char* what) {
  assert(size > 0 && "a Vulkan buffer cannot be empty");
  const DeviceInfo& info = device.info();
  const std::string name = what && *what ? what : "a buffer";
  if (info.max_memory_allocation_size && size > info.max_memory_allocation_size) {
    throw Error("vulkan: " + name + " (" + mib(size) + ") is larger than one allocation can be on " + info.name + " (" +
                mib(info.max_memory_allocation_size) + "); use `--lut host` or `--lut disk`, or split it");
  }
  MemoryFlags flags = kind_flags(kind);
  const bool address = usage & VK_BUFFER_USAGE_SHADER_DEVICE_ADDRESS_BIT;
  assert((!address || device.enabled().buffer_device_address) && "bufferDeviceAddress is off on this device");

  Buffer b;
  b.device_ = device.handle();
  b.size_ = size;
  b.kind_ = kind;
  b.buffer_ = new_buffer(device, size, usage, name, nullptr);

  VkMemoryRequirements req;
  vk().vkGetBufferMemoryRequirements(b.device_, b.buffer_, &req);
  std::vector<uint32_t> types = device.memory_type_candidates(req.memoryTypeBits, flags.required, flags.preferred);
  if (types.empty()) {
    throw Error("vulkan: " + info.name + " has no " + memory_kind_name(kind) + " memory type for " + name);
  }
  VkMemoryAllocateFlagsInfo flags_info{};
  flags_info.sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_FLAGS_INFO;
  flags_info.flags = VK_MEMORY_ALLOCATE_DEVICE_ADDRESS_BIT;
  VkMemoryAllocateInfo ai{};
  ai.sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO;
  ai.pNext = address ? &flags_info : nullptr;
  ai.allocationSize = req.size;
  for (uint32_t type : types) {
    uint32_t heap = info.memory_types[type].heapIndex;
    if (req.size > info.heaps[heap].size) continue;  // can never fit: do not even ask
    ai.memoryTypeIndex = type;
    VkResult r = vk().vkAllocateMemory(b.device_, &ai, nullptr, &b.memory_);
    if (out_of_memory(r)) continue;  // try the next type (a full BAR heap falls back to host memory)
    VK_CHECK_CTX(r, name);
    b.flags_ = info.memory_types[type].propertyFlags;
    b.allocated_ = req.size;
    b.heap_counter_ = device.heap_counter(heap);
    if (b.heap_counter_) *b.heap_counter_ += req.size;
    break;
  }
  if (b.memory_ == VK_NULL_HANDLE) {
    throw Error(out_of_memory_message(device, name.c_str(), size, info.memory_types[types.front()].heapIndex));
  }
  VK_CHECK_CTX(vk().vkBindBufferMemory(b.device_, b.buffer_, b.memory_, 0), name);
  if (kind != MemoryKind::DeviceLocal) {
    VK_CHECK_CTX(vk().vkMapMemory(b.device_, b.memory_, 0, VK_WHOLE_SIZE, 0, &b.mapped_), name);
  }
  if (address) b.address_ = buffer_address(b.device_, b.buffer_);
  return b;
}

Buffer Buffer::import_host(const Device& device, const void* host, VkDeviceSize size, VkBufferUsageFlags usage,
                           const char* what) {
  const DeviceInfo& info = device.info();
  const std::string name = what && *what ? what : "a buffer";
  constexpr VkExternalMemoryHandleTypeFlagBits kHandle = VK_EXTERNAL_MEMORY_HANDLE_TYPE_HOST_ALLOCATION_BIT_EXT;
  const VkDeviceSize align = info.min_imported_host_pointer_alignment;
  if (!device.enabled().external_memory_host || !vk().vkGetMemoryHostPointerPropertiesEXT ||
      !vk().vkGetPhysicalDeviceExternalBufferProperties || align == 0)
    throw Error(info.name + " cannot import host memory (no VK_EXT_external_memory_host)");
  assert(size > 0 && reinterpret_cast<uintptr_t>(host) % align == 0 && size % align == 0);
  if (info.max_memory_allocation_size && size > info.max_memory_allocation_size)
    throw Error(name + " (" + mib(size) + ") is larger than one allocation can be on " + info.name);

  VkPhysicalDeviceExternalBufferInfo ebi{};
  ebi.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_EXTERNAL_BUFFER_INFO;
  ebi.usage = usage;
  ebi.handleType = kHandle;
  VkExternalBufferProperties ebp{};
  ebp.sType = VK_STRUCTURE_TYPE_EXTERNAL_BUFFER_PROPERTIES;
  vk().vkGetPhysicalDeviceExternalBufferProperties(device.physical(), &ebi, &ebp);
  if (!(ebp.externalMemoryProperties.externalMemoryFeatures & VK_EXTERNAL_MEMORY_FEATURE_IMPORTABLE_BIT))
    throw Error(info.name + " cannot import host memory as a buffer for this use");
  VkMemoryHostPointerPropertiesEXT hp{};
  hp.sType = VK_STRUCTURE_TYPE_MEMORY_HOST_POINTER_PROPERTIES_EXT;
  VkResult r = vk().vkGetMemoryHostPointerPropertiesEXT(device.handle(), kHandle, host, &hp);
  if (r != VK_SUCCESS || hp.memoryTypeBits == 0)
    throw Error(info.name + " cannot import this host memory (" + vk_result_name(r) + ")");

  Buffer b;
  b.device_ = device.handle();
  b.size_ = size;
  b.kind_ = MemoryKind::HostVisible;
  VkExternalMemoryBufferCreateInfo ext{};
  ext.sType = VK_STRUCTURE_TYPE_EXTERNAL_MEMORY_BUFFER_CREATE_INFO;
  ext.handleTypes = kHandle;
  b.buffer_ = new_buffer(device, size, usage, name, &ext);
  VkMemoryRequirements req;
  vk().vkGetBufferMemoryRequirements(b.device_, b.buffer_, &req);
  const uint32_t bits = req.memoryTypeBits & hp.memoryTypeBits;
  std::vector<uint32_t> types = device.memory_type_candidates(bits, 0, VK_MEMORY_PROPERTY_HOST_CACHED_BIT);
  if (types.empty() || req.size > size)
    throw Error(info.name + " has no memory type that can import host memory for " + name);
  const bool address = usage & VK_BUFFER_USAGE_SHADER_DEVICE_ADDRESS_BIT;
  VkMemoryAllocateFlagsInfo flags_info{};
  flags_info.sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_FLAGS_INFO;
  flags_info.flags = VK_MEMORY_ALLOCATE_DEVICE_ADDRESS_BIT;
  VkImportMemoryHostPointerInfoEXT import{};
  import.sType = VK_STRUCTURE_TYPE_IMPORT_MEMORY_HOST_POINTER_INFO_EXT;
  import.pNext = address ? &flags_info : nullptr;
  import.handleType = kHandle;
  import.pHostPointer = const_cast<void*>(host);  // only read: the buffer is never a copy or shader destination
  VkMemoryAllocateInfo ai{};
  ai.sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO;
  ai.pNext = &import;
  ai.allocationSize = size;
  ai.memoryTypeIndex = types.front();
  r = vk().vkAllocateMemory(b.device_, &ai, nullptr, &b.memory_);
  if (r != VK_SUCCESS) {
    b.memory_ = VK_NULL_HANDLE;
    throw Error(info.name + " refused to import " + mib(size) + " of host memory for " + name + " (" +
                vk_result_name(r) + ")");
  }
  b.flags_ = info.memory_types[types.front()].propertyFlags;
  VK_CHECK_CTX(vk().vkBindBufferMemory(b.device_, b.buffer_, b.memory_, 0), name);
  if (address) b.address_ = buffer_address(b.device_, b.buffer_);
  return b;
}

Buffer::Buffer(Buffer&& other) noexcept
    : device_(other.device_),
      buffer_(std::exchange(other.buffer_, VK_NULL_HANDLE)),
      memory_(std::exchange(other.memory_, VK_NULL_HANDLE)),
      size_(other.size_),
      allocated_(other.allocated_),
      mapped_(std::exchange(other.mapped_, nullptr)),
      kind_(other.kind_),
      flags_(other.flags_),
      address_(other.address_),
      heap_counter_(std::exchange(other.heap_counter_, nullptr)) {}

Buffer& Buffer::operator=(Buffer&& other) noexcept {
  if (this != &other) {
    destroy();
    device_ = other.device_;
    buffer_ = std::exchange(other.buffer_, VK_NULL_HANDLE);
    memory_ = std::exchange(other.memory_, VK_NULL_HANDLE);
    size_ = other.size_;
    allocated_ = other.allocated_;
    mapped_ = std::exchange(other.mapped_, nullptr);
    kind_ = other.kind_;
    flags_ = other.flags_;
    address_ = other.address_;
    heap_counter_ = std::exchange(other.heap_counter_, nullptr);
  }
  return *this;
}

Buffer::~Buffer() {
  destroy();
}

void Buffer::destroy() {
  if (buffer_ != VK_NULL_HANDLE) vk().vkDestroyBuffer(device_, buffer_, nullptr);
  if (memory_ != VK_NULL_HANDLE) {
    if (mapped_) vk().vkUnmapMemory(device_, memory_);
    vk().vkFreeMemory(device_, memory_, nullptr);
    if (heap_counter_) *heap_counter_ -= allocated_;
  }
  buffer_ = VK_NULL_HANDLE;
  memory_ = VK_NULL_HANDLE;
  mapped_ = nullptr;
  heap_counter_ = nullptr;
}

void check_binding_range(const Device& device, VkDeviceSize bytes, const std::string& what) {
  const uint64_t range = device.info().max_storage_buffer_range;
  if (range > 0 && bytes > range)
    throw Error("vulkan: " + what + " needs " + memory_size_text(bytes) +
                " in one buffer, more than this device binds at once (maxStorageBufferRange, " +
                memory_size_text(range) + ")" + out_of_memory_hint(what));
}

VkDeviceSize chunk_bytes(const Device& device, VkDeviceSize chunk_limit, VkDeviceSize granule) {
  const DeviceInfo& info = device.info();
  constexpr VkDeviceSize kMiB = 1 << 20;
  auto device_limit = [](VkDeviceSize v) { return v >= kMiB ? v / kMiB * kMiB : v; };
  VkDeviceSize limit = ~VkDeviceSize(0);
  if (info.max_memory_allocation_size) limit = std::min(limit, device_limit(info.max_memory_allocation_size));
  if (info.max_storage_buffer_range) limit = std::min(limit, device_limit(info.max_storage_buffer_range));
  if (chunk_limit) limit = std::min(limit, chunk_limit);
  VkDeviceSize step = std::lcm(VkDeviceSize(256), std::max<VkDeviceSize>(granule, 1));
  VkDeviceSize piece = limit / step * step;
  if (piece == 0) {
    if (chunk_limit && chunk_limit < step)
      throw Error("--tune lut-chunk-bytes=" + std::to_string(chunk_limit) + ": the table's buffers need at least " +
                  std::to_string(step) + " bytes each (a multiple of " + std::to_string(step) + ") on " + info.name);
    throw Error("vulkan: a chunk of " + std::to_string(step) + " bytes does not fit in " + std::to_string(limit) +
                " bytes, the most one storage buffer can hold on " + info.name);
  }
  return piece;
}

std::vector<Buffer> create_chunked(const Device& device, VkDeviceSize total, VkDeviceSize chunk_limit,
                                   VkBufferUsageFlags usage, MemoryKind kind, const char* what, VkDeviceSize granule) {
  VkDeviceSize piece = chunk_bytes(device, chunk_limit, granule);
  VkDeviceSize n = (total + piece - 1) / piece;
  std::vector<Buffer> chunks;
  chunks.reserve(n);
  for (VkDeviceSize i = 0; i < n; ++i) {
    std::string name = std::string(what) + " (chunk " + std::to_string(i + 1) + " of " + std::to_string(n) + ")";
    chunks.push_back(Buffer::create(device, std::min(piece, total - i * piece), usage, kind, name.c_str()));
  }
  return chunks;
}

}  // namespace mole
