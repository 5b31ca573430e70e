// Test helper: the fake DNS server's UDP loop and its minimal DNS message codec.
#include "fake_dns.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace vllm_router::testing {
namespace {

constexpr std::uint16_t kTypeA = 1;
constexpr std::uint16_t kTypeAaaa = 28;
constexpr unsigned char kRcodeNxdomain = 3;

std::string normalise(const std::string& name) {
  std::string out = name;
  if (!out.empty() && out.back() == '.') out.pop_back();
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

void put16(std::vector<unsigned char>& out, unsigned v) {
  out.push_back(static_cast<unsigned char>((v >> 8) & 0xff));
  out.push_back(static_cast<unsigned char>(v & 0xff));
}

// resize + memcpy rather than vector::insert: g++ 12 with -fsanitize=thread reports a false
// -Warray-bounds in the inlined insert.
void append(std::vector<unsigned char>& out, const unsigned char* data, std::size_t size) {
  const std::size_t at = out.size();
  out.resize(at + size);
  std::memcpy(out.data() + at, data, size);
}

void put32(std::vector<unsigned char>& out, std::uint32_t v) {
  put16(out, v >> 16);
  put16(out, v & 0xffff);
}

[[noreturn]] void die(const char* what) {
  std::perror(what);
  std::abort();
}

}  // namespace

FakeDns::FakeDns() {
  fd_ = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd_ < 0) die("fake_dns socket");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) die("fake_dns bind");
  socklen_t len = sizeof addr;
  if (::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) die("fake_dns getsockname");
  port_ = ntohs(addr.sin_port);
  stop_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (stop_fd_ < 0) die("fake_dns eventfd");
  thread_ = std::thread([this] { run(); });
}

FakeDns::~FakeDns() {
  const std::uint64_t one = 1;
  if (::write(stop_fd_, &one, sizeof one) < 0) std::perror("fake_dns stop");
  thread_.join();
  ::close(fd_);
  ::close(stop_fd_);
}

void FakeDns::set(const std::string& name, Record record) {
  std::lock_guard<std::mutex> lock(mu_);
  table_[normalise(name)] = std::move(record);
}

void FakeDns::set_silent(const std::string& name, bool silent) {
  std::lock_guard<std::mutex> lock(mu_);
  table_[normalise(name)].silent = silent;
}

void FakeDns::remove(const std::string& name) {
  std::lock_guard<std::mutex> lock(mu_);
  table_.erase(normalise(name));
}

int FakeDns::queries(const std::string& name, std::uint16_t qtype) const {
  std::lock_guard<std::mutex> lock(mu_);
  const auto it = counts_.find({normalise(name), qtype});
  return it == counts_.end() ? 0 : it->second;
}

bool FakeDns::wait_queries(const std::string& name, int count, std::chrono::milliseconds timeout,
                           std::uint16_t qtype) const {
  const auto key = std::make_pair(normalise(name), qtype);
  std::unique_lock<std::mutex> lock(mu_);
  return cv_.wait_for(lock, timeout, [&] {
    const auto it = counts_.find(key);
    return it != counts_.end() && it->second >= count;
  });
}

void FakeDns::run() {
  std::vector<unsigned char> buf(4096);
  for (;;) {
    int timeout = -1;
    const auto now = std::chrono::steady_clock::now();
    for (const Pending& p : pending_) {
      const auto ms = std::chrono::ceil<std::chrono::milliseconds>(p.due - now).count();
      const int wait = static_cast<int>(std::max<long long>(0, ms));
      timeout = timeout < 0 ? wait : std::min(timeout, wait);
    }
    pollfd fds[2] = {{fd_, POLLIN, 0}, {stop_fd_, POLLIN, 0}};
    if (::poll(fds, 2, timeout) < 0) continue;  // EINTR
    if (fds[1].revents != 0) return;
    if (fds[0].revents != 0) {
      for (;;) {
        sockaddr_in peer{};
        socklen_t peer_len = sizeof peer;
        const ssize_t n = ::recvfrom(fd_, buf.data(), buf.size(), 0,
                                     reinterpret_cast<sockaddr*>(&peer), &peer_len);
        if (n < 0) break;
        handle(buf.data(), static_cast<std::size_t>(n), &peer, peer_len);
      }
    }
    const auto later = std::chrono::steady_clock::now();
    for (auto it = pending_.begin(); it != pending_.end();) {
      if (it->due <= later) {
        ::sendto(fd_, it->packet.data(), it->packet.size(), 0,
                 reinterpret_cast<const sockaddr*>(it->peer.data()),
                 static_cast<socklen_t>(it->peer.size()));
        it = pending_.erase(it);
      } else {
        ++it;
      }
    }
  }
}

void FakeDns::handle(const unsigned char* data, std::size_t size, const void* peer, unsigned peer_len) {
  if (size < 12 || (data[2] & 0x80) != 0) return;  // too short, or a response
  if (data[4] != 0 || data[5] != 1) return;          // exactly one question
  std::size_t pos = 12;
  std::string name;
  while (pos < size && data[pos] != 0) {
    const std::size_t len = data[pos];
    if (len > 63 || pos + 1 + len > size) return;
    if (!name.empty()) name.push_back('.');
    name.append(reinterpret_cast<const char*>(data + pos + 1), len);
    pos += 1 + len;
  }
  if (pos + 5 > size) return;
  pos += 1;  // the root label
  const auto qtype = static_cast<std::uint16_t>((data[pos] << 8) | data[pos + 1]);
  const std::size_t question_end = pos + 4;
  name = normalise(name);

  std::vector<unsigned char> out(data, data + 12);
  out[2] = static_cast<unsigned char>(0x80 | 0x04 | (data[2] & 0x79));  // QR, AA, opcode + RD
  out[3] = 0x80;                                                          // RA, NOERROR
  out[6] = out[7] = out[8] = out[9] = out[10] = out[11] = 0;
  append(out, data + 12, question_end - 12);

  std::chrono::milliseconds delay{0};
  {
    std::lock_guard<std::mutex> lock(mu_);
    counts_[{name, qtype}]++;
    cv_.notify_all();
    const auto it = table_.find(name);
    if (it == table_.end()) {
      out[3] = 0x80 | kRcodeNxdomain;
    } else {
      const Record& r = it->second;
      if (r.silent) return;
      delay = r.delay;
      unsigned count = 0;
      const auto& list = qtype == kTypeA ? r.ipv4 : r.ipv6;
      if (qtype == kTypeA || qtype == kTypeAaaa) {
        for (const std::string& ip : list) {
          unsigned char raw[16];
          const int family = qtype == kTypeA ? AF_INET : AF_INET6;
          if (::inet_pton(family, ip.c_str(), raw) != 1) continue;
          const unsigned rdlen = qtype == kTypeA ? 4 : 16;
          put16(out, 0xc00c);  // pointer to the question's name
          put16(out, qtype);
          put16(out, 1);  // IN
          put32(out, r.ttl_s);
          put16(out, rdlen);
          append(out, raw, rdlen);
          ++count;
        }
      }
      out[6] = static_cast<unsigned char>(count >> 8);
      out[7] = static_cast<unsigned char>(count & 0xff);
    }
  }
  const auto* peer_bytes = static_cast<const unsigned char*>(peer);
  if (delay.count() > 0) {
    pending_.push_back(Pending{std::chrono::steady_clock::now() + delay, std::move(out),
                               std::vector<unsigned char>(peer_bytes, peer_bytes + peer_len)});
    return;
  }
  ::sendto(fd_, out.data(), out.size(), 0, static_cast<const sockaddr*>(peer), peer_len);
}

}  // namespace vllm_router::testing
