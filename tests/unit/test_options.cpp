// Tests of the vllm-router command line / environment / config file handling (server/options.h).
#include <doctest/doctest.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "options.h"

using vllm_router::Errc;
using vllm_router::server::Environment;
using vllm_router::server::parse_options;
using vllm_router::server::ProgramOptions;
using vllm_router::server::usage;

namespace {

// A temporary directory holding files written by a test; removed with its files at scope exit.
class TempDir {
 public:
  TempDir() {
    char pattern[] = "/tmp/vllm_router_options_XXXXXX";
    char* made = ::mkdtemp(pattern);
    REQUIRE(made != nullptr);
    path_ = made;
  }
  ~TempDir() {
    for (const auto& file : files_) std::remove(file.c_str());
    ::rmdir(path_.c_str());
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  std::string write(const std::string& name, const std::string& text) {
    std::string file = path_ + "/" + name;
    std::ofstream(file) << text;
    files_.push_back(file);
    return file;
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::vector<std::string> files_;
};

const char* const kFile = R"({
  "host": "10.0.0.1", "port": 1000, "api_keys": ["file-key"], "policy": "least_requests",
  "threads": 8, "log_level": "warn",
  "models": [
    {"name": "llama", "aliases": ["llama-7b"], "policy": "round_robin",
     "endpoints": ["http://file:1", "http://file:2"]},
    {"name": "qwen", "endpoints": ["http://file:3"]}
  ]
})";

ProgramOptions ok(const std::vector<std::string>& args, const Environment& env = {}) {
  auto result = parse_options(args, env);
  REQUIRE_MESSAGE(result.ok(), (result.ok() ? std::string() : result.error().message));
  return *result;
}

vllm_router::Error fails(const std::vector<std::string>& args, const Environment& env = {}) {
  auto result = parse_options(args, env);
  REQUIRE_FALSE(result.ok());
  CHECK(result.code() == Errc::config);
  return result.error();
}

const vllm_router::ModelConfig* model(const ProgramOptions& o, const std::string& name) {
  for (const auto& m : o.config.router.models) {
    if (m.name == name) return &m;
  }
  return nullptr;
}

std::vector<std::string> urls(const vllm_router::ModelConfig& m) {
  std::vector<std::string> out;
  for (const auto& e : m.endpoints) out.push_back(e.url);
  return out;
}

}  // namespace

TEST_CASE("options: no arguments give the defaults") {
  ProgramOptions o = ok({});
  const vllm_router::server::AppConfig defaults;
  CHECK(o.config.host == defaults.host);
  CHECK(o.config.port == defaults.port);
  CHECK(o.config.router.models.empty());
  CHECK(o.config_path.empty());
  CHECK_FALSE(o.check_config);
  CHECK_FALSE(o.demo);
  CHECK_FALSE(o.help);
  CHECK_FALSE(o.version);
}

TEST_CASE("options: every flag, in both --flag value and --flag=value forms") {
  ProgramOptions o = ok({"--host",
                        "127.0.0.1",
                        "--port=9000",
                        "--model",
                        "m=http://a:1,http://a:2",
                        "--model=n=http://b:1",
                        "--alias",
                        "mm=m",
                        "--lora=sql=n",
                        "--api-key",
                        "k1",
                        "--api-key=k2",
                        "--policy",
                        "least_requests",
                        "--default-model=mm",
                        "--max-body-bytes",
                        "1024",
                        "--connect-timeout-ms=11",
                        "--read-timeout-ms",
                        "22",
                        "--threads=3",
                        "--max-connections",
                        "7",
                        "--log-level=debug",
                        "--check-config",
                        "--demo"});
  CHECK(o.config.host == "127.0.0.1");
  CHECK(o.config.port == 9000);
  REQUIRE(o.config.router.models.size() == 2);
  REQUIRE(model(o, "m") != nullptr);
  CHECK(urls(*model(o, "m")) == std::vector<std::string>{"http://a:1", "http://a:2"});
  CHECK(model(o, "m")->aliases == std::vector<std::string>{"mm"});
  REQUIRE(model(o, "n") != nullptr);
  CHECK(urls(*model(o, "n")) == std::vector<std::string>{"http://b:1"});
  CHECK(model(o, "n")->loras == std::vector<std::string>{"sql"});
  CHECK(o.config.api_keys == std::vector<std::string>{"k1", "k2"});
  CHECK(o.config.router.policy == "least_requests");
  CHECK(o.config.router.default_model == "mm");
  CHECK(o.config.max_body_bytes == 1024u);
  CHECK(o.config.router.timeouts.connect_ms == 11u);
  CHECK(o.config.router.timeouts.read_ms == 22u);
  CHECK(o.config.threads == 3u);
  CHECK(o.config.max_connections == 7u);
  CHECK(o.config.log_level == "debug");
  CHECK(o.check_config);
  CHECK(o.demo);
}

TEST_CASE("options: every environment variable") {
  Environment env = {
      {"VLLM_ROUTER_HOST", "::1"},
      {"VLLM_ROUTER_PORT", "81"},
      {"VLLM_ROUTER_MODELS", "m=http://a:1, http://a:2 ;n=http://b:1;"},
      {"VLLM_ROUTER_ALIASES", "mm=m;nn=n"},
      {"VLLM_ROUTER_LORAS", "sql=m"},
      {"VLLM_ROUTER_API_KEYS", "k1,k2"},
      {"VLLM_ROUTER_POLICY", "least_requests"},
      {"VLLM_ROUTER_DEFAULT_MODEL", "nn"},
      {"VLLM_ROUTER_MAX_BODY_BYTES", "2048"},
      {"VLLM_ROUTER_CONNECT_TIMEOUT_MS", "5"},
      {"VLLM_ROUTER_READ_TIMEOUT_MS", "6"},
      {"VLLM_ROUTER_THREADS", "2"},
      {"VLLM_ROUTER_MAX_CONNECTIONS", "9"},
      {"VLLM_ROUTER_LOG_LEVEL", "error"},
      {"UNRELATED", "x"},
  };
  ProgramOptions o = ok({}, env);
  CHECK(o.config.host == "::1");
  CHECK(o.config.port == 81);
  REQUIRE(model(o, "m") != nullptr);
  CHECK(urls(*model(o, "m")) == std::vector<std::string>{"http://a:1", "http://a:2"});
  CHECK(model(o, "m")->aliases == std::vector<std::string>{"mm"});
  CHECK(model(o, "m")->loras == std::vector<std::string>{"sql"});
  REQUIRE(model(o, "n") != nullptr);
  CHECK(model(o, "n")->aliases == std::vector<std::string>{"nn"});
  CHECK(o.config.api_keys == std::vector<std::string>{"k1", "k2"});
  CHECK(o.config.router.policy == "least_requests");
  CHECK(o.config.router.default_model == "nn");
  CHECK(o.config.max_body_bytes == 2048u);
  CHECK(o.config.router.timeouts.connect_ms == 5u);
  CHECK(o.config.router.timeouts.read_ms == 6u);
  CHECK(o.config.threads == 2u);
  CHECK(o.config.max_connections == 9u);
  CHECK(o.config.log_level == "error");
}

TEST_CASE("options: precedence is flags > env > file") {
  TempDir dir;
  std::string file = dir.write("config.json", kFile);

  SUBCASE("file only") {
    ProgramOptions o = ok({"--config", file});
    CHECK(o.config_path == file);
    CHECK(o.config.host == "10.0.0.1");
    CHECK(o.config.port == 1000);
    CHECK(o.config.threads == 8u);
    CHECK(o.config.log_level == "warn");
    CHECK(o.config.api_keys == std::vector<std::string>{"file-key"});
  }
  SUBCASE("env over file, file kept where env is silent") {
    ProgramOptions o = ok({}, {{"VLLM_ROUTER_CONFIG", file},
                              {"VLLM_ROUTER_PORT", "2000"},
                              {"VLLM_ROUTER_API_KEYS", "env-key"},
                              {"VLLM_ROUTER_HOST", ""}});
    CHECK(o.config_path == file);
    CHECK(o.config.port == 2000);
    CHECK(o.config.host == "10.0.0.1");  // empty variable counts as unset
    CHECK(o.config.threads == 8u);
    CHECK(o.config.api_keys == std::vector<std::string>{"env-key"});
  }
  SUBCASE("flags over env over file") {
    ProgramOptions o = ok({"--config=" + file, "--port", "3000", "--api-key", "flag-key"},
                         {{"VLLM_ROUTER_PORT", "2000"},
                          {"VLLM_ROUTER_THREADS", "4"},
                          {"VLLM_ROUTER_API_KEYS", "env-key"}});
    CHECK(o.config.port == 3000);
    CHECK(o.config.threads == 4u);
    CHECK(o.config.log_level == "warn");
    CHECK(o.config.api_keys == std::vector<std::string>{"flag-key"});
  }
  SUBCASE("--config wins over VLLM_ROUTER_CONFIG") {
    std::string other = dir.write("other.json", R"({"port": 4444})");
    ProgramOptions o = ok({"--config", other}, {{"VLLM_ROUTER_CONFIG", file}});
    CHECK(o.config_path == other);
    CHECK(o.config.port == 4444);
    CHECK(o.config.router.models.empty());
  }
}

TEST_CASE("options: a model named at a higher level replaces the same-named model's endpoints") {
  TempDir dir;
  std::string file = dir.write("config.json", kFile);
  ProgramOptions o = ok({"--config", file, "--model", "qwen=http://flag:3", "--model",
                        "new=http://flag:9", "--alias", "q=qwen"},
                       {{"VLLM_ROUTER_MODELS", "llama=http://env:1;qwen=http://env:3"}});
  REQUIRE(o.config.router.models.size() == 3);
  const auto* llama = model(o, "llama");
  REQUIRE(llama != nullptr);
  CHECK(urls(*llama) == std::vector<std::string>{"http://env:1"});
  CHECK(llama->aliases == std::vector<std::string>{"llama-7b"});  // kept from the file
  CHECK(llama->policy == "round_robin");
  const auto* qwen = model(o, "qwen");
  REQUIRE(qwen != nullptr);
  CHECK(urls(*qwen) == std::vector<std::string>{"http://flag:3"});
  CHECK(qwen->aliases == std::vector<std::string>{"q"});
  REQUIRE(model(o, "new") != nullptr);
  CHECK(urls(*model(o, "new")) == std::vector<std::string>{"http://flag:9"});
}

TEST_CASE("options: aliases and adapters attach to models known after merging") {
  TempDir dir;
  std::string file = dir.write("config.json", kFile);
  SUBCASE("env alias of a model given by flag") {
    ProgramOptions o = ok({"--model", "x=http://h:1"}, {{"VLLM_ROUTER_ALIASES", "y=x"}});
    CHECK(model(o, "x")->aliases == std::vector<std::string>{"y"});
  }
  SUBCASE("flag lora of a model from the file; a repeated alias is not duplicated") {
    ProgramOptions o = ok({"--config", file, "--lora", "sql=llama", "--alias", "llama-7b=llama"});
    CHECK(model(o, "llama")->loras == std::vector<std::string>{"sql"});
    CHECK(model(o, "llama")->aliases == std::vector<std::string>{"llama-7b"});
  }
  SUBCASE("unknown model, flag") {
    auto e = fails({"--alias", "a=missing"});
    CHECK(e.param == "--alias");
    CHECK(e.message.find("missing") != std::string::npos);
  }
  SUBCASE("unknown model, env") {
    auto e = fails({"--model", "x=http://h:1"}, {{"VLLM_ROUTER_LORAS", "a=missing"}});
    CHECK(e.param == "VLLM_ROUTER_LORAS");
  }
  SUBCASE("malformed") {
    CHECK(fails({"--alias", "noequals"}).param == "--alias");
    CHECK(fails({"--lora", "=m"}).param == "--lora");
  }
}

TEST_CASE("options: bad numbers name the flag or variable") {
  auto e = fails({"--port", "abc"});
  CHECK(e.param == "--port");
  CHECK(e.message == "--port: expected an integer 0..65535, got 'abc'");
  CHECK(fails({"--port=65536"}).message == "--port: expected an integer 0..65535, got '65536'");
  CHECK(fails({"--port", "-1"}).param == "--port");
  CHECK(fails({"--port", "80x"}).param == "--port");
  CHECK(fails({"--port", ""}).param == "--port");
  CHECK(fails({"--threads", "-1"}).message == "--threads: expected an integer >= 0, got '-1'");
  CHECK(fails({"--io", "uring"}).message == "--io: expected epoll, got 'uring'");
  CHECK(fails({"--io", "threads"}).message.find("removed") != std::string::npos);
  CHECK(fails({"--threads", "4294967296"}).param == "--threads");
  CHECK(fails({"--max-body-bytes", "1.5"}).param == "--max-body-bytes");
  CHECK(fails({"--connect-timeout-ms", "0"}).param == "--connect-timeout-ms");
  CHECK(fails({"--read-timeout-ms", "x"}).param == "--read-timeout-ms");
  CHECK(fails({"--max-connections", "-2"}).param == "--max-connections");
  CHECK(fails({"--log-level", "loud"}).param == "--log-level");
  auto env = fails({}, {{"VLLM_ROUTER_PORT", "http"}});
  CHECK(env.param == "VLLM_ROUTER_PORT");
  CHECK(env.message == "VLLM_ROUTER_PORT: expected an integer 0..65535, got 'http'");
  CHECK(fails({}, {{"VLLM_ROUTER_THREADS", "-4"}}).param == "VLLM_ROUTER_THREADS");
}

TEST_CASE("options: bad models name the flag or variable") {
  CHECK(fails({"--model", "llama"}).param == "--model");
  CHECK(fails({"--model", "=http://h:1"}).param == "--model");
  CHECK(fails({"--model", "m="}).param == "--model");
  auto e = fails({"--model", "m=not a url"});
  CHECK(e.param == "--model");
  CHECK(e.message.find("not a url") != std::string::npos);
  CHECK(fails({"--model", "m=http://h:1", "--model", "m=http://h:2"}).param == "--model");
  auto env = fails({}, {{"VLLM_ROUTER_MODELS", "a=http://h:1;b"}});
  CHECK(env.param == "VLLM_ROUTER_MODELS");
  CHECK(env.message.rfind("VLLM_ROUTER_MODELS: ", 0) == 0);
}

TEST_CASE("options: API keys: blanks never turn authentication off") {
  CHECK(fails({"--api-key", ""}).param == "--api-key");
  // A list with nothing but separators and blanks would replace the file's keys with none.
  for (const char* blank : {" , ", ",", " ,\t, "}) {
    CAPTURE(blank);
    CHECK(fails({}, {{"VLLM_ROUTER_API_KEYS", blank}}).param == "VLLM_ROUTER_API_KEYS");
  }
  // Empty items between keys are skipped, keys trimmed.
  CHECK(ok({}, {{"VLLM_ROUTER_API_KEYS", "a,, b "}}).config.api_keys == std::vector<std::string>{"a", "b"});
}

TEST_CASE("options: command line syntax errors") {
  SUBCASE("unknown flag") {
    auto e = fails({"--prot", "80"});
    CHECK(e.param == "--prot");
    CHECK(e.message.find("unknown flag") != std::string::npos);
  }
  SUBCASE("unknown flag with a value") { CHECK(fails({"--prot=80"}).param == "--prot"); }
  SUBCASE("unknown short flag") { CHECK(fails({"-p", "80"}).param == "-p"); }
  SUBCASE("positional argument") { CHECK(fails({"serve"}).param == "serve"); }
  SUBCASE("missing value") {
    auto e = fails({"--port"});
    CHECK(e.param == "--port");
    CHECK(e.message.find("missing value") != std::string::npos);
  }
  SUBCASE("value given to a switch") { CHECK(fails({"--demo=yes"}).param == "--demo"); }
}

TEST_CASE("options: config file errors") {
  TempDir dir;
  SUBCASE("missing file named by flag") {
    std::string path = dir.path() + "/absent.json";
    auto e = fails({"--config", path});
    CHECK(e.param == "--config");
    CHECK(e.message.find(path) != std::string::npos);
  }
  SUBCASE("missing file named by env") {
    auto e = fails({}, {{"VLLM_ROUTER_CONFIG", dir.path() + "/absent.json"}});
    CHECK(e.param == "VLLM_ROUTER_CONFIG");
  }
  SUBCASE("bad field in the file keeps its JSON path and names the file") {
    std::string file = dir.write("bad.json", R"({"port": "x"})");
    auto e = fails({"--config", file});
    CHECK(e.param == "port");
    CHECK(e.message.find(file) != std::string::npos);
  }
  SUBCASE("invalid JSON") {
    std::string file = dir.write("broken.json", "{\"port\": ");
    CHECK(fails({"--config", file}).message.find("JSON") != std::string::npos);
  }
}

TEST_CASE("options: --help and --version return early") {
  ProgramOptions h = ok({"--port", "bad", "--help"}, {{"VLLM_ROUTER_PORT", "bad"}});
  CHECK(h.help);
  CHECK(ok({"-h"}).help);
  ProgramOptions v = ok({"--version"}, {{"VLLM_ROUTER_CONFIG", "/nonexistent/x.json"}});
  CHECK(v.version);
  CHECK_FALSE(v.help);
}

TEST_CASE("options: usage lists every flag and variable") {
  std::string text = usage();
  for (const char* needle : {"--host",
                             "--port",
                             "--model",
                             "--alias",
                             "--lora",
                             "--config",
                             "--api-key",
                             "--policy",
                             "--default-model",
                             "--max-body-bytes",
                             "--connect-timeout-ms",
                             "--read-timeout-ms",
                             "--threads",
                             "--max-connections",
                             "--log-level",
                             "--check-config",
                             "--demo",
                             "-h, --help",
                             "--version",
                             "VLLM_ROUTER_CONFIG",
                             "VLLM_ROUTER_HOST",
                             "VLLM_ROUTER_PORT",
                             "VLLM_ROUTER_MODELS",
                             "VLLM_ROUTER_ALIASES",
                             "VLLM_ROUTER_LORAS",
                             "VLLM_ROUTER_API_KEYS",
                             "VLLM_ROUTER_POLICY",
                             "VLLM_ROUTER_DEFAULT_MODEL",
                             "VLLM_ROUTER_MAX_BODY_BYTES",
                             "VLLM_ROUTER_CONNECT_TIMEOUT_MS",
                             "VLLM_ROUTER_READ_TIMEOUT_MS",
                             "VLLM_ROUTER_THREADS",
                             "VLLM_ROUTER_MAX_CONNECTIONS",
                             "VLLM_ROUTER_LOG_LEVEL",
                             "--tls-cert",
                             "--tls-key",
                             "VLLM_ROUTER_TLS_CERT_FILE",
                             "VLLM_ROUTER_TLS_KEY_FILE",
                             "default: 8080",
                             "default: 600000",
                             "Usage:",
                             "Example"}) {
    CAPTURE(needle);
    CHECK(text.find(needle) != std::string::npos);
  }
}

TEST_CASE("options: the TLS certificate and key come from any level, and never one without the other") {
  TempDir dir;
  const std::string file = dir.write("config.json", R"({"tls_cert_file": "/file/cert.pem", "tls_key_file": "/file/key.pem"})");
  ProgramOptions from_file = ok({"--config", file});
  CHECK(from_file.config.tls_cert_file == "/file/cert.pem");
  CHECK(from_file.config.tls_key_file == "/file/key.pem");
  CHECK(from_file.config.server_options().tls_cert_file == "/file/cert.pem");
  CHECK(from_file.config.server_options().tls_key_file == "/file/key.pem");

  // Split across levels: the file's key with the environment's certificate and a flag's key.
  ProgramOptions mixed = ok({"--config", file, "--tls-key=/flag/key.pem"},
                            {{"VLLM_ROUTER_TLS_CERT_FILE", "/env/cert.pem"}});
  CHECK(mixed.config.tls_cert_file == "/env/cert.pem");
  CHECK(mixed.config.tls_key_file == "/flag/key.pem");

  ProgramOptions env = ok({}, {{"VLLM_ROUTER_TLS_CERT_FILE", "/c"}, {"VLLM_ROUTER_TLS_KEY_FILE", "/k"}});
  CHECK(env.config.tls_cert_file == "/c");
  CHECK(env.config.tls_key_file == "/k");
  CHECK(ok({}).config.tls_cert_file.empty());

  const auto cert_only = fails({"--tls-cert", "/c"});
  CHECK(cert_only.param == "tls_key_file");
  CHECK(cert_only.message.find("tls_cert_file is set but tls_key_file is not") != std::string::npos);
  const auto key_only = fails({}, {{"VLLM_ROUTER_TLS_KEY_FILE", "/k"}});
  CHECK(key_only.param == "tls_cert_file");
  CHECK(key_only.message.find("--tls-cert") != std::string::npos);
  CHECK(fails({"--tls-cert="}).message.find("expected a file name") != std::string::npos);
  CHECK(fails({"--config", dir.write("bad.json", R"({"tls_cert_file": ""})")}).message.find("tls_cert_file") !=
        std::string::npos);
}

TEST_CASE("options: --lora-loading and VLLM_ROUTER_LORA_LOADING turn on dynamic LoRA loading") {
  ProgramOptions o = ok({"--model", "m=http://h:1", "--lora", "a=m", "--lora-loading", "m=/adapters/{name}"});
  REQUIRE(model(o, "m")->lora);
  CHECK(model(o, "m")->lora->dynamic_loading);
  CHECK(model(o, "m")->lora->path_template == "/adapters/{name}");
  ProgramOptions e = ok({"--model", "m=http://h:1"}, {{"VLLM_ROUTER_LORA_LOADING", " m = /p/{name} ;"}});
  REQUIRE(model(e, "m")->lora);
  CHECK(model(e, "m")->lora->path_template == "/p/{name}");
  CHECK(fails({"--model", "m=http://h:1", "--lora-loading", "m="}).param == "--lora-loading");
  CHECK(fails({"--lora-loading", "missing=/p"}).param == "--lora-loading");
}

TEST_CASE("options: replica sync: listen and peers from flags and variables, the secret from the environment only") {
  TempDir dir;
  const std::string file = dir.write("sync.json", R"({"replica_sync": {"listen": "0.0.0.0:7000",
      "peers": ["file:7000"], "interval_ms": 20, "secret": "file-secret"}})");
  SUBCASE("the file alone") {
    const auto s = ok({"--config", file}).config.router.replica_sync;
    CHECK(s.listen == "0.0.0.0:7000");
    CHECK(s.peers == std::vector<std::string>{"file:7000"});
    CHECK(s.interval_ms == 20);
    CHECK(s.secret == "file-secret");
  }
  SUBCASE("variables over the file; the file's other keys stay") {
    const auto s = ok({"--config", file}, {{"VLLM_ROUTER_REPLICA_SYNC_LISTEN", " [::]:7071 "},
                                             {"VLLM_ROUTER_REPLICA_SYNC_PEERS", "router-sync.llm.svc.cluster.local:7071, 10.0.0.7:7071,"},
                                             {"VLLM_ROUTER_REPLICA_SYNC_SECRET", "env-secret"}})
                        .config.router.replica_sync;
    CHECK(s.listen == "[::]:7071");
    CHECK(s.peers == std::vector<std::string>{"router-sync.llm.svc.cluster.local:7071", "10.0.0.7:7071"});
    CHECK(s.interval_ms == 20);
    CHECK(s.secret == "env-secret");
  }
  SUBCASE("flags over variables; repeated peer flags add up") {
    const auto s = ok({"--config", file, "--replica-sync-listen=127.0.0.1:0", "--replica-sync-peers", "a:1,b:2",
                        "--replica-sync-peers", "[::1]:3"},
                       {{"VLLM_ROUTER_REPLICA_SYNC_LISTEN", "0.0.0.0:7071"}, {"VLLM_ROUTER_REPLICA_SYNC_PEERS", "env:7071"}})
                        .config.router.replica_sync;
    CHECK(s.listen == "127.0.0.1:0");
    CHECK(s.peers == std::vector<std::string>{"a:1", "b:2", "[::1]:3"});
    CHECK(s.secret == "file-secret");
  }
  SUBCASE("an empty secret variable counts as unset") {
    CHECK(ok({"--config", file}, {{"VLLM_ROUTER_REPLICA_SYNC_SECRET", ""}}).config.router.replica_sync.secret ==
          "file-secret");
  }
  SUBCASE("no flag for the secret") {
    CHECK(fails({"--replica-sync-secret", "x"}).message.find("unknown flag '--replica-sync-secret'") != std::string::npos);
  }
  SUBCASE("off without any") {
    const auto s = ok({}).config.router.replica_sync;
    CHECK(s.listen.empty());
    CHECK(s.peers.empty());
    CHECK(s.secret.empty());
  }
  SUBCASE("bad values name the flag or variable") {
    auto e = fails({"--replica-sync-listen", "7071"});
    CHECK(e.param == "--replica-sync-listen");
    CHECK(e.message.find("expected HOST:PORT") != std::string::npos);
    e = fails({}, {{"VLLM_ROUTER_REPLICA_SYNC_LISTEN", "::1:7071"}});
    CHECK(e.param == "VLLM_ROUTER_REPLICA_SYNC_LISTEN");
    CHECK(e.message.find("brackets") != std::string::npos);
    e = fails({"--replica-sync-peers", "a:1,b:0"});
    CHECK(e.param == "--replica-sync-peers");
    CHECK(e.message.find("got \"b:0\"") != std::string::npos);
    e = fails({}, {{"VLLM_ROUTER_REPLICA_SYNC_PEERS", " , "}});
    CHECK(e.param == "VLLM_ROUTER_REPLICA_SYNC_PEERS");
    CHECK(e.message.find("no peer") != std::string::npos);
  }
}

TEST_CASE("options: usage lists the replica sync flags and variables") {
  const std::string text = usage();
  for (const char* needle : {"--replica-sync-listen HOST:PORT", "VLLM_ROUTER_REPLICA_SYNC_LISTEN",
                             "--replica-sync-peers HOST:PORT[,...]", "VLLM_ROUTER_REPLICA_SYNC_PEERS",
                             "VLLM_ROUTER_REPLICA_SYNC_SECRET", "default: none (replica sync off)"}) {
    CAPTURE(needle);
    CHECK(text.find(needle) != std::string::npos);
  }
  CHECK(text.find("--replica-sync-secret") == std::string::npos);
}
