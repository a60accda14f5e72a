// The pipeline cache file and compute pipeline creation (see pipeline.h).
#include "vk-runtime/pipeline.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <utility>

#include "model/error.h"
#include "model/user_files.h"
#include "vk-runtime/descriptor.h"
#include "vk-runtime/device.h"
#include "vk-runtime/loader.h"

namespace mole {
namespace {

constexpr size_t kHeaderBytes = 16 + VK_UUID_SIZE;  // VkPipelineCacheHeaderVersionOne
constexpr size_t kMaxCacheBytes = size_t(1) << 30;  // a larger file is not a pipeline cache of ours

uint32_t read_u32(const std::vector<char>& data, size_t offset) {
  uint32_t v;
  std::memcpy(&v, data.data() + offset, 4);
  return v;
}

// The file's bytes if it holds a cache made by this device and driver; else empty.
std::vector<char> read_cache_file(const std::string& path, const DeviceInfo& info) {
  std::error_code ec;
  auto size = std::filesystem::file_size(path, ec);
  if (ec || size < kHeaderBytes || size > kMaxCacheBytes) return {};
  std::ifstream in(path, std::ios::binary);
  std::vector<char> data(size);
  if (!in.read(data.data(), std::streamsize(size))) return {};
  bool ok = read_u32(data, 0) >= kHeaderBytes && read_u32(data, 0) <= size &&
            read_u32(data, 4) == VK_PIPELINE_CACHE_HEADER_VERSION_ONE && read_u32(data, 8) == info.vendor_id &&
            read_u32(data, 12) == info.device_id &&
            std::memcmp(data.data() + 16, info.pipeline_cache_uuid, VK_UUID_SIZE) == 0;
  return ok ? data : std::vector<char>();
}

}  // namespace

std::string PipelineCache::default_path(const std::string& cache_dir, const DeviceInfo& info) {
  return cache_dir.empty() ? "" : cache_dir + "/pipelines-" + uuid_hex(info.uuid) + ".bin";
}

PipelineCache PipelineCache::create(const Device& device, std::string path) {
  PipelineCache c;
  c.device_ = device.handle();
  c.path_ = std::move(path);
  std::vector<char> data;
  if (!c.path_.empty()) data = read_cache_file(c.path_, device.info());
  VkPipelineCacheCreateInfo ci{};
  ci.sType = VK_STRUCTURE_TYPE_PIPELINE_CACHE_CREATE_INFO;
  ci.initialDataSize = data.size();
  ci.pInitialData = data.empty() ? nullptr : data.data();
  VkResult r = vk().vkCreatePipelineCache(c.device_, &ci, nullptr, &c.cache_);
  if (r != VK_SUCCESS && !data.empty()) {  // the driver rejected the contents: start empty
    ci.initialDataSize = 0;
    ci.pInitialData = nullptr;
    r = vk().vkCreatePipelineCache(c.device_, &ci, nullptr, &c.cache_);
    data.clear();
  }
  VK_CHECK_CTX(r, "creating the pipeline cache");
  c.loaded_ = !data.empty();
  return c;
}

PipelineCache::PipelineCache(PipelineCache&& other) noexcept
    : device_(other.device_),
      cache_(std::exchange(other.cache_, VK_NULL_HANDLE)),
      path_(std::move(other.path_)),
      loaded_(other.loaded_) {}

PipelineCache& PipelineCache::operator=(PipelineCache&& other) noexcept {
  if (this != &other) {
    destroy();
    device_ = other.device_;
    cache_ = std::exchange(other.cache_, VK_NULL_HANDLE);
    path_ = std::move(other.path_);
    loaded_ = other.loaded_;
  }
  return *this;
}

PipelineCache::~PipelineCache() {
  destroy();
}

void PipelineCache::destroy() {
  if (cache_ != VK_NULL_HANDLE) vk().vkDestroyPipelineCache(device_, cache_, nullptr);
  cache_ = VK_NULL_HANDLE;
}

void PipelineCache::save() const {
  if (path_.empty() || cache_ == VK_NULL_HANDLE) return;
  size_t size = 0;
  if (vk().vkGetPipelineCacheData(device_, cache_, &size, nullptr) != VK_SUCCESS || size == 0) return;
  std::vector<char> data(size);
  if (vk().vkGetPipelineCacheData(device_, cache_, &size, data.data()) != VK_SUCCESS) return;  // incl. VK_INCOMPLETE
  bool in_place = false;
  const std::string target = output_target(path_, &in_place);
  if (in_place) return;  // a device or a FIFO is no place for a cache, and renaming over it would replace it
  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(target).parent_path(), ec);
  // A per-process temporary name: two mole processes saving at once each rename a whole file.
  std::string tmp = target + ".tmp." + std::to_string(getpid());
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out.write(data.data(), std::streamsize(size)) || !out.flush()) {
      out.close();
      std::filesystem::remove(tmp, ec);
      return;
    }
  }
  std::filesystem::rename(tmp, target, ec);
  if (ec) std::filesystem::remove(tmp, ec);
}

ComputePipeline ComputePipeline::create(const Device& device, const PipelineCache& cache,
                                        std::span<const uint32_t> spirv, const DescriptorSetLayout& layout,
                                        uint32_t push_constant_bytes, const std::vector<uint32_t>& spec_constants,
                                        const char* name, bool full_subgroups) {
  const std::string what = std::string("pipeline ") + (name ? name : "?");
  if (spirv.size() < 5 || spirv[0] != 0x07230203u) {
    throw Error("vulkan: " + what + ": the shader is not SPIR-V (rebuild mole: its shaders are compiled in)");
  }
  ComputePipeline p;
  p.device_ = device.handle();
  p.push_bytes_ = push_constant_bytes;

  VkShaderModuleCreateInfo mi{};

  mi.sType = VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO;
  mi.codeSize = spirv.size_bytes();
  mi.pCode = spirv.data();
  VK_CHECK_CTX(vk().vkCreateShaderModule(p.device_, &mi, nullptr, &p.module_), what);

  VkDescriptorSetLayout set_layout = layout.handle();
  VkPushConstantRange push{VK_SHADER_STAGE_COMPUTE_BIT, 0, push_constant_bytes};
  VkPipelineLayoutCreateInfo li{};
  li.sType = VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO;
  li.setLayoutCount = 1;
  li.pSetLayouts = &set_layout;
  li.pushConstantRangeCount = push_constant_bytes ? 1 : 0;
  li.pPushConstantRanges = push_constant_bytes ? &push : nullptr;
  VK_CHECK_CTX(vk().vkCreatePipelineLayout(p.device_, &li, nullptr, &p.layout_), what);

  std::vector<VkSpecializationMapEntry> entries(spec_constants.size());
  for (uint32_t i = 0; i < entries.size(); ++i) entries[i] = {i, 4 * i, 4};
  VkSpecializationInfo spec{uint32_t(entries.size()), entries.data(), 4 * spec_constants.size(), spec_constants.data()};
  VkComputePipelineCreateInfo ci{};
  ci.sType = VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO;
  ci.stage.sType = VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO;
  ci.stage.stage = VK_SHADER_STAGE_COMPUTE_BIT;
  if (full_subgroups) ci.stage.flags = VK_PIPELINE_SHADER_STAGE_CREATE_REQUIRE_FULL_SUBGROUPS_BIT_EXT;
  ci.stage.module = p.module_;
  ci.stage.pName = "main";
  ci.stage.pSpecializationInfo = spec_constants.empty() ? nullptr : &spec;
  ci.layout = p.layout_;
  VK_CHECK_CTX(vk().vkCreateComputePipelines(p.device_, cache.handle(), 1, &ci, nullptr, &p.pipeline_), what);
  set_object_name(p.device_, VK_OBJECT_TYPE_PIPELINE, uint64_t(p.pipeline_), name);
  set_object_name(p.device_, VK_OBJECT_TYPE_SHADER_MODULE, uint64_t(p.module_), name);
  return p;
}

ComputePipeline::ComputePipeline(ComputePipeline&& other) noexcept
    : device_(other.device_),
      module_(std::exchange(other.module_, VK_NULL_HANDLE)),
      layout_(std::exchange(other.layout_, VK_NULL_HANDLE)),
      pipeline_(std::exchange(other.pipeline_, VK_NULL_HANDLE)),
      push_bytes_(other.push_bytes_) {}

ComputePipeline& ComputePipeline::operator=(ComputePipeline&& other) noexcept {
  if (this != &other) {
    destroy();
    device_ = other.device_;
    module_ = std::exchange(other.module_, VK_NULL_HANDLE);
    layout_ = std::exchange(other.layout_, VK_NULL_HANDLE);
    pipeline_ = std::exchange(other.pipeline_, VK_NULL_HANDLE);
    push_bytes_ = other.push_bytes_;
  }
  return *this;
}

ComputePipeline::~ComputePipeline() {
  destroy();
}

void ComputePipeline::destroy() {
  if (pipeline_ != VK_NULL_HANDLE) vk().vkDestroyPipeline(device_, pipeline_, nullptr);
  if (layout_ != VK_NULL_HANDLE) vk().vkDestroyPipelineLayout(device_, layout_, nullptr);
  if (module_ != VK_NULL_HANDLE) vk().vkDestroyShaderModule(device_, module_, nullptr);
  pipeline_ = VK_NULL_HANDLE;
  layout_ = VK_NULL_HANDLE;
  module_ = VK_NULL_HANDLE;
}

}  // namespace mole
