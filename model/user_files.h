// Reading the files a user hands mole (config.json, tokenizer.json, the shard index, a prompt file, a safetensors
// header): what is at a path without std::filesystem's throwing calls, whole-file reads whose errors say what is
// there instead (a directory, a symbolic-link loop), and JSON parsing with a nesting limit. Every failure is a
// mole::Error naming the path.
#pragma once

#include <cstddef>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace mole {

// JSON nests at most this deep. nlohmann parses without recursion, but copying, printing and comparing a document
// recurse once per level, so a file of 100,000 nested brackets would exhaust the stack. Real files need 3
// (config.json, a safetensors header) to 6 levels (tokenizer.json); serde_json, which Hugging Face's own readers
// use, also stops at 128.
constexpr int kMaxJsonDepth = 128;
// A text file read whole (a prompt, a JSON file) is at most this large: /dev/zero or a mistaken multi-GB file given
// to -f fails with a message instead of exhausting memory. The largest real tokenizer.json files are ~35 MB.
constexpr size_t kMaxTextFileBytes = size_t(256) << 20;

enum class PathKind { Missing, File, Directory, Other };

// What `path` names, following symbolic links. Missing covers a name that does not exist, a dangling link and a
// path through a non-directory; any other failure (a link loop, no permission, a name too long) throws Error
// "PATH: cannot access: REASON".
PathKind path_kind(const std::string& path);

// What is at `path` when it is there but is not a regular file: "a directory", "a FIFO", "a symbolic link to X,
// which does not exist", ...; empty for a regular file (through links) and for a name that is not there at all.
std::string not_a_regular_file(const std::string& path);

// The whole file at `path`; `what` says what it should be ("config.json", "prompt file"). Throws Error naming the
// path when it cannot be opened (with the reason), is a directory, cannot be read, or is over kMaxTextFileBytes;
// unless `streams` (a prompt: -f /dev/stdin, a FIFO), also when it is not a regular file, which a model's files
// always are (opening a FIFO would wait for a writer that never comes). A stream is waited on in steps that look at
// the interrupt flag (progress.h), so Ctrl-C or SIGTERM ends the wait with an Error.
std::string read_file(const std::string& path, const std::string& what, bool streams = false);

// Parses `text`, the content of `source` (a path or a flag). Throws Error "SOURCE: WHAT is not valid JSON (...)"
// or "SOURCE: WHAT nests ... deeper than 128 levels", each followed by "; HINT" when a hint is given. When
// `repeated_top_key` is given, it receives the first key that appears twice in the top-level object (nlohmann keeps
// only the last), or stays empty. Both checks are one linear pass before nlohmann builds the document.
nlohmann::json parse_json(std::string_view text, const std::string& source, const std::string& what,
                          const std::string& hint = "", std::string* repeated_top_key = nullptr);

// read_file (a regular file), then parse_json.
nlohmann::json load_json_file(const std::string& path, const std::string& what);

// Where a file that mole writes whole to `path` (finished beside it, then renamed over it) goes: `path` itself, or,
// when `path` is a symbolic link, the name the link leads to (so that the link stays a link and its target is what
// changes). `*in_place` is set when that name holds something other than a regular file or a directory (a device such
// as /dev/null, a FIFO): renaming a file over it would replace it, so it is written to directly instead.
std::string output_target(const std::string& path, bool* in_place);

}  // namespace mole
