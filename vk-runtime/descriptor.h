// Descriptor set layouts (N storage buffers, the only kind mole's shaders bind), descriptor pools and sets.
#pragma once

#include <cstdint>
#include <vector>

#include "vk-runtime/check.h"

namespace mole {

class Device;

// Owns a VkDescriptorSetLayout of bindings 0..n-1, each one STORAGE_BUFFER visible to compute shaders, and
// destroys it. The Device must outlive it; pipelines made with it keep no reference to it.
class DescriptorSetLayout {
 public:
  static DescriptorSetLayout create(const Device& device, uint32_t n_storage_buffers);

  DescriptorSetLayout(DescriptorSetLayout&& other) noexcept;
  DescriptorSetLayout& operator=(DescriptorSetLayout&& other) noexcept;
  DescriptorSetLayout(const DescriptorSetLayout&) = delete;
  DescriptorSetLayout& operator=(const DescriptorSetLayout&) = delete;
  ~DescriptorSetLayout();

  VkDescriptorSetLayout handle() const { return layout_; }
  uint32_t bindings() const { return bindings_; }

 private:
  DescriptorSetLayout() = default;
  void destroy();

  VkDevice device_ = VK_NULL_HANDLE;
  VkDescriptorSetLayout layout_ = VK_NULL_HANDLE;
  uint32_t bindings_ = 0;
};

// Owns a VkDescriptorPool and destroys it, which frees every set allocated from it (sets are never freed one by
// one). The Device must outlive it. Not thread-safe: allocate from one thread.
class DescriptorPool {
 public:
  static DescriptorPool create(const Device& device, uint32_t max_sets, uint32_t max_storage_descriptors);

  DescriptorPool(DescriptorPool&& other) noexcept;
  DescriptorPool& operator=(DescriptorPool&& other) noexcept;
  DescriptorPool(const DescriptorPool&) = delete;
  DescriptorPool& operator=(const DescriptorPool&) = delete;
  ~DescriptorPool();

  VkDescriptorPool handle() const { return pool_; }
  // A set for `layout`, valid until the pool is reset or destroyed. Throws (VK_ERROR_OUT_OF_POOL_MEMORY) when the
  // pool's max_sets or max_storage_descriptors are used up.
  VkDescriptorSet allocate(const DescriptorSetLayout& layout);
  // Frees every set at once (none may be in use by pending work).
  void reset();

 private:
  DescriptorPool() = default;
  void destroy();

  VkDevice device_ = VK_NULL_HANDLE;
  VkDescriptorPool pool_ = VK_NULL_HANDLE;
};

// Points binding i of `set` at buffers[i] (buffer, offset, range), for every i. The set must not be in use by
// pending work. Offsets must be multiples of minStorageBufferOffsetAlignment.
void write_storage_buffers(const Device& device, VkDescriptorSet set,
                           const std::vector<VkDescriptorBufferInfo>& buffers);

}  // namespace mole
