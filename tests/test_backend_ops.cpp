// Cross-backend parity: every op case and every whole-model case of model/parity.h, on every backend of the
// registry against the CPU reference, with the validation layer on where the backend has one (any message fails).
// A backend this build has but this machine cannot run is reported as skipped with its reason (mole_tests
// --require-device makes that a failure); one the build does not have is skipped in any case. A row added for the
// test (the CPU reference under a second name) runs every case, and the cpu-perturbed row, whose router_lut is
// wrong on purpose, fails exactly the router_lut cases: the comparison can fail.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "apps/backends.h"
#include "model/cpu_backend.h"
#include "model/parity.h"
#include "tests/test_helpers.h"

using namespace mole;

namespace {

BackendOptions test_options() {
  BackendOptions o;
  o.validation = BackendOptions::Validation::Sync;
  o.pipeline_cache = "off";
  return o;
}

// The visible GPU rows this build has; for each one the machine cannot run, says why (skipped, or failed under
// --require-device).
std::vector<const BackendEntry*> runnable_backends() {
  std::vector<const BackendEntry*> out;
  for (const BackendEntry& e : backend_registry()) {
    if (e.hidden || e.name == "cpu") continue;
    const BackendProbe p = e.probe(test_options());
    if (p.available)
      out.push_back(&e);
    else if (e.built)
      test::skip_no_device(e.name + ": " + p.detail, e.name);
    else
      MESSAGE("skipped " << e.name << ": " << p.detail);
  }
  return out;
}

// Checks every result; returns how many there were.
size_t check_results(const std::string& backend, const std::vector<ParityResult>& results) {
  for (const ParityResult& r : results) {
    CAPTURE(backend);
    CHECK_MESSAGE(r.ok, r.label << ": error " << r.error << " > " << r.bound << (r.note.empty() ? "" : ": ") << r.note);
  }
  return results.size();
}

size_t run_all_op_cases(const BackendEntry& e) {
  size_t n = 0;
  for (const OpCase& c : op_cases())
    if (op_case_applies(c, e)) n += check_results(e.name, run_op_case(c, e, test_options()));
  return n;
}

size_t run_all_model_cases(const BackendEntry& e) {
  test::TempDir tmp;
  size_t n = 0;
  for (const ModelCase& c : model_cases())
    n += check_results(e.name, run_model_case(c, tmp / c.name, e, test_options()));
  return n;
}

}  // namespace

TEST_CASE("backends: every op case on every backend matches the CPU reference (NMSE bounds per op)") {
  for (const BackendEntry* e : runnable_backends())
    MESSAGE(e->name << ": " << run_all_op_cases(*e) << " outputs compared");
}

TEST_CASE("backends: every model case on every backend matches the CPU reference (logits, greedy ids)") {
  for (const BackendEntry* e : runnable_backends())
    MESSAGE(e->name << ": " << run_all_model_cases(*e) << " comparisons");
}

TEST_CASE("backends: a row added to the registry runs every case; a perturbed op fails its cases only") {
  std::vector<BackendEntry>& rows = backend_registry();
  BackendEntry twin = cpu_backend_entry();
  twin.name = "cpu-twin";
  twin.hidden = true;
  rows.push_back(twin);
  const BackendEntry& added = find_backend("cpu-twin");
  const size_t ops = run_all_op_cases(added), models = run_all_model_cases(added);
  MESSAGE("cpu-twin: " << ops << " op outputs, " << models << " model comparisons");
  CHECK(ops > 200);
  CHECK(models >= 15);
  rows.pop_back();

  // The perturbed backend (router_lut 0.1% off): every router_lut result fails, every other op's passes.
  const BackendEntry& perturbed = find_backend("cpu-perturbed");
  BackendOptions o = test_options();
  o.tuning.perturb_op = "router_lut";
  size_t router_failed = 0, router_total = 0, others_failed = 0;
  for (const OpCase& c : op_cases()) {
    if (!op_case_applies(c, perturbed)) continue;
    for (const ParityResult& r : run_op_case(c, perturbed, o)) {
      if (r.op == "router_lut") {
        router_total++;
        router_failed += r.ok ? 0 : 1;
      } else {
        others_failed += r.ok ? 0 : 1;
      }
    }
  }
  CHECK(router_total > 0);
  CHECK(router_failed == router_total);
  CHECK(others_failed == 0);
}

TEST_CASE("backends: router weights 0.1% off fail every router_probs case") {
  const BackendEntry& perturbed = find_backend("cpu-perturbed");
  BackendOptions o = test_options();
  o.tuning.perturb_op = "router_probs";
  size_t cases = 0;
  for (const OpCase& c : op_cases()) {
    if (c.op != "router_probs") continue;
    for (const ParityResult& r : run_op_case(c, perturbed, o)) {
      cases++;
      CHECK_MESSAGE(!r.ok, r.label << " passed with perturbed weights");
    }
  }
  CHECK(cases >= 15);
}
