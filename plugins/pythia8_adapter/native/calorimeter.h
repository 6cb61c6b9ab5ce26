// The toy_tau_decay calorimeter in C++: the expected number of 5 MeV deposits per voxel of a final
// state (each showering particle's Poisson(E f / 5 MeV) deposits spread by its 3-D Gaussian shower
// integrated over a 35 x 35 x 20 grid), line for line the Python Calorimeter.expected_counts of
// etalumis_toy_tau_decay (shape parameters read as variances, the default). The tests check both
// give the same numbers on the same particles.
#pragma once

#include <cmath>
#include <cstdlib>
#include <vector>

namespace calorimeter {

constexpr int NX = 35, NY = 35, NZ = 20;
constexpr double LOWS[3] = {-3.0, -3.0, 4.0}, HIGHS[3] = {3.0, 3.0, 15.0};
constexpr double QUANTUM = 0.005;  // GeV per deposit

struct Shower {
  double sampling_fraction;
  double sigma[3];           // sqrt of the shape parameters (variances)
};
const Shower EM{0.5, {std::sqrt(0.2), std::sqrt(0.2), std::sqrt(0.5)}};
const Shower HADRONIC{0.25, {std::sqrt(0.2), std::sqrt(0.2), std::sqrt(1.0)}};

// e and gamma shower electromagnetically, the hadrons of the toy's table hadronically; the rest
// (muons, neutrinos, anything else) deposits nothing.
inline const Shower* shower_type(int pdg) {
  switch (std::abs(pdg)) {
    case 11: case 22: return &EM;
    case 111: case 211: case 321: case 130: case 310: case 221: return &HADRONIC;
    default: return nullptr;
  }
}

inline bool visible(int pdg) {
  int a = std::abs(pdg);
  return a != 12 && a != 14 && a != 16;
}

// scipy.special.ndtr, same branches (the standard normal CDF).
inline double ndtr(double a) {
  const double x = a * M_SQRT1_2, z = std::fabs(x);
  double y;
  if (z < M_SQRT1_2) return 0.5 + 0.5 * std::erf(x);
  y = 0.5 * std::erfc(z);
  return x > 0 ? 1.0 - y : y;
}

// numpy.linspace(lo, hi, n + 1).
inline std::vector<double> edges(int axis, int n) {
  std::vector<double> e(n + 1);
  const double step = (HIGHS[axis] - LOWS[axis]) / n;
  for (int i = 0; i <= n; ++i) e[i] = i * step + LOWS[axis];
  e[n] = HIGHS[axis];
  return e;
}

// Whether the particle reaches the calorimeter at all: visible, showering, flying forward.
inline const Shower* showering(int pdg, double px, double py, double pz) {
  const Shower* t = shower_type(pdg);
  if (t == nullptr || !visible(pdg)) return nullptr;
  const double p = std::sqrt(px * px + py * py + pz * pz);
  return (p <= 0.0 || pz <= 0.0) ? nullptr : t;
}

// Adds rate times the voxel probabilities of a particle's shower to rates (row-major x, y, z).
inline void add_shower(std::vector<double>& rates, const Shower& t, double px, double py, double pz,
                       double rate) {
  if (rate <= 0.0) return;
  static const std::vector<double> ex = edges(0, NX), ey = edges(1, NY), ez = edges(2, NZ);
  const double p = std::sqrt(px * px + py * py + pz * pz), pt = std::hypot(px, py);
  const double cos_p = pt > 0.0 ? px / pt : 1.0, sin_p = pt > 0.0 ? py / pt : 0.0;
  const double cos_t = pz / p, sin_t = pt / p;
  const double* s = t.sigma;
  const double d = LOWS[2] / cos_t + 0.5 * (2.0 * 5.0 * s[2]);
  const double u[3] = {sin_t * cos_p, sin_t * sin_p, cos_t};
  const double rot[3][3] = {{cos_p * cos_t, -sin_p, cos_p * sin_t},
                            {sin_p * cos_t, cos_p, sin_p * sin_t},
                            {-sin_t, 0.0, cos_t}};
  double cov[3][3];
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) {
      double c = 0.0;
      for (int k = 0; k < 3; ++k) c += rot[i][k] * (s[k] * s[k]) * rot[j][k];
      cov[i][j] = c;
    }
  double mean[3];
  for (int i = 0; i < 3; ++i) mean[i] = d * u[i];
  const double sz = std::sqrt(cov[2][2]);
  double fz[NZ], fx[NZ][NX], fy[NZ][NY];
  for (int k = 0; k < NZ; ++k) {
    fz[k] = ndtr((ez[k + 1] - mean[2]) / sz) - ndtr((ez[k] - mean[2]) / sz);
    const double zc = 0.5 * (ez[k + 1] + ez[k]);
    for (int axis = 0; axis < 2; ++axis) {
      const double slope = cov[axis][2] / cov[2][2];
      const double sd = std::sqrt(std::fmax(cov[axis][axis] - slope * cov[axis][2], 1e-300));
      const double m = mean[axis] + slope * (zc - mean[2]);
      const std::vector<double>& e = axis == 0 ? ex : ey;
      double* f = axis == 0 ? fx[k] : fy[k];
      for (int i = 0; i < (axis == 0 ? NX : NY); ++i)
        f[i] = ndtr((e[i + 1] - m) / sd) - ndtr((e[i] - m) / sd);
    }
  }
  for (int i = 0; i < NX; ++i)
    for (int j = 0; j < NY; ++j)
      for (int k = 0; k < NZ; ++k) rates[(i * NY + j) * NZ + k] += rate * (fz[k] * fx[k][i] * fy[k][j]);
}

// The expected deposit counts per voxel of a final state (ids; rows E, px, py, pz). A particle
// leaves N ~ Poisson(E f / QUANTUM) deposits, each in voxel v with probability P_v: by Poisson
// thinning and superposition the voxel counts are independent Poisson(sum over particles of
// E f / QUANTUM * P_v), with the numbers of deposits and their positions marginalised out.
inline std::vector<double> expected_counts(const std::vector<double>& pdg, const std::vector<double>& p4) {
  std::vector<double> rates(NX * NY * NZ, 0.0);
  for (size_t i = 0; i < pdg.size(); ++i) {
    const double* q = &p4[4 * i];
    if (const Shower* s = showering(static_cast<int>(pdg[i]), q[1], q[2], q[3]))
      add_shower(rates, *s, q[1], q[2], q[3], q[0] * s->sampling_fraction / QUANTUM);
  }
  return rates;
}

}  // namespace calorimeter
