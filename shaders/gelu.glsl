// The exact (erf) GELU for shaders: gelu(x) = 0.5 * x * (1 + erf(x / sqrt(2))), in the operation order of cpu::gelu.
// GLSL has no erf: erf_f32 below is Sun's float erf (FreeBSD msun s_erff.c, as in musl). A C++ port evaluated in
// float32 over every float in [-6, 6] has max abs error 5.8e-8 against float64 erf (as std::erf(float)), and 1.4e-7
// with both exp() calls off by the largest error Vulkan allows (3 + 2|x| ulp).

// Coefficients from s_erff.c:
// ====================================================
// Copyright (C) 1993 by Sun Microsystems, Inc. All rights reserved.
//
// Developed at SunPro, a Sun Microsystems, Inc. business.
// Permission to use, copy, modify, and distribute this
// software is freely granted, provided that this notice
// is preserved.
// ====================================================
// Four ranges of |x|: [0, 0.84375) x + x * P(x^2)/Q(x^2); [0.84375, 1.25) erx + P(|x|-1)/Q(|x|-1);
// [1.25, 6) 1 - exp(-x^2 - 0.5625 + R(1/x^2)/S(1/x^2)) / |x| (two rational fits split at 1/0.35); [6, inf) 1.
float erf_f32(float v) {
  const float a = abs(v);
  float r;
  if (a < 0.84375) {
    const float z = v * v;
    const float p = 1.2837916613e-01 + z * (-3.2504209876e-01 + z * (-2.8481749818e-02 +
                    z * (-5.7702702470e-03 + z * -2.3763017452e-05)));
    const float q = 1.0 + z * (3.9791721106e-01 + z * (6.5022252500e-02 + z * (5.0813062117e-03 +
                    z * (1.3249473704e-04 + z * -3.9602282413e-06))));
    return v + v * (p / q);
  }
  if (a < 1.25) {
    const float s = a - 1.0;
    const float p = -2.3621185683e-03 + s * (4.1485610604e-01 + s * (-3.7220788002e-01 + s * (3.1834661961e-01 +
                    s * (-1.1089469492e-01 + s * (3.5478305072e-02 + s * -2.1663755178e-03)))));
    const float q = 1.0 + s * (1.0642088205e-01 + s * (5.4039794207e-01 + s * (7.1828655899e-02 +
                    s * (1.2617121637e-01 + s * (1.3637083583e-02 + s * 1.1984500103e-02)))));
    r = 8.4506291151e-01 + p / q;
  } else if (a < 6.0) {
    const float s = 1.0 / (a * a);
    float R, S;
    if (a < 1.0 / 0.35) {
      R = -9.8649440333e-03 + s * (-6.9385856390e-01 + s * (-1.0558626175e+01 + s * (-6.2375331879e+01 +
          s * (-1.6239666748e+02 + s * (-1.8460508728e+02 + s * (-8.1287437439e+01 + s * -9.8143291473e+00))))));
      S = 1.0 + s * (1.9651271820e+01 + s * (1.3765776062e+02 + s * (4.3456588745e+02 + s * (6.4538726807e+02 +
          s * (4.2900814819e+02 + s * (1.0863500214e+02 + s * (6.5702495575e+00 + s * -6.0424413532e-02)))))));
    } else {
      R = -9.8649431020e-03 + s * (-7.9928326607e-01 + s * (-1.7757955551e+01 + s * (-1.6063638306e+02 +
          s * (-6.3756646729e+02 + s * (-1.0250950928e+03 + s * -4.8351919556e+02)))));
      S = 1.0 + s * (3.0338060379e+01 + s * (3.2579251099e+02 + s * (1.5367296143e+03 + s * (3.1998581543e+03 +
          s * (2.5530502930e+03 + s * (4.7452853394e+02 + s * -2.2440952301e+01))))));
    }
    // exp(-a^2) as exp(-z^2) * exp((z - a)(z + a)) with z = a rounded to 11 mantissa bits, so z^2 is exact.
    const float z = uintBitsToFloat(floatBitsToUint(a) & 0xFFFFF000u);
    precise const float e = exp(-z * z - 0.5625) * exp((z - a) * (z + a) + R / S);
    r = 1.0 - e / a;
  } else {
    r = 1.0;
  }
  return v < 0.0 ? -r : r;
}

float gelu(float v) {
  return 0.5 * v * (1.0 + erf_f32(v * 0.70710678118654752));
}
