#include <algorithm>
#include <memory>
#include <stdexcept>
#include <vector>

#include <openssl/evp.h>

#include "mesh/tasks/task_types.hpp"

namespace mesh::tasks {

namespace {

struct MdDeleter {
  void operator()(EVP_MD* md) const { EVP_MD_free(md); }
};
struct MdCtxDeleter {
  void operator()(EVP_MD_CTX* ctx) const { EVP_MD_CTX_free(ctx); }
};

// Fits a typical 32-48 KiB L1 data cache, where crossing off multiples is cheapest.
constexpr std::uint32_t kSegmentBytes = 32 * 1024;

std::uint32_t isqrt(std::uint32_t n) {
  std::uint32_t root = 0;
  while (static_cast<std::uint64_t>(root + 1) * (root + 1) <= n) {
    ++root;
  }
  return root;
}

// Odd primes up to `limit` (at most 10^4 here), by a plain sieve: small enough not to matter.
std::vector<std::uint32_t> odd_primes_up_to(std::uint32_t limit) {
  std::vector<bool> composite(limit + 1);
  std::vector<std::uint32_t> primes;
  for (std::uint32_t n = 3; n <= limit; n += 2) {
    if (composite[n]) {
      continue;
    }
    primes.push_back(n);
    for (std::uint64_t multiple = std::uint64_t{n} * n; multiple <= limit; multiple += 2 * n) {
      composite[multiple] = true;
    }
  }
  return primes;
}

}  // namespace

std::array<std::uint8_t, 32> sha256_rounds(std::string_view data, std::uint32_t rounds) {
  if (rounds == 0) {
    throw std::invalid_argument("sha256_rounds: rounds must be at least 1");
  }
  // One explicit fetch and one reused context: SHA256() and EVP_sha256() look the algorithm up
  // on every call, which makes 10^7 rounds about three times slower.
  const std::unique_ptr<EVP_MD, MdDeleter> md(EVP_MD_fetch(nullptr, "SHA256", nullptr));
  const std::unique_ptr<EVP_MD_CTX, MdCtxDeleter> ctx(EVP_MD_CTX_new());
  if (!md || !ctx) {
    throw std::runtime_error("sha256_rounds: OpenSSL has no SHA-256");
  }
  std::array<std::uint8_t, 32> digest{};
  const auto hash = [&](const void* bytes, std::size_t size) {
    unsigned int length = 0;
    if (EVP_DigestInit_ex2(ctx.get(), md.get(), nullptr) != 1 ||
        EVP_DigestUpdate(ctx.get(), bytes, size) != 1 ||
        EVP_DigestFinal_ex(ctx.get(), digest.data(), &length) != 1 || length != digest.size()) {
      throw std::runtime_error("sha256_rounds: OpenSSL digest failed");
    }
  };
  hash(data.data(), data.size());
  for (std::uint32_t round = 1; round < rounds; ++round) {
    hash(digest.data(), digest.size());
  }
  return digest;
}

std::uint32_t count_primes_below(std::uint32_t below) {
  if (below <= 2) {
    return 0;
  }
  // Only odd numbers are stored: byte i stands for 2i + 1, and odd n < below means i < below / 2.
  const std::uint32_t end_index = below / 2;
  const std::vector<std::uint32_t> sieving_primes = odd_primes_up_to(isqrt(below - 1));
  // Index of the next odd multiple to cross off for each sieving prime; starting at p * p
  // leaves the prime itself unmarked.
  std::vector<std::uint32_t> next_index;
  next_index.reserve(sieving_primes.size());
  for (const std::uint32_t p : sieving_primes) {
    next_index.push_back(p * p / 2);
  }

  std::vector<std::uint8_t> segment(kSegmentBytes);
  std::uint32_t count = 1;  // the prime 2
  for (std::uint32_t low = 1; low < end_index; low += kSegmentBytes) {
    const std::uint32_t high = std::min(low + kSegmentBytes, end_index);
    std::fill(segment.begin(), segment.end(), std::uint8_t{1});
    for (std::size_t k = 0; k < sieving_primes.size(); ++k) {
      // Multiples of p step by 2p, which is p in index space.
      const std::uint32_t step = sieving_primes[k];
      std::uint32_t index = next_index[k];
      for (; index < high; index += step) {
        segment[index - low] = 0;
      }
      next_index[k] = index;
    }
    count += static_cast<std::uint32_t>(
        std::count(segment.begin(), segment.begin() + (high - low), std::uint8_t{1}));
  }
  return count;
}

std::string to_hex(const std::array<std::uint8_t, 32>& digest) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string hex;
  hex.reserve(digest.size() * 2);
  for (const std::uint8_t byte : digest) {
    hex += kDigits[byte >> 4];
    hex += kDigits[byte & 0x0f];
  }
  return hex;
}

}  // namespace mesh::tasks
