// Helpers shared by the `recur` commands that train models into run
// directories (forecast.cpp, imdb.cpp, text.cpp): files, the --out checks, the callback
// that claims the run directory at the first epoch's end, number formatting.
#pragma once

#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "recur/recur.h"

namespace recur::app {

// Atomically: a temporary name, fsync, rename (safetensors.h).
void write_file(const std::filesystem::path& path, const std::string& text);
// The whole file; IOError with the operating system's reason.
std::string read_file(const std::filesystem::path& path);
// v with `digits` digits after the point.
std::string fixed(double v, int digits = 3);
// The default device, checked usable (throws, naming the reason, otherwise).
Device checked_device();
// A file bundled with recur (datasets/): looked for in RECUR_DATA_DIR, the source
// tree's datasets/, then the installed share/recur; IOError naming the places tried.
std::string bundled_file(const std::string& name);

// --out must be a directory we can create files in (or one we can create):
// checked before training, with the operating system's reason.
void check_out_writable(const std::filesystem::path& dir);
// Which of `run_files` exist in dir (none when dir is not a directory).
std::vector<std::string> existing_run_files(const std::filesystem::path& dir,
                                            const std::vector<std::string>& run_files);
// Removes, in dir, the temporary files of a process killed while writing one of
// run_files (write_file_atomically's "<name>.tmp.<pid>.<n>").
void remove_stale_temporaries(const std::filesystem::path& dir, const std::vector<std::string>& run_files);

// The first thing a run writes into --out (its first epoch's end, or an
// interruption) is done by `claim`; until then nothing in --out is touched.
class ClaimRunDir final : public Callback {
 public:
  explicit ClaimRunDir(std::function<void()> claim) : claim_(std::move(claim)) {}
  void on_epoch_end(int, const Logs&, TrainableModel&) override { claim(); }
  void on_train_end(TrainableModel&, bool interrupted) override {
    if (interrupted) claim();
  }
  bool rank_zero_only() const override { return true; }  // mpirun: rank 0 writes the run

 private:
  void claim() {
    if (done_) return;
    claim_();
    done_ = true;
  }
  std::function<void()> claim_;
  bool done_ = false;
};

}  // namespace recur::app
