// Test helper: certificates made once per test process with the openssl command line tool.
#pragma once

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>

namespace vllm_router::testing {

/// A CA, a server certificate it signed for localhost and 127.0.0.1 (subjectAltName), a second
/// unrelated CA with its own server certificate, all EC P-256 PEM files in a temporary
/// directory (removed at exit). Built on first use; throws when openssl fails.
struct TestCerts {
  std::string dir;
  std::string ca;           ///< the CA certificate
  std::string cert;         ///< server certificate (CN localhost; DNS:localhost, IP:127.0.0.1)
  std::string key;          ///< its key
  std::string other_ca;     ///< an unrelated CA
  std::string other_cert;   ///< a server certificate signed by other_ca (same names)
  std::string other_key;

  static const TestCerts& get() {
    static const TestCerts certs = make();
    return certs;
  }

 private:
  static TestCerts make() {
    char tmpl[] = "/tmp/vllm-router-certs-XXXXXX";
    if (::mkdtemp(tmpl) == nullptr) throw std::runtime_error("mkdtemp failed");
    TestCerts c;
    c.dir = tmpl;
    const std::string script =
        "set -e; cd '" + c.dir + "'\n"
        "printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\nbasicConstraints=CA:FALSE\\n"
        "extendedKeyUsage=serverAuth\\n' > ext.cnf\n"
        "for n in ca other_ca; do\n"
        "  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 \\\n"
        "    -subj /CN=$n -keyout $n.key -out $n.pem 2>/dev/null\n"
        "done\n"
        "for p in server:ca other_server:other_ca; do\n"
        "  n=${p%%:*}; a=${p#*:}\n"
        "  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN=localhost \\\n"
        "    -keyout $n.key -out $n.csr 2>/dev/null\n"
        "  openssl x509 -req -in $n.csr -CA $a.pem -CAkey $a.key -CAcreateserial -days 30 \\\n"
        "    -extfile ext.cnf -out $n.pem 2>/dev/null\n"
        "done\n";
    if (std::system(script.c_str()) != 0) throw std::runtime_error("openssl could not make the test certificates");
    c.ca = c.dir + "/ca.pem";
    c.cert = c.dir + "/server.pem";
    c.key = c.dir + "/server.key";
    c.other_ca = c.dir + "/other_ca.pem";
    c.other_cert = c.dir + "/other_server.pem";
    c.other_key = c.dir + "/other_server.key";
    static const std::string removed = c.dir;
    std::atexit([] { (void)std::system(("rm -rf '" + removed + "'").c_str()); });
    return c;
  }
};

}  // namespace vllm_router::testing
