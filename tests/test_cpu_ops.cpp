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

TEST_CASE("cpu matmul: weights read in place convert every F16 and BF16 value as the scalar conversion does") {
  // Every 16-bit pattern as a weight (NaNs and infinities too), read by decode's products (one or two rows of x) in
  // place, with AVX2's vector conversions where the CPU has them; the reference converts each with f16_to_f32 or
  // bf16_to_f32 (model/half.h) and takes cpu::dot. K = 9: a full vector and the scalar tail.
  std::mt19937 rng(12);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const int64_t K = 9, N = 65536 / 8;
  for (const bool avx2 : {false, true}) {
    if (cpu::use_avx2(avx2) != avx2) continue;
    for (DType dt : {DType::F16, DType::BF16}) {
      for (int64_t T : {1, 2}) {
        CAPTURE(avx2);
        CAPTURE(int(dt));
        CAPTURE(T);
        // Row n holds the patterns 8n .. 8n+7 in its vector lanes and a random finite value in its tail.
        std::vector<uint16_t> bits(size_t(N * K));
        std::vector<float> values(bits.size());
        for (int64_t n = 0; n < N; n++) {
          for (int64_t k = 0; k < K; k++) {
            const uint16_t h = k < 8              ? uint16_t(8 * n + k)
                               : dt == DType::F16 ? f32_to_f16(normal(rng))
                                                  : f32_to_bf16(normal(rng));
            bits[size_t(n * K + k)] = h;
            values[size_t(n * K + k)] = dt == DType::F16 ? f16_to_f32(h) : bf16_to_f32(h);
          }
        }
        TensorView w;
        w.dtype = dt;
        w.shape = {N, K};
        w.data = reinterpret_cast<const uint8_t*>(bits.data());
        w.nbytes = bits.size() * 2;
        std::vector<float> x(size_t(T * K)), y(size_t(T * N));
        for (float& v : x) v = normal(rng);
        cpu::matmul(x.data(), w, T, K, N, y.data());
        int wrong = 0;
        for (int64_t t = 0; t < T; t++) {
          for (int64_t n = 0; n < N; n++) {
            const float want = cpu::dot(x.data() + t * K, values.data() + n * K, K), got = y[size_t(t * N + n)];
            wrong += std::isnan(want) ? !std::isnan(got) : std::memcmp(&got, &want, 4) != 0;
          }
        }
        CHECK(wrong == 0);
      }
    }
  }
  cpu::use_avx2(true);
}
