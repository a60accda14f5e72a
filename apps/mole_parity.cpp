// mole parity: the op cases of model/parity.h (and, with -m, a model's logits and greedy tokens for every table
// placement) on each chosen backend against the CPU reference, one line per compared output, `N/M passed` per
// backend, exit 1 on any failure. What a user runs on their own GPU to trust mole (llama.cpp's test-backend-ops).
#include <cstdio>
#include <filesystem>
#include <iostream>

#include "apps/backends.h"
#include "apps/mole_commands.h"
#include "model/error.h"
#include "model/parity.h"
#include "model/progress.h"

namespace mole::app {

int cmd_parity(ParityArgs& a) {
  const BackendOptions opt = backend_options(a.bf);
  std::vector<const BackendEntry*> chosen;
  std::string unavailable;
  if (a.backends.empty()) {
    for (const BackendEntry& e : backend_registry()) {
      if (e.hidden || e.name == "cpu") continue;
      const BackendProbe p = e.probe(opt);
      if (p.available)
        chosen.push_back(&e);
      else
        unavailable += "\n  " + e.name + ": " + p.detail;
    }
    if (chosen.empty())
      throw Error("mole parity: no GPU backend is available to compare with the CPU reference:" + unavailable);
  } else {
    for (const std::string& name : a.backends) {
      if (name == "auto") throw Error("--backend auto: name the backends to compare (see `mole devices`)");
      chosen.push_back(&find_backend(name));
    }
  }
  bool op_known = a.op.empty();
  for (const OpCase& c : op_cases()) op_known = op_known || c.op == a.op;
  if (!op_known)
    throw Error("--op " + a.op +
                ": no such op (embed, matmul, norm_matmul, attention, router_lut, router_probs, gather, "
                "argmax; the KV store is part of attention)");

  nlohmann::json out = nlohmann::json::array();
  int failures = 0;
  std::string skipped;  // backends named with --backend that are not available here
  for (const BackendEntry* e : chosen) {
    nlohmann::json jb = {{"backend", e->name}};
    const BackendProbe probe = e->probe(opt);
    if (!probe.available) {
      if (!a.json) std::printf("%s: skipped: %s\n", e->name.c_str(), probe.detail.c_str());
      jb["skipped"] = probe.detail;
      out.push_back(jb);
      skipped += (skipped.empty() ? "" : ", ") + e->name;
      continue;
    }
    if (!a.json) std::printf("== %s: %s\n", e->name.c_str(), probe.detail.c_str());
    int passed = 0, total = 0;
    nlohmann::json results = nlohmann::json::array();
    auto report = [&](const std::vector<ParityResult>& rs) {
      for (const ParityResult& r : rs) {
        total++;
        passed += r.ok ? 1 : 0;
        results.push_back(
            {{"op", r.op}, {"case", r.label}, {"error", r.error}, {"bound", r.bound}, {"ok", r.ok}, {"note", r.note}});
        if (a.json) continue;
        if (r.ok)
          std::printf("%s: OK\n", r.label.c_str());
        else
          std::printf("%s: FAIL %s=%.3g > %.3g%s%s\n", r.label.c_str(), r.op == "model" ? "error" : "NMSE", r.error,
                      r.bound, r.note.empty() ? "" : ": ", r.note.c_str());
        std::fflush(stdout);
      }
    };
    for (const OpCase& c : op_cases())
      if ((a.op.empty() || c.op == a.op || (a.op == "kv_store" && c.op == "attention")) && op_case_applies(c, *e)) {
        throw_if_interrupted("");  // Ctrl-C ends the comparison between two cases
        report(run_op_case(c, *e, opt));
      }
    throw_if_interrupted("");
    if (!a.model.empty())
      report(compare_model(a.model, a.tokens, *e, opt, std::filesystem::path(a.model).filename().string()));
    if (!a.json) std::printf("%s: %d/%d passed\n", e->name.c_str(), passed, total);
    failures += total - passed;
    jb["passed"] = passed;
    jb["total"] = total;
    jb["results"] = results;
    out.push_back(jb);
  }
  if (a.json) std::cout << out.dump(1) << "\n";
  if (failures > 0) std::fprintf(stderr, "mole parity: %d comparison(s) failed\n", failures);
  // A backend named outright that could not run compared nothing: not a pass (a CI job that names its backend must
  // not pass on a machine without it).
  if (!skipped.empty())
    std::fprintf(stderr,
                 "mole parity: --backend %s is not available here (see `mole devices`); nothing was compared on it\n",
                 skipped.c_str());
  return failures == 0 && skipped.empty() ? 0 : 1;
}

}  // namespace mole::app
