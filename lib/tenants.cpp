// Tenants: the key table (keys file, SHA-256 digests, constant-time lookup, model scope).
#include "vllm_router/tenants.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <algorithm>
#include <cstring>
#include <ctime>

#include "config_reader.h"
#include "http_util.h"

VLLM_ROUTER_BEGIN_NAMESPACE

namespace {

using Digest = std::array<unsigned char, 32>;

Digest sha256(std::string_view text) {
  // Fetched once: an implicit fetch per call costs more than the hash of a short key.
  static EVP_MD* const md = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  Digest out{};
  unsigned int size = 0;
  EVP_Digest(text.data(), text.size(), out.data(), &size, md, nullptr);
  return out;
}

int hex_value(char c) noexcept {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool parse_digest(std::string_view hex, Digest& out) noexcept {
  if (hex.size() != 64) return false;
  for (std::size_t i = 0; i < 32; ++i) {
    const int hi = hex_value(hex[2 * i]);
    const int lo = hex_value(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return false;
    out[i] = static_cast<unsigned char>(hi * 16 + lo);
  }
  return true;
}

// "*" matches any run of characters (backtracking on the last star: linear for our sizes).
// The literal head before the first star is compared at once: a scope is checked on every
// request, and its patterns are mostly names or `prefix*`.
bool glob_match(std::string_view pattern, std::string_view text) noexcept {
  const std::size_t first_star = pattern.find('*');
  if (first_star == std::string_view::npos) return pattern == text;
  if (text.size() < first_star || text.compare(0, first_star, pattern.substr(0, first_star)) != 0) return false;
  if (first_star + 1 == pattern.size()) return true;
  std::size_t p = first_star, t = first_star, star = std::string_view::npos, mark = 0;
  while (t < text.size()) {
    if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      mark = t;
    } else if (p < pattern.size() && pattern[p] == text[t]) {
      ++p;
      ++t;
    } else if (star != std::string_view::npos) {
      p = star + 1;
      t = ++mark;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

// RFC 3339 in UTC ("2027-01-01T00:00:00Z") to Unix seconds; -1 when malformed.
std::int64_t parse_utc(std::string_view text) {
  if (text.size() != 20 || text[4] != '-' || text[7] != '-' || text[10] != 'T' || text[13] != ':' ||
      text[16] != ':' || (text[19] != 'Z' && text[19] != 'z')) {
    return -1;
  }
  auto num = [&](std::size_t at, std::size_t len) {
    int v = 0;
    for (std::size_t i = at; i < at + len; ++i) {
      if (text[i] < '0' || text[i] > '9') return -1;
      v = v * 10 + (text[i] - '0');
    }
    return v;
  };
  std::tm tm{};
  tm.tm_year = num(0, 4) - 1900;
  tm.tm_mon = num(5, 2) - 1;
  tm.tm_mday = num(8, 2);
  tm.tm_hour = num(11, 2);
  tm.tm_min = num(14, 2);
  tm.tm_sec = num(17, 2);
  if (tm.tm_year < 70 || tm.tm_mon < 0 || tm.tm_mon > 11 || tm.tm_mday < 1 || tm.tm_mday > 31 || tm.tm_hour < 0 ||
      tm.tm_hour > 23 || tm.tm_min < 0 || tm.tm_min > 59 || tm.tm_sec < 0 || tm.tm_sec > 60) {
    return -1;
  }
  return static_cast<std::int64_t>(timegm(&tm));
}

}  // namespace

bool ApiKey::allows_model(std::string_view model) const noexcept {
  if (models.empty()) return true;
  return std::any_of(models.begin(), models.end(), [&](const std::string& p) { return glob_match(p, model); });
}

std::string sha256_hex(std::string_view key) {
  static constexpr char kHex[] = "0123456789abcdef";
  const Digest d = sha256(key);
  std::string out(64, '0');
  for (std::size_t i = 0; i < 32; ++i) {
    out[2 * i] = kHex[d[i] >> 4];
    out[2 * i + 1] = kHex[d[i] & 15];
  }
  return out;
}

KeyTable::KeyTable(std::vector<ApiKey> keys) : keys_(std::move(keys)) {
  by_digest_.resize(keys_.size());
  for (std::uint32_t i = 0; i < by_digest_.size(); ++i) by_digest_[i] = i;
  std::sort(by_digest_.begin(), by_digest_.end(),
            [&](std::uint32_t a, std::uint32_t b) { return keys_[a].sha256 < keys_[b].sha256; });
}

const ApiKey* KeyTable::find(std::string_view presented) const noexcept {
  if (presented.empty() || keys_.empty()) return nullptr;
  // The search runs on digests, which a client cannot steer byte by byte; the final compare is
  // constant-time.
  const Digest d = sha256(presented);
  auto it = std::lower_bound(by_digest_.begin(), by_digest_.end(), d,
                             [&](std::uint32_t i, const Digest& v) { return keys_[i].sha256 < v; });
  if (it == by_digest_.end()) return nullptr;
  const ApiKey& k = keys_[*it];
  return CRYPTO_memcmp(k.sha256.data(), d.data(), d.size()) == 0 ? &k : nullptr;
}

const ApiKey* KeyTable::find_bearer(std::string_view authorization) const noexcept {
  constexpr std::string_view kBearer = "bearer ";
  if (authorization.size() <= kBearer.size() || !detail::iequals(authorization.substr(0, kBearer.size()), kBearer)) {
    return nullptr;
  }
  return find(detail::trim(authorization.substr(kBearer.size())));
}

std::shared_ptr<const KeyTable> KeyTable::from_plain(const std::vector<std::string>& keys) {
  std::vector<ApiKey> out;
  for (const std::string& k : keys) {
    ApiKey key;
    key.id = "key-" + std::to_string(out.size() + 1);
    key.sha256 = sha256(k);
    key.admin = true;
    out.push_back(std::move(key));
  }
  return std::make_shared<const KeyTable>(std::move(out));
}

Result<std::shared_ptr<const KeyTable>> KeyTable::parse(std::string_view json) {
  using namespace detail::config;
  simdjson::padded_string padded(json);
  od::parser parser;
  od::document doc;
  if (auto code = parser.iterate(padded).get(doc); code != simdjson::SUCCESS) return json_error(code, "");
  od::value root;
  if (auto code = doc.get_value().get(root); code != simdjson::SUCCESS) return json_error(code, "");
  std::vector<ApiKey> keys;
  auto r = for_each_field(root, "", {"keys"}, [&](std::string_view, od::value& v, const std::string& path) {
    return for_each_element(v, path, "an array of keys", [&](od::value& e, const std::string& kpath) -> Result<void> {
      ApiKey key;
      bool has_digest = false;
      auto fr = for_each_field(
          e, kpath, {"id", "sha256", "models", "rpm", "tpm", "max_concurrent", "expires", "admin"},
          [&](std::string_view name, od::value& f, const std::string& fpath) -> Result<void> {
            if (name == "id") return read_into(f, fpath, key.id, true);
            if (name == "sha256") {
              auto text = read_string(f, fpath);
              if (!text) return std::move(text).error();
              if (!parse_digest(*text, key.sha256)) {
                return config_error(fpath, "expected 64 hex digits (the key's SHA-256: vllm-router --hash-key)");
              }
              has_digest = true;
              return {};
            }
            if (name == "models") return read_string_array(f, fpath, key.models);
            if (name == "rpm") return read_into(f, fpath, 0, key.rpm);
            if (name == "tpm") return read_into(f, fpath, 0, key.tpm);
            if (name == "max_concurrent") return read_into(f, fpath, 0, key.max_concurrent);
            if (name == "admin") return read_bool(f, fpath, key.admin);
            // expires
            auto text = read_string(f, fpath);
            if (!text) return std::move(text).error();
            key.expires_at = parse_utc(*text);
            if (key.expires_at < 0) return config_error(fpath, "expected a UTC time such as 2027-01-01T00:00:00Z");
            return {};
          });
      if (!fr) return fr;
      if (key.id.empty()) return config_error(kpath, "a key needs an `id` (shown in metrics and logs)");
      if (!has_digest) return config_error(kpath, "a key needs its `sha256` (the key itself is never stored)");
      for (const std::string& m : key.models) {
        if (m.empty()) return config_error(kpath + ".models", "an empty pattern matches no model");
      }
      for (const ApiKey& other : keys) {
        if (other.id == key.id) return config_error(kpath + ".id", "duplicate id `" + key.id + "`");
        if (other.sha256 == key.sha256) return config_error(kpath + ".sha256", "the same key as `" + other.id + "`");
      }
      keys.push_back(std::move(key));
      return {};
    });
  });
  if (!r) return std::move(r).error();
  if (keys.empty()) return config_error("keys", "no key: an empty table would refuse everyone (remove the file to turn keys off)");
  return std::shared_ptr<const KeyTable>(std::make_shared<const KeyTable>(std::move(keys)));
}

VLLM_ROUTER_END_NAMESPACE
