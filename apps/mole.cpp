// The mole CLI: run, logits, tokenize, detokenize, convert, info, synth, devices, bench, parity.
// User errors (mole::Error, bad flags) become a message on stderr and exit code 1 (2 for flag errors).
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>

#include "apps/backends.h"
#include "apps/mole_commands.h"
#include "apps/mole_common.h"
#include "model/checkpoint_io.h"
#include "model/error.h"
#include "model/parallel.h"
#include "model/progress.h"
#include "model/session.h"

using namespace mole;
using namespace mole::app;

namespace {

struct RunArgs {
  RunFlags f;
  std::string prompt, prompt_file, prompt_ids;
  int n_predict = 128;
  SamplingParams sp;
  int64_t seed = -1;
  std::vector<std::string> stops;
  bool ignore_eos = false, json = false, no_display_prompt = false;
  std::string router_trace;  // --router-trace FILE
};

int cmd_run(RunArgs& a) {
  if (a.prompt.empty() + a.prompt_file.empty() + a.prompt_ids.empty() != 2)
    throw Error("give exactly one of -p TEXT, -f FILE (-f - reads standard input) or --prompt-ids 1,2,3");
  if (!a.prompt_file.empty()) a.prompt = read_file_arg(a.prompt_file, "-f");
  // The trace file: a path that cannot be written fails before the model loads; the file itself is opened (and an
  // existing one emptied) only once the run has passed its checks, so a run that fails leaves it as it was.
  std::optional<std::ofstream> trace;
  const bool tracing = !a.router_trace.empty();
  if (tracing) check_writable(a.router_trace, "--router-trace");
  LoadOptions lo = load_options(a.f, a.prompt_ids.empty());
  lo.engine.router_probs = tracing;
  Session session(lo);
  LoadedModel* m = &session.model();
  if (tracing && !m->cfg.is_mole()) throw Error("--router-trace: " + m->dir + " is a dense model; it has no router");
  std::vector<int32_t> ids;
  if (!a.prompt_ids.empty()) {
    ids = parse_ids(a.prompt_ids, "--prompt-ids");
    for (int32_t id : ids)
      if (id >= m->cfg.vocab_size)
        throw Error("--prompt-ids: token id " + std::to_string(id) + " is outside the model's vocabulary [0, " +
                    std::to_string(m->cfg.vocab_size) + ")");
  } else {
    ids = session.encode(a.prompt, a.prompt_file.empty() ? std::string("-p") : "-f " + a.prompt_file);
  }
  // Checked before anything is printed: a run that cannot hold its prompt prints nothing.
  if (int64_t(ids.size()) > m->engine->max_context())
    throw Error("the prompt has " + std::to_string(ids.size()) + " tokens but the context holds " +
                std::to_string(m->engine->max_context()) + "; shorten it, or raise -c/--ctx-size");
  if (tracing) {
    trace.emplace(a.router_trace, std::ios::trunc);
    if (!*trace) throw Error("--router-trace " + a.router_trace + ": cannot open it for writing");
  }

  GenerateOptions go;
  go.max_new_tokens = a.n_predict;
  go.sampling = a.sp;
  go.sampling.seed = a.seed >= 0 ? uint64_t(a.seed) : uint64_t(std::random_device{}()) ^ uint64_t(getpid());
  if (!a.ignore_eos) {
    if (m->cfg.eos_token_id) go.eos_ids.push_back(*m->cfg.eos_token_id);
    if (m->tokenizer && m->tokenizer->eos_id()) go.eos_ids.push_back(*m->tokenizer->eos_id());
  }
  go.stop_strings = a.stops;
  if (!a.json && !a.no_display_prompt) {
    go.on_prefilled = [&] {
      std::string shown = a.prompt_ids.empty() ? a.prompt : (m->tokenizer ? m->tokenizer->decode(ids) : "");
      std::fputs(shown.c_str(), stdout);
      std::fflush(stdout);
    };
  }
  auto print = [&](const std::string& s) {
    if (a.json || s.empty()) return;
    std::fputs(s.c_str(), stdout);
    std::fflush(stdout);
  };
  const int L = m->cfg.num_layers, E = m->cfg.num_experts;
  // Ctrl-C stops the generation after the current token: what was generated stays printed, with the summary.
  std::stop_source stop;
  auto on_token = [&](const TokenEvent& ev) {
    if (!m->tokenizer) {
      if (!a.json) std::printf("%d ", ev.id), std::fflush(stdout);
    } else {
      print(ev.piece);
    }
    if (trace) {
      nlohmann::json router = nlohmann::json::array();
      for (int l = 0; l < L; l++)
        router.push_back(std::vector<float>(ev.router.begin() + l * E, ev.router.begin() + (l + 1) * E));
      nlohmann::json line = {
          {"index", ev.index}, {"id", ev.id}, {"position", ev.position}, {"input_id", ev.input_id}, {"router", router}};
      if (m->tokenizer) line["text"] = m->tokenizer->decode({ev.id});
      *trace << line.dump() << "\n";
    }
    if (interrupted()) stop.request_stop();
  };
  GenerateResult r = session.generate(ids, go, on_token, stop.get_token());
  if (interrupted()) r.stop_reason = "interrupted";
  print(r.tail);
  if (trace) {
    trace->close();
    if (!*trace) throw Error("--router-trace " + a.router_trace + ": writing failed (disk full?)");
  }
  const std::string& text = r.text;
  if (a.f.profile) {
    print_profile(m->backend->profile(), m->backend->info().name);
    const BackendInfo info = m->backend->info();
    if (!info.lut_read.empty())
      std::fprintf(stderr, "lut read     %s (--lut-read copy|direct|auto)\n", info.lut_read.c_str());
    if (!info.lut_table_note.empty())
      std::fprintf(stderr, "lut table    %s%s\n", info.lut_table_note.c_str(),
                   info.name == "vulkan" ? " (--tune lut-import=auto|off)" : "");
    if (info.lut_rows_moved > 0)
      std::fprintf(stderr, "lut rows     %llu moved, %.1f MiB\n", (unsigned long long)info.lut_rows_moved,
                   double(info.lut_bytes_moved) / 1048576.0);
    if (!info.host_wait.empty())
      std::fprintf(stderr, "host wait    %s (--tune host-wait=auto|spin|block)\n", info.host_wait.c_str());
    if (!info.reductions.empty())
      std::fprintf(stderr, "reductions   %s (--tune subgroups=0|1)\n", info.reductions.c_str());
    if (!info.execution.empty()) std::fprintf(stderr, "execution    %s\n", info.execution.c_str());
  }
  if (a.json) {
    nlohmann::json j = {{"prompt_ids", ids},
                        {"ids", r.tokens},
                        {"stop_reason", r.stop_reason},
                        {"backend", m->backend->info().name},
                        {"lut", placement_name(m->placement)},
                        {"timings",
                         {{"load_s", m->load_seconds},
                          {"prompt_tokens", r.prompt_tokens},
                          {"prefill_s", r.prefill_seconds},
                          {"prefill_tokens_per_s", r.prefill_tokens_per_s()},
                          {"generated_tokens", r.tokens.size()},
                          {"decode_s", r.decode_seconds},
                          {"decode_tokens_per_s", r.decode_tokens_per_s()}}}};
    if (m->tokenizer) j["text"] = text;
    // How the backend ran the steps where it has a choice (--tune persistent, chain), as `mole bench` reports it.
    if (const std::string e = m->backend->info().execution; !e.empty()) j["execution"] = e;
    std::cout << j.dump() << "\n";
  } else {
    std::printf("\n");
    if (!a.f.quiet) {
      char prefill[64];
      if (r.prefilled)
        std::snprintf(prefill, sizeof prefill, "%.1f tokens/s", r.prefill_tokens_per_s());
      else
        std::snprintf(prefill, sizeof prefill, "stopped after %.2fs", r.prefill_seconds);
      std::fprintf(
          stderr,
          "\n[%s | lut %s] load %.2fs | prompt %d tokens, %s | generated %zu tokens, %.1f tokens/s | stop: %s\n",
          m->backend->info().name.c_str(), placement_name(m->placement), m->load_seconds, r.prompt_tokens, prefill,
          r.tokens.size(), r.decode_tokens_per_s(), r.stop_reason.c_str());
    }
  }
  return interrupted() ? 128 + interrupt_signal() : 0;
}

void add_sampling_flags(CLI::App* c, RunArgs& a) {
  // Every value finite and in range (a NaN temperature or penalty would make every probability NaN).
  c->add_option("--temp", a.sp.temperature, "Temperature; 0 = greedy")->capture_default_str()->check(number_in(0, 1e6));
  c->add_option("--top-k", a.sp.top_k, "Keep the K most likely tokens; 0 = off")
      ->capture_default_str()
      ->check(number_in(0, INT32_MAX));
  c->add_option("--top-p", a.sp.top_p, "Nucleus sampling threshold; 1 = off")
      ->capture_default_str()
      ->check(number_in(0.0, 1.0));
  c->add_option("--min-p", a.sp.min_p, "Drop tokens below min-p times the top probability; 0 = off")
      ->capture_default_str()
      ->check(number_in(0.0, 1.0));
  c->add_option("--repeat-penalty", a.sp.repeat_penalty, "Penalty for recent tokens; 1 = off")
      ->capture_default_str()
      ->check(number_in(1e-6, 1e6));
  c->add_option("--repeat-last-n", a.sp.repeat_last_n, "How many recent tokens the penalty covers; -1 = all")
      ->capture_default_str()
      ->check(number_in(-1, INT32_MAX, "-1 = all"));
  c->add_option("-s,--seed", a.seed, "Random seed; -1 = random")
      ->capture_default_str()
      ->check(number_in(-1, 9e18, "-1 = random"));
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"mole: run Mixture-of-Lookup-Experts language models (CPU reference, Vulkan, CUDA)"};
  app.require_subcommand(1);
  app.set_help_all_flag("--help-all", "Show help for every subcommand");
  app.set_version_flag("--version", std::string("mole, built from commit ") + build_commit(),
                       "Print the commit mole was built from and exit");

  RunArgs run;
  auto* c_run = app.add_subcommand("run", "Generate text from a prompt");
  add_run_flags(*c_run, run.f);
  c_run->add_option("-p,--prompt", run.prompt, "Prompt text (UTF-8)")->check(non_empty("the prompt's text"));
  c_run->add_option("-f,--file", run.prompt_file, "Read the prompt from a file (- for standard input)")
      ->check(non_empty("a file"));
  c_run->add_option("--prompt-ids", run.prompt_ids, "Prompt as token ids, e.g. 1,2,3 (no tokenizer needed)")
      ->check(non_empty("token ids"));
  c_run->add_option("-n,--n-predict", run.n_predict, "Tokens to generate; -1 = until EOS or the context is full")
      ->capture_default_str()
      ->check(number_in(-1, INT32_MAX, "-1 = until end of sequence or a full context; else a count of tokens"));
  add_sampling_flags(c_run, run);
  c_run->add_option("--stop", run.stops, "Stop when this text appears (repeatable); it is not printed")
      ->check(non_empty("the text to stop at"));
  c_run->add_flag("--ignore-eos", run.ignore_eos, "Keep generating past the end-of-sequence token");
  c_run->add_flag("--no-display-prompt", run.no_display_prompt, "Print only the generated text");
  c_run->add_flag("--json", run.json,
                  "Print generated ids, text and timings (and how the backend ran its steps, where it has a choice) as "
                  "one JSON object");
  c_run
      ->add_option("--router-trace", run.router_trace,
                   "Write one JSON line per generated token to FILE: its id, and the router's weights "
                   "(layers x experts) of the step that chose it")
      ->check(non_empty("a file name"));

  LogitsArgs lg;
  auto* c_logits = app.add_subcommand("logits",
                                      "Print float32 logits for every input position as JSON (a NaN or infinity as "
                                      "NaN, Infinity or -Infinity, as Python's json module writes them)");
  add_run_flags(*c_logits, lg.f);
  c_logits->add_option("--ids", lg.ids, "Input token ids, e.g. 1,2,3")->required();
  c_logits->add_flag("--json", lg.json, "JSON output (the only format; accepted for clarity)");

  TokenizeArgs tk;
  auto* c_tok = app.add_subcommand("tokenize", "Text to token ids");
  c_tok->add_option("-m,--model", tk.model, "Model directory holding tokenizer.json");
  c_tok->add_option("--tokenizer", tk.tokenizer, "A tokenizer.json file");
  c_tok->add_option("--text", tk.text, "Text to encode")->each([&tk](const std::string&) { tk.text_given = true; });
  c_tok->add_option("--file", tk.file, "File whose contents to encode (- for standard input)");
  c_tok->add_flag("--json", tk.json, "Print {\"ids\": [...], \"tokens\": [...]}");
  TokenizeArgs dt;
  auto* c_detok = app.add_subcommand("detokenize", "Token ids to text");
  c_detok->add_option("-m,--model", dt.model, "Model directory holding tokenizer.json");
  c_detok->add_option("--tokenizer", dt.tokenizer, "A tokenizer.json file");
  c_detok->add_option("--ids", dt.text, "Token ids, e.g. 1,2,3")->required();
  c_detok->add_flag("--json", dt.json, "Print {\"text\": ...}");

  ConvertArgs cv;
  auto* c_conv = app.add_subcommand("convert", "Reparameterize a training-form checkpoint into inference form");
  c_conv->add_option("-m,--model", cv.in, "Training-form checkpoint directory")->required();
  c_conv->add_option("-o,--output", cv.out, "Output directory (must not exist, or be empty)")
      ->required()
      ->check(non_empty("a directory"));
  c_conv->add_option("--dtype", cv.dtype, "Table precision: f32, f16 or bf16")
      ->capture_default_str()
      ->check(CLI::IsMember({"f32", "f16", "bf16"}));
  add_backend_flags(*c_conv, cv.bf);  // --backend: where the experts are evaluated (default cpu)
  c_conv
      ->add_option("-t,--threads", cv.threads,
                   "CPU threads (default: one per core this process may use: its CPU affinity and cgroup quota)")
      ->check(number_in(0, kMaxThreads, "0 = one per core this process may use"));
  c_conv->add_flag("-q,--quiet", cv.quiet, "No progress bar");

  InfoArgs in;
  auto* c_info = app.add_subcommand("info", "Shapes, parameter counts, table size and dtypes of a checkpoint");
  c_info->add_option("-m,--model", in.model, "Model directory (default: the built-in model)");
  c_info->add_flag("--json", in.json, "JSON output");

  SynthArgs sy;
  auto* c_synth = app.add_subcommand("synth", "Write a random-weight checkpoint in the published layout");
  c_synth
      ->add_option("--preset", sy.preset,
                   "tiny, dense-160m, mole-160m-4e, mole-160m-16e, dense-410m, "
                   "mole-410m-4e, mole-410m-16e or mole-1b-4e")
      ->capture_default_str();
  c_synth->add_option("-o,--output", sy.out, "Output directory")->required()->check(non_empty("a directory"));
  c_synth->add_option("--form", sy.form, "auto (dense presets: dense, else infer), train, infer or dense")
      ->check(CLI::IsMember({"auto", "train", "infer", "dense"}))
      ->capture_default_str();
  c_synth->add_option("--dtype", sy.dtype, "Weight dtype: f32, f16 or bf16")
      ->capture_default_str()
      ->check(CLI::IsMember({"f32", "f16", "bf16"}));
  c_synth->add_option("--table-dtype", sy.table_dtype, "Table dtype of the inference form")
      ->capture_default_str()
      ->check(CLI::IsMember({"f32", "f16", "bf16"}));
  c_synth->add_option("--seed", sy.seed, "Random seed")->capture_default_str()->check(number_in(0, 1.8e19));
  c_synth->add_option("--set", sy.set, "JSON object merged into config.json, e.g. '{\"num_key_value_heads\": 1}'");
  c_synth->add_flag("-q,--quiet", sy.quiet, "No progress bar");

  auto* c_dev = app.add_subcommand("devices", "List backends and devices, with why a backend is unavailable");

  BenchArgs bn;
  auto* c_bench = app.add_subcommand("bench", "Measure tokenizer MB/s and prefill/decode tokens/s, side by side");
  add_run_flags(*c_bench, bn.f);
  c_bench->remove_option(c_bench->get_option("--profile"));  // it times each op alone, not what bench measures
  c_bench->get_option("--ctx-size")
      ->description(
          "Context length in tokens (default and least: --prompt-tokens plus -n, at most "
          "max_position_embeddings)");
  c_bench->add_option("--prompt-tokens", bn.prompt_tokens, "Prompt length for the prefill measurement")
      ->capture_default_str()
      ->check(number_in(1, kMaxContext));
  c_bench->add_option("-n,--n-predict", bn.n_predict, "Decode steps to time")
      ->capture_default_str()
      ->check(number_in(1, kMaxContext));
  c_bench
      ->add_option("--placements", bn.placements,
                   "LUT placements to compare, e.g. device,host,disk; one that cannot run (does not fit, say) "
                   "is a row that says why. On a GPU, host runs both with copied rows and with rows read in "
                   "place; when one decodes more than 2% faster, both run again")
      ->capture_default_str();
  c_bench->add_option("--text-file", bn.text_file, "English text for the tokenizer benchmark (default: built-in)");
  c_bench->add_flag("--json", bn.json, "JSON output");
  c_bench->add_option("-o,--output", bn.output, "Also write the results as JSON to this file")
      ->check(non_empty("a file name"));
  c_bench->add_flag("--record", bn.record,
                    "When both rounds agree that copied or in-place reads of --lut host are faster, record it for "
                    "--lut auto on this device (in ~/.cache/mole); without it, bench changes nothing");

  ParityArgs pa;
  auto* c_parity =
      app.add_subcommand("parity", "Check backends op by op (and a model's logits with -m) against the CPU reference");
  c_parity->add_option("--backend", pa.backends,
                       "A backend to check; repeat for several (default: every available GPU backend)");
  add_backend_flags(*c_parity, pa.bf, false);
  c_parity
      ->add_option("--op", pa.op,
                   "Only this op's cases (embed, matmul, norm_matmul, attention (with the KV store), "
                   "router_lut, router_probs, gather, argmax)")
      ->check(non_empty("an op's name"));
  c_parity->add_option("-m,--model", pa.model, "Also compare this model's logits and greedy tokens, every placement");
  c_parity->add_option("--prompt-tokens", pa.tokens, "Prompt length for -m")
      ->capture_default_str()
      ->check(CLI::Range(1, 4096));
  c_parity->add_flag("--json", pa.json, "JSON output");

  if (argc == 1) {  // `mole` alone: what it can do, as `git` alone shows, rather than "a subcommand is required"
    std::fputs(app.help().c_str(), stderr);
    return 2;
  }
  if (argc > 1 && argv[1][0] != '-') {
    bool known = false;
    for (const auto* sub : app.get_subcommands({})) known = known || sub->get_name() == argv[1];
    if (!known) {
      std::fprintf(stderr, "mole: error: unknown command '%s' (run `mole --help` for the list)\n", argv[1]);
      return 2;
    }
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // CLI11 prints the message (or the help) and has its own exit codes (104, 105, ...); a malformed command line
    // is documented as 2.
    const int rc = app.exit(e);
    if (rc != 0) note_environment_defaults(e.what(), std::vector<std::string>(argv + 1, argv + argc));
    return rc == 0 ? 0 : 2;
  }
  install_interrupt_handler();
  int rc = 0;
  try {
    if (c_run->parsed()) rc = cmd_run(run);
    if (c_logits->parsed()) rc = cmd_logits(lg);
    if (c_tok->parsed()) rc = cmd_tokenize(tk);
    if (c_detok->parsed()) rc = cmd_detokenize(dt);
    if (c_conv->parsed()) rc = cmd_convert(cv);
    if (c_info->parsed()) rc = cmd_info(in);
    if (c_synth->parsed()) rc = cmd_synth(sy);
    if (c_dev->parsed()) rc = cmd_devices();
    if (c_bench->parsed()) rc = cmd_bench(bn);
    if (c_parity->parsed()) rc = cmd_parity(pa);
  } catch (const Error& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "mole: error: %s\n", e.what());
    rc = interrupted() ? 128 + interrupt_signal() : 1;  // as a shell reports a process its signal ended
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "mole: error: out of memory\n");
    rc = 1;
  }
  // Output that did not reach its file (a full disk, a closed terminal) is a failure, never exit 0 with a cut-off
  // file: stdout is flushed here and its error state checked (std::cout writes through it).
  std::cout.flush();
  errno = 0;
  if (std::fflush(stdout) != 0 || std::ferror(stdout)) {
    std::fprintf(stderr, "mole: error: writing to standard output failed%s%s; the output is incomplete\n",
                 errno ? ": " : "", errno ? std::strerror(errno) : "");
    if (rc == 0) rc = 1;
  }
  return rc;
}
