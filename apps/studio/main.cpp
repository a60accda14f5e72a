// mole-studio: the desktop demo app. A window (GLFW, Dear ImGui, OpenGL 3) in which a user loads a model on any
// backend and placement, generates text and watches what MoLE does per token: speed, time per phase, the table's
// traffic, memory, the router's weights; and compares two backends or placements.
//
// Headless mode, for tests and the README's screenshot: with --screenshot FILE.png the same window loads the model,
// generates --steps tokens of --prompt (then, with --compare, compares it with a second backend or placement),
// draws the result, writes the window as FILE.png and FILE.json ({"text": the
// generated text without the prompt, "ids": [...], "error": ..., "panels": {...}}) beside it, and exits: 0 when the
// model loaded and generated, 1 when not (the error is drawn in the window and printed), 2 for a bad command line.
#include <GLFW/glfw3.h>
#include <backends/imgui_impl_glfw.h>
#include <backends/imgui_impl_opengl3.h>
#include <imgui.h>
#include <stb_image_write.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "apps/mole_common.h"
#include "apps/studio/ui.h"
#include "apps/studio/worker.h"
#include "model/error.h"

using namespace mole;
using namespace mole::studio;
using namespace mole::app;

namespace {

struct Args {
  RunFlags f;
  std::string prompt, screenshot, compare, size = "1280x800";
  int steps = 32;
  float temp = 0.8f;
  int64_t seed = 0;
};

// The framebuffer as an RGB PNG (top row first).
void write_png(const std::string& path, int w, int h) {
  std::vector<unsigned char> px(size_t(w) * size_t(h) * 3);
  glPixelStorei(GL_PACK_ALIGNMENT, 1);
  glReadPixels(0, 0, w, h, GL_RGB, GL_UNSIGNED_BYTE, px.data());
  stbi_flip_vertically_on_write(1);  // OpenGL's first row is the bottom one
  if (!stbi_write_png(path.c_str(), w, h, 3, px.data(), w * 3))
    throw Error("--screenshot " + path + ": cannot write it (does its folder exist?)");
}

nlohmann::json rect_json(Rect r) {
  return {r.x, r.y, r.w, r.h};
}

// FILE.png -> FILE.json
std::string json_path(const std::string& png) {
  const size_t dot = png.rfind('.'), slash = png.rfind('/');
  return (dot != std::string::npos && (slash == std::string::npos || dot > slash) ? png.substr(0, dot) : png) + ".json";
}

void write_result(const std::string& png, const Ui& ui, int w, int h) {
  const Snapshot& s = ui.shown();
  std::string text;
  std::vector<int32_t> ids;
  for (const TokenView& t : s.gen.tokens) {
    text += t.piece;
    ids.push_back(t.id);
  }
  text += s.gen.tail;
  const std::string error = !s.model.error.empty() ? s.model.error : s.gen.error;
  nlohmann::json j = {{"text", text},
                      {"ids", ids},
                      {"stop_reason", s.gen.stop_reason},
                      {"backend", s.model.backend},
                      {"error", error},
                      {"width", w},
                      {"height", h},
                      {"panels", {{"heat_map", rect_json(ui.heat_map_rect())}, {"error", rect_json(ui.error_rect())}}}};
  if (s.compare.steps > 0 || !s.compare.error.empty())
    j["compare"] = {
        {"steps", s.compare.steps}, {"agree", s.compare.agree}, {"max_logit_diff", s.compare.max_logit_diff},
        {"a", s.compare.a.label},   {"b", s.compare.b.label},   {"error", s.compare.error}};
  std::ofstream out(json_path(png), std::ios::trunc);
  out << j.dump(2) << "\n";
  out.close();
  if (!out) throw Error("--screenshot " + png + ": cannot write " + json_path(png));
}

int run(const Args& a) {
  int width = 0, height = 0;
  if (std::sscanf(a.size.c_str(), "%dx%d", &width, &height) != 2 || width < 640 || height < 480 || width > 8192 ||
      height > 8192)
    throw Error("--size " + a.size + ": give WIDTHxHEIGHT, at least 640x480");
  const bool headless = !a.screenshot.empty();
  if (headless && a.prompt.empty()) throw Error("--screenshot needs --prompt TEXT (and --steps N)");

  glfwSetErrorCallback([](int, const char* what) { std::fprintf(stderr, "mole-studio: glfw: %s\n", what); });
  if (!glfwInit())
    throw Error("cannot open a window: no display (set DISPLAY, or run under xvfb-run for --screenshot)");
  glfwWindowHint(GLFW_CONTEXT_VERSION_MAJOR, 3);
  glfwWindowHint(GLFW_CONTEXT_VERSION_MINOR, 3);
  glfwWindowHint(GLFW_OPENGL_PROFILE, GLFW_OPENGL_CORE_PROFILE);
  glfwWindowHint(GLFW_RESIZABLE, headless ? GLFW_FALSE : GLFW_TRUE);
  GLFWwindow* window = glfwCreateWindow(width, height, "mole-studio", nullptr, nullptr);
  if (!window) {
    glfwTerminate();
    throw Error("cannot create an OpenGL 3.3 window (a Mesa or GPU driver with OpenGL 3.3 is needed)");
  }
  glfwMakeContextCurrent(window);
  glfwSwapInterval(headless ? 0 : 1);
  IMGUI_CHECKVERSION();
  ImGui::CreateContext();
  ImGui::GetIO().IniFilename = nullptr;  // the layout is fixed; nothing to remember between runs
  ImGui::StyleColorsDark();
  ImGui_ImplGlfw_InitForOpenGL(window, true);
  ImGui_ImplOpenGL3_Init("#version 330");

  int exit_code = 0;
  {
    Worker worker;
    Ui ui(worker, a.f);
    if (!a.prompt.empty()) ui.set_prompt(a.prompt);
    if (headless) {
      ui.max_tokens() = a.steps;
      ui.sampling().temperature = a.temp;
      ui.sampling().seed = uint64_t(a.seed);
    }
    worker.probe_backends();
    worker.load(a.f);
    // --compare BACKEND[,LUT]: the second side, with the first side's other flags.
    if (!a.compare.empty()) {
      const size_t comma = a.compare.find(',');
      ui.compare_flags().bf.backend = a.compare.substr(0, comma);
      ui.compare_flags().lut = comma == std::string::npos ? "auto" : a.compare.substr(comma + 1);
      ui.compare_steps() = a.steps;
    }
    enum class Phase { Loading, Generating, Comparing, Finishing } phase = Phase::Loading;
    int finishing_frames = 0;
    while (!glfwWindowShouldClose(window)) {
      if (headless)
        glfwPollEvents();
      else
        glfwWaitEventsTimeout(0.05);  // redraw at least 20 times a second: the panels are live
      ImGui_ImplOpenGL3_NewFrame();
      ImGui_ImplGlfw_NewFrame();
      ImGui::NewFrame();
      int fw = 0, fh = 0;
      glfwGetFramebufferSize(window, &fw, &fh);
      ui.draw(float(fw), float(fh));
      ImGui::Render();
      glViewport(0, 0, fw, fh);
      glClearColor(0.08f, 0.08f, 0.1f, 1.0f);
      glClear(GL_COLOR_BUFFER_BIT);
      ImGui_ImplOpenGL3_RenderDrawData(ImGui::GetDrawData());
      if (headless) {
        // Load, then generate, then draw the final state twice (ImGui settles layout in a frame) and keep it.
        if (phase == Phase::Loading && !worker.busy()) {
          if (worker.snapshot().model.loaded) {
            worker.generate(ui.request());
            phase = Phase::Generating;
          } else {
            phase = Phase::Finishing;
          }
        } else if (phase == Phase::Generating && !worker.busy()) {
          phase = Phase::Finishing;
          if (!a.compare.empty() && worker.snapshot().gen.error.empty()) {
            worker.compare(a.prompt, ui.compare_steps(), ui.compare_flags());
            phase = Phase::Comparing;
          }
        } else if (phase == Phase::Comparing && !worker.busy()) {
          phase = Phase::Finishing;
        } else if (phase == Phase::Finishing && ++finishing_frames == 3) {
          write_png(a.screenshot, fw, fh);
          write_result(a.screenshot, ui, fw, fh);
          const Snapshot& s = ui.shown();
          const std::string error = !s.model.error.empty() ? s.model.error : s.gen.error;
          if (!error.empty()) {
            std::fprintf(stderr, "mole-studio: error: %s\n", error.c_str());
            exit_code = 1;
          }
          break;
        }
      }
      glfwSwapBuffers(window);
      if (headless) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    worker.stop();
  }
  ImGui_ImplOpenGL3_Shutdown();
  ImGui_ImplGlfw_Shutdown();
  ImGui::DestroyContext();
  glfwDestroyWindow(window);
  glfwTerminate();
  return exit_code;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "mole-studio: load a MoLE model, generate, and watch speed, time per phase, the table's traffic, memory and "
      "the router's weights per token; compare two backends or placements"};
  Args a;
  add_run_flags(app, a.f);
  app.add_option("--prompt", a.prompt, "The prompt to start with (headless: the prompt to generate from)");
  app.add_option("--steps", a.steps, "Headless: tokens to generate")
      ->capture_default_str()
      ->check(number_in(1, 1 << 20));
  app.add_option("--temp", a.temp, "Headless: temperature; 0 = greedy")
      ->capture_default_str()
      ->check(number_in(0, 1e6));
  app.add_option("--seed", a.seed, "Headless: random seed")->capture_default_str()->check(number_in(0, 9e18));
  app.add_option("--screenshot", a.screenshot,
                 "Headless: run the window for --steps tokens of --prompt, write it as this PNG and the generated "
                 "text and ids as the .json beside it, and exit");
  app.add_option("--compare", a.compare,
                 "Headless: then compare the model on BACKEND[,LUT] (e.g. vulkan,host) with it, --steps greedy "
                 "steps of --prompt");
  app.add_option("--size", a.size, "Window size, WIDTHxHEIGHT")->capture_default_str();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  try {
    return run(a);
  } catch (const Error& e) {
    std::fprintf(stderr, "mole-studio: error: %s\n", e.what());
    return 1;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "mole-studio: error: out of memory\n");
    return 1;
  }
}
