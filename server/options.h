// Command line, environment and config-file handling of the vllm-router executable.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "app_config.h"
#include "vllm_router/config.h"
#include "vllm_router/result.h"

namespace vllm_router::server {

/// Everything the command line asked for.
struct ProgramOptions {
  AppConfig config;
  std::string config_path;     ///< --config / VLLM_ROUTER_CONFIG; empty: none
  bool check_config = false;   ///< --check-config: validate, print a summary, exit
  bool demo = false;           ///< --demo: start two simulated engines and route to them
  bool help = false;           ///< --help
  bool version = false;        ///< --version
  bool hash_key = false;       ///< --hash-key: print the SHA-256 of the key on stdin
};

/// Environment as a map (tests pass their own; main passes environ).
using Environment = std::map<std::string, std::string>;

/// Reads `environ` into an Environment.
Environment current_environment();

/// Builds the options: config file (path from flags or env) first, then environment variables,
/// then flags (flags > env > file). A model named at a higher level replaces the same-named model
/// of a lower level; other models are kept. Errors: Errc::config naming the flag, variable or
/// JSON field. Reads the config file from disk. Does not validate cross-field rules (see
/// vllm_router::validate).
Result<ProgramOptions> parse_options(const std::vector<std::string>& args, const Environment& env);

/// The --help text.
std::string usage();

}  // namespace vllm_router::server
