#include <cstdint>
#include <string>
#include <vector>

#include <openssl/evp.h>
#include <catch2/catch.hpp>

#include "mesh/tasks/task_types.hpp"

namespace mesh::tasks {
namespace {

// Deliberately the slow, obvious way (a fresh one-shot digest per round), so it shares no code
// path with sha256_rounds() beyond the primitive itself.
std::string reference_sha256_rounds(const std::string& data, int rounds) {
  std::vector<unsigned char> bytes(data.begin(), data.end());
  std::array<std::uint8_t, 32> digest{};
  for (int round = 0; round < rounds; ++round) {
    unsigned int length = 0;
    REQUIRE(EVP_Digest(bytes.data(), bytes.size(), digest.data(), &length, EVP_sha256(), nullptr) ==
            1);
    bytes.assign(digest.begin(), digest.end());
  }
  return to_hex(digest);
}

std::vector<std::uint32_t> naive_prime_counts_below(std::uint32_t limit) {
  std::vector<std::uint32_t> counts(limit + 1, 0);
  for (std::uint32_t n = 2; n < limit; ++n) {
    bool prime = true;
    for (std::uint32_t d = 2; d * d <= n; ++d) {
      if (n % d == 0) {
        prime = false;
        break;
      }
    }
    counts[n + 1] = counts[n] + (prime ? 1 : 0);
  }
  return counts;
}

}  // namespace

TEST_CASE("sha256_rounds matches published and independently computed digests") {
  // Rounds 2, 3 and 1000 from `openssl dgst -sha256 -binary` chains; 10^7 from Python hashlib.
  CHECK(to_hex(sha256_rounds("abc", 1)) ==
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  CHECK(to_hex(sha256_rounds("abc", 2)) ==
        "4f8b42c22dd3729b519ba6f68d2da7cc5b2d606d05daed5ad5128cc03e6c6358");
  CHECK(to_hex(sha256_rounds("abc", 3)) ==
        "f2a778f1a6ed3d5bc59a5d79104c598f3f07093f240ca4e91333fb09ed4f36da");
  CHECK(to_hex(sha256_rounds("abc", 1000)) ==
        "fc8a6b86a13f71cd9a67f558ab6fd82a3dd89186163a017ed8051acf6d3f8f99");
  CHECK(to_hex(sha256_rounds("", 1)) ==
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  CHECK(to_hex(sha256_rounds("", 5)) ==
        "9ff42bc5a042d3c79a61d7cb6769408fe13b1e5fc30e01e19a100e79109ed688");
  CHECK(to_hex(sha256_rounds("h\xc3\xa9llo w\xc3\xb6rld", 10)) ==
        "d9d2a64db16902ad8bee2be5dcf5c54afb446541b2e908aa7e503295422b0fa1");
  CHECK(to_hex(sha256_rounds(std::string(65536, 'x'), 100)) ==
        "82cc44866f45fb8dda2eeeb1cd3a1431c2488335c7b63601aa9208ef11efe9d5");
}

TEST_CASE("sha256_rounds agrees with a naive digest loop") {
  for (const std::string& data : {std::string(), std::string("abc"), std::string(1000, '\0')}) {
    for (const int rounds : {1, 2, 7, 64, 333}) {
      CAPTURE(data.size(), rounds);
      CHECK(to_hex(sha256_rounds(data, static_cast<std::uint32_t>(rounds))) ==
            reference_sha256_rounds(data, rounds));
    }
  }
}

TEST_CASE("sha256_rounds at the maximum round count", "[slow]") {
  CHECK(to_hex(sha256_rounds("abc", 10'000'000)) ==
        "1df0811d8d70902c6458bd25d03329930360a93524dd45bfbefb0d39a5b5944a");
}

TEST_CASE("sha256_rounds rejects zero rounds") {
  CHECK_THROWS_AS(sha256_rounds("abc", 0), std::invalid_argument);
}

TEST_CASE("count_primes_below known values") {
  CHECK(count_primes_below(0) == 0);
  CHECK(count_primes_below(1) == 0);
  CHECK(count_primes_below(2) == 0);
  CHECK(count_primes_below(3) == 1);
  CHECK(count_primes_below(4) == 2);
  CHECK(count_primes_below(100) == 25);
  CHECK(count_primes_below(1000) == 168);
  CHECK(count_primes_below(1'000'000) == 78498);
  CHECK(count_primes_below(10'000'000) == 664579);
}

TEST_CASE("count_primes_below at the maximum", "[slow]") {
  CHECK(count_primes_below(100'000'000) == 5761455);
}

TEST_CASE("count_primes_below agrees with trial division for every below up to 2000") {
  const std::vector<std::uint32_t> expected = naive_prime_counts_below(2000);
  for (std::uint32_t below = 2; below <= 2000; ++below) {
    CAPTURE(below);
    REQUIRE(count_primes_below(below) == expected[below]);
  }
}

TEST_CASE("count_primes_below is exact around segment boundaries") {
  // A segment covers 2^16 numbers; compare against a plain sieve just around each edge.
  constexpr std::uint32_t kLimit = 4 * 65536 + 16;
  std::vector<bool> composite(kLimit, false);
  std::vector<std::uint32_t> prefix(kLimit + 1, 0);
  for (std::uint32_t n = 2; n < kLimit; ++n) {
    if (!composite[n]) {
      for (std::uint64_t m = std::uint64_t{n} * n; m < kLimit; m += n) {
        composite[m] = true;
      }
    }
    prefix[n + 1] = prefix[n] + (composite[n] ? 0 : 1);
  }
  for (std::uint32_t edge = 65536; edge < kLimit; edge += 65536) {
    for (std::uint32_t below = edge - 8; below <= edge + 8; ++below) {
      CAPTURE(below);
      CHECK(count_primes_below(below) == prefix[below]);
    }
  }
}

TEST_CASE("to_hex is lowercase and zero-padded") {
  std::array<std::uint8_t, 32> digest{};
  digest[0] = 0x0a;
  digest[31] = 0xff;
  CHECK(to_hex(digest) == "0a" + std::string(60, '0') + "ff");
}

}  // namespace mesh::tasks
