// See cli_util.h.
#include "cli_util.h"

#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iomanip>
#include <sstream>

namespace recur::app {

namespace fs = std::filesystem;

void write_file(const fs::path& path, const std::string& text) { write_file_atomically(path.string(), text); }

std::string read_file(const fs::path& path) {
  std::ifstream f(path, std::ios::binary);
  RECUR_CHECK(f.good(), IO, "cannot open '", path.string(), "': ", std::strerror(errno));
  std::ostringstream s;
  s << f.rdbuf();
  return s.str();
}

std::string fixed(double v, int digits) {
  std::ostringstream s;
  s << std::fixed << std::setprecision(digits) << v;
  return s.str();
}

Device checked_device() {
  const Device dev = default_device();
  backend(dev);  // throws, naming the reason, when the device cannot be used
  return dev;
}

void check_out_writable(const fs::path& dir) {
  std::error_code ec;
  fs::path p = fs::absolute(dir, ec);
  RECUR_CHECK(!ec, IO, "--out '", dir.string(), "': ", ec.message());
  if (fs::exists(p, ec))
    RECUR_CHECK(fs::is_directory(p, ec), IO, "--out '", dir.string(), "' exists and is not a directory");
  while (!fs::exists(p, ec) && p.has_parent_path() && p != p.parent_path()) p = p.parent_path();
  RECUR_CHECK(fs::is_directory(p, ec), IO, "--out '", dir.string(), "': '", p.string(), "' is not a directory");
  RECUR_CHECK(::access(p.c_str(), W_OK | X_OK) == 0, IO, "cannot write to --out '", dir.string(), "': '",
              p.string(), "': ", std::strerror(errno), " (choose another --out)");
}

std::vector<std::string> existing_run_files(const fs::path& dir, const std::vector<std::string>& run_files) {
  std::vector<std::string> found;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return found;
  for (const std::string& f : run_files)
    if (fs::exists(dir / f, ec)) found.push_back(f);
  return found;
}

void remove_stale_temporaries(const fs::path& dir, const std::vector<std::string>& run_files) {
  std::error_code ec;
  for (const fs::directory_entry& e : fs::directory_iterator(dir, ec)) {
    const std::string f = e.path().filename().string();
    for (const std::string& run_file : run_files)
      if (f.rfind(run_file + ".tmp.", 0) == 0) fs::remove(e.path(), ec);
  }
}

std::string bundled_file(const std::string& name) {
  std::vector<std::string> dirs;
  if (const char* d = std::getenv("RECUR_DATA_DIR")) dirs.push_back(d);
#ifdef RECUR_SOURCE_DATA_DIR
  dirs.push_back(RECUR_SOURCE_DATA_DIR);
#endif
#ifdef RECUR_INSTALL_DATA_DIR
  dirs.push_back(RECUR_INSTALL_DATA_DIR);
#endif
  for (const std::string& d : dirs)
    if (fs::exists(fs::path(d) / name)) return (fs::path(d) / name).string();
  std::string tried;
  for (const std::string& d : dirs) tried += " " + d;
  RECUR_THROW(IO, "the bundled ", name, " is not in", tried, "; set RECUR_DATA_DIR or pass --data FILE");
}

}  // namespace recur::app
