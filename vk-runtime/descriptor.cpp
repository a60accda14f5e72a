// Descriptor set layouts, pools and storage-buffer writes (see descriptor.h).
#include "vk-runtime/descriptor.h"

#include <utility>

#include "vk-runtime/device.h"
#include "vk-runtime/loader.h"

namespace mole {

DescriptorSetLayout DescriptorSetLayout::create(const Device& device, uint32_t n_storage_buffers) {
  DescriptorSetLayout l;
  l.device_ = device.handle();
  l.bindings_ = n_storage_buffers;
  std::vector<VkDescriptorSetLayoutBinding> bindings(n_storage_buffers);
  for (uint32_t i = 0; i < n_storage_buffers; ++i) {
    bindings[i].binding = i;
    bindings[i].descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER;
    bindings[i].descriptorCount = 1;
    bindings[i].stageFlags = VK_SHADER_STAGE_COMPUTE_BIT;
  }
  VkDescriptorSetLayoutCreateInfo ci{};
  ci.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO;
  ci.bindingCount = n_storage_buffers;
  ci.pBindings = bindings.data();
  VK_CHECK(vk().vkCreateDescriptorSetLayout(l.device_, &ci, nullptr, &l.layout_));
  return l;
}

DescriptorSetLayout::DescriptorSetLayout(DescriptorSetLayout&& other) noexcept
    : device_(other.device_), layout_(std::exchange(other.layout_, VK_NULL_HANDLE)), bindings_(other.bindings_) {}

DescriptorSetLayout& DescriptorSetLayout::operator=(DescriptorSetLayout&& other) noexcept {
  if (this != &other) {
    destroy();
    device_ = other.device_;
    layout_ = std::exchange(other.layout_, VK_NULL_HANDLE);
    bindings_ = other.bindings_;
  }
  return *this;
}

DescriptorSetLayout::~DescriptorSetLayout() {
  destroy();
}

void DescriptorSetLayout::destroy() {
  if (layout_ != VK_NULL_HANDLE) vk().vkDestroyDescriptorSetLayout(device_, layout_, nullptr);
  layout_ = VK_NULL_HANDLE;
}

DescriptorPool DescriptorPool::create(const Device& device, uint32_t max_sets, uint32_t max_storage_descriptors) {
  DescriptorPool p;
  p.device_ = device.handle();
  VkDescriptorPoolSize size{VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, max_storage_descriptors};
  VkDescriptorPoolCreateInfo ci{};
  ci.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO;
  ci.maxSets = max_sets;
  ci.poolSizeCount = 1;
  ci.pPoolSizes = &size;
  VK_CHECK(vk().vkCreateDescriptorPool(p.device_, &ci, nullptr, &p.pool_));
  return p;
}

DescriptorPool::DescriptorPool(DescriptorPool&& other) noexcept
    : device_(other.device_), pool_(std::exchange(other.pool_, VK_NULL_HANDLE)) {}

DescriptorPool& DescriptorPool::operator=(DescriptorPool&& other) noexcept {
  if (this != &other) {
    destroy();
    device_ = other.device_;
    pool_ = std::exchange(other.pool_, VK_NULL_HANDLE);
  }
  return *this;
}

DescriptorPool::~DescriptorPool() {
  destroy();
}

void DescriptorPool::destroy() {
  if (pool_ != VK_NULL_HANDLE) vk().vkDestroyDescriptorPool(device_, pool_, nullptr);
  pool_ = VK_NULL_HANDLE;
}

VkDescriptorSet DescriptorPool::allocate(const DescriptorSetLayout& layout) {
  VkDescriptorSetLayout l = layout.handle();
  VkDescriptorSetAllocateInfo ai{};
  ai.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO;
  ai.descriptorPool = pool_;
  ai.descriptorSetCount = 1;
  ai.pSetLayouts = &l;
  VkDescriptorSet set = VK_NULL_HANDLE;
  VK_CHECK(vk().vkAllocateDescriptorSets(device_, &ai, &set));
  return set;
}

void DescriptorPool::reset() {
  VK_CHECK(vk().vkResetDescriptorPool(device_, pool_, 0));
}

void write_storage_buffers(const Device& device, VkDescriptorSet set,
                           const std::vector<VkDescriptorBufferInfo>& buffers) {
  std::vector<VkWriteDescriptorSet> writes(buffers.size());
  for (size_t i = 0; i < buffers.size(); ++i) {
    writes[i] = {};
    writes[i].sType = VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET;
    writes[i].dstSet = set;
    writes[i].dstBinding = uint32_t(i);
    writes[i].descriptorCount = 1;
    writes[i].descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER;
    writes[i].pBufferInfo = &buffers[i];
  }
  vk().vkUpdateDescriptorSets(device.handle(), uint32_t(writes.size()), writes.data(), 0, nullptr);
}

}  // namespace mole
