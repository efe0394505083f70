// anyai-admin: the command line of the Admin gRPC service (SPEC §3, §8).
//
//   anyai-admin keys create --plan=premium [--label="ci bot"]   prints the key, once
//   anyai-admin keys get KEY_ID
//   anyai-admin keys list [--page_size=N [--page_token=T]] [--show_revoked]
//   anyai-admin keys update KEY_ID [--plan=P] [--label=L]
//   anyai-admin keys revoke KEY_ID
//   anyai-admin usage KEY | IP | KEY_ID                          a table of every limit
//
// The admin token comes from ANYAI_ADMIN_TOKEN; the server's Admin listener from --server
// (default 127.0.0.1:50052, the server's admin_listen, or ANYAI_SERVER). With --tls_ca_file
// the connection is TLS, the server's certificate checked against that CA (and against
// --tls_server_name, when the address is not the certificate's name); --tls_cert_file and
// --tls_key_file add a client certificate for an Admin listener that requires one (mutual
// TLS: the server's admin_tls.client_ca_file). Exit status: 0 on success, 1 on an RPC error
// (printed with its code), 2 on a usage error. Results go to stdout, and only once the command has
// succeeded; errors go to stderr only, so a script never mistakes a failure for an empty list.
// `keys list` prints every key, or with --page_size one page, and then, if there are more, a last
// line on stderr that is the command for the next page:
//   next page: anyai-admin keys list --page_size=N --page_token=T
// (stdout stays the table alone; a script takes T from stderr, a human pastes the line).
// `usage` prints one row per window of every class, with its unit: "requests", "tokens", or
// "usd" (spend, printed in dollars: "$0.25"), what is used, of that what calls in flight still
// reserve, the limit, what remains and when the oldest counted unit frees; then, for a class
// whose plan limits calls in flight (or that has some), a row of unit "calls" and window
// "in-flight": the calls in flight and the limit.
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "anyai/v1/admin.grpc.pb.h"
#include "server/gateway/proto_time.h"

ABSL_FLAG(std::string, server, "",
          "the Admin gRPC address of anyai-server, its admin_listen (default: $ANYAI_SERVER or "
          "127.0.0.1:50052)");
ABSL_FLAG(std::string, tls_ca_file, "",
          "PEM CA bundle that signed the server's certificate: connect with TLS (default: "
          "plaintext)");
ABSL_FLAG(std::string, tls_cert_file, "",
          "PEM client certificate, for a server that requires one (mutual TLS; with "
          "--tls_key_file and --tls_ca_file)");
ABSL_FLAG(std::string, tls_key_file, "", "PEM private key of --tls_cert_file");
ABSL_FLAG(std::string, tls_server_name, "",
          "the name the server's certificate must carry, when --server names it otherwise "
          "(e.g. an IP address)");
ABSL_FLAG(std::optional<std::string>, plan, std::nullopt, "plan of a key (create, update)");
ABSL_FLAG(std::optional<std::string>, label, std::nullopt, "label of a key (create, update)");
ABSL_FLAG(int, page_size, 0,
          "`keys list` prints one page of this many keys, and the command for the next page on "
          "stderr (0: every page)");
ABSL_FLAG(std::string, page_token, "",
          "`keys list` starts at this page (the token that `keys list --page_size=N` printed)");
ABSL_FLAG(bool, show_revoked, false, "`keys list` also shows revoked keys");

namespace {

namespace v1 = anyai::v1;

// Abseil's --help prints it after "anyai-admin: ".
constexpr char kUsage[] = R"(manage API keys and look at usage.
  anyai-admin keys create --plan=PLAN [--label=TEXT]
  anyai-admin keys get KEY_ID
  anyai-admin keys list [--page_size=N [--page_token=T]] [--show_revoked]
  anyai-admin keys update KEY_ID [--plan=PLAN] [--label=TEXT]
  anyai-admin keys revoke KEY_ID
  anyai-admin usage KEY|IP|KEY_ID
Environment: ANYAI_ADMIN_TOKEN (required), ANYAI_SERVER (default 127.0.0.1:50052).
TLS: --tls_ca_file=CA.pem [--tls_cert_file=CLIENT.pem --tls_key_file=CLIENT.key].)";

std::string FormatTime(const google::protobuf::Timestamp& t) {
  return absl::FormatTime("%Y-%m-%d %H:%M:%S UTC", anyai::server::FromProto(t),
                          absl::UTCTimeZone());
}

std::string FormatDuration(const google::protobuf::Duration& d) {
  return absl::FormatDuration(anyai::server::FromProto(d));
}

void PrintKey(const v1::KeyRecord& k) {
  std::cout << absl::StrFormat(
      "key_id:   %s\nplan:     %s\nlabel:    %s\nkey:      %s\ncreated:  %s\n", k.key_id(),
      k.plan(), k.label(), k.masked_key(), FormatTime(k.create_time()));
  if (k.revoked()) std::cout << "revoked:  " << FormatTime(k.revoke_time()) << "\n";
}

int Failed(const grpc::Status& s) {
  // absl names the codes as gRPC does ("UNAUTHENTICATED"); "" for one out of range.
  std::string name = absl::StatusCodeToString(static_cast<absl::StatusCode>(s.error_code()));
  std::cerr << "anyai-admin: " << (name.empty() ? "ERROR" : name) << ": " << s.error_message()
            << "\n";
  return 1;
}

int UsageError(const std::string& why) {
  std::cerr << "anyai-admin: " << why << "\nanyai-admin: " << kUsage << "\n";
  return 2;
}

// Abseil's --help lists only the flags of a file named after the program (anyai-admin.cc), so
// without this it listed none. The filename is as the compiler saw it: relative or absolute.
bool IsThisFile(absl::string_view filename) {
  return absl::EndsWith(filename, "server/app/admin_main.cc");
}

// `s` as one word for a POSIX shell: as it is when that is safe, else in single quotes.
std::string ShellWord(const std::string& s) {
  if (!s.empty() && s.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                        "0123456789_@%+=:,./-") == std::string::npos) {
    return s;
  }
  return absl::StrCat("'", absl::StrReplaceAll(s, {{"'", "'\\''"}}), "'");
}

std::string KeyRow(const v1::KeyRecord& k) {
  return absl::StrFormat("%-16s  %-10s  %-22s  %-23s  %-7s  %s\n", k.key_id(), k.plan(),
                         k.masked_key(), FormatTime(k.create_time()), k.revoked() ? "yes" : "no",
                         k.label());
}

// micro-USD as dollars, with cents and the further digits it needs: "$0.00", "$1.50", "$0.0125".
std::string Usd(int64_t micro_usd) {
  const bool negative = micro_usd < 0;
  const uint64_t magnitude =
      negative ? uint64_t{0} - static_cast<uint64_t>(micro_usd) : static_cast<uint64_t>(micro_usd);
  std::string fraction = absl::StrCat(1'000'000 + magnitude % 1'000'000).substr(1);
  while (fraction.size() > 2 && fraction.back() == '0') fraction.pop_back();
  return absl::StrCat(negative ? "-$" : "$", magnitude / 1'000'000, ".", fraction);
}

constexpr char kUsageRow[] = "%-18s %-9s %-9s %12s %12s %12s %12s  %s\n";

// The rows of one class's usage table (see the top of this file).
std::string UsageRows(const v1::ClassUsage& c) {
  std::string rows;
  const auto add = [&](const google::protobuf::RepeatedPtrField<v1::WindowUsage>& windows,
                       const char* unit, bool usd) {
    const auto amount = [usd](int64_t n) { return usd ? Usd(n) : absl::StrCat(n); };
    for (const v1::WindowUsage& w : windows) {
      absl::StrAppendFormat(&rows, kUsageRow, c.feature_class(), unit, FormatDuration(w.window()),
                            amount(w.used()), amount(w.reserved()), amount(w.limit()),
                            amount(w.remaining()), FormatDuration(w.reset()));
    }
  };
  add(c.windows(), "requests", false);
  add(c.token_windows(), "tokens", false);
  add(c.spend_windows(), "usd", true);
  if (c.max_concurrent() > 0 || c.in_flight() > 0) {
    const bool limited = c.max_concurrent() > 0;
    absl::StrAppendFormat(
        &rows, kUsageRow, c.feature_class(), "calls", "in-flight", absl::StrCat(c.in_flight()), "-",
        limited ? absl::StrCat(c.max_concurrent()) : "none",
        limited ? absl::StrCat(std::max<int64_t>(0, c.max_concurrent() - c.in_flight())) : "-",
        "-");
  }
  return rows;
}

// The contents of `path` (a PEM file named by `flag`), or why not.
absl::StatusOr<std::string> ReadFile(absl::string_view flag, const std::string& path) {
  std::FILE* file = std::fopen(path.c_str(), "rb");
  if (file == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", flag, ": cannot read ", path, ": ", std::strerror(errno)));
  }
  std::string contents;
  char buffer[8192];
  size_t n = 0;
  while ((n = std::fread(buffer, 1, sizeof buffer, file)) > 0) contents.append(buffer, n);
  const int error = std::ferror(file) ? errno : 0;
  std::fclose(file);
  if (error != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", flag, ": cannot read ", path, ": ", std::strerror(error)));
  }
  return contents;
}

// A channel to `target`: plaintext, or TLS when the --tls_* flags say so.
absl::StatusOr<std::shared_ptr<grpc::Channel>> ChannelTo(const std::string& target) {
  const std::string ca_file = absl::GetFlag(FLAGS_tls_ca_file);
  const std::string cert_file = absl::GetFlag(FLAGS_tls_cert_file);
  const std::string key_file = absl::GetFlag(FLAGS_tls_key_file);
  if (cert_file.empty() != key_file.empty()) {
    return absl::InvalidArgumentError("--tls_cert_file and --tls_key_file go together");
  }
  if (ca_file.empty()) {
    if (!cert_file.empty()) {
      return absl::InvalidArgumentError("--tls_cert_file needs --tls_ca_file (TLS first)");
    }
    return grpc::CreateChannel(target, grpc::InsecureChannelCredentials());
  }
  grpc::SslCredentialsOptions options;
  absl::StatusOr<std::string> ca = ReadFile("tls_ca_file", ca_file);
  if (!ca.ok()) return ca.status();
  options.pem_root_certs = *std::move(ca);
  if (!cert_file.empty()) {
    absl::StatusOr<std::string> cert = ReadFile("tls_cert_file", cert_file);
    if (!cert.ok()) return cert.status();
    absl::StatusOr<std::string> key = ReadFile("tls_key_file", key_file);
    if (!key.ok()) return key.status();
    options.pem_cert_chain = *std::move(cert);
    options.pem_private_key = *std::move(key);
  }
  grpc::ChannelArguments args;
  if (!absl::GetFlag(FLAGS_tls_server_name).empty()) {
    args.SetSslTargetNameOverride(absl::GetFlag(FLAGS_tls_server_name));
  }
  return grpc::CreateCustomChannel(target, grpc::SslCredentials(options), args);
}

bool LooksLikeKeyId(const std::string& s) {
  return s.size() == 16 && s.find_first_not_of("0123456789abcdef") == std::string::npos;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(kUsage);
  absl::FlagsUsageConfig usage_config;  // unset callbacks keep Abseil's defaults
  usage_config.contains_helpshort_flags = IsThisFile;
  usage_config.contains_help_flags = IsThisFile;
  absl::SetFlagsUsageConfig(usage_config);
  std::vector<char*> positional = absl::ParseCommandLine(argc, argv);
  std::vector<std::string> args(positional.begin() + 1, positional.end());
  if (args.empty()) return UsageError("no command");

  const char* token = std::getenv("ANYAI_ADMIN_TOKEN");
  if (token == nullptr || *token == '\0') return UsageError("ANYAI_ADMIN_TOKEN is not set");
  std::string target = absl::GetFlag(FLAGS_server);
  if (target.empty()) {
    const char* env = std::getenv("ANYAI_SERVER");
    target = env != nullptr && *env != '\0' ? env : "127.0.0.1:50052";
  }
  absl::StatusOr<std::shared_ptr<grpc::Channel>> channel = ChannelTo(target);
  if (!channel.ok()) return UsageError(std::string(channel.status().message()));
  auto stub = v1::Admin::NewStub(*std::move(channel));
  auto context = [&] {
    auto c = std::make_unique<grpc::ClientContext>();
    c->AddMetadata("authorization", absl::StrCat("Bearer ", token));
    c->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    return c;
  };

  const std::string& command = args[0];
  if (command == "keys" && args.size() >= 2) {
    const std::string& verb = args[1];
    if (verb == "create" && args.size() == 2) {
      v1::CreateKeyRequest req;
      if (!absl::GetFlag(FLAGS_plan).has_value()) return UsageError("keys create needs --plan");
      req.set_plan(*absl::GetFlag(FLAGS_plan));
      req.set_label(absl::GetFlag(FLAGS_label).value_or(""));
      v1::CreateKeyResponse resp;
      grpc::Status s = stub->CreateKey(context().get(), req, &resp);
      if (!s.ok()) return Failed(s);
      PrintKey(resp.record());
      std::cout << "\nThe API key (shown only now; store it safely):\n" << resp.key() << "\n";
      return 0;
    }
    if (verb == "list" && args.size() == 2) {
      const int page_size = absl::GetFlag(FLAGS_page_size);
      v1::ListKeysRequest req;
      req.set_page_size(page_size);
      req.set_page_token(absl::GetFlag(FLAGS_page_token));
      req.set_show_revoked(absl::GetFlag(FLAGS_show_revoked));
      // Held back until every page has come, so that a failure prints nothing on stdout.
      std::string table = absl::StrFormat("%-16s  %-10s  %-22s  %-23s  %-7s  %s\n", "KEY_ID",
                                          "PLAN", "KEY", "CREATED", "REVOKED", "LABEL");
      std::string next_page_token;
      for (;;) {
        v1::ListKeysResponse resp;
        grpc::Status s = stub->ListKeys(context().get(), req, &resp);
        if (!s.ok()) return Failed(s);
        for (const v1::KeyRecord& k : resp.keys()) table += KeyRow(k);
        if (resp.next_page_token().empty()) break;
        if (page_size > 0) {
          next_page_token = resp.next_page_token();
          break;
        }
        req.set_page_token(resp.next_page_token());
      }
      std::cout << table << std::flush;
      if (!next_page_token.empty()) {
        std::string connection;
        for (const auto& [name, value] :
             {std::pair<const char*, std::string>{"server", absl::GetFlag(FLAGS_server)},
              {"tls_ca_file", absl::GetFlag(FLAGS_tls_ca_file)},
              {"tls_cert_file", absl::GetFlag(FLAGS_tls_cert_file)},
              {"tls_key_file", absl::GetFlag(FLAGS_tls_key_file)},
              {"tls_server_name", absl::GetFlag(FLAGS_tls_server_name)}}) {
          if (!value.empty()) absl::StrAppend(&connection, " --", name, "=", ShellWord(value));
        }
        std::cerr << "next page: anyai-admin" << connection << " keys list"
                  << " --page_size=" << page_size << (req.show_revoked() ? " --show_revoked" : "")
                  << " --page_token=" << ShellWord(next_page_token) << "\n";
      }
      return 0;
    }
    if (args.size() != 3) return UsageError("keys " + verb + " needs one KEY_ID");
    v1::KeyRecord record;
    grpc::Status s;
    if (verb == "get") {
      v1::GetKeyRequest req;
      req.set_key_id(args[2]);
      s = stub->GetKey(context().get(), req, &record);
    } else if (verb == "update") {
      v1::UpdateKeyRequest req;
      req.set_key_id(args[2]);
      if (absl::GetFlag(FLAGS_plan).has_value()) req.set_plan(*absl::GetFlag(FLAGS_plan));
      if (absl::GetFlag(FLAGS_label).has_value()) req.set_label(*absl::GetFlag(FLAGS_label));
      if (!req.has_plan() && !req.has_label()) {
        return UsageError("keys update needs --plan and/or --label");
      }
      s = stub->UpdateKey(context().get(), req, &record);
    } else if (verb == "revoke") {
      v1::RevokeKeyRequest req;
      req.set_key_id(args[2]);
      s = stub->RevokeKey(context().get(), req, &record);
    } else {
      return UsageError("unknown command: keys " + verb);
    }
    if (!s.ok()) return Failed(s);
    PrintKey(record);
    return 0;
  }
  if (command == "usage" && args.size() == 2) {
    v1::GetUsageRequest req;
    const std::string& who = args[1];
    if (who.rfind("sk-", 0) == 0) {
      req.set_key(who);
    } else if (LooksLikeKeyId(who)) {
      req.set_key_id(who);
    } else {
      req.set_ip(who);
    }
    v1::GetUsageResponse resp;
    grpc::Status s = stub->GetUsage(context().get(), req, &resp);
    if (!s.ok()) return Failed(s);
    std::cout << "tenant: " << resp.tenant() << "\nplan:   " << resp.plan() << "\n";
    if (resp.has_key()) std::cout << "key:    " << resp.key().masked_key() << "\n";
    std::cout << "\n"
              << absl::StrFormat(kUsageRow, "CLASS", "UNIT", "WINDOW", "USED", "RESERVED", "LIMIT",
                                 "REMAINING", "RESET IN");
    for (const v1::ClassUsage& c : resp.classes()) std::cout << UsageRows(c);
    return 0;
  }
  return UsageError("unknown command");
}
