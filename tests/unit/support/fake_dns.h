// Test helper: a tiny authoritative DNS server over UDP on 127.0.0.1 (A/AAAA from a table).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace vllm_router::testing {

/// Answers A and AAAA queries from a table, on its own thread, on 127.0.0.1 port 0.
/// Names are matched case-insensitively, without a trailing dot. An unknown name gets NXDOMAIN;
/// a known name with no address of the asked family gets NOERROR with no answer (NODATA).
/// A name may be delayed (the answer is sent later, other names are answered meanwhile) or
/// silenced (queries are counted and dropped). Every method is thread-safe.
class FakeDns {
 public:
  struct Record {
    std::vector<std::string> ipv4;
    std::vector<std::string> ipv6;
    std::uint32_t ttl_s = 60;
    std::chrono::milliseconds delay{0};
    bool silent = false;  ///< count queries for the name but never answer them
  };

  FakeDns();  ///< binds and starts; aborts the test run if it cannot bind
  ~FakeDns();
  FakeDns(const FakeDns&) = delete;
  FakeDns& operator=(const FakeDns&) = delete;

  std::uint16_t port() const noexcept { return port_; }
  /// "127.0.0.1:PORT", the form ResolverOptions::servers takes.
  std::string server() const { return "127.0.0.1:" + std::to_string(port_); }

  void set(const std::string& name, Record record);
  void set_silent(const std::string& name, bool silent);
  void remove(const std::string& name);  ///< the name answers NXDOMAIN from now on

  /// Queries received for `name` of type A (qtype 1) or AAAA (28), answered or not.
  int queries(const std::string& name, std::uint16_t qtype = 1) const;
  /// Waits until queries(name, qtype) >= count or `timeout` passes; returns whether it did.
  bool wait_queries(const std::string& name, int count, std::chrono::milliseconds timeout,
                    std::uint16_t qtype = 1) const;

 private:
  struct Pending {
    std::chrono::steady_clock::time_point due;
    std::vector<unsigned char> packet;
    std::vector<unsigned char> peer;  // sockaddr_in bytes
  };
  void run();
  void handle(const unsigned char* data, std::size_t size, const void* peer, unsigned peer_len);

  int fd_ = -1;
  int stop_fd_ = -1;
  std::uint16_t port_ = 0;
  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  std::map<std::string, Record> table_;
  std::map<std::pair<std::string, std::uint16_t>, int> counts_;
  std::vector<Pending> pending_;  // server thread only
  std::thread thread_;
};

}  // namespace vllm_router::testing
