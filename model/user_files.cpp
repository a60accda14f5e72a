// path_kind, read_file and parse_json: see user_files.h.
#include "model/user_files.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <unordered_set>

#include "model/error.h"
#include "model/progress.h"

namespace mole {
namespace {

using nlohmann::json;

// A SAX pass that builds nothing: it checks the syntax, the nesting depth and (optionally) repeated top-level keys,
// in time linear in the text, before nlohmann builds the document.
class CheckingSax {
 public:
  explicit CheckingSax(bool track_top_keys) : track_top_keys_(track_top_keys) {}

  bool null() { return true; }
  bool boolean(bool) { return true; }
  bool number_integer(json::number_integer_t) { return true; }
  bool number_unsigned(json::number_unsigned_t) { return true; }
  bool number_float(json::number_float_t, const json::string_t&) { return true; }
  bool string(json::string_t&) { return true; }
  bool binary(json::binary_t&) { return true; }
  bool start_object(size_t) { return enter(); }
  bool start_array(size_t) { return enter(); }
  bool end_object() { return leave(); }
  bool end_array() { return leave(); }
  bool key(json::string_t& k) {
    if (track_top_keys_ && depth_ == 1 && repeated_.empty() && !top_keys_.insert(k).second) repeated_ = k;
    return true;
  }
  bool parse_error(size_t, const std::string&, const nlohmann::detail::exception& e) {
    error_ = e.what();
    return false;
  }

  bool too_deep() const { return too_deep_; }
  const std::string& error() const { return error_; }
  const std::string& repeated() const { return repeated_; }

 private:
  bool enter() {
    if (++depth_ > kMaxJsonDepth) too_deep_ = true;
    return !too_deep_;
  }
  bool leave() {
    depth_--;
    return true;
  }

  bool track_top_keys_;
  int depth_ = 0;
  bool too_deep_ = false;
  std::string error_;
  std::unordered_set<std::string> top_keys_;
  std::string repeated_;
};

std::string with_hint(const std::string& message, const std::string& hint) {
  return hint.empty() ? message : message + "; " + hint;
}

}  // namespace

PathKind path_kind(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::file_status st = fs::status(path, ec);
  if (st.type() == fs::file_type::not_found) return PathKind::Missing;
  if (ec) throw Error(path + ": cannot access: " + ec.message());
  if (st.type() == fs::file_type::regular) return PathKind::File;
  if (st.type() == fs::file_type::directory) return PathKind::Directory;
  return PathKind::Other;
}

std::string not_a_regular_file(const std::string& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) return "";
  if (S_ISLNK(st.st_mode) && ::stat(path.c_str(), &st) != 0) {
    if (errno != ENOENT) return "";  // a loop, say: path_kind() and open() say what
    std::error_code ec;
    return "a symbolic link to " + std::filesystem::read_symlink(path, ec).string() + ", which does not exist";
  }
  if (S_ISREG(st.st_mode)) return "";
  if (S_ISDIR(st.st_mode)) return "a directory";
  if (S_ISFIFO(st.st_mode)) return "a FIFO";
  if (S_ISSOCK(st.st_mode)) return "a socket";
  if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)) return "a device";
  return "not a regular file";
}

std::string read_file(const std::string& path, const std::string& what, bool streams) {
  if (!streams) {
    struct stat st {};
    if (::stat(path.c_str(), &st) == 0 && !S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode))
      throw Error(path + ": is " + not_a_regular_file(path) + ", not a regular file (expected " + what + ")");
  }
  // A stream (a FIFO, a terminal) is opened without blocking and waited on with poll, which looks at the interrupt
  // flag every 100 ms: a blocking open or read would restart after Ctrl-C or SIGTERM and wait on for a writer.
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | (streams ? O_NONBLOCK : 0));
  if (fd < 0) throw Error(path + ": cannot open " + what + ": " + std::strerror(errno));
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  struct stat st {};
  if (::fstat(fd, &st) != 0) throw Error(path + ": cannot stat " + what + ": " + std::strerror(errno));
  if (S_ISDIR(st.st_mode)) throw Error(path + ": is a directory (expected " + what + ")");
  if (S_ISREG(st.st_mode) && uint64_t(st.st_size) > kMaxTextFileBytes) {
    throw Error(path + ": " + what + " is " + std::to_string(st.st_size) + " bytes, more than mole reads (" +
                std::to_string(kMaxTextFileBytes >> 20) + " MiB)");
  }
  // Read to the end rather than trusting st_size: pipes and /proc files report 0, and a file may be growing.
  std::string out;
  if (S_ISREG(st.st_mode)) out.reserve(size_t(st.st_size));
  char buf[1 << 16];
  for (;;) {
    if (streams && !S_ISREG(st.st_mode)) {
      pollfd p{fd, POLLIN, 0};
      const int ready = ::poll(&p, 1, 100);
      if (interrupted()) throw Error(path + ": interrupted while waiting for " + what);
      if (ready == 0 || (ready < 0 && errno == EINTR)) continue;
      if (ready < 0) throw Error(path + ": cannot wait for " + what + ": " + std::strerror(errno));
    }
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n < 0) throw Error(path + ": cannot read " + what + ": " + std::strerror(errno));
    if (n == 0) break;
    if (out.size() + size_t(n) > kMaxTextFileBytes) {
      throw Error(path + ": " + what + " is more than mole reads (" + std::to_string(kMaxTextFileBytes >> 20) +
                  " MiB)");
    }
    out.append(buf, size_t(n));
  }
  return out;
}

json parse_json(std::string_view text, const std::string& source, const std::string& what, const std::string& hint,
                std::string* repeated_top_key) {
  CheckingSax sax(repeated_top_key != nullptr);
  const bool ok = json::sax_parse(text.begin(), text.end(), &sax);
  if (sax.too_deep()) {
    throw Error(with_hint(source + ": " + what + " nests arrays and objects more than " +
                              std::to_string(kMaxJsonDepth) + " levels deep, which no real file does",
                          hint.empty() ? "the file is corrupt" : hint));
  }
  if (!ok) throw Error(with_hint(source + ": " + what + " is not valid JSON (" + sax.error() + ")", hint));
  if (repeated_top_key) *repeated_top_key = sax.repeated();
  try {
    return json::parse(text.begin(), text.end());
  } catch (const json::exception& e) {  // the checking pass accepted it, so this is not expected
    throw Error(with_hint(source + ": " + what + " is not valid JSON (" + e.what() + ")", hint));
  }
}

json load_json_file(const std::string& path, const std::string& what) {
  return parse_json(read_file(path, what), path, what);
}

std::string output_target(const std::string& path, bool* in_place) {
  namespace fs = std::filesystem;
  std::error_code ec;
  // Link by link, so that a link to a name that does not exist yet leads to that name (a loop stops after 40).
  fs::path p = path;
  for (int i = 0; i < 40 && fs::is_symlink(fs::symlink_status(p, ec)); i++) {
    const fs::path to = fs::read_symlink(p, ec);
    if (ec) break;
    p = to.is_absolute() ? to : p.parent_path() / to;
  }
  const std::string target = p.lexically_normal().string();
  const fs::file_status st = fs::status(target, ec);
  *in_place = !ec && fs::exists(st) && !fs::is_regular_file(st) && !fs::is_directory(st);
  return target;
}

}  // namespace mole
