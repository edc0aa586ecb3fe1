// bench_bucketing: padding under length bucketing on the IMDB train lengths
// (datasets/imdb_train_lengths.txt.gz, 20,000 reviews), against padding every
// review to one length, and the time one epoch's plan takes on each device.
// One CSV row per (device, configuration); epoch 0, seed 1.
//   bench_bucketing [--lengths FILE] [--repeats N] [--device cpu|cuda:N]
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "bench_util.h"
#include "recur/recur.h"

namespace {
using namespace recur;

struct Config {
  std::int64_t max_length, batch, max_tokens, pad_multiple;
};

void run(Device dev, const std::vector<std::int64_t>& lengths, int repeats) {
  for (const Config& c : {Config{0, 32, 0, 8}, Config{0, 64, 0, 8}, Config{500, 32, 0, 8},
                          Config{500, 64, 0, 8}, Config{500, 64, 0, 1}, Config{200, 64, 0, 8},
                          Config{500, 512, 64 * 500, 8}, Config{0, 1024, 64 * 1838, 8}}) {
    for (bool bucket : {true, false}) {
      BucketingOptions o;
      o.bucket = bucket;
      o.seed = 1;
      o.batch_size = c.batch;
      o.max_length = c.max_length;
      o.max_tokens = c.max_tokens;
      o.pad_multiple = c.pad_multiple;
      o.window = 100 * std::min<std::int64_t>(c.batch, 64);
      o.device = dev;
      const LengthBucketSampler s(lengths, o);
      const PaddingStats st = s.stats(s.epoch(0));
      const double ms = 1e3 * bench::median_seconds(dev, repeats, [&] { (void)s.epoch(0); });
      std::printf("%s,%s,%lld,%lld,%lld,%lld,%lld,%lld,%lld,%lld,%.4f,%lld,%.4f,%.1f,%.3f\n",
                  dev.str().c_str(), bucket ? "bucketed" : "one_length", (long long)c.max_length,
                  (long long)c.batch, (long long)c.max_tokens, (long long)c.pad_multiple,
                  (long long)st.batches, (long long)st.samples, (long long)st.real_steps,
                  (long long)st.padded_steps, st.padded_fraction(),
                  (long long)st.one_length_padded_steps, st.one_length_padded_fraction(),
                  st.reduction(), ms);
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::string path = RECUR_DATA_DIR "/imdb_train_lengths.txt.gz";
  int repeats = 5;
  std::vector<Device> devices{Device::cpu()};
  for (int i = 0; i < cuda_device_count(); ++i) devices.push_back(Device::cuda(i));
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--lengths") && i + 1 < argc) path = argv[++i];
    else if (!std::strcmp(argv[i], "--repeats") && i + 1 < argc) repeats = std::max(1, std::atoi(argv[++i]));
    else if (!std::strcmp(argv[i], "--device") && i + 1 < argc) devices = {Device::parse(argv[++i])};
    else {
      std::fprintf(stderr, "usage: bench_bucketing [--lengths FILE] [--repeats N] [--device D]\n");
      return 2;
    }
  }
  try {
    const std::vector<std::int64_t> lengths = read_int_lines(path);
    std::printf("# %s: %zu samples\n", path.c_str(), lengths.size());
    if (cuda_device_count() == 0) std::printf("# no GPU found: %s\n", cuda_unavailable_reason().c_str());
    std::printf("device,mode,max_length,batch,max_tokens,pad_multiple,batches,samples,real_steps,"
                "padded_steps,padded_fraction,one_length_padded_steps,one_length_padded_fraction,"
                "reduction,epoch_plan_ms\n");
    for (Device d : devices) {
      if (d.is_cuda()) require_device(d);
      run(d, lengths, repeats);
    }
  } catch (const Error& e) {
    std::fprintf(stderr, "bench_bucketing: %s\n", e.what());
    return 1;
  }
  return 0;
}
