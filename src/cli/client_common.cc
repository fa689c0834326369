#include "cli/client_common.h"

#include <fmt/format.h>
#include <google/protobuf/descriptor.h>
#include <google/protobuf/reflection.h>
#include <signal.h>

#include <atomic>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <thread>

namespace conclave::cli {

namespace {

using std::chrono::milliseconds;
namespace gp = google::protobuf;

}  // namespace

// ---- Env -------------------------------------------------------------------

Status Env::Init() {
  if (flags_->write_out == "simple") {
    format_ = OutputFormat::kSimple;
  } else if (flags_->write_out == "json") {
    format_ = OutputFormat::kJson;
  } else if (flags_->write_out == "table") {
    format_ = OutputFormat::kTable;
  } else {
    return Status::InvalidArgument(
        fmt::format("unknown output format {:?} (use simple, json or table)", flags_->write_out));
  }
  auto dial = ParseDuration(flags_->dial_timeout);
  if (!dial.ok()) return Status::InvalidArgument("--dial-timeout: " + dial.status().message());
  auto command = ParseDuration(flags_->command_timeout);
  if (!command.ok()) {
    return Status::InvalidArgument("--command-timeout: " + command.status().message());
  }
  if (dial->count() <= 0 || command->count() <= 0) {
    return Status::InvalidArgument("timeouts must be positive");
  }
  dial_timeout_ = *dial;
  command_timeout_ = *command;
  ASSIGN_OR_RETURN(endpoints_, client::ParseEndpoints(flags_->endpoints));
  return Status::Ok();
}

std::unique_ptr<client::Client> Env::Connect(int* exit_code, const std::vector<std::string>& only) {
  client::ClientOptions options;
  options.endpoints = only.empty() ? endpoints_ : only;
  options.dial_timeout = dial_timeout_;
  options.call_timeout = command_timeout_;
  // One request per command: learning the ranges would cost more than the
  // hop it saves.
  options.route_native = false;
  auto c = client::Client::Connect(options);
  if (!c.ok()) {
    *exit_code =
        Fail(c.status().code() == StatusCode::kInvalidArgument ? kExitBadArgs : kExitBadConnection,
             c.status().message());
    return nullptr;
  }
  return std::move(c).value();
}

Result<std::unique_ptr<client::Client>> Env::ConnectOne(const std::string& endpoint) {
  client::ClientOptions options;
  options.endpoints = {endpoint};
  options.dial_timeout = dial_timeout_;
  options.call_timeout = command_timeout_;
  return client::Client::Connect(options);
}

// ---- errors ----------------------------------------------------------------

int Fail(int code, std::string_view message) {
  std::fflush(stdout);
  fmt::print(stderr, "Error: {}\n", message);
  return code;
}

int FailCall(const Status& status) {
  return Fail(Interrupted() ? kExitInterrupted : kExitError, status.message());
}

int UnsupportedFormat(const Env& env) {
  const char* name = env.format() == OutputFormat::kTable ? "table" : "json";
  return Fail(kExitInvalidInput, fmt::format("{} is not supported as output format", name));
}

// ---- formatting helpers ----------------------------------------------------

Result<milliseconds> ParseDuration(std::string_view text) {
  if (text.empty()) return Status::InvalidArgument("empty duration");
  double total_ns = 0;
  std::string_view rest = text;
  while (!rest.empty()) {
    size_t n = 0;
    while (n < rest.size() && (std::isdigit(static_cast<unsigned char>(rest[n])) || rest[n] == '.'))
      ++n;
    if (n == 0) return Status::InvalidArgument(fmt::format("invalid duration {:?}", text));
    const double value = std::strtod(std::string(rest.substr(0, n)).c_str(), nullptr);
    rest.remove_prefix(n);
    size_t u = 0;
    while (u < rest.size() && !std::isdigit(static_cast<unsigned char>(rest[u])) && rest[u] != '.')
      ++u;
    const std::string_view unit = rest.substr(0, u);
    rest.remove_prefix(u);
    double scale = 0;
    if (unit == "ns") {
      scale = 1;
    } else if (unit == "us" || unit == "µs") {
      scale = 1e3;
    } else if (unit == "ms") {
      scale = 1e6;
    } else if (unit == "s") {
      scale = 1e9;
    } else if (unit == "m") {
      scale = 60e9;
    } else if (unit == "h") {
      scale = 3600e9;
    } else {
      return Status::InvalidArgument(fmt::format("invalid duration {:?}: unknown unit", text));
    }
    total_ns += value * scale;
  }
  // A day is far more than any client timeout needs; it also keeps the
  // arithmetic below clear of overflow.
  if (total_ns > 24 * 3600e9) return Status::InvalidArgument("duration longer than 24h");
  return milliseconds(static_cast<int64_t>(total_ns / 1e6));
}

namespace {

// "1.234500" -> "1.2345", "2.000" -> "2".
std::string TrimFraction(std::string s) {
  if (s.find('.') == std::string::npos) return s;
  while (s.back() == '0')
    s.pop_back();
  if (s.back() == '.') s.pop_back();
  return s;
}

}  // namespace

std::string FormatDuration(std::chrono::nanoseconds d) {
  const int64_t ns = d.count();
  if (ns == 0) return "0s";
  if (ns < 0) return "-" + FormatDuration(-d);
  if (ns < 1'000) return fmt::format("{}ns", ns);
  if (ns < 1'000'000) return TrimFraction(fmt::format("{}.{:03}", ns / 1'000, ns % 1'000)) + "µs";
  if (ns < 1'000'000'000) {
    return TrimFraction(fmt::format("{}.{:06}", ns / 1'000'000, ns % 1'000'000)) + "ms";
  }
  const int64_t total_seconds = ns / 1'000'000'000;
  std::string seconds =
      TrimFraction(fmt::format("{}.{:09}", total_seconds % 60, ns % 1'000'000'000)) + "s";
  const int64_t minutes = total_seconds / 60;
  if (minutes == 0) return seconds;
  if (minutes < 60) return fmt::format("{}m{}", minutes, seconds);
  return fmt::format("{}h{}m{}", minutes / 60, minutes % 60, seconds);
}

std::string HumanBytes(uint64_t bytes) {
  static constexpr const char* kUnits[] = {"B", "kB", "MB", "GB", "TB", "PB", "EB"};
  if (bytes < 10) return fmt::format("{} B", bytes);
  const double b = static_cast<double>(bytes);
  const int e = static_cast<int>(std::floor(std::log(b) / std::log(1000.0)));
  const double value = std::floor(b / std::pow(1000.0, e) * 10 + 0.5) / 10;
  if (value < 10) return fmt::format("{:.1f} {}", value, kUnits[e]);
  return fmt::format("{:.0f} {}", value, kUnits[e]);
}

std::string HexEscape(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size() * 4);
  for (unsigned char c : bytes)
    out += fmt::format("\\x{:02x}", c);
  return out;
}

std::string GoQuote(std::string_view s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c < 0x20 || c == 0x7f) {
      out += fmt::format("\\x{:02x}", c);
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + "\"";
}

Result<uint64_t> ParseHexId(std::string_view text) {
  if (text.empty() || text.size() > 16) {
    return Status::InvalidArgument(fmt::format("{:?} is not a hex ID", text));
  }
  uint64_t v = 0;
  for (char c : text) {
    int d = -1;
    if (c >= '0' && c <= '9') d = c - '0';
    if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
    if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
    if (d < 0) return Status::InvalidArgument(fmt::format("{:?} is not a hex ID", text));
    v = v * 16 + static_cast<uint64_t>(d);
  }
  return v;
}

// ---- interrupts ------------------------------------------------------------

namespace {

std::atomic<bool> g_interrupted{false};
std::mutex g_signal_mu;
std::condition_variable g_signal_cv;
std::function<void()> g_interrupt_hook;  // guarded by g_signal_mu

}  // namespace

void StartSignalThread() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  std::thread([signals] {
    int sig = 0;
    sigwait(&signals, &sig);
    // The hook runs under the lock so that ScopedInterruptHook's destructor
    // cannot return while it is still running.
    std::lock_guard lock(g_signal_mu);
    g_interrupted.store(true);
    if (g_interrupt_hook) g_interrupt_hook();
    g_signal_cv.notify_all();
  }).detach();
}

bool Interrupted() {
  return g_interrupted.load();
}

bool WaitInterrupted(milliseconds timeout) {
  std::unique_lock lock(g_signal_mu);
  return g_signal_cv.wait_for(lock, timeout, [] { return g_interrupted.load(); });
}

ScopedInterruptHook::ScopedInterruptHook(std::function<void()> hook) {
  std::lock_guard lock(g_signal_mu);
  g_interrupt_hook = std::move(hook);
  if (g_interrupted.load() && g_interrupt_hook) g_interrupt_hook();
}

ScopedInterruptHook::~ScopedInterruptHook() {
  std::lock_guard lock(g_signal_mu);
  g_interrupt_hook = nullptr;
}

// ---- output ----------------------------------------------------------------

void PrintLine(std::string_view bytes) {
  std::fwrite(bytes.data(), 1, bytes.size(), stdout);
  std::fputc('\n', stdout);
}

void PrintBytes(const Env& env, std::string_view bytes) {
  if (env.hex()) {
    PrintLine(HexEscape(bytes));
  } else {
    PrintLine(bytes);
  }
}

void PrintKv(const Env& env, const mvccpb::KeyValue& kv, bool value_only) {
  if (!value_only) PrintBytes(env, kv.key());
  PrintBytes(env, kv.value());
}

std::string JsonString(std::string_view s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      case '<':
      case '>':
      case '&':
        out += fmt::format("\\u{:04x}", c);
        break;
      default:
        if (c < 0x20) {
          out += fmt::format("\\u{:04x}", c);
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out + "\"";
}

namespace {

std::string Base64(std::string_view in) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    const uint32_t n = (uint8_t(in[i]) << 16) | (uint8_t(in[i + 1]) << 8) | uint8_t(in[i + 2]);
    out += kAlphabet[(n >> 18) & 63];
    out += kAlphabet[(n >> 12) & 63];
    out += kAlphabet[(n >> 6) & 63];
    out += kAlphabet[n & 63];
  }
  if (i + 1 == in.size()) {
    const uint32_t n = uint8_t(in[i]) << 16;
    out += kAlphabet[(n >> 18) & 63];
    out += kAlphabet[(n >> 12) & 63];
    out += "==";
  } else if (i + 2 == in.size()) {
    const uint32_t n = (uint8_t(in[i]) << 16) | (uint8_t(in[i + 1]) << 8);
    out += kAlphabet[(n >> 18) & 63];
    out += kAlphabet[(n >> 12) & 63];
    out += kAlphabet[(n >> 6) & 63];
    out += '=';
  }
  return out;
}

// "response_put" -> "ResponsePut" (the Go name of a oneof and its members).
std::string GoName(std::string_view proto_name) {
  std::string out;
  bool upper = true;
  for (char c : proto_name) {
    if (c == '_') {
      upper = true;
      continue;
    }
    out += upper ? static_cast<char>(std::toupper(static_cast<unsigned char>(c))) : c;
    upper = false;
  }
  return out;
}

// One value of `field` (element `index` when repeated); empty when Go's
// omitempty would leave it out.
std::string FieldValueJson(const gp::Message& m, const gp::FieldDescriptor* f, int index) {
  const gp::Reflection* r = m.GetReflection();
  const bool rep = f->is_repeated();
  using T = gp::FieldDescriptor;
  switch (f->cpp_type()) {
    case T::CPPTYPE_INT32:
      return std::to_string(rep ? r->GetRepeatedInt32(m, f, index) : r->GetInt32(m, f));
    case T::CPPTYPE_INT64:
      return std::to_string(rep ? r->GetRepeatedInt64(m, f, index) : r->GetInt64(m, f));
    case T::CPPTYPE_UINT32:
      return std::to_string(rep ? r->GetRepeatedUInt32(m, f, index) : r->GetUInt32(m, f));
    case T::CPPTYPE_UINT64:
      return std::to_string(rep ? r->GetRepeatedUInt64(m, f, index) : r->GetUInt64(m, f));
    case T::CPPTYPE_BOOL:
      return (rep ? r->GetRepeatedBool(m, f, index) : r->GetBool(m, f)) ? "true" : "false";
    case T::CPPTYPE_ENUM:
      return std::to_string(rep ? r->GetRepeatedEnumValue(m, f, index) : r->GetEnumValue(m, f));
    case T::CPPTYPE_STRING: {
      const std::string s = rep ? r->GetRepeatedString(m, f, index) : r->GetString(m, f);
      return f->type() == T::TYPE_BYTES ? "\"" + Base64(s) + "\"" : JsonString(s);
    }
    case T::CPPTYPE_DOUBLE:
    case T::CPPTYPE_FLOAT: {
      // The shortest text that reads back as the same value; JSON has no
      // NaN or infinity.
      if (f->cpp_type() == T::CPPTYPE_FLOAT) {
        const float v = rep ? r->GetRepeatedFloat(m, f, index) : r->GetFloat(m, f);
        return std::isfinite(v) ? fmt::format("{}", v) : "null";
      }
      const double v = rep ? r->GetRepeatedDouble(m, f, index) : r->GetDouble(m, f);
      return std::isfinite(v) ? fmt::format("{}", v) : "null";
    }
    case T::CPPTYPE_MESSAGE:
      return ToJson(rep ? r->GetRepeatedMessage(m, f, index) : r->GetMessage(m, f));
    default:
      return "null";
  }
}

bool IsEmpty(const gp::Message& m, const gp::FieldDescriptor* f) {
  const gp::Reflection* r = m.GetReflection();
  if (f->is_repeated()) return r->FieldSize(m, f) == 0;
  if (f->cpp_type() == gp::FieldDescriptor::CPPTYPE_MESSAGE) return !r->HasField(m, f);
  if (f->containing_oneof() != nullptr) return !r->HasField(m, f);
  // proto3 scalars: HasField is false exactly for the zero value.
  return !r->HasField(m, f);
}

}  // namespace

std::string ToJson(const gp::Message& message) {
  const gp::Descriptor* d = message.GetDescriptor();
  const gp::Reflection* r = message.GetReflection();
  std::vector<std::string> parts;
  for (int i = 0; i < d->field_count(); ++i) {
    const gp::FieldDescriptor* f = d->field(i);
    if (IsEmpty(message, f)) continue;
    std::string value;
    if (f->is_repeated()) {
      value = "[";
      for (int j = 0; j < r->FieldSize(message, f); ++j)
        value += (j > 0 ? "," : "") + FieldValueJson(message, f, j);
      value += "]";
    } else {
      value = FieldValueJson(message, f, 0);
    }
    if (const gp::OneofDescriptor* o = f->containing_oneof(); o != nullptr) {
      parts.push_back(
          fmt::format("\"{}\":{{\"{}\":{}}}", GoName(o->name()), GoName(f->name()), value));
    } else {
      parts.push_back(fmt::format("\"{}\":{}", f->name(), value));
    }
  }
  return "{" + fmt::format("{}", fmt::join(parts, ",")) + "}";
}

std::string FlatHeaderJson(const etcdserverpb::ResponseHeader& header,
                           const std::vector<std::string>& fields) {
  std::string inner = ToJson(header);
  inner = inner.substr(1, inner.size() - 2);
  std::vector<std::string> parts;
  if (!inner.empty()) parts.push_back(inner);
  parts.insert(parts.end(), fields.begin(), fields.end());
  return "{" + fmt::format("{}", fmt::join(parts, ",")) + "}";
}

namespace {

// Characters, not bytes, so that "µs" lines up: UTF-8 continuation bytes
// do not count.
size_t DisplayWidth(std::string_view s) {
  size_t n = 0;
  for (unsigned char c : s)
    n += (c & 0xc0) != 0x80;
  return n;
}

}  // namespace

std::string FormatTable(const std::vector<std::string>& header,
                        const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> width(header.size());
  for (size_t c = 0; c < header.size(); ++c) {
    width[c] = DisplayWidth(header[c]);
    for (const auto& row : rows)
      width[c] = std::max(width[c], DisplayWidth(row[c]));
  }
  std::string border = "+";
  for (size_t w : width)
    border += std::string(w + 2, '-') + "+";
  border += "\n";
  std::string out = border + "|";
  for (size_t c = 0; c < header.size(); ++c) {
    const size_t gap = width[c] - DisplayWidth(header[c]);
    out += " " + std::string(gap / 2, ' ') + header[c] + std::string(gap - gap / 2, ' ') + " |";
  }
  out += "\n" + border;
  for (const auto& row : rows) {
    out += "|";
    for (size_t c = 0; c < header.size(); ++c)
      out += " " + std::string(width[c] - DisplayWidth(row[c]), ' ') + row[c] + " |";
    out += "\n";
  }
  if (!rows.empty()) out += border;
  return out;
}

bool StreamMayResume(const Status& s) {
  switch (s.code()) {
    case StatusCode::kUnavailable:
    case StatusCode::kInternal:
    case StatusCode::kUnknown:
    case StatusCode::kDeadlineExceeded:
    case StatusCode::kCancelled:
      return true;
    default:
      return false;
  }
}

}  // namespace conclave::cli
