// Helpers shared by the `recur` subcommands that train into a run directory
// (forecast.cpp, text.cpp).
#pragma once

#include <filesystem>
#include <string>

#include "recur/host/device.h"

namespace recur::app {

// The default device, checked usable (throws, naming the reason, when not).
Device checked_device();

// `dir` (the --out of a run) must be a directory we can create files in, or one we
// can create: checked before training, with the operating system's reason.
void check_out_writable(const std::filesystem::path& dir);

// A file bundled with recur (datasets/): looked for in RECUR_DATA_DIR, the source
// tree's datasets/, then the installed share/recur; IOError naming the places tried.
std::string bundled_file(const std::string& name);

// A whole file's bytes; IOError naming the file and the reason.
std::string read_file(const std::filesystem::path& path);

}  // namespace recur::app
