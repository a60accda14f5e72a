// Instance creation, the validation layer and the debug messenger (see instance.h).
#include "vk-runtime/instance.h"

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <utility>

#include "model/error.h"
#include "vk-runtime/loader.h"

namespace mole {

struct Instance::MessageLog {
  static constexpr size_t kMaxKept = 1000;
  mutable std::mutex mutex;
  uint64_t count = 0;
  std::vector<std::string> messages;
  std::atomic<bool> echo{true};
};

namespace {

constexpr const char* kValidationLayer = "VK_LAYER_KHRONOS_validation";

VKAPI_ATTR VkBool32 VKAPI_CALL on_debug_message(VkDebugUtilsMessageSeverityFlagBitsEXT severity,
                                                VkDebugUtilsMessageTypeFlagsEXT /*types*/,
                                                const VkDebugUtilsMessengerCallbackDataEXT* data, void* user) {
  if (severity < VK_DEBUG_UTILS_MESSAGE_SEVERITY_WARNING_BIT_EXT) return VK_FALSE;
  auto* log = static_cast<Instance::MessageLog*>(user);
  std::string text = severity >= VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT ? "error: " : "warning: ";
  if (data && data->pMessageIdName) text += std::string(data->pMessageIdName) + ": ";
  text += data && data->pMessage ? data->pMessage : "(no message)";
  if (log->echo) std::fprintf(stderr, "mole: vulkan validation: %s\n", text.c_str());
  std::lock_guard<std::mutex> lock(log->mutex);
  ++log->count;
  if (log->messages.size() < Instance::MessageLog::kMaxKept) log->messages.push_back(std::move(text));
  return VK_FALSE;  // never abort the call that triggered the message
}

bool has_layer(const char* name) {
  uint32_t n = 0;
  VK_CHECK(vk().vkEnumerateInstanceLayerProperties(&n, nullptr));
  std::vector<VkLayerProperties> layers(n);
  VkResult r = vk().vkEnumerateInstanceLayerProperties(&n, layers.data());
  if (r != VK_SUCCESS && r != VK_INCOMPLETE) VK_CHECK(r);
  for (uint32_t i = 0; i < n && i < layers.size(); ++i) {
    if (std::strcmp(layers[i].layerName, name) == 0) return true;
  }
  return false;
}

// Extensions offered by the loader and drivers (layer == nullptr) or by one layer.
std::vector<std::string> instance_extensions(const char* layer) {
  uint32_t n = 0;
  VK_CHECK(vk().vkEnumerateInstanceExtensionProperties(layer, &n, nullptr));
  std::vector<VkExtensionProperties> props(n);
  VkResult r = vk().vkEnumerateInstanceExtensionProperties(layer, &n, props.data());
  if (r != VK_SUCCESS && r != VK_INCOMPLETE) VK_CHECK(r);
  std::vector<std::string> names;
  for (uint32_t i = 0; i < n && i < props.size(); ++i) names.emplace_back(props[i].extensionName);
  return names;
}

bool contains(const std::vector<std::string>& names, const char* name) {
  for (const auto& n : names) {
    if (n == name) return true;
  }
  return false;
}

}  // namespace

Instance Instance::create(bool validation, bool sync_validation) {
  if (sync_validation) validation = true;

  load_global_functions();
  uint32_t loader_version = VK_API_VERSION_1_0;
  if (vk().vkEnumerateInstanceVersion) VK_CHECK(vk().vkEnumerateInstanceVersion(&loader_version));
  if (loader_version < VK_API_VERSION_1_1) {
    throw Error("vulkan: the Vulkan loader only supports Vulkan 1.0; mole needs 1.1 or newer: update libvulkan1");
  }

  std::vector<const char*> layers;
  std::vector<const char*> extensions;
  bool validation_features = false;
  if (validation) {
    if (!has_layer(kValidationLayer)) {
      throw Error(std::string("vulkan: validation was asked for (--validate) but ") + kValidationLayer +
                  " is not installed: install vulkan-validationlayers " +
                  "(apt-get install vulkan-validationlayers), or run without validation");
    }
    layers.push_back(kValidationLayer);
    std::vector<std::string> offered = instance_extensions(nullptr);
    std::vector<std::string> from_layer = instance_extensions(kValidationLayer);
    offered.insert(offered.end(), from_layer.begin(), from_layer.end());
    if (!contains(offered, VK_EXT_DEBUG_UTILS_EXTENSION_NAME)) {
      throw Error(
          "vulkan: validation needs VK_EXT_debug_utils, which neither the loader nor the validation layer "
          "offers: update libvulkan1 and vulkan-validationlayers");
    }
    extensions.push_back(VK_EXT_DEBUG_UTILS_EXTENSION_NAME);
    validation_features = sync_validation && contains(offered, VK_EXT_VALIDATION_FEATURES_EXTENSION_NAME);
    if (validation_features) extensions.push_back(VK_EXT_VALIDATION_FEATURES_EXTENSION_NAME);
    if (sync_validation && !validation_features) {
      std::fprintf(stderr,
                   "mole: warning: this validation layer has no VK_EXT_validation_features: "
                   "synchronization validation is off\n");
    }
  }

  VkApplicationInfo app{};

  app.sType = VK_STRUCTURE_TYPE_APPLICATION_INFO;
  app.pApplicationName = "mole";
  app.applicationVersion = 1;
  app.pEngineName = "mole";
  app.engineVersion = 1;
  app.apiVersion = VK_API_VERSION_1_2;

  Instance inst;
  inst.log_ = std::make_unique<MessageLog>();

  // Chained into the instance's creation too, so messages from vkCreateInstance/vkDestroyInstance are counted.
  VkDebugUtilsMessengerCreateInfoEXT messenger_info{};
  messenger_info.sType = VK_STRUCTURE_TYPE_DEBUG_UTILS_MESSENGER_CREATE_INFO_EXT;
  messenger_info.messageSeverity =
      VK_DEBUG_UTILS_MESSAGE_SEVERITY_WARNING_BIT_EXT | VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT;
  messenger_info.messageType = VK_DEBUG_UTILS_MESSAGE_TYPE_GENERAL_BIT_EXT |
                               VK_DEBUG_UTILS_MESSAGE_TYPE_VALIDATION_BIT_EXT |
                               VK_DEBUG_UTILS_MESSAGE_TYPE_PERFORMANCE_BIT_EXT;
  messenger_info.pfnUserCallback = on_debug_message;
  messenger_info.pUserData = inst.log_.get();

  VkValidationFeatureEnableEXT sync_feature = VK_VALIDATION_FEATURE_ENABLE_SYNCHRONIZATION_VALIDATION_EXT;
  VkValidationFeaturesEXT features{};
  features.sType = VK_STRUCTURE_TYPE_VALIDATION_FEATURES_EXT;
  features.enabledValidationFeatureCount = 1;
  features.pEnabledValidationFeatures = &sync_feature;
  if (validation_features) features.pNext = &messenger_info;

  VkInstanceCreateInfo info{};

  info.sType = VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO;
  info.pApplicationInfo = &app;
  info.enabledLayerCount = uint32_t(layers.size());
  info.ppEnabledLayerNames = layers.data();
  info.enabledExtensionCount = uint32_t(extensions.size());
  info.ppEnabledExtensionNames = extensions.data();
  if (validation) info.pNext = validation_features ? static_cast<const void*>(&features) : &messenger_info;

  VkResult r = vk().vkCreateInstance(&info, nullptr, &inst.instance_);
  if (r == VK_ERROR_INCOMPATIBLE_DRIVER) {
    throw Error(
        "vulkan: no Vulkan driver found (vkCreateInstance: VK_ERROR_INCOMPATIBLE_DRIVER): install one, "
        "e.g. mesa-vulkan-drivers, or the GPU vendor's driver");
  }
  VK_CHECK_CTX(r, "creating the Vulkan instance");
  pin_loaded_libraries();
  try {
    load_instance_functions(inst.instance_, validation);
  } catch (...) {
    // The table may be unfilled: destroy through the loader directly.
    auto destroy =
        reinterpret_cast<PFN_vkDestroyInstance>(vk().vkGetInstanceProcAddr(inst.instance_, "vkDestroyInstance"));
    if (destroy) destroy(inst.instance_, nullptr);
    inst.instance_ = VK_NULL_HANDLE;
    throw;
  }
  if (validation) {
    auto create_messenger = reinterpret_cast<PFN_vkCreateDebugUtilsMessengerEXT>(
        vk().vkGetInstanceProcAddr(inst.instance_, "vkCreateDebugUtilsMessengerEXT"));
    inst.destroy_messenger_ = reinterpret_cast<PFN_vkDestroyDebugUtilsMessengerEXT>(
        vk().vkGetInstanceProcAddr(inst.instance_, "vkDestroyDebugUtilsMessengerEXT"));
    if (!create_messenger || !inst.destroy_messenger_) {
      throw Error("vulkan: the loader enabled VK_EXT_debug_utils but lacks its functions: update libvulkan1");
    }
    VK_CHECK(create_messenger(inst.instance_, &messenger_info, nullptr, &inst.messenger_));
  }
  return inst;
}

Instance::Instance(Instance&& other) noexcept
    : instance_(std::exchange(other.instance_, VK_NULL_HANDLE)),
      messenger_(std::exchange(other.messenger_, VK_NULL_HANDLE)),
      destroy_messenger_(std::exchange(other.destroy_messenger_, nullptr)),
      log_(std::move(other.log_)) {}

Instance& Instance::operator=(Instance&& other) noexcept {
  if (this != &other) {
    destroy();
    instance_ = std::exchange(other.instance_, VK_NULL_HANDLE);
    messenger_ = std::exchange(other.messenger_, VK_NULL_HANDLE);
    destroy_messenger_ = std::exchange(other.destroy_messenger_, nullptr);
    log_ = std::move(other.log_);
  }
  return *this;
}

Instance::~Instance() {
  destroy();
}

void Instance::destroy() {
  if (instance_ == VK_NULL_HANDLE) return;
  if (messenger_ != VK_NULL_HANDLE) destroy_messenger_(instance_, messenger_, nullptr);
  vk().vkDestroyInstance(instance_, nullptr);  // reports leaked children through the chained messenger
  release_instance_functions();
  instance_ = VK_NULL_HANDLE;
  messenger_ = VK_NULL_HANDLE;
}

std::vector<VkPhysicalDevice> Instance::physical_devices() const {
  uint32_t n = 0;
  VK_CHECK(vk().vkEnumeratePhysicalDevices(instance_, &n, nullptr));
  std::vector<VkPhysicalDevice> devices(n);
  VkResult r = vk().vkEnumeratePhysicalDevices(instance_, &n, devices.data());
  if (r != VK_SUCCESS && r != VK_INCOMPLETE) VK_CHECK(r);
  devices.resize(std::min<size_t>(n, devices.size()));
  return devices;
}

uint64_t Instance::validation_messages() const {
  if (!log_) return 0;
  std::lock_guard<std::mutex> lock(log_->mutex);
  return log_->count;
}

void Instance::echo_validation_messages(bool on) {
  if (log_) log_->echo = on;
}

std::vector<std::string> Instance::validation_log() const {
  if (!log_) return {};
  std::lock_guard<std::mutex> lock(log_->mutex);
  return log_->messages;
}

}  // namespace mole
