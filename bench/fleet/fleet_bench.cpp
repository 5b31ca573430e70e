// fleet_bench: replays one workload through an in-process vllm_router::Router (+ LoadScraper)
// against running vllm-sim engines, or over HTTP through running vllm-router processes
// (--routers, round robin across them), and prints one JSON line of results. Driven by run.sh.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <strings.h>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "vllm_router/clock.h"
#include "vllm_router/endpoint.h"
#include "vllm_router/load_scraper.h"
#include "vllm_router/lora.h"
#include "vllm_router/random.h"
#include "vllm_router/request.h"
#include "vllm_router/router.h"

using namespace vllm_router;
using SteadyTime = std::chrono::steady_clock;

namespace {

constexpr const char* kModel = "facebook/opt-125m";

struct Args {
  std::vector<std::string> sims;  // base URLs
  std::vector<std::string> routers;  // vllm-router base URLs; empty: an in-process Router
  std::string policy = "round_robin";
  std::string workload = "shared";
  bool quick = false;
  std::uint64_t seed = 42;
  double rate = 0;        // requests (or sessions) per second; 0: workload default
  int threads = 256;      // client threads (sessions in progress at once)
  int max_seconds = 180;  // hard bound of one run
  std::uint32_t scrape_ms = 200;
  std::uint32_t max_tokens = 16;
  // Prefill/decode disaggregation (bench/fleet/pd.sh): the model's prefill pool; --sims are then
  // its decode pool.
  std::vector<std::string> prefill_sims;
  std::string prefill_policy;
  bool lora_aware = false;  // workload lora: the model gets "lora" (dynamic loading)
  int adapters = 16;        // workload lora: adapters lora-0..lora-(n-1), Zipf popularity
  double zipf_s = 1.0;
  std::uint32_t replicate_margin = 0;  // lora.replicate_margin of the aware run
};

std::vector<std::string> split_urls(const std::string& s) {
  std::vector<std::string> out;
  std::size_t p = 0;
  while (p <= s.size()) {
    const std::size_t c = s.find(',', p);
    const std::string part = s.substr(p, c == std::string::npos ? std::string::npos : c - p);
    if (!part.empty()) out.push_back(part);
    if (c == std::string::npos) break;
    p = c + 1;
  }
  return out;
}

[[noreturn]] void usage(const char* msg) {
  std::fprintf(stderr,
               "fleet_bench: %s\nusage: fleet_bench --sims URL[,URL...] --policy NAME --workload "
               "shared|multiturn|random|skewed|agentic|mixed|lora [--routers URL[,URL...]] [--quick] "
               "[--seed N] [--rate R] [--threads N] [--max-seconds N] [--scrape-ms N] "
               "[--prefill-sims URL[,URL...] [--prefill-policy NAME]] [--lora-aware] [--adapters N] "
               "[--zipf S] [--replicate-margin N]\n",
               msg);
  std::exit(2);
}

Args parse_args(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    auto v = [&]() -> std::string {
      if (i + 1 >= argc) usage(("missing value for " + k).c_str());
      return argv[++i];
    };
    if (k == "--sims" || k == "--routers") {
      std::string s = v();
      auto& list = k == "--sims" ? a.sims : a.routers;
      std::size_t p = 0;
      while (p <= s.size()) {
        const std::size_t c = s.find(',', p);
        const std::string part = s.substr(p, c == std::string::npos ? std::string::npos : c - p);
        if (!part.empty()) list.push_back(part);
        if (c == std::string::npos) break;
        p = c + 1;
      }
    } else if (k == "--policy") a.policy = v();
    else if (k == "--workload") a.workload = v();
    else if (k == "--quick") a.quick = true;
    else if (k == "--seed") a.seed = std::stoull(v());
    else if (k == "--rate") a.rate = std::stod(v());
    else if (k == "--threads") a.threads = std::stoi(v());
    else if (k == "--max-seconds") a.max_seconds = std::stoi(v());
    else if (k == "--scrape-ms") a.scrape_ms = static_cast<std::uint32_t>(std::stoul(v()));
    else if (k == "--max-tokens") a.max_tokens = static_cast<std::uint32_t>(std::stoul(v()));
    else if (k == "--prefill-sims") a.prefill_sims = split_urls(v());
    else if (k == "--prefill-policy") a.prefill_policy = v();
    else if (k == "--lora-aware") a.lora_aware = true;
    else if (k == "--replicate-margin") a.replicate_margin = static_cast<std::uint32_t>(std::stoul(v()));
    else if (k == "--adapters") a.adapters = std::stoi(v());
    else if (k == "--zipf") a.zipf_s = std::stod(v());
    else usage(("unknown argument " + k).c_str());
  }
  if (a.sims.empty()) usage("--sims is required");
  return a;
}

// ---------------------------------------------------------------- workload

struct Turn {
  std::string body;
};
struct Session {
  double start_s = 0;          // scheduled start of the first turn
  double think_s = 0;          // pause between a turn's end and the next one
  std::string id;              // user / session id ("" for one-shot requests)
  int group = -1;              // shared/skewed: the prefix group (FLEET_TRACE)
  std::vector<Turn> turns;
};

std::string words(Rng& r, std::size_t chars) {
  std::string s;
  s.reserve(chars);
  while (s.size() < chars) {
    const std::size_t len = 2 + r.below(8);
    for (std::size_t i = 0; i < len && s.size() < chars; ++i) s.push_back(static_cast<char>('a' + r.below(26)));
    if (s.size() < chars) s.push_back(' ');
  }
  return s;
}

std::string esc(const std::string& s) {  // our texts hold letters, spaces and digits only
  return s;
}

std::string chat_body(const std::vector<std::pair<std::string, std::string>>& messages,
                      const std::string& user, std::uint32_t max_tokens) {
  std::string b = "{\"model\":\"";
  b += kModel;
  b += "\",\"stream\":true,\"max_tokens\":" + std::to_string(max_tokens);
  if (!user.empty()) b += ",\"user\":\"" + user + "\"";
  b += ",\"messages\":[";
  for (std::size_t i = 0; i < messages.size(); ++i) {
    if (i) b += ',';
    b += "{\"role\":\"" + messages[i].first + "\",\"content\":\"" + esc(messages[i].second) + "\"}";
  }
  b += "]}";
  return b;
}

// What the sim answers to max_tokens = n: "tok0 tok1 ... tok{n-1} ".
std::string sim_reply(std::uint32_t n) {
  std::string s;
  for (std::uint32_t i = 0; i < n; ++i) s += "tok" + std::to_string(i) + " ";
  return s;
}

double exp_gap(Rng& r, double rate) {
  const double u = (static_cast<double>(r.next() >> 11) + 0.5) / 9007199254740992.0;
  return -std::log(u) / rate;
}

// `total` one-turn sessions with Poisson arrivals at `rate`; turn(k) makes request k (drawing
// from `r` after its arrival time, so every policy gets the same requests at the same times).
template <typename MakeTurn>
void single_turns(std::vector<Session>& out, Rng& r, int total, double rate, MakeTurn turn) {
  double t = 0;
  for (int k = 0; k < total; ++k) {
    Session s;
    t += exp_gap(r, rate);
    s.start_s = t;
    s.turns.push_back(turn(k));
    out.push_back(std::move(s));
  }
}

std::vector<Session> make_workload(const Args& a, double& rate_out) {
  Rng r(a.seed);
  std::vector<Session> out;
  const bool q = a.quick;
  if (a.workload == "shared" || a.workload == "skewed") {
    // Groups share a 2,000-token (8,000-character) prefix; each prompt adds a 100-token question.
    const int groups = q ? 16 : 64;
    const int per_group = q ? 8 : 16;
    const int total = groups * per_group;
    const double rate = a.rate > 0 ? a.rate : (q ? 30.0 : 80.0);
    rate_out = rate;
    std::vector<std::string> prefixes;
    for (int g = 0; g < groups; ++g) prefixes.push_back("group " + std::to_string(g) + " " + words(r, 8000));
    std::vector<int> order;
    if (a.workload == "shared") {
      for (int g = 0; g < groups; ++g)
        for (int k = 0; k < per_group; ++k) order.push_back(g);
      for (std::size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[r.below(i)]);
    } else {
      // One hot group: 30 % of all requests; the rest uniform over the others.
      for (int k = 0; k < total; ++k)
        order.push_back(r.below(100) < 30 ? 0 : 1 + static_cast<int>(r.below(static_cast<std::uint64_t>(groups - 1))));
    }
    single_turns(out, r, total, rate, [&](int k) {
      return Turn{chat_body({{"system", prefixes[static_cast<std::size_t>(order[k])]},
                             {"user", "question " + std::to_string(k) + " " + words(r, 400)}},
                            "", a.max_tokens)};
    });
    for (int k = 0; k < total; ++k) out[static_cast<std::size_t>(k)].group = order[static_cast<std::size_t>(k)];
  } else if (a.workload == "multiturn") {
    // Users hold conversations: each turn resends the whole history plus a new 300-token message.
    const int users = q ? 24 : 96;
    const int turns = q ? 4 : 8;
    const double user_rate = a.rate > 0 ? a.rate : (q ? 8.0 : 6.0);  // conversations started / s
    rate_out = user_rate;
    // A short system prompt (under one 16-token block): the history is what repeats.
    const std::string system = "You are a helpful assistant.";
    double t = 0;
    for (int u = 0; u < users; ++u) {
      Session s;
      t += exp_gap(r, user_rate);
      s.start_s = t;
      s.think_s = q ? 0.3 : 1.0;
      s.id = "user-" + std::to_string(u);
      std::vector<std::pair<std::string, std::string>> history = {{"system", system}};
      for (int k = 0; k < turns; ++k) {
        history.emplace_back("user", "turn " + std::to_string(k) + " of " + s.id + " " + words(r, 600));
        s.turns.push_back(Turn{chat_body(history, s.id, a.max_tokens)});
        history.emplace_back("assistant", sim_reply(a.max_tokens));
      }
      out.push_back(std::move(s));
    }
  } else if (a.workload == "agentic") {
    // Agents: one shared ~4,500-character tool/system prompt, then each conversation's own
    // growing history (every turn resends it all: the tool prompt, earlier messages, the sim's
    // answers, plus a new 500-character message). Conversations start staggered and think
    // between turns, so many are in progress at once, interleaved.
    const int conversations = q ? 16 : 40;
    const int turns = 10;
    const double start_rate = a.rate > 0 ? a.rate : (q ? 4.0 : 2.0);  // conversations started / s
    rate_out = start_rate;
    const std::string tools = "You are an agent. Tools: " + words(r, 4500);
    double t = 0;
    for (int c = 0; c < conversations; ++c) {
      Session s;
      t += exp_gap(r, start_rate);
      s.start_s = t;
      s.think_s = q ? 0.3 : 0.5;
      s.id = "agent-" + std::to_string(c);
      std::vector<std::pair<std::string, std::string>> history = {{"system", tools}};
      for (int k = 0; k < turns; ++k) {
        history.emplace_back("user", "step " + std::to_string(k) + " of " + s.id + " " + words(r, 500));
        s.turns.push_back(Turn{chat_body(history, s.id, a.max_tokens)});
        history.emplace_back("assistant", sim_reply(a.max_tokens));
      }
      out.push_back(std::move(s));
    }
  } else if (a.workload == "random") {
    // No sharing: random prompts of mixed lengths (100 to 3,000 tokens).
    const int total = q ? 96 : 1024;
    const double rate = a.rate > 0 ? a.rate : (q ? 30.0 : 60.0);
    rate_out = rate;
    double t = 0;
    for (int k = 0; k < total; ++k) {
      Session s;
      t += exp_gap(r, rate);
      s.start_s = t;
      const std::size_t tokens = 100 + r.below(2901);
      s.turns.push_back(Turn{chat_body({{"user", "random " + std::to_string(k) + " " + words(r, tokens * 4)}},
                                       "", a.max_tokens)});
      out.push_back(std::move(s));
    }
  } else if (a.workload == "mixed") {
    // Long prompts interleaved with long generations (bench/fleet/pd.sh): every other request
    // is a 2,000-token prompt asking for 8 tokens, the others a 100-token prompt asking for 200.
    // No prefix is shared.
    const int total = q ? 48 : 480;
    const double rate = a.rate > 0 ? a.rate : 12.0;
    rate_out = rate;
    single_turns(out, r, total, rate, [&](int k) {
      const bool long_prompt = k % 2 == 0;
      return Turn{chat_body({{"user", "mixed " + std::to_string(k) + " " + words(r, long_prompt ? 8000 : 400)}}, "",
                            long_prompt ? 8 : 200)};
    });
  } else if (a.workload == "lora") {
    // Issue 14: short prompts, each naming one of `adapters` LoRA adapters; adapter k is chosen
    // with probability proportional to 1 / (k + 1)^zipf_s.
    const int total = q ? 600 : 2000;
    const double rate = a.rate > 0 ? a.rate : 40.0;
    rate_out = rate;
    std::vector<double> cdf;
    double sum = 0;
    for (int k = 0; k < a.adapters; ++k) cdf.push_back(sum += 1.0 / std::pow(k + 1.0, a.zipf_s));
    single_turns(out, r, total, rate, [&](int k) {
      const double u = (static_cast<double>(r.next() >> 11) + 0.5) / 9007199254740992.0 * sum;
      const auto adapter = std::lower_bound(cdf.begin(), cdf.end(), u) - cdf.begin();
      return Turn{"{\"model\":\"lora-" + std::to_string(adapter) + "\",\"stream\":true,\"max_tokens\":" +
                  std::to_string(a.max_tokens) + ",\"messages\":[{\"role\":\"user\",\"content\":\"request " +
                  std::to_string(k) + " " + words(r, 400) + "\"}]}"};
    });
  } else {
    usage(("unknown workload " + a.workload).c_str());
  }
  return out;
}

// ---------------------------------------------------------------- HTTP helpers over Transport

struct StringSink final : BodySink {
  std::string data;
  bool write(const char* d, std::size_t n) override {
    data.append(d, n);
    return true;
  }
};

struct TimingSink final : BodySink {
  SteadyTime::time_point first{};
  SteadyTime::time_point last{};
  std::vector<double> gaps_ms;  // between writes after the first (one relayed read each)
  bool got = false;
  std::size_t bytes = 0;
  bool done = false;
  std::string tail;
  bool write(const char* d, std::size_t n) override {
    const auto now = SteadyTime::now();
    if (!got) {
      first = now;
      got = true;
    } else {
      gaps_ms.push_back(std::chrono::duration<double, std::milli>(now - last).count());
    }
    last = now;
    bytes += n;
    tail.append(d, n);
    if (tail.size() > 64) tail.erase(0, tail.size() - 64);
    return true;
  }
};

std::string simple_call(Transport& t, const Endpoint& ep, std::string_view method, std::string_view path,
                        std::string_view body = {}) {
  const Headers headers = {{"Content-Type", "application/json"}};
  UpstreamRequest req;
  req.method = method;
  req.path = path;
  req.headers = &headers;
  req.body = body;
  auto resp = t.send(ep, req, {});
  if (!resp) return {};
  StringSink sink;
  (void)resp.value()->relay(sink);
  return sink.data;
}

double metric_sum(const std::string& text, const std::string& name) {
  double sum = 0;
  std::size_t p = 0;
  while (p < text.size()) {
    std::size_t e = text.find('\n', p);
    if (e == std::string::npos) e = text.size();
    const std::string_view line(text.data() + p, e - p);
    if (line.substr(0, name.size()) == name && line.size() > name.size() &&
        (line[name.size()] == '{' || line[name.size()] == ' ')) {
      const std::size_t sp = line.rfind(' ');
      sum += std::strtod(std::string(line.substr(sp + 1)).c_str(), nullptr);
    }
    p = e + 1;
  }
  return sum;
}

double percentile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const double pos = q * static_cast<double>(v.size() - 1);
  const auto lo = static_cast<std::size_t>(std::floor(pos));
  const std::size_t hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (v[hi] - v[lo]) * (pos - static_cast<double>(lo));
}

}  // namespace

int main(int argc, char** argv) {
  const Args args = parse_args(argc, argv);
  double rate = 0;
  std::vector<Session> sessions = make_workload(args, rate);

  RouterConfig cfg;
  cfg.policy = args.policy;
  // "session@1" = the session policy with session_load_factor 1 (bound off), a second row;
  // "prefix_aware@0" = prefix_aware with prefix_home_load_bound 0.
  // "...+replicas": prefix_replica_affinity on. "...+sync" (either order with +replicas): the
  // router processes' replica sync (run.sh writes it into their configs); nothing in-process,
  // where there is one router.
  std::string name = args.policy;
  for (bool stripped = true; stripped;) {
    stripped = false;
    for (const std::string_view suffix : {std::string_view("+replicas"), std::string_view("+sync")}) {
      if (name.size() > suffix.size() && name.ends_with(suffix)) {
        name.resize(name.size() - suffix.size());
        if (suffix == "+replicas") cfg.policy_options.prefix_replica_affinity = true;
        stripped = true;
      }
    }
  }
  cfg.policy = name;
  if (const auto at_sign = name.find('@'); at_sign != std::string::npos) {
    cfg.policy = name.substr(0, at_sign);
    const double value = std::stod(name.substr(at_sign + 1));
    if (cfg.policy == "prefix_aware") cfg.policy_options.prefix_home_load_bound = value;
    else cfg.policy_options.session_load_factor = value;
  }
  ModelConfig m;
  m.name = kModel;
  for (const auto& url : args.sims) m.endpoints.push_back(EndpointConfig{url, 1, ""});
  if (!args.prefill_sims.empty()) {
    m.prefill.emplace();
    for (const auto& url : args.prefill_sims) m.prefill->endpoints.push_back(EndpointConfig{url, 1, ""});
    m.prefill->policy = args.prefill_policy;
  }
  const bool lora_workload = args.workload == "lora";
  if (lora_workload) {
    for (int k = 0; k < args.adapters; ++k) m.loras.push_back("lora-" + std::to_string(k));
    if (args.lora_aware) {
      m.lora.emplace();
      m.lora->dynamic_loading = true;
      m.lora->path_template = "/adapters/{name}";
      m.lora->load_timeout_ms = 10000;
      m.lora->replicate_margin = args.replicate_margin;
    }
  }
  cfg.models.push_back(m);
  cfg.max_attempts = 1;
  cfg.policy_options.scrape_interval_ms = args.scrape_ms;
  cfg.policy_options.scrape_timeout_ms = 500;
  cfg.policy_options.scrape_stale_ms = std::max<std::uint32_t>(2000, 5 * args.scrape_ms);
  cfg.timeouts.read_ms = 120000;
  cfg.max_idle_connections = 512;
  RouterOptions ro;
  ro.seed = args.seed;
  auto created = Router::create(cfg, std::move(ro));
  if (!created) {
    std::fprintf(stderr, "fleet_bench: %s\n", created.error().message.c_str());
    return 1;
  }
  auto router = std::move(created).value();
  const auto snap = router->snapshot();
  const Pool& pool = snap->pools.at(0);

  // Fresh engines: counters and prefix caches zeroed.
  auto metrics_transport = make_http_transport(HttpTransportOptions{});
  for (const auto& ep : pool.endpoints) simple_call(*metrics_transport, *ep, "POST", "/sim/reset", "{}");
  const Pool* prefill_pool = pool.prefill != Pool::kNoPrefill ? &snap->pools.at(pool.prefill) : nullptr;
  if (prefill_pool != nullptr) {
    for (const auto& ep : prefill_pool->endpoints) simple_call(*metrics_transport, *ep, "POST", "/sim/reset", "{}");
  }

  // Through vllm-router processes (--routers): the engine that served a request is named by the
  // sim's x-sim-id response header, relayed by the router; map it to the engine's URL id.
  std::vector<Endpoint> router_eps;
  std::map<std::string, std::string> engine_of_sim_id;
  std::shared_ptr<Transport> client;
  if (!args.routers.empty()) {
    for (const auto& url : args.routers) {
      auto parsed = parse_url(url);
      if (!parsed) usage(("bad router URL " + url).c_str());
      router_eps.push_back(Endpoint{endpoint_id(parsed.value()), parsed.value(), 1, ""});
    }
    for (const auto& ep : pool.endpoints) {
      const Headers headers;
      UpstreamRequest req;
      req.method = "GET";
      req.path = "/v1/models";
      req.headers = &headers;
      auto resp = metrics_transport->send(*ep, req, {});
      if (!resp) continue;
      for (const auto& h : resp.value()->headers()) {
        if (strcasecmp(h.name.c_str(), "x-sim-id") == 0) engine_of_sim_id[h.value] = ep->id;
      }
      StringSink drain;
      (void)resp.value()->relay(drain);
    }
    if (engine_of_sim_id.size() != pool.endpoints.size()) {
      std::fprintf(stderr, "fleet_bench: could not read every engine's x-sim-id\n");
      return 1;
    }
    HttpTransportOptions co;
    co.read_timeout_ms = 120000;
    co.max_idle_per_endpoint = 512;
    client = make_http_transport(co);
  }
  std::atomic<std::size_t> next_router{0};

  LoadScraper scraper(*router, metrics_transport, std::make_shared<SteadyClock>(), cfg.policy_options);
  if (router_eps.empty()) scraper.start();  // the router processes scrape for themselves

  struct Record {
    double ttft_ms = 0;
    double sent_s = 0;  // since t0
    std::size_t via = 0;  // router process (--routers)
    std::string endpoint;
    bool ok = false;
    std::size_t session = 0;
    std::vector<double> gaps_ms;
  };
  std::mutex rec_mu;
  std::vector<Record> records;
  records.reserve(4096);
  std::atomic<std::size_t> next{0};
  std::atomic<bool> expired{false};
  std::atomic<std::size_t> lora_hits{0};  // aware: some replica had the adapter when it was sent
  const auto t0 = SteadyTime::now() + std::chrono::milliseconds(300);
  const auto deadline = t0 + std::chrono::seconds(args.max_seconds);
  auto at = [&](double s) { return t0 + std::chrono::microseconds(static_cast<std::int64_t>(s * 1e6)); };

  auto worker = [&] {
    for (;;) {
      const std::size_t i = next.fetch_add(1);
      if (i >= sessions.size()) return;
      Session& s = sessions[i];
      auto scheduled = at(s.start_s);
      for (auto& turn : s.turns) {
        std::this_thread::sleep_until(scheduled);
        if (SteadyTime::now() > deadline) {
          expired = true;
          return;
        }
        Record rec;
        rec.session = i;
        rec.sent_s = std::chrono::duration<double>(SteadyTime::now() - t0).count();
        auto view = parse_request(turn.body);
        const Headers headers = {{"Content-Type", "application/json"}};
        UpstreamRequest req;
        req.path = "/v1/chat/completions";
        req.headers = &headers;
        req.body = turn.body;
        if (view && lora_workload && args.lora_aware) {
          for (const auto& ep : pool.endpoints) {
            const auto loaded = lora_loaded(*router, ep->id);
            if (std::find(loaded.begin(), loaded.end(), view.value().model) != loaded.end()) {
              lora_hits.fetch_add(1);
              break;
            }
          }
        }
        if (!router_eps.empty()) {
          rec.via = next_router.fetch_add(1) % router_eps.size();
          const Endpoint& via = router_eps[rec.via];
          auto resp = client->send(via, req, {});
          if (resp) {
            for (const auto& h : resp.value()->headers()) {
              if (strcasecmp(h.name.c_str(), "x-sim-id") == 0) {
                const auto it = engine_of_sim_id.find(h.value);
                if (it != engine_of_sim_id.end()) rec.endpoint = it->second;
              }
            }
            TimingSink sink;
            auto relayed = resp.value()->relay(sink);
            rec.ok = resp.value()->status() == 200 && relayed && sink.tail.find("[DONE]") != std::string::npos;
            if (sink.got) rec.ttft_ms = std::chrono::duration<double, std::milli>(sink.first - scheduled).count();
          }
        } else if (view) {
          auto ex = router->forward(view.value(), req);
          if (ex) {
            rec.endpoint = ex->endpoint().id;
            TimingSink sink;
            auto relayed = ex->relay(sink);
            rec.ok = ex->status() == 200 && relayed && sink.tail.find("[DONE]") != std::string::npos;
            if (sink.got) rec.ttft_ms = std::chrono::duration<double, std::milli>(sink.first - scheduled).count();
            rec.gaps_ms = std::move(sink.gaps_ms);
          }
        }
        {
          std::lock_guard<std::mutex> lock(rec_mu);
          records.push_back(rec);
        }
        scheduled = SteadyTime::now() + std::chrono::microseconds(static_cast<std::int64_t>(s.think_s * 1e6));
      }
    }
  };
  std::vector<std::thread> threads;
  const int nthreads = std::max(1, std::min<int>(args.threads, static_cast<int>(sessions.size())));
  for (int i = 0; i < nthreads; ++i) threads.emplace_back(worker);
  for (auto& t : threads) t.join();
  const double wall = std::chrono::duration<double>(SteadyTime::now() - t0).count();
  if (router_eps.empty()) scraper.stop();

  // FLEET_TRACE=FILE: one line per request (sent at s, router, engine, prefix group, TTFT ms, ok).
  if (const char* trace = std::getenv("FLEET_TRACE"); trace != nullptr && *trace != '\0') {
    if (FILE* f = std::fopen(trace, "a")) {
      std::map<std::string, std::size_t> engine_index;
      for (std::size_t e = 0; e < pool.endpoints.size(); ++e) engine_index[pool.endpoints[e]->id] = e;
      for (const auto& r : records) {
        const auto e = engine_index.find(r.endpoint);
        std::fprintf(f, "%s %zu %.4f %zu %d %d %.2f %d\n", args.policy.c_str(), router_eps.size(), r.sent_s, r.via,
                     e == engine_index.end() ? -1 : static_cast<int>(e->second), sessions[r.session].group, r.ttft_ms,
                     r.ok ? 1 : 0);
      }
      std::fclose(f);
    }
  }

  // Results.
  std::vector<double> ttfts;
  std::vector<double> itls;
  std::map<std::string, std::vector<double>> ttfts_of_engine;
  std::map<std::string, int> per_engine;
  for (const auto& ep : pool.endpoints) per_engine[ep->id] = 0;
  std::size_t ok = 0;
  std::map<std::size_t, std::map<std::string, int>> by_session;
  for (const auto& r : records) {
    if (!r.endpoint.empty()) per_engine[r.endpoint]++;
    if (r.ok) {
      ++ok;
      ttfts.push_back(r.ttft_ms);
      itls.insert(itls.end(), r.gaps_ms.begin(), r.gaps_ms.end());
      ttfts_of_engine[r.endpoint].push_back(r.ttft_ms);
    }
    if (!sessions[r.session].id.empty() && !r.endpoint.empty()) by_session[r.session][r.endpoint]++;
  }
  double mean = 0, var = 0;
  for (auto& [id, n] : per_engine) mean += n;
  mean /= static_cast<double>(per_engine.size());
  for (auto& [id, n] : per_engine) var += (n - mean) * (n - mean);
  var /= static_cast<double>(per_engine.size());
  const double cv = mean > 0 ? std::sqrt(var) / mean : 0;
  std::size_t sticky = 0, turns_total = 0, turns_home = 0;
  for (auto& [sid, engines] : by_session) {
    int total = 0, top = 0;
    for (auto& [e, n] : engines) {
      total += n;
      top = std::max(top, n);
    }
    if (engines.size() == 1) ++sticky;
    turns_total += static_cast<std::size_t>(total);
    turns_home += static_cast<std::size_t>(top);
  }
  double queries = 0, hits = 0, queue_s = 0, queue_n = 0;
  std::vector<std::shared_ptr<const Endpoint>> engines(pool.endpoints.begin(), pool.endpoints.end());
  if (prefill_pool != nullptr) engines.insert(engines.end(), prefill_pool->endpoints.begin(), prefill_pool->endpoints.end());
  for (const auto& ep : engines) {
    const std::string text = simple_call(*metrics_transport, *ep, "GET", "/metrics");
    queries += metric_sum(text, "vllm:prefix_cache_queries_total");
    hits += metric_sum(text, "vllm:prefix_cache_hits_total");
    queue_s += metric_sum(text, "vllm:request_queue_time_seconds_sum");
    queue_n += metric_sum(text, "vllm:request_queue_time_seconds_count");
  }
  // LoRA: loads = the router's (aware) + the engines' own auto-loads (adapter-blind baseline:
  // each auto-load is one request that found its adapter missing on its replica).
  double sim_loads = 0, sim_auto = 0, sim_unloads = 0;
  auto json_num = [](const std::string& text, const std::string& key) {
    const std::size_t at = text.find("\"" + key + "\":");
    return at == std::string::npos ? 0.0 : std::strtod(text.c_str() + at + key.size() + 3, nullptr);
  };
  if (lora_workload) {
    for (const auto& ep : pool.endpoints) {
      const std::string text = simple_call(*metrics_transport, *ep, "GET", "/sim/lora");
      sim_loads += json_num(text, "loads");
      sim_auto += json_num(text, "auto_loads");
      sim_unloads += json_num(text, "unloads");
    }
    const LoraStats ls = lora_stats(*router);
    // Warm: requests scheduled after the first 5 s (every adapter's first load is behind them).
    std::vector<double> warm;
    for (const auto& r : records) {
      if (r.ok && sessions[r.session].start_s >= 5.0) warm.push_back(r.ttft_ms);
    }
    const double n = static_cast<double>(records.size());
    const double hit = args.lora_aware ? static_cast<double>(lora_hits.load()) / n : (n - sim_auto) / n;
    std::fprintf(stdout,
                 "{\"lora\":true,\"policy\":\"%s\",\"aware\":%s,\"requests\":%zu,\"ok\":%zu,"
                 "\"ttft_p50_ms\":%.2f,\"ttft_p99_ms\":%.2f,\"ttft_p99_warm_ms\":%.2f,\"loads\":%.0f,\"loads_per_1000\":%.2f,"
                 "\"already_loaded\":%.4f,\"router_loads\":%llu,\"router_unloads\":%llu,"
                 "\"router_load_failures\":%llu,\"sim_runtime_loads\":%.0f,\"sim_auto_loads\":%.0f,"
                 "\"sim_unloads\":%.0f,\"per_engine\":%s,\"offered_rate\":%.2f,\"wall_s\":%.3f}\n",
                 args.policy.c_str(), args.lora_aware ? "true" : "false", records.size(), ok,
                 percentile(ttfts, 0.5), percentile(ttfts, 0.99), percentile(warm, 0.99), sim_loads + sim_auto,
                 n > 0 ? 1000.0 * (sim_loads + sim_auto) / n : 0.0, hit,
                 static_cast<unsigned long long>(ls.loads), static_cast<unsigned long long>(ls.unloads),
                 static_cast<unsigned long long>(ls.load_failures), sim_loads, sim_auto, sim_unloads,
                 [&] {
                   std::string e = "[";
                   for (auto& [id, cnt] : per_engine) e += (e.size() > 1 ? "," : "") + std::to_string(cnt);
                   return e + "]";
                 }().c_str(),
                 rate, wall);
    return ok == records.size() && !expired ? 0 : 3;
  }
  // Per-engine TTFT p99 (engines in id order, like per_engine) and the worst one against the
  // median of the others: one engine left with a long queue shows here.
  std::vector<double> engine_p99;
  std::string engine_p99_json = "[";
  for (auto& [id, n] : per_engine) {
    const auto it = ttfts_of_engine.find(id);
    const double p = it == ttfts_of_engine.end() ? 0.0 : percentile(it->second, 0.99);
    engine_p99.push_back(p);
    char buf[32];
    std::snprintf(buf, sizeof buf, "%s%.1f", engine_p99_json.size() > 1 ? "," : "", p);
    engine_p99_json += buf;
  }
  engine_p99_json += "]";
  double engine_p99_ratio = 0;
  if (engine_p99.size() > 1) {
    const auto worst = std::max_element(engine_p99.begin(), engine_p99.end());
    const double max_p99 = *worst;
    std::vector<double> others(engine_p99.begin(), engine_p99.end());
    others.erase(others.begin() + (worst - engine_p99.begin()));
    const double median_others = percentile(others, 0.5);
    engine_p99_ratio = median_others > 0 ? max_p99 / median_others : 0.0;
  }
  std::string engines_json = "[";
  for (auto& [id, n] : per_engine) engines_json += (engines_json.size() > 1 ? "," : "") + std::to_string(n);
  engines_json += "]";
  std::printf(
      "{\"policy\":\"%s\",\"workload\":\"%s\",\"engines\":%zu,\"requests\":%zu,\"ok\":%zu,"
      "\"errors\":%zu,\"expired\":%s,\"offered_rate\":%.2f,\"wall_s\":%.3f,\"rps\":%.3f,"
      "\"ttft_p50_ms\":%.2f,\"ttft_p99_ms\":%.2f,\"ttft_mean_ms\":%.2f,\"hit_rate\":%.4f,"
      "\"cv\":%.4f,\"per_engine\":%s,\"sessions\":%zu,\"sticky_sessions\":%zu,"
      "\"turns_on_home\":%.4f,\"queue_mean_ms\":%.2f,\"scrape_rounds\":%llu,\"prefill_engines\":%zu,"
      "\"itl_p50_ms\":%.2f,\"itl_p99_ms\":%.2f,\"routers\":%zu,\"engine_p99_ms\":%s,\"engine_p99_ratio\":%.3f}\n",
      args.policy.c_str(), args.workload.c_str(), pool.endpoints.size(), records.size(), ok,
      records.size() - ok, expired ? "true" : "false", rate, wall,
      static_cast<double>(ok) / wall, percentile(ttfts, 0.5), percentile(ttfts, 0.99),
      ttfts.empty() ? 0.0 : [&] { double s = 0; for (double x : ttfts) s += x; return s / static_cast<double>(ttfts.size()); }(),
      queries > 0 ? hits / queries : 0.0, cv, engines_json.c_str(), by_session.size(), sticky,
      turns_total ? static_cast<double>(turns_home) / static_cast<double>(turns_total) : 0.0,
      queue_n > 0 ? 1000.0 * queue_s / queue_n : 0.0,
      static_cast<unsigned long long>(scraper.rounds()), prefill_pool != nullptr ? prefill_pool->endpoints.size() : 0,
      percentile(itls, 0.5), percentile(itls, 0.99), router_eps.size(), engine_p99_json.c_str(), engine_p99_ratio);
  return ok == records.size() && !expired ? 0 : 3;
}
