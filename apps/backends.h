// The backends this build has, which of them can run on this machine, and the factory behind --backend.
// It lives beside the apps, not in model/, so that model/ never depends on a GPU runtime.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "model/backend.h"

namespace mole {

struct BackendAvailability {
  std::string name;
  bool available = false;
  std::string detail;  // the device, or the reason it is unavailable and what to do
};
std::vector<BackendAvailability> list_backends();
// Every GPU device found, described for `mole devices` (driver, memory heaps, queue families, features), with the
// one --backend auto / --device would pick marked; empty when none.
std::string device_details();
// "auto" picks vulkan on a GPU (not on a CPU driver like lavapipe), else cpu. `device` selects a GPU by its index
// in `mole devices` (-1: $MOLE_VK_DEVICE, else the best). `lut_read` (Vulkan only): how the table's rows are read,
// copy|direct|auto, empty for $MOLE_VK_LUT_READ. Throws mole::Error for an unknown or unavailable name.
std::unique_ptr<Backend> make_backend(const std::string& name, int device = -1, const std::string& lut_read = "");
// How a Vulkan backend reads the table's rows once the run has set its table: "copy" (to a ring on the device, then
// read) or "direct" (read in place); "" for other backends.
std::string lut_read_mode(const Backend& b);
// --lut host on Vulkan: whether the table was imported from the file's mapping or copied, and why (""
// otherwise).
std::string lut_table_note(const Backend& b);
// Records "copy" or "direct" as what --lut auto uses on this Vulkan backend's device from now on (`mole bench`, for
// the faster); returns the file written, "" if none (other backends, no cache directory).
std::string record_lut_read(const Backend& b, const std::string& mode);

}  // namespace mole
