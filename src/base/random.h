// Random: where Conclave draws randomness.
//
// Code that needs randomness (election timeouts, jitter, fault choices) takes
// a Random&. SeededRandom is xoshiro256** seeded through splitmix64: the same
// seed gives the same sequence on every platform and compiler, which is what
// lets a failing simulation replay from its seed. RealRandom seeds one from
// the operating system.
//
// Thread-safety: none; each thread or each simulated node owns its own.
#pragma once

#include <cstdint>

namespace conclave {

class Random {
 public:
  virtual ~Random() = default;
  // A uniformly distributed 64-bit value.
  virtual uint64_t Next() = 0;

  // Uniform in [0, n). n must be > 0. Unbiased (rejection sampling).
  uint64_t Uniform(uint64_t n);
  // Uniform in [lo, hi]. lo <= hi.
  int64_t Range(int64_t lo, int64_t hi);
  // True with probability 1/n (n > 0).
  bool OneIn(uint64_t n) { return Uniform(n) == 0; }
  // True with probability p in [0, 1].
  bool Bernoulli(double p);
  // Uniform in [0, 1).
  double NextDouble();
};

class SeededRandom final : public Random {
 public:
  explicit SeededRandom(uint64_t seed);
  uint64_t Next() override;
  uint64_t seed() const { return seed_; }

 private:
  uint64_t seed_;
  uint64_t s_[4];
};

class RealRandom final : public Random {
 public:
  RealRandom();
  uint64_t Next() override { return inner_.Next(); }

 private:
  SeededRandom inner_;
};

}  // namespace conclave
