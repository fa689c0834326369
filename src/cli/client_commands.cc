#include "cli/client_commands.h"

#include <fmt/format.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "cli/client_common.h"

namespace conclave::cli {

namespace {

// Lets the global flags follow the command: unknown options of a client
// command (and of its parents up to `root`) go to the parent.
void FallThroughToRoot(CLI::App* leaf, const CLI::App* root) {
  for (CLI::App* a = leaf; a != nullptr && a != root; a = a->get_parent())
    a->fallthrough();
}

// A global flag that an environment variable may set instead:
// CONCLAVE_<NAME>, or etcdctl's ETCDCTL_<NAME>.
struct EnvFlag {
  CLI::Option* option;
  std::string name;             // ENDPOINTS, WRITE_OUT, ...
  std::string* text = nullptr;  // a string flag
  bool* on = nullptr;           // a boolean flag
};

// Applies the environment to the global flags not given on the command
// line. As etcdctl: a variable that a flag on the command line shadows is an
// error, not silently ignored.
Status ApplyEnvironment(const std::vector<EnvFlag>& env_flags) {
  for (const EnvFlag& f : env_flags) {
    std::string var;
    const char* value = nullptr;
    for (const char* prefix : {"CONCLAVE_", "ETCDCTL_"}) {
      var = prefix + f.name;
      value = std::getenv(var.c_str());
      if (value != nullptr) break;
    }
    if (value == nullptr) continue;
    if (f.option->count() > 0) {
      return Status::InvalidArgument(fmt::format(
          "conflicting environment variable \"{}\" is shadowed by corresponding command-line flag "
          "(either unset environment variable or disable flag)",
          var));
    }
    if (f.text != nullptr) *f.text = value;
    if (f.on != nullptr) {
      const std::string_view v(value);
      if (v == "true" || v == "1" || v == "TRUE" || v == "True") {
        *f.on = true;
      } else if (v == "false" || v == "0" || v == "FALSE" || v == "False" || v.empty()) {
        *f.on = false;
      } else {
        return Status::InvalidArgument(
            fmt::format("invalid value \"{}\" for environment variable \"{}\"", v, var));
      }
    }
  }
  return Status::Ok();
}

}  // namespace

ClientCommands AddClientCommands(CLI::App& app) {
  auto flags = std::make_shared<GlobalFlags>();
  auto env_flags = std::make_shared<std::vector<EnvFlag>>();
  auto text_flag = [&](const std::string& names, std::string* value, const std::string& help,
                       const std::string& env) {
    CLI::Option* o =
        app.add_option(names, *value, help + " [$CONCLAVE_" + env + ", $ETCDCTL_" + env + "]");
    o->capture_default_str();
    env_flags->push_back({o, env, value, nullptr});
    return o;
  };
  // Given more than once, the lists add up (as etcdctl's).
  text_flag("--endpoints", &flags->endpoints, "comma-separated list of members to talk to",
            "ENDPOINTS")
      ->delimiter(',')
      ->multi_option_policy(CLI::MultiOptionPolicy::Join);
  text_flag("-w,--write-out", &flags->write_out, "output format: simple, json or table",
            "WRITE_OUT");
  text_flag("--dial-timeout", &flags->dial_timeout, "time allowed to connect to an endpoint",
            "DIAL_TIMEOUT");
  text_flag("--command-timeout", &flags->command_timeout,
            "time allowed for one request (failovers included)", "COMMAND_TIMEOUT");
  CLI::Option* hex = app.add_flag("--hex", flags->hex,
                                  "print keys and values as hex-escaped bytes [$CONCLAVE_HEX, "
                                  "$ETCDCTL_HEX]");
  env_flags->push_back({hex, "HEX", nullptr, &flags->hex});

  auto commands = std::make_shared<CommandList>();
  AddKvCommands(app, commands.get());
  AddLeaseCommands(app, commands.get());
  AddNativeCommands(app, commands.get());
  AddConcurrencyCommands(app, commands.get());
  ClientCommands out;
  out.snapshot = AddClusterCommands(app, commands.get());
  for (const Command& c : *commands)
    FallThroughToRoot(c.app, &app);

  out.run = [flags, commands, env_flags]() -> int {
    for (const Command& c : *commands) {
      if (!c.app->parsed()) continue;
      if (Status s = ApplyEnvironment(*env_flags); !s.ok()) return Fail(kExitError, s.message());
      Env env(flags.get());
      if (Status s = env.Init(); !s.ok()) return Fail(kExitBadArgs, s.message());
      // Before any thread starts: every thread inherits the blocked signals.
      StartSignalThread();
      const int code = c.run(env);
      std::fflush(stdout);
      return code;
    }
    return -1;
  };
  out.parse_error = [commands, &app](const CLI::ParseError& e) -> int {
    bool ours = false;
    for (const Command& c : *commands) {
      for (const CLI::App* a = c.app; a != nullptr && a != &app; a = a->get_parent())
        ours = ours || a->parsed();
    }
    if (!ours || e.get_exit_code() == 0) return -1;  // --help and the like
    return Fail(kExitBadArgs, e.what());
  };
  return out;
}

}  // namespace conclave::cli
