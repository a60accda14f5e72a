// vk-runtime/ on whatever Vulkan device is here (Mesa's lavapipe on CI), with the Khronos validation layer and its
// synchronization validation on when installed: every case ends by checking that the layer reported nothing.
// Without a Vulkan loader or device each case says it was skipped.
#include <doctest/doctest.h>

#include "tests/test_helpers.h"

#ifdef MOLE_HAVE_VULKAN

#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>

#include "model/error.h"
#include "vk-runtime/buffer.h"
#include "vk-runtime/command.h"
#include "vk-runtime/context.h"
#include "vk-runtime/descriptor.h"
#include "vk-runtime/device.h"
#include "vk-runtime/instance.h"
#include "vk-runtime/loader.h"
#include "vk-runtime/pipeline.h"
#include "vk-runtime/query.h"
#include "vk-runtime/sync.h"

using namespace mole;

namespace {

// glslangValidator -V -g0 --vn kScaleSpirv of:
//   #version 450
//   layout(local_size_x_id = 0) in;
//   layout(constant_id = 1) const float kScale = 2.0;
//   layout(push_constant) uniform Push { uint n; } pc;
//   layout(std430, binding = 0) readonly buffer X { float x[]; };
//   layout(std430, binding = 1) writeonly buffer Y { float y[]; };
//   void main() { uint i = gl_GlobalInvocationID.x; if (i < pc.n) y[i] = kScale * x[i]; }
const uint32_t kScaleSpirv[] = {
    0x07230203, 0x00010300, 0x0008000b, 0x00000031, 0x00000000, 0x00020011, 0x00000001, 0x0006000b, 0x00000001,
    0x4c534c47, 0x6474732e, 0x3035342e, 0x00000000, 0x0003000e, 0x00000000, 0x00000001, 0x0006000f, 0x00000005,
    0x00000004, 0x6e69616d, 0x00000000, 0x0000000b, 0x00060010, 0x00000004, 0x00000011, 0x00000001, 0x00000001,
    0x00000001, 0x00040047, 0x0000000b, 0x0000000b, 0x0000001c, 0x00050048, 0x00000011, 0x00000000, 0x00000023,
    0x00000000, 0x00030047, 0x00000011, 0x00000002, 0x00040047, 0x0000001e, 0x00000006, 0x00000004, 0x00040048,
    0x0000001f, 0x00000000, 0x00000019, 0x00050048, 0x0000001f, 0x00000000, 0x00000023, 0x00000000, 0x00030047,
    0x0000001f, 0x00000002, 0x00040047, 0x00000021, 0x00000022, 0x00000000, 0x00040047, 0x00000021, 0x00000021,
    0x00000001, 0x00040047, 0x00000023, 0x00000001, 0x00000001, 0x00040047, 0x00000024, 0x00000006, 0x00000004,
    0x00040048, 0x00000025, 0x00000000, 0x00000018, 0x00050048, 0x00000025, 0x00000000, 0x00000023, 0x00000000,
    0x00030047, 0x00000025, 0x00000002, 0x00040047, 0x00000027, 0x00000022, 0x00000000, 0x00040047, 0x00000027,
    0x00000021, 0x00000000, 0x00040047, 0x0000002e, 0x00000001, 0x00000000, 0x00040047, 0x00000030, 0x0000000b,
    0x00000019, 0x00020013, 0x00000002, 0x00030021, 0x00000003, 0x00000002, 0x00040015, 0x00000006, 0x00000020,
    0x00000000, 0x00040020, 0x00000007, 0x00000007, 0x00000006, 0x00040017, 0x00000009, 0x00000006, 0x00000003,
    0x00040020, 0x0000000a, 0x00000001, 0x00000009, 0x0004003b, 0x0000000a, 0x0000000b, 0x00000001, 0x0004002b,
    0x00000006, 0x0000000c, 0x00000000, 0x00040020, 0x0000000d, 0x00000001, 0x00000006, 0x0003001e, 0x00000011,
    0x00000006, 0x00040020, 0x00000012, 0x00000009, 0x00000011, 0x0004003b, 0x00000012, 0x00000013, 0x00000009,
    0x00040015, 0x00000014, 0x00000020, 0x00000001, 0x0004002b, 0x00000014, 0x00000015, 0x00000000, 0x00040020,
    0x00000016, 0x00000009, 0x00000006, 0x00020014, 0x00000019, 0x00030016, 0x0000001d, 0x00000020, 0x0003001d,
    0x0000001e, 0x0000001d, 0x0003001e, 0x0000001f, 0x0000001e, 0x00040020, 0x00000020, 0x0000000c, 0x0000001f,
    0x0004003b, 0x00000020, 0x00000021, 0x0000000c, 0x00040032, 0x0000001d, 0x00000023, 0x40000000, 0x0003001d,
    0x00000024, 0x0000001d, 0x0003001e, 0x00000025, 0x00000024, 0x00040020, 0x00000026, 0x0000000c, 0x00000025,
    0x0004003b, 0x00000026, 0x00000027, 0x0000000c, 0x00040020, 0x00000029, 0x0000000c, 0x0000001d, 0x00040032,
    0x00000006, 0x0000002e, 0x00000001, 0x0004002b, 0x00000006, 0x0000002f, 0x00000001, 0x00060033, 0x00000009,
    0x00000030, 0x0000002e, 0x0000002f, 0x0000002f, 0x00050036, 0x00000002, 0x00000004, 0x00000000, 0x00000003,
    0x000200f8, 0x00000005, 0x0004003b, 0x00000007, 0x00000008, 0x00000007, 0x00050041, 0x0000000d, 0x0000000e,
    0x0000000b, 0x0000000c, 0x0004003d, 0x00000006, 0x0000000f, 0x0000000e, 0x0003003e, 0x00000008, 0x0000000f,
    0x0004003d, 0x00000006, 0x00000010, 0x00000008, 0x00050041, 0x00000016, 0x00000017, 0x00000013, 0x00000015,
    0x0004003d, 0x00000006, 0x00000018, 0x00000017, 0x000500b0, 0x00000019, 0x0000001a, 0x00000010, 0x00000018,
    0x000300f7, 0x0000001c, 0x00000000, 0x000400fa, 0x0000001a, 0x0000001b, 0x0000001c, 0x000200f8, 0x0000001b,
    0x0004003d, 0x00000006, 0x00000022, 0x00000008, 0x0004003d, 0x00000006, 0x00000028, 0x00000008, 0x00060041,
    0x00000029, 0x0000002a, 0x00000027, 0x00000015, 0x00000028, 0x0004003d, 0x0000001d, 0x0000002b, 0x0000002a,
    0x00050085, 0x0000001d, 0x0000002c, 0x00000023, 0x0000002b, 0x00060041, 0x00000029, 0x0000002d, 0x00000021,
    0x00000015, 0x00000022, 0x0003003e, 0x0000002d, 0x0000002c, 0x000200f9, 0x0000001c, 0x000200f8, 0x0000001c,
    0x000100fd, 0x00010038};

constexpr uint32_t kWorkgroup = 64;
constexpr VkBufferUsageFlags kStorage =
    VK_BUFFER_USAGE_STORAGE_BUFFER_BIT | VK_BUFFER_USAGE_TRANSFER_SRC_BIT | VK_BUFFER_USAGE_TRANSFER_DST_BIT;

// An instance (validation + sync validation when the layer is installed) and the picked device. finish() destroys
// the device and checks that the layer reported nothing, printing what it did report.
struct Gpu {
  std::optional<Instance> instance;
  std::vector<DeviceInfo> devices;
  int index = 0;
  std::optional<Device> device;

  void finish() {
    device.reset();
    CHECK(instance->validation_messages() == 0);
    for (const auto& m : instance->validation_log()) MESSAGE(m);
  }
};

// nullptr, after saying why, when there is no loader or no device.
std::unique_ptr<Gpu> open_gpu(bool with_device = true) {
  std::string why;
  if (!vulkan_loader_available(&why)) {
    test::skip_no_device(why);
    return nullptr;
  }
  auto g = std::make_unique<Gpu>();
  try {
    try {
      g->instance = Instance::create(true, true);
    } catch (const Error& e) {
      if (!std::strstr(e.what(), "vulkan-validationlayers")) throw;
      if (test::device_required("vulkan"))
        FAIL_CHECK("--require-device, but the validation layer is missing: " << e.what());
      MESSAGE("validation layer missing, running without it: " << std::string(e.what()));
      g->instance = Instance::create(false, false);
    }
  } catch (const Error& e) {
    if (!std::strstr(e.what(), "no Vulkan driver")) throw;
    test::skip_no_device(e.what());
    return nullptr;
  }
  g->devices = enumerate_devices(*g->instance);
  if (g->devices.empty()) {
    test::skip_no_device("the Vulkan loader found no device (install mesa-vulkan-drivers for lavapipe)");
    return nullptr;
  }
  g->index = pick_device(g->devices, -1);
  if (with_device) g->device = Device::create(*g->instance, g->devices[size_t(g->index)]);
  return g;
}

// Records with `record` into a new command buffer for `role`'s queue, submits it and waits on a fence.
void run_once(const Device& dev, QueueRole role, const std::function<void(CommandBuffer&)>& record,
              const std::vector<SemaphorePoint>& waits = {}, const std::vector<SemaphorePoint>& signals = {}) {
  uint32_t family = role == QueueRole::Compute ? dev.compute_family() : dev.transfer_family();
  CommandPool pool = CommandPool::create(dev, family, false);
  CommandBuffer cb = CommandBuffer::create(dev, pool);
  cb.begin(true);
  record(cb);
  cb.end();
  Fence fence = Fence::create(dev, false);
  submit(dev, role, cb.handle(), waits, signals, fence.handle());
  fence.wait();
}

// The y = scale * x pipeline with its descriptor set over (x, y).
struct ScaleKernel {
  DescriptorSetLayout layout;
  DescriptorPool pool;
  ComputePipeline pipeline;
  VkDescriptorSet set = VK_NULL_HANDLE;

  static ScaleKernel create(const Device& dev, const PipelineCache& cache, std::vector<uint32_t> spec, const Buffer& x,
                            const Buffer& y) {
    DescriptorSetLayout layout = DescriptorSetLayout::create(dev, 2);
    DescriptorPool pool = DescriptorPool::create(dev, 1, 2);
    ComputePipeline pipe = ComputePipeline::create(dev, cache, kScaleSpirv, layout, 4, spec, "scale");
    ScaleKernel k{std::move(layout), std::move(pool), std::move(pipe)};
    k.set = k.pool.allocate(k.layout);
    write_storage_buffers(dev, k.set, {x.descriptor(), y.descriptor()});
    return k;
  }

  void record(VkCommandBuffer cb, uint32_t n) const {
    vk().vkCmdBindPipeline(cb, VK_PIPELINE_BIND_POINT_COMPUTE, pipeline.handle());
    vk().vkCmdBindDescriptorSets(cb, VK_PIPELINE_BIND_POINT_COMPUTE, pipeline.layout(), 0, 1, &set, 0, nullptr);
    vk().vkCmdPushConstants(cb, pipeline.layout(), VK_SHADER_STAGE_COMPUTE_BIT, 0, 4, &n);
    vk().vkCmdDispatch(cb, (n + kWorkgroup - 1) / kWorkgroup, 1, 1);
  }
};

using test::ScopedEnv;

uint32_t float_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

}  // namespace

TEST_CASE("vk-runtime: pick_device prefers discrete > integrated > virtual > CPU and checks indices") {
  std::vector<DeviceInfo> d(4);
  d[0].type = VK_PHYSICAL_DEVICE_TYPE_CPU;
  d[1].type = VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU;
  d[2].type = VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU;
  d[3].type = VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU;
  CHECK(pick_device(d, -1) == 2);
  CHECK(pick_device({d[0], d[1]}, -1) == 1);
  CHECK(pick_device(d, 0) == 0);
  CHECK(pick_device(d, 3) == 3);
  CHECK_THROWS_WITH_AS(pick_device(d, 4), doctest::Contains("--device 4"), Error);
  CHECK_THROWS_AS(pick_device({}, -1), Error);
  CHECK(std::string(vk_result_name(VK_ERROR_OUT_OF_DEVICE_MEMORY)) == "VK_ERROR_OUT_OF_DEVICE_MEMORY");
  CHECK_THROWS_WITH_AS(VK_CHECK(VK_ERROR_DEVICE_LOST), doctest::Contains("failed: VK_ERROR_DEVICE_LOST at"), Error);
}

TEST_CASE("vk-runtime: instance with validation, devices enumerated and described, availability") {
  auto g = open_gpu(false);
  if (!g) return;
  CHECK(g->instance->validation_enabled());
  CHECK(!g->instance->physical_devices().empty());
  for (const DeviceInfo& d : g->devices) {
    std::string text = describe(d);
    MESSAGE(text);
    CHECK(text.find(d.name) != std::string::npos);
    CHECK(text.find("COMPUTE") != std::string::npos);
    CHECK(text.find("GiB") != std::string::npos);
    CHECK(!d.heaps.empty());
    CHECK(d.max_storage_buffer_range > 0);
    CHECK(d.max_memory_allocation_size > 0);
  }
  bool ok = false, cpu = false;
  std::string line = vulkan_availability(&ok, &cpu);
  MESSAGE("vulkan_availability: " << line);
  CHECK(ok);
  CHECK(line.find(g->devices[size_t(g->index)].name) != std::string::npos);
  CHECK(cpu == is_cpu_device(g->devices[size_t(g->index)]));
  g->finish();
}

TEST_CASE("vk-runtime: synchronization validation reports a missing barrier") {
  auto g = open_gpu();
  if (!g) return;
  if (!g->instance->validation_enabled()) {
    test::skip_no_device("no validation layer");
    return;
  }
  const Device& dev = *g->device;
  g->instance->echo_validation_messages(false);  // the hazard is the point of this case
  {
    Buffer x = Buffer::create(dev, 4096, kStorage, MemoryKind::DeviceLocal, "x");
    Buffer y = Buffer::create(dev, 4096, kStorage, MemoryKind::DeviceLocal, "y");
    PipelineCache cache = PipelineCache::create(dev, "");
    ScaleKernel k = ScaleKernel::create(dev, cache, {kWorkgroup}, x, y);
    run_once(dev, QueueRole::Compute, [&](CommandBuffer& cb) {
      vk().vkCmdFillBuffer(cb.handle(), x.handle(), 0, VK_WHOLE_SIZE, 0);
      k.record(cb.handle(), 1024);  // reads x with no barrier after the fill
    });
  }
  g->device.reset();
  CHECK(g->instance->validation_messages() > 0);
  bool hazard = false;
  for (const auto& m : g->instance->validation_log()) hazard = hazard || m.find("SYNC-HAZARD") != std::string::npos;
  CHECK(hazard);
}

TEST_CASE("vk-runtime: validation asked for without the layer installed is a clear error") {
  std::string why;
  if (!vulkan_loader_available(&why)) {
    test::skip_no_device(why);
    return;
  }
  std::filesystem::path empty = std::filesystem::temp_directory_path() / ("mole-no-layers-" + std::to_string(getpid()));
  std::filesystem::create_directories(empty);
  {
    ScopedEnv env("VK_LAYER_PATH", empty.c_str());
    CHECK_THROWS_WITH_AS(Instance::create(true, false), doctest::Contains("install vulkan-validationlayers"), Error);
  }
  std::filesystem::remove_all(empty);
}

// A process makes and drops many instances and devices (every test does; so does an app that switches device):
// none of them may be lost for good. Each stage runs 60 times and says at which round it failed.
TEST_CASE("vk-runtime: instances and devices made and dropped 60 times each") {
  auto g = open_gpu(false);
  if (!g) return;
  const DeviceInfo info = g->devices[size_t(g->index)];
  g.reset();
  constexpr int kRounds = 60;
  for (bool validation : {false, true}) {
    CAPTURE(validation);
    int round = 0;
    try {
      for (; round < kRounds; round++) Instance::create(validation, false);
    } catch (const Error& e) {
      FAIL_CHECK("instance " << round << " of " << kRounds << ": " << e.what());
    }
    round = 0;
    try {
      for (; round < kRounds; round++) {
        Instance instance = Instance::create(validation, false);
        Device device = Device::create(instance, enumerate_devices(instance)[size_t(info.index)]);
        Buffer b = Buffer::create(device, 1 << 20, kStorage, MemoryKind::DeviceLocal, "b");
      }
    } catch (const Error& e) {
      FAIL_CHECK("instance, device and buffer " << round << " of " << kRounds << ": " << e.what());
    }
  }
}

TEST_CASE("vk-runtime: device, queues and memory types") {
  auto g = open_gpu();
  if (!g) return;
  const Device& dev = *g->device;
  CHECK(dev.handle() != VK_NULL_HANDLE);
  CHECK(dev.compute_queue() != VK_NULL_HANDLE);
  CHECK(dev.transfer_queue() != VK_NULL_HANDLE);
  CHECK(dev.enabled().timeline_semaphore);
  MESSAGE("compute family " << dev.compute_family() << ", transfer family " << dev.transfer_family() << " ("
                            << std::string(transfer_kind_name(dev.transfer_kind())) << ")");
  switch (dev.transfer_kind()) {
    case Device::TransferQueueKind::Dedicated:
      CHECK(dev.transfer_family() != dev.compute_family());
      break;
    case Device::TransferQueueKind::SecondQueue:
      CHECK(dev.transfer_family() == dev.compute_family());
      CHECK(dev.transfer_queue() != dev.compute_queue());
      break;
    case Device::TransferQueueKind::SameQueue:
      CHECK(dev.transfer_queue() == dev.compute_queue());
      break;
  }
  CHECK(dev.find_memory_type(~0u, VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT, 0) != Device::kNoMemoryType);
  CHECK(dev.find_memory_type(0, VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT, 0) == Device::kNoMemoryType);
  uint32_t host = dev.find_memory_type(~0u, VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT, VK_MEMORY_PROPERTY_HOST_CACHED_BIT);
  REQUIRE(host != Device::kNoMemoryType);
  CHECK((dev.info().memory_types[host].propertyFlags & VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT) != 0);
  g->finish();
}

TEST_CASE("vk-runtime: buffers of every memory kind, and a round trip through device memory") {
  auto g = open_gpu();
  if (!g) return;
  const Device& dev = *g->device;
  {
    constexpr uint32_t n = 16384;
    std::vector<float> data(n);
    for (uint32_t i = 0; i < n; ++i) data[i] = float(i) * 0.25f - 7.0f;
    for (MemoryKind kind : {MemoryKind::HostVisible, MemoryKind::HostToDevice, MemoryKind::Readback}) {
      CAPTURE(memory_kind_name(kind));
      Buffer b = Buffer::create(dev, n * 4, kStorage, kind, "host buffer");
      CHECK(b.size() == n * 4);
      REQUIRE(b.mapped() != nullptr);
      CHECK((b.memory_flags() & VK_MEMORY_PROPERTY_HOST_COHERENT_BIT) != 0);
      std::memcpy(b.mapped(), data.data(), n * 4);
      CHECK(std::memcmp(b.mapped(), data.data(), n * 4) == 0);
    }
    uint32_t heap =
        dev.info().memory_types[dev.find_memory_type(~0u, VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT, 0)].heapIndex;
    uint64_t before = dev.heap_allocated(heap);
    Buffer staging = Buffer::create(dev, n * 4, kStorage, MemoryKind::HostVisible, "staging");
    Buffer device_local = Buffer::create(dev, n * 4, kStorage, MemoryKind::DeviceLocal, "device copy");
    Buffer readback = Buffer::create(dev, n * 4, kStorage, MemoryKind::Readback, "readback");
    CHECK(device_local.mapped() == nullptr);
    CHECK(dev.heap_allocated(heap) >= before + n * 4);
    std::memcpy(staging.mapped(), data.data(), n * 4);
    VkBufferCopy region{0, 0, n * 4};
    run_once(dev, QueueRole::Transfer, [&](CommandBuffer& cb) {
      vk().vkCmdCopyBuffer(cb.handle(), staging.handle(), device_local.handle(), 1, &region);
    });
    run_once(dev, QueueRole::Compute, [&](CommandBuffer& cb) {
      vk().vkCmdCopyBuffer(cb.handle(), device_local.handle(), readback.handle(), 1, &region);
      cb.barrier(VK_PIPELINE_STAGE_TRANSFER_BIT, VK_ACCESS_TRANSFER_WRITE_BIT, VK_PIPELINE_STAGE_HOST_BIT,
                 VK_ACCESS_HOST_READ_BIT);
    });
    CHECK(std::memcmp(readback.mapped(), data.data(), n * 4) == 0);
  }
  for (uint32_t h = 0; h < dev.info().heaps.size(); ++h) CHECK(dev.heap_allocated(h) == 0);

  std::string oom = out_of_memory_message(dev, "the lookup table", VkDeviceSize(3) << 30, 0);
  MESSAGE(oom);
  CHECK(oom.find("the lookup table (3072.0 MiB)") != std::string::npos);
  CHECK(oom.find("GiB") != std::string::npos);
  CHECK(oom.find("--lut host") != std::string::npos);
  CHECK(oom.find("--lut disk") != std::string::npos);
  VkDeviceSize too_big = dev.info().max_memory_allocation_size + 1;
  CHECK_THROWS_WITH_AS(Buffer::create(dev, too_big, kStorage, MemoryKind::DeviceLocal, "a huge table"),
                       doctest::Contains("a huge table"), Error);
  g->finish();
}

TEST_CASE("vk-runtime: create_chunked splits by the chunk limit, 256 bytes and the row size") {
  auto g = open_gpu();
  if (!g) return;
  const Device& dev = *g->device;
  {
    CHECK(chunk_bytes(dev, 1000) == 768);
    std::vector<Buffer> chunks = create_chunked(dev, 2000, 1000, kStorage, MemoryKind::HostVisible, "table");
    REQUIRE(chunks.size() == 3);
    CHECK(chunks[0].size() == 768);
    CHECK(chunks[1].size() == 768);
    CHECK(chunks[2].size() == 464);
    CHECK(chunk_bytes(dev, 5000, 96) == 4608);  // a multiple of lcm(256, 96) = 768
    CHECK(create_chunked(dev, 768, 1000, kStorage, MemoryKind::DeviceLocal, "exact").size() == 1);
    CHECK_THROWS_AS(chunk_bytes(dev, 1000, 100), Error);  // lcm(256, 100) = 6400 does not fit
    VkDeviceSize device_limit = chunk_bytes(dev, 0);
    CHECK(device_limit % 256 == 0);
    CHECK(device_limit <= dev.info().max_storage_buffer_range);
    CHECK(device_limit <= dev.info().max_memory_allocation_size);
  }
  g->finish();
}

TEST_CASE("vk-runtime: a compute pipeline with push and specialization constants, fenced") {
  auto g = open_gpu();
  if (!g) return;
  const Device& dev = *g->device;
  {
    constexpr uint32_t n = 1000, cap = 1024;
    Buffer x = Buffer::create(dev, cap * 4, kStorage, MemoryKind::HostVisible, "x");
    Buffer y = Buffer::create(dev, cap * 4, kStorage, MemoryKind::Readback, "y");
    auto* xs = static_cast<float*>(x.mapped());
    auto* ys = static_cast<float*>(y.mapped());
    for (uint32_t i = 0; i < cap; ++i) xs[i] = float(i) * 0.5f, ys[i] = -1.0f;
    PipelineCache cache = PipelineCache::create(dev, "");
    ScaleKernel k = ScaleKernel::create(dev, cache, {kWorkgroup, float_bits(3.0f)}, x, y);
    run_once(dev, QueueRole::Compute, [&](CommandBuffer& cb) {
      k.record(cb.handle(), n);
      cb.barrier(VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, VK_ACCESS_SHADER_WRITE_BIT, VK_PIPELINE_STAGE_HOST_BIT,
                 VK_ACCESS_HOST_READ_BIT);
    });
    int wrong = 0;
    for (uint32_t i = 0; i < n; ++i) wrong += ys[i] != 1.5f * float(i);
    for (uint32_t i = n; i < cap; ++i) wrong += ys[i] != -1.0f;  // past n: untouched
    CHECK(wrong == 0);
    std::vector<uint32_t> not_spirv = {1, 2, 3, 4, 5};
    DescriptorSetLayout layout = DescriptorSetLayout::create(dev, 2);
    CHECK_THROWS_WITH_AS(ComputePipeline::create(dev, cache, not_spirv, layout, 4, {}, "bogus"),
                         doctest::Contains("bogus"), Error);
  }
  g->finish();
}

TEST_CASE("vk-runtime: a transfer-queue copy signals a timeline semaphore the compute submission waits on") {
  auto g = open_gpu();
  if (!g) return;
  const Device& dev = *g->device;
  {
    constexpr uint32_t n = 4096;
    Buffer staging = Buffer::create(dev, n * 4, kStorage, MemoryKind::HostVisible, "staging");
    Buffer x = Buffer::create(dev, n * 4, kStorage, MemoryKind::DeviceLocal, "x");
    Buffer y = Buffer::create(dev, n * 4, kStorage, MemoryKind::Readback, "y");
    auto* src = static_cast<float*>(staging.mapped());
    for (uint32_t i = 0; i < n; ++i) src[i] = std::sin(float(i));
    PipelineCache cache = PipelineCache::create(dev, "");
    ScaleKernel k = ScaleKernel::create(dev, cache, {kWorkgroup}, x, y);  // kScale keeps its default, 2
    TimelineSemaphore timeline = TimelineSemaphore::create(dev, 0);

    CommandPool transfer_pool = CommandPool::create(dev, dev.transfer_family(), true);
    CommandPool compute_pool = CommandPool::create(dev, dev.compute_family(), true);
    CommandBuffer copy = CommandBuffer::create(dev, transfer_pool);
    CommandBuffer compute = CommandBuffer::create(dev, compute_pool);
    VkBufferCopy region{0, 0, n * 4};
    copy.begin(true);
    vk().vkCmdCopyBuffer(copy.handle(), staging.handle(), x.handle(), 1, &region);
    copy.end();
    compute.begin(true);
    k.record(compute.handle(), n);
    compute.barrier(VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, VK_ACCESS_SHADER_WRITE_BIT, VK_PIPELINE_STAGE_HOST_BIT,
                    VK_ACCESS_HOST_READ_BIT);
    compute.end();
    Fence fence = Fence::create(dev, false);
    submit(dev, QueueRole::Transfer, copy.handle(), {}, {{timeline.handle(), 1}}, VK_NULL_HANDLE);
    submit(dev, QueueRole::Compute, compute.handle(), {{timeline.handle(), 1, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT}},
           {{timeline.handle(), 2}}, fence.handle());
    timeline.wait(2);
    fence.wait();
    CHECK(timeline.value() == 2);
    CHECK(fence.signaled());
    const auto* ys = static_cast<const float*>(y.mapped());
    int wrong = 0;
    for (uint32_t i = 0; i < n; ++i) wrong += ys[i] != 2.0f * src[i];
    CHECK(wrong == 0);

    timeline.signal_from_host(3);
    CHECK(timeline.value() == 3);
    timeline.wait(3, 1'000'000);
    CHECK_THROWS_WITH_AS(timeline.wait(4, 1'000'000), doctest::Contains("did not finish within"), Error);
    // Polling first (--tune host-wait=spin), on a value the GPU signals when a dispatch of a few milliseconds ends:
    // with 1 s to poll the wait returns while polling, with 1 us it gives up polling and blocks; either way it
    // returns only once the dispatch's results are all there, and times out as a plain wait does. (The value is
    // signalled by the GPU, not by another thread: the validation layer's tracking of a host signal from another
    // thread times out and reports itself.)
    {
      constexpr uint32_t big = 1u << 21;  // 32,768 workgroups
      Buffer bx = Buffer::create(dev, big * 4, kStorage, MemoryKind::HostVisible, "big x");
      Buffer by = Buffer::create(dev, big * 4, kStorage, MemoryKind::Readback, "big y");
      auto* xs = static_cast<float*>(bx.mapped());
      for (uint32_t i = 0; i < big; ++i) xs[i] = float(i % 1000);
      ScaleKernel kb = ScaleKernel::create(dev, cache, {kWorkgroup}, bx, by);
      for (uint64_t spin_ns : {1'000'000'000ull, 1'000ull}) {
        CAPTURE(spin_ns);
        std::memset(by.mapped(), 0, big * 4);
        CommandBuffer job = CommandBuffer::create(dev, compute_pool);
        job.begin(true);
        kb.record(job.handle(), big);
        job.barrier(VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, VK_ACCESS_SHADER_WRITE_BIT, VK_PIPELINE_STAGE_HOST_BIT,
                    VK_ACCESS_HOST_READ_BIT);
        job.end();
        const uint64_t want = timeline.value() + 1;
        submit(dev, QueueRole::Compute, job.handle(), {}, {{timeline.handle(), want}}, VK_NULL_HANDLE);
        timeline.wait(want, 10'000'000'000ull, spin_ns);
        CHECK(timeline.value() == want);
        const auto* ys = static_cast<const float*>(by.mapped());
        uint32_t missing = 0;
        for (uint32_t i = 0; i < big; ++i) missing += ys[i] != 2.0f * xs[i];
        CHECK(missing == 0);
      }
    }
    timeline.wait(timeline.value(), 1'000'000, 1'000'000);  // already there
    CHECK_THROWS_WITH_AS(timeline.wait(timeline.value() + 1, 3'000'000, 1'000'000), doctest::Contains("within 0.003 s"),
                         Error);
    CHECK_THROWS_WITH_AS(timeline.wait(timeline.value() + 1, 2'000'000, 50'000'000),
                         doctest::Contains("within 0.002 s"), Error);
    fence.reset();
    CHECK(!fence.signaled());
    CHECK_THROWS_WITH_AS(fence.wait(1'000'000), doctest::Contains("GPU did not finish within 0.001 s"), Error);
  }
  g->finish();
}

TEST_CASE("vk-runtime: timestamp queries") {
  auto g = open_gpu();
  if (!g) return;
  const Device& dev = *g->device;
  {
    constexpr uint32_t n = 1 << 16;
    Buffer x = Buffer::create(dev, n * 4, kStorage, MemoryKind::DeviceLocal, "x");
    Buffer y = Buffer::create(dev, n * 4, kStorage, MemoryKind::DeviceLocal, "y");
    PipelineCache cache = PipelineCache::create(dev, "");
    ScaleKernel k = ScaleKernel::create(dev, cache, {kWorkgroup}, x, y);
    TimestampQueryPool queries = TimestampQueryPool::create(dev, 3);
    run_once(dev, QueueRole::Compute, [&](CommandBuffer& cb) {
      vk().vkCmdFillBuffer(cb.handle(), x.handle(), 0, VK_WHOLE_SIZE, 0);
      cb.barrier(VK_PIPELINE_STAGE_TRANSFER_BIT, VK_ACCESS_TRANSFER_WRITE_BIT, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT,
                 VK_ACCESS_SHADER_READ_BIT);
      queries.reset(cb.handle());
      queries.write(cb.handle(), 0);
      k.record(cb.handle(), n);
      queries.write(cb.handle(), 1);
      cb.barrier(VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, VK_ACCESS_SHADER_WRITE_BIT, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT,
                 VK_ACCESS_SHADER_WRITE_BIT);
      k.record(cb.handle(), n);
      queries.write(cb.handle(), 2);
    });
    std::vector<double> ns = queries.read_ns(3);
    if (!queries.supported()) {
      MESSAGE("skipped: the compute queue has no timestamps");
      CHECK(ns.empty());
    } else {
      REQUIRE(ns.size() == 3);
      MESSAGE("two dispatches of " << n << " elements: " << ns[1] / 1e3 << " us, " << (ns[2] - ns[1]) / 1e3 << " us");
      CHECK(ns[0] == 0.0);
      CHECK(!std::isnan(ns[1]));
      CHECK(!std::isnan(ns[2]));
      CHECK(ns[1] >= 0.0);
      CHECK(ns[2] >= ns[1]);
    }
  }
  g->finish();
}

TEST_CASE("vk-runtime: pipeline cache save and load round trip; bad files are ignored and replaced") {
  auto g = open_gpu();
  if (!g) return;
  const Device& dev = *g->device;
  std::filesystem::path dir = std::filesystem::temp_directory_path() / ("mole-vk-cache-" + std::to_string(getpid()));
  struct RemoveAtExit {
    std::filesystem::path p;
    ~RemoveAtExit() {
      std::error_code ec;
      std::filesystem::remove_all(p, ec);
    }
  } cleanup{dir};
  {
    std::string path = (dir / "sub" / "pipelines.bin").string();
    DescriptorSetLayout layout = DescriptorSetLayout::create(dev, 2);
    auto make_pipeline = [&](const PipelineCache& c) {
      ComputePipeline::create(dev, c, kScaleSpirv, layout, 4, {kWorkgroup}, "scale");
    };
    auto file_size = [&] { return std::filesystem::exists(path) ? std::filesystem::file_size(path) : 0; };

    PipelineCache first = PipelineCache::create(dev, path);
    CHECK(!first.loaded_from_file());
    make_pipeline(first);
    first.save();
    REQUIRE(file_size() >= 32);  // lavapipe keeps nothing but the header
    CHECK(PipelineCache::create(dev, path).loaded_from_file());

    auto overwrite = [&](const std::string& bytes) {
      std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
    };
    std::vector<char> good(file_size());
    std::ifstream(path, std::ios::binary).read(good.data(), std::streamsize(good.size()));
    overwrite(std::string(100, 'x'));  // garbage
    CHECK(!PipelineCache::create(dev, path).loaded_from_file());
    overwrite(std::string(good.data(), 20));  // truncated header
    CHECK(!PipelineCache::create(dev, path).loaded_from_file());
    std::string other_device(good.data(), good.size());
    other_device[16] = char(other_device[16] ^ 0xff);  // pipelineCacheUUID of another driver
    overwrite(other_device);
    PipelineCache replaced = PipelineCache::create(dev, path);
    CHECK(!replaced.loaded_from_file());
    make_pipeline(replaced);
    replaced.save();  // replaces the mismatched file
    CHECK(PipelineCache::create(dev, path).loaded_from_file());
    CHECK(!std::filesystem::exists(path + ".tmp." + std::to_string(getpid())));

    PipelineCache unwritable = PipelineCache::create(dev, "/proc/mole-cannot-write-here/p.bin");
    unwritable.save();  // silent
    CHECK(!PipelineCache::create(dev, "").loaded_from_file());

    CHECK(PipelineCache::default_path(dir.string(), dev.info()) ==
          dir.string() + "/pipelines-" + uuid_hex(dev.info().uuid) + ".bin");
    CHECK(PipelineCache::default_path("", dev.info()).empty());
  }
  g->finish();
}

TEST_CASE("vk-runtime: VulkanContext opens the best device with an in-memory pipeline cache") {
  std::string why;
  if (!vulkan_loader_available(&why)) {
    test::skip_no_device(why);
    return;
  }
  bool ok = false;
  std::string line = vulkan_availability(&ok);
  if (!ok) {
    test::skip_no_device(line);
    return;
  }
  {
    std::unique_ptr<VulkanContext> ctx;
    try {
      ctx = VulkanContext::create(-1, true, false, "off");
    } catch (const Error& e) {
      if (!std::strstr(e.what(), "vulkan-validationlayers")) throw;
      ctx = VulkanContext::create(-1, false, false, "off");
    }
    CHECK(ctx->device.handle() != VK_NULL_HANDLE);
    CHECK(ctx->cache.path().empty());
    CHECK(ctx->device.info().name == ctx->info.name);
    CHECK(ctx->instance.validation_messages() == 0);
  }
}

#else

TEST_CASE("vk-runtime: not built") {
  mole::test::skip_no_device("built without Vulkan headers (install libvulkan-dev)");
}

#endif  // MOLE_HAVE_VULKAN
