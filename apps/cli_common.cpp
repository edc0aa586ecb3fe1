// Shared CLI helpers: see cli_common.h.
#include "cli_common.h"

#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <vector>

#include "recur/common/error.h"
#include "recur/host/backend.h"

namespace recur::app {

namespace fs = std::filesystem;

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

std::string read_file(const fs::path& path) {
  std::ifstream f(path, std::ios::binary);
  RECUR_CHECK(f.good(), IO, "cannot open '", path.string(), "': ", std::strerror(errno));
  std::ostringstream s;
  s << f.rdbuf();
  return s.str();
}

}  // namespace recur::app
