// The compute shaders' SPIR-V, compiled from shaders/*.comp at build time (cmake/shaders.cmake) and embedded in the
// binary. The definitions are generated into the build directory (shader_registry.cpp).
#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

namespace mole::vulkan {

// The SPIR-V words of the shader named after its .comp file's stem ("matmul"); empty for an unknown name.
std::span<const uint32_t> shader_spirv(std::string_view name);
// Every embedded shader's name, sorted.
std::vector<std::string_view> shader_names();

}  // namespace mole::vulkan
