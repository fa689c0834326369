// Shared pieces of the `conclave` client commands (put, get, member, ...):
// the global flags, exit codes, connecting, interrupts and the printers
// for the three output formats (simple, json, table).
//
// Simple output follows etcdctl 3.4's line formats so that scripts and
// people moving from etcdctl see the same text. json prints the wire
// responses with the field names, number and base64 conventions etcdctl's
// JSON uses. table is offered where etcdctl offers it (member list, endpoint
// status and health).
//
// Thread-safety: the printers write to stdout/stderr and are called from the
// command's main thread, except where a command says otherwise (keep-alive).
// Interrupt state is process-wide and atomic.
#pragma once

#include <google/protobuf/message.h>
#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "client/client.h"

namespace conclave::cli {

// Process exit codes of the client commands.
enum ExitCode : int {
  kExitSuccess = 0,
  kExitError = 1,          // the server refused, or local I/O failed
  kExitBadConnection = 2,  // no endpoint could be reached
  kExitInvalidInput = 3,   // input that parsed but makes no sense
  kExitInterrupted = 5,    // SIGINT/SIGTERM before the command finished its job
  kExitBadArgs = 128,      // wrong arguments or flags
};

enum class OutputFormat : uint8_t { kSimple, kJson, kTable };

struct GlobalFlags {
  std::string endpoints = "127.0.0.1:2379";
  std::string write_out = "simple";
  std::string dial_timeout = "2s";
  std::string command_timeout = "5s";
  bool hex = false;
};

// What a command's run function gets: the parsed global flags and helpers.
class Env {
 public:
  explicit Env(const GlobalFlags* flags) : flags_(flags) {}

  // Validates the global flags (formats, durations, endpoints). Called once
  // before the command runs.
  Status Init();

  OutputFormat format() const { return format_; }
  bool hex() const { return flags_->hex; }
  const std::vector<std::string>& endpoints() const { return endpoints_; }
  std::chrono::milliseconds dial_timeout() const { return dial_timeout_; }
  std::chrono::milliseconds command_timeout() const { return command_timeout_; }

  // A client of all endpoints (or of `only` when not empty); the error is
  // printed and *exit_code set (kExitBadConnection) when none answers.
  std::unique_ptr<client::Client> Connect(int* exit_code,
                                          const std::vector<std::string>& only = {});
  // A client of one endpoint, or its Status (for per-endpoint commands).
  Result<std::unique_ptr<client::Client>> ConnectOne(const std::string& endpoint);

 private:
  const GlobalFlags* flags_;
  OutputFormat format_ = OutputFormat::kSimple;
  std::vector<std::string> endpoints_;
  std::chrono::milliseconds dial_timeout_{2000};
  std::chrono::milliseconds command_timeout_{5000};
};

// A registered command: the CLI11 subcommand and what runs it.
struct Command {
  CLI::App* app;
  std::function<int(Env&)> run;
};
using CommandList = std::vector<Command>;

// Prints "Error: <message>" to stderr and returns `code`.
int Fail(int code, std::string_view message);
// Fail for a failed call: kExitError, or kExitInterrupted after an interrupt.
int FailCall(const Status& status);

// "2s", "500ms", "1m30s", "1.5s" (Go's duration syntax, units ns..h).
Result<std::chrono::milliseconds> ParseDuration(std::string_view text);
// Go's time.Duration String(): "1.234567ms", "850µs", "2.5s", "1m3s".
std::string FormatDuration(std::chrono::nanoseconds d);
// Sizes as etcdctl prints them (SI units): "20 kB", "1.5 MB", "7 B".
std::string HumanBytes(uint64_t bytes);
// `\x66\x6f\x6f` for "foo".
std::string HexEscape(std::string_view bytes);
// Go's %q for plain strings: quotes, with \" \\ and control bytes escaped.
std::string GoQuote(std::string_view s);
// Hex lease or member IDs ("694d77aa9e38260f"); InvalidArgument otherwise.
Result<uint64_t> ParseHexId(std::string_view text);

// ---- interrupts ------------------------------------------------------------

// Blocks SIGINT and SIGTERM in this thread and every thread it starts, and
// starts the thread that receives them. Call before connecting.
void StartSignalThread();
// True once SIGINT or SIGTERM has arrived.
bool Interrupted();
// Waits up to `timeout` for an interrupt; true if one arrived.
bool WaitInterrupted(std::chrono::milliseconds timeout);

// Whether a stream that ended with `s` may be opened again: its member
// went away or broke the connection (not a refusal of the request).
bool StreamMayResume(const Status& s);
// While it lives, `hook` runs (on the signal thread) when an interrupt
// arrives, or at once if one already has. One at a time.
class ScopedInterruptHook {
 public:
  explicit ScopedInterruptHook(std::function<void()> hook);
  ~ScopedInterruptHook();
  ScopedInterruptHook(const ScopedInterruptHook&) = delete;
  ScopedInterruptHook& operator=(const ScopedInterruptHook&) = delete;
};

// ---- output ----------------------------------------------------------------

// Writes raw bytes (keys and values may hold any byte) and a newline.
void PrintLine(std::string_view bytes);
// A key or value as the user asked for it (hex-escaped with --hex).
void PrintBytes(const Env& env, std::string_view bytes);
// etcdctl's key/value pair: the key line (unless value_only), the value line.
void PrintKv(const Env& env, const mvccpb::KeyValue& kv, bool value_only);

// JSON the way etcdctl prints wire responses: proto field names, integers as
// numbers, bytes in base64, enums as numbers, zero values left out, and oneof
// members wrapped as {"<Oneof>":{"<Field>":...}} with Go's CamelCase names.
std::string ToJson(const google::protobuf::Message& message);
// The header's fields followed by `fields` ("\"ID\":12"), as one object: the
// shape of the lease responses in etcdctl's JSON.
std::string FlatHeaderJson(const etcdserverpb::ResponseHeader& header,
                           const std::vector<std::string>& fields);
// JSON string literal (escapes as Go's encoder does, including <, > and &).
std::string JsonString(std::string_view s);

// An ASCII table: centred headers, right-aligned cells.
std::string FormatTable(const std::vector<std::string>& header,
                        const std::vector<std::vector<std::string>>& rows);

// "table is not supported as output format" unless the command supports it.
int UnsupportedFormat(const Env& env);

// ---- command registration (one function per area) --------------------------

void AddKvCommands(CLI::App& app, CommandList* commands);
void AddLeaseCommands(CLI::App& app, CommandList* commands);
// `kv put|get|del|del-range|scan`: the native keyspace.
void AddNativeCommands(CLI::App& app, CommandList* commands);
void AddConcurrencyCommands(CLI::App& app, CommandList* commands);
// Returns the `snapshot` subcommand, to which `restore` may be added.
CLI::App* AddClusterCommands(CLI::App& app, CommandList* commands);

}  // namespace conclave::cli
