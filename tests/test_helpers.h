// Test utilities: a temporary directory removed at scope exit, synthetic checkpoints, error comparisons.
#pragma once

#include <doctest/doctest.h>
#include <stdlib.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <initializer_list>
#include <optional>
#include <string>
#include <vector>

#include "model/checkpoint_io.h"
#include "model/error.h"
#include "model/lut.h"
#include "model/session.h"

namespace mole::test {

// Sets an environment variable for a scope (unsets it for nullptr) and restores it afterwards.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* v = std::getenv(name)) saved_ = v;
    if (value)
      setenv(name, value, 1);
    else
      unsetenv(name);
  }
  ~ScopedEnv() {
    if (saved_)
      setenv(name_, saved_->c_str(), 1);
    else
      unsetenv(name_);
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  const char* name_;
  std::optional<std::string> saved_;
};

// Set by mole_tests --require-device[=a,b] (test_main.cpp): the backends that must be runnable here ("*": every
// GPU backend this build has).
inline std::vector<std::string>& required_backends() {
  static std::vector<std::string> names;
  return names;
}
inline bool device_required(const std::string& backend) {
  for (const std::string& n : required_backends())
    if (n == "*" || n == backend) return true;
  return false;
}
// Skips the case for want of a device of `backend` (or of something a device run needs, such as the validation
// layer), saying why; when --require-device names that backend the case fails instead.
inline void skip_no_device(const std::string& why, const std::string& backend = "vulkan") {
  if (device_required(backend))
    FAIL_CHECK("--require-device, but " << why);
  else
    MESSAGE("skipped: " << why);
}

struct TempDir {
  std::string path;
  TempDir() {
    char tmpl[] = "/tmp/mole_test_XXXXXX";
    path = mkdtemp(tmpl);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  std::string operator/(const std::string& name) const { return path + "/" + name; }
};

// Writes a small synthetic checkpoint (vocab 384 unless overridden) and returns its directory.
inline std::string synth(const TempDir& dir, const std::string& name, Form form, nlohmann::json overrides = {},
                         DType dtype = DType::F32, uint64_t seed = 1) {
  SynthOptions o;
  o.form = form;
  o.dtype = dtype;
  o.seed = seed;
  o.progress = false;
  o.overrides = {{"vocab_size", 384}};
  if (!overrides.is_null()) o.overrides.merge_patch(overrides);
  std::string out = dir / name;
  synth_checkpoint(out, o);
  return out;
}

// A checkpoint opened for an Engine (mole::load_model() without a backend): config, weights, and the table
// (computed at load, in `train_lut` precision, for a training-form checkpoint).
inline LoadedModel load(const std::string& dir, DType train_lut = DType::F32) {
  LoadOptions o;
  o.model_dir = dir;
  o.lut_dtype = train_lut;
  return std::move(*load_model(o));
}

// Runs fn, requires that it throws mole::Error (not another exception, not nothing), and returns the message.
inline std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  } catch (const std::exception& e) {
    FAIL_CHECK("expected mole::Error, got another exception: " << e.what());
    return {};
  }
  FAIL_CHECK("expected mole::Error, nothing was thrown");
  return {};
}

// Checks that `message` contains each of `parts`.
inline void check_contains(const std::string& message, std::initializer_list<std::string> parts) {
  for (const std::string& part : parts) {
    INFO("message: " << message);
    CHECK_MESSAGE(message.find(part) != std::string::npos, "missing: " << part);
  }
}

// ||a - b|| / ||b||
inline double rel_l2(const std::vector<float>& a, const std::vector<float>& b) {
  REQUIRE(a.size() == b.size());
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); i++) {
    num += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
    den += double(b[i]) * b[i];
  }
  return std::sqrt(num / den);
}

}  // namespace mole::test
