// Compute pipelines and the on-disk pipeline cache that makes their second creation fast.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "vk-runtime/check.h"

namespace mole {

class Device;
class DescriptorSetLayout;
struct DeviceInfo;

// Owns a VkPipelineCache and destroys it (without saving: call save()). The Device must outlive it.
// The file is a cache: one that is missing, unreadable, truncated or made for another device or driver is ignored,
// and save() replaces it; a failure to save is silent.
class PipelineCache {
 public:
  // `path` "" keeps the cache in memory only.
  static PipelineCache create(const Device& device, std::string path);
  // CACHE_DIR/pipelines-<device uuid hex>.bin (apps/ makes CACHE_DIR $XDG_CACHE_HOME/mole or ~/.cache/mole); ""
  // without a cache directory.
  static std::string default_path(const std::string& cache_dir, const DeviceInfo& info);

  PipelineCache(PipelineCache&& other) noexcept;
  PipelineCache& operator=(PipelineCache&& other) noexcept;
  PipelineCache(const PipelineCache&) = delete;
  PipelineCache& operator=(const PipelineCache&) = delete;
  ~PipelineCache();

  VkPipelineCache handle() const { return cache_; }
  const std::string& path() const { return path_; }
  // Whether create() found a valid file for this device and started from its contents.
  bool loaded_from_file() const { return loaded_; }
  // Writes the cache to path.tmp.<pid>, then renames it over path (creating the directory if needed).
  void save() const;

 private:
  PipelineCache() = default;
  void destroy();

  VkDevice device_ = VK_NULL_HANDLE;
  VkPipelineCache cache_ = VK_NULL_HANDLE;
  std::string path_;
  bool loaded_ = false;
};

// Owns a compute VkPipeline, its VkPipelineLayout (one descriptor set layout, optional push constants) and its
// VkShaderModule, and destroys all three. The Device must outlive it; the DescriptorSetLayout and PipelineCache
// need only live through create().
class ComputePipeline {
 public:
  // `spirv`: the shader's words; `push_constant_bytes`: 0 for none (a multiple of 4, at most 128 to be portable);
  // `spec_constants`: constant_id i gets spec_constants[i] (4 bytes each: a uint, int or float's bits);
  // `name`: the op, for errors and debuggers; `full_subgroups`: every subgroup runs all its invocations
  // (VK_PIPELINE_SHADER_STAGE_CREATE_REQUIRE_FULL_SUBGROUPS_BIT: the device's computeFullSubgroups must be enabled, and
  // the local size in x a multiple of its maxSubgroupSize). Throws mole::Error naming it.
  static ComputePipeline create(const Device& device, const PipelineCache& cache, std::span<const uint32_t> spirv,
                                const DescriptorSetLayout& layout, uint32_t push_constant_bytes,
                                const std::vector<uint32_t>& spec_constants, const char* name,
                                bool full_subgroups = false);

  ComputePipeline(ComputePipeline&& other) noexcept;
  ComputePipeline& operator=(ComputePipeline&& other) noexcept;
  ComputePipeline(const ComputePipeline&) = delete;
  ComputePipeline& operator=(const ComputePipeline&) = delete;
  ~ComputePipeline();

  VkPipeline handle() const { return pipeline_; }
  VkPipelineLayout layout() const { return layout_; }
  uint32_t push_constant_bytes() const { return push_bytes_; }

 private:
  ComputePipeline() = default;
  void destroy();

  VkDevice device_ = VK_NULL_HANDLE;
  VkShaderModule module_ = VK_NULL_HANDLE;
  VkPipelineLayout layout_ = VK_NULL_HANDLE;
  VkPipeline pipeline_ = VK_NULL_HANDLE;
  uint32_t push_bytes_ = 0;
};

}  // namespace mole
