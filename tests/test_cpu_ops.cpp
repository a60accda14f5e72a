// The CPU reference's matrix product (model/cpu_ops.h): computed in tiles, with AVX2 where the CPU has it, each value
// must be the plain dot product of its two rows, bit for bit, for every dtype, at every edge of the tiles.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "model/cpu_ops.h"
#include "model/half.h"

using namespace mole;

namespace {

// A (N, K) weight tensor of dtype dt with values from rng, and the same values as float32.
struct Weight {
  std::vector<uint8_t> bytes;
  std::vector<float> values;
  TensorView view;
};

Weight make_weight(DType dt, int64_t N, int64_t K, std::mt19937& rng) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  Weight w;
  w.values.resize(size_t(N * K));
  w.bytes.resize(size_t(N * K) * dtype_size(dt));
  for (size_t i = 0; i < w.values.size(); i++) {
    const float v = normal(rng);
    if (dt == DType::F32) {
      std::memcpy(w.bytes.data() + 4 * i, &v, 4);
      w.values[i] = v;
    } else {
      const uint16_t h = dt == DType::F16 ? f32_to_f16(v) : f32_to_bf16(v);
      std::memcpy(w.bytes.data() + 2 * i, &h, 2);
      w.values[i] = dt == DType::F16 ? f16_to_f32(h) : bf16_to_f32(h);
    }
  }
  w.view.dtype = dt;
  w.view.shape = {N, K};
  w.view.data = w.bytes.data();
  w.view.nbytes = w.bytes.size();
  return w;
}

}  // namespace

TEST_CASE("cpu matmul: every value is the dot product of its rows, bit for bit, with and without AVX2") {
  std::mt19937 rng(11);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  int paths = 0;
  for (const bool avx2 : {false, true}) {
    if (cpu::use_avx2(avx2) != avx2) continue;  // a CPU without AVX2 runs the baseline only
    paths++;
    for (DType dt : {DType::F32, DType::F16, DType::BF16}) {
      for (int64_t T : {1, 2, 3, 5}) {
        for (int64_t N : {1, 3, 4, 5, 9, 40}) {
          for (int64_t K : {1, 7, 8, 9, 64, 67}) {
            CAPTURE(avx2);
            CAPTURE(int(dt));
            CAPTURE(T);
            CAPTURE(N);
            CAPTURE(K);
            const Weight w = make_weight(dt, N, K, rng);
            std::vector<float> x(size_t(T * K)), y0(size_t(T * N)), y(size_t(T * N)), acc(size_t(T * N));
            for (float& v : x) v = normal(rng);
            for (float& v : y0) v = normal(rng);
            cpu::matmul(x.data(), w.view, T, K, N, y.data(), false);
            acc = y0;
            cpu::matmul(x.data(), w.view, T, K, N, acc.data(), true);
            int wrong = 0, wrong_acc = 0;
            for (int64_t t = 0; t < T; t++) {
              for (int64_t n = 0; n < N; n++) {
                const float want = cpu::dot(x.data() + t * K, w.values.data() + n * K, K);
                const size_t i = size_t(t * N + n);
                wrong += std::memcmp(&y[i], &want, 4) != 0;
                const float want_acc = y0[i] + want;
                wrong_acc += std::memcmp(&acc[i], &want_acc, 4) != 0;
              }
            }
            CHECK(wrong == 0);
            CHECK(wrong_acc == 0);
          }
        }
      }
    }
  }
  cpu::use_avx2(true);  // back to the default: AVX2 where the CPU has it
  CHECK(paths >= 1);
}
