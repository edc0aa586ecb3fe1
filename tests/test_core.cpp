// Errors, devices, tensors and the caching allocator: the runtime under the ops.
#include <cstdlib>
#include <thread>

#include "test_util.h"

namespace recur::test {
namespace {

template <class E, class F>
std::string message_of(F&& f) {
  try {
    f();
  } catch (const E& e) {
    return e.what();
  } catch (const std::exception& e) {
    return std::string("wrong exception type: ") + e.what();
  }
  return "no exception";
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

TEST(Errors, NameTheProblemStatementAndPlace) {
  const std::string m = message_of<ShapeError>([] { RECUR_CHECK(1 + 1 == 3, Shape, "two is ", 2); });
  EXPECT_TRUE(contains(m, "shape error: two is 2")) << m;
  EXPECT_TRUE(contains(m, "`1 + 1 == 3`")) << m;
  EXPECT_TRUE(contains(m, "test_core.cpp:")) << m;
  try {
    RECUR_THROW(OutOfMemory, "x");
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::OutOfMemory);
    EXPECT_EQ(e.message(), "x");
    EXPECT_GT(e.line(), 0);
  }
}

TEST(Devices, ParseAndPrint) {
  EXPECT_EQ(Device::parse("cpu"), Device::cpu());
  EXPECT_EQ(Device::parse(" CUDA "), Device::cuda(0));
  EXPECT_EQ(Device::parse("gpu"), Device::cuda(0));
  EXPECT_EQ(Device::parse("cuda:3"), Device::cuda(3));
  EXPECT_EQ(Device::cuda(2).str(), "cuda:2");
  for (const char* bad : {"", "tpu", "cuda:", "cuda:x", "cuda:-1", "cuda:1:2", "cuda:123456789"}) {
    const std::string m = message_of<ValueError>([&] { Device::parse(bad); });
    EXPECT_TRUE(contains(m, "unknown device")) << bad << ": " << m;
  }
}

TEST(Devices, DefaultIsCudaWhenPresentElseCpu) {
  const char* env = std::getenv("RECUR_DEVICE");
  if (env && *env) GTEST_SKIP() << "RECUR_DEVICE is set";
  EXPECT_EQ(default_device(), cuda_device_count() > 0 ? Device::cuda(0) : Device::cpu());
  set_default_device(Device::cpu());
  EXPECT_EQ(default_device(), Device::cpu());
  set_default_device(std::nullopt);
}

TEST(Devices, UnusableCudaDeviceIsAClearError) {
  const Device beyond = Device::cuda(cuda_device_count());
  const std::string m = message_of<DeviceError>([&] { Tensor::empty({2}, DType::f32, beyond); });
  EXPECT_TRUE(contains(m, beyond.str() + " requested")) << m;
  if (cuda_device_count() == 0) {
    EXPECT_TRUE(contains(m, cuda_unavailable_reason())) << m;
  }
  EXPECT_THROW(set_default_device(beyond), DeviceError);
}

TEST(Tensors, ShapesViewsAndCopies) {
  Random rng;
  const auto v = rng.floats(24);
  Tensor t = Tensor::from_vector(v, {2, 3, 4}, Device::cpu());
  EXPECT_EQ(t.numel(), 24);
  EXPECT_EQ(t.dim(-1), 4);
  EXPECT_EQ(t.nbytes(), 96u);
  EXPECT_EQ(t.str(), "Tensor[2, 3, 4] float32 cpu");
  EXPECT_EQ(t.to_vector<float>(), v);
  Tensor r = t.reshape({6, -1});
  EXPECT_EQ(r.shape(), (Shape{6, 4}));
  EXPECT_EQ(r.raw_data(), t.raw_data());  // a view
  Tensor s = r.slice(2, 4);
  EXPECT_EQ(s.shape(), (Shape{2, 4}));
  EXPECT_EQ(s.to_vector<float>(), std::vector<float>(v.begin() + 8, v.begin() + 16));
  Tensor c = t.to(Device::cpu());
  EXPECT_NE(c.raw_data(), t.raw_data());  // to() always copies
  s.copy_from(Tensor::full({8}, 5.0, DType::f32, Device::cpu()));
  EXPECT_EQ(t.to_vector<float>()[9], 5.0f);
  EXPECT_EQ(c.to_vector<float>()[9], v[9]);
}

TEST(Tensors, BadArgumentsAreClearErrors) {
  Tensor t = Tensor::zeros({2, 3}, DType::f32, Device::cpu());
  EXPECT_TRUE(contains(message_of<ShapeError>([&] { t.reshape({4, 2}); }), "cannot reshape [2, 3] (6 elements) to [4, 2]"));
  EXPECT_THROW(t.reshape({-1, -1}), ShapeError);
  EXPECT_THROW(t.slice(1, 3), ShapeError);
  EXPECT_THROW(t.dim(2), ShapeError);
  EXPECT_THROW(t.data<double>(), DTypeError);
  EXPECT_THROW(Tensor::from_vector(std::vector<float>(5), {2, 3}, Device::cpu()), ShapeError);
  EXPECT_THROW(Tensor::empty({2, -3}, DType::f32, Device::cpu()), ShapeError);
  EXPECT_THROW(t.copy_from(Tensor::zeros({7}, DType::f32, Device::cpu())), ShapeError);
  // Sizes that overflow are refused, never rounded into a tiny block.
  EXPECT_THROW(Tensor::empty({std::int64_t(1) << 62, 4}, DType::f32, Device::cpu()), ShapeError);
  EXPECT_THROW(Tensor::empty({std::int64_t(1) << 62}, DType::f32, Device::cpu()), OutOfMemoryError);
  EXPECT_THROW(Tensor::empty({(std::int64_t(1) << 61) - 1}, DType::f32, Device::cpu()), OutOfMemoryError);
  EXPECT_THROW(t.copy_from(Tensor::zeros({2, 3}, DType::f64, Device::cpu())), DTypeError);
  EXPECT_THROW(Tensor().to_vector<float>(), ValueError);
}

TEST(Ops, BadArgumentsAreClearErrors) {
  const Device cpu = Device::cpu();
  Tensor a = Tensor::zeros({3, 4}, DType::f32, cpu), b = Tensor::zeros({5, 6}, DType::f32, cpu);
  Tensor c = Tensor::zeros({3, 6}, DType::f32, cpu);
  std::string m = message_of<ShapeError>([&] { ops::gemm(a, b, c); });
  EXPECT_TRUE(contains(m, "gemm: inner dimensions differ: op(a) is 3x4")) << m;
  m = message_of<DTypeError>([&] { ops::add(a, Tensor::zeros({3, 4}, DType::f64, cpu)); });
  EXPECT_TRUE(contains(m, "'a' is float32 but 'b' is float64")) << m;
  m = message_of<ShapeError>([&] { ops::add(a, Tensor::zeros({3}, DType::f32, cpu)); });
  EXPECT_TRUE(contains(m, "nor a suffix")) << m;
  Tensor sq = Tensor::zeros({3, 3}, DType::f32, cpu);
  m = message_of<ValueError>([&] { ops::gemm(sq, sq, sq.reshape({3, 3})); });
  EXPECT_TRUE(contains(m, "overlaps")) << m;
  EXPECT_THROW(ops::mean(Tensor::zeros({3, 0}, DType::f32, cpu), 1), ValueError);
  EXPECT_EQ(ops::sum(Tensor::zeros({3, 0}, DType::f32, cpu), 1).to_vector<float>(), std::vector<float>(3, 0.f));
  EXPECT_THROW(ops::sum(a, 2), ShapeError);
  EXPECT_THROW(ops::relu(Tensor()), ValueError);

  LstmStep s;
  s.xproj = Tensor::zeros({2, 8}, DType::f32, cpu);
  s.hproj = Tensor::zeros({2, 8}, DType::f32, cpu);
  s.c_prev = Tensor::zeros({2, 3}, DType::f32, cpu);
  s.h = Tensor::zeros({2, 3}, DType::f32, cpu);
  s.c = Tensor::zeros({2, 3}, DType::f32, cpu);
  m = message_of<ShapeError>([&] { ops::lstm_step(s); });
  EXPECT_TRUE(contains(m, "lstm_step: 'xproj' has shape [2, 8], expected [2, 12]")) << m;
  s.xproj = Tensor::zeros({2, 12}, DType::f32, cpu);
  s.hproj = Tensor::zeros({2, 12}, DType::f32, cpu);
  s.h = s.c_prev;
  m = message_of<ValueError>([&] { ops::lstm_step(s); });
  EXPECT_TRUE(contains(m, "output 'h' overlaps input 'c_prev'")) << m;
}

// A raw allocator that counts and can be told to fail.
class CountingRaw final : public RawAllocator {
 public:
  int* allocs;
  int* frees;
  std::size_t fail_above;
  CountingRaw(int* a, int* f, std::size_t fail) : allocs(a), frees(f), fail_above(fail) {}
  void* allocate(std::size_t bytes) noexcept override {
    if (bytes > fail_above) return nullptr;
    ++*allocs;
    return std::malloc(bytes);
  }
  void deallocate(void* p, std::size_t) noexcept override {
    ++*frees;
    std::free(p);
  }
  std::string free_memory_note() const override { return "the test device reports 0 B free"; }
};

TEST(Allocator, CachesRoundsAndReportsOutOfMemory) {
  int allocs = 0, frees = 0;
  CachingAllocator alloc("test:0", std::make_unique<CountingRaw>(&allocs, &frees, std::size_t(64) << 20));
  std::size_t b1 = 0, b2 = 0;
  void* p = alloc.allocate(1000, b1);
  if (alloc.caching()) {
    EXPECT_EQ(b1, 1024u);
    alloc.release(p, b1);
    EXPECT_EQ(alloc.stats().cached, 1024u);
    void* q = alloc.allocate(900, b2);  // served from the cache
    EXPECT_EQ(q, p);
    EXPECT_EQ(allocs, 1);
    EXPECT_EQ(alloc.stats().cache_hits, 1u);
    alloc.release(q, b2);
  } else {
    EXPECT_EQ(b1, 1000u);  // sanitizer builds: exact sizes, no cache
    alloc.release(p, b1);
  }
  EXPECT_EQ(CachingAllocator::round_size(3u << 20), 4u << 20);
  EXPECT_EQ(alloc.stats().in_use, 0u);
  EXPECT_GE(alloc.stats().peak_in_use, 1000u);

  const std::string m = message_of<OutOfMemoryError>([&] { std::size_t b; alloc.allocate(std::size_t(100) << 20, b); });
  EXPECT_TRUE(contains(m, "test:0: could not allocate 100.00 MiB")) << m;
  EXPECT_TRUE(contains(m, "the test device reports 0 B free")) << m;
  EXPECT_EQ(alloc.stats().cached, 0u);  // emptied before giving up

  alloc.set_limit(4096);
  EXPECT_THROW({ std::size_t b; alloc.allocate(8192, b); }, OutOfMemoryError);
  alloc.empty_cache();
  EXPECT_EQ(allocs, frees);
}

TEST(Allocator, TensorsReturnMemoryToTheirDevice) {
  CachingAllocator& a = backend(Device::cpu()).allocator();
  const std::size_t before = a.stats().in_use;
  {
    Tensor t = Tensor::empty({1024, 1024}, DType::f32, Device::cpu());
    Tensor view = t.slice(0, 10);
    t = Tensor();
    EXPECT_GE(a.stats().in_use, before + (4u << 20));  // the view keeps it alive
  }
  EXPECT_EQ(a.stats().in_use, before);
}

TEST(Allocator, ThreadSafe) {
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i)
    threads.emplace_back([] {
      for (int k = 0; k < 200; ++k) Tensor::empty({k + 1, 33}, DType::f32, Device::cpu());
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(backend(Device::cpu()).allocator().stats().in_use, 0u);
}

TEST(SystemInfo, ReportsCpuAndGpuState) {
  const SystemInfo info = system_info();
  EXPECT_GT(info.cpu_threads, 0);
  EXPECT_FALSE(info.blas.empty());
  const std::string text = format_system_info(info);
  EXPECT_TRUE(contains(text, "CPU: ")) << text;
  if (info.gpus.empty())
    EXPECT_TRUE(contains(text, info.cuda_compiled ? "GPU: none found" : "CUDA: not built in")) << text;
  else
    EXPECT_TRUE(contains(text, "GPU cuda:0: ")) << text;
}

}  // namespace
}  // namespace recur::test
