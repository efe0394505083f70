#include "server/http/usage_page.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "server/gateway/proto_time.h"
#include "server/gateway/rate_limit.h"
#include "server/http/http_status.h"

namespace anyai::server {
namespace {

// Inline styles only: the page's CSP allows nothing else to load.
constexpr char kCsp[] = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'";

constexpr char kStyle[] = R"css(
:root{color-scheme:light dark;--fg:#1f2933;--muted:#616e7c;--bg:#f5f7fa;--card:#fff;
--line:#e4e7eb;--track:#e4e7eb;--ok:#2f9e44;--warn:#e67700;--full:#d6336c}
@media (prefers-color-scheme:dark){:root{--fg:#e4e7eb;--muted:#9aa5b1;--bg:#1f2933;
--card:#323f4b;--line:#3e4c59;--track:#52606d}}
*{box-sizing:border-box}
body{margin:0;padding:2rem 1rem;background:var(--bg);color:var(--fg);
font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Noto Sans",sans-serif}
main{max-width:56rem;margin:0 auto}
h1{font-size:1.6rem;margin:0 0 1rem}
h2{font-size:1.05rem;margin:0 0 .5rem;font-family:ui-monospace,"DejaVu Sans Mono",monospace}
.card{background:var(--card);border:1px solid var(--line);border-radius:10px;
padding:1rem 1.25rem;margin:0 0 1rem}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.25rem 1.5rem;margin:0}
dt{color:var(--muted)}dd{margin:0;font-weight:600}
code{font-family:ui-monospace,"DejaVu Sans Mono",monospace}
table{width:100%;border-collapse:collapse;table-layout:fixed}
th{text-align:left;font-weight:500;color:var(--muted);font-size:.85rem}
th,td{padding:.4rem .5rem;border-top:1px solid var(--line);vertical-align:middle}
thead th{border-top:0}
th:nth-child(1){width:16%}th:nth-child(2){width:24%}th:nth-child(3){width:18%}
th:nth-child(4){width:22%}
.num{font-variant-numeric:tabular-nums;white-space:nowrap}
.bar{height:.65rem;background:var(--track);border-radius:999px;overflow:hidden}
.bar>span{display:block;height:100%;background:var(--ok);border-radius:999px}
.bar.warn>span{background:var(--warn)}.bar.full>span{background:var(--full)}
.note{color:var(--muted);font-size:.85rem;margin:1rem 0 0}
.flight{margin:.5rem 0 0;color:var(--muted)}.flight .num{color:var(--fg);font-weight:600}
@media (max-width:600px){body{padding:1rem .5rem}.card{padding:.75rem}thead{display:none}
table,tbody,td{display:block}tr{display:grid;grid-template-columns:1fr auto;gap:0 1rem;
padding:.5rem 0;border-top:1px solid var(--line)}td{border:0;padding:0}
td:nth-child(even){text-align:right}td:nth-child(5){grid-column:1/-1;margin-top:.4rem}}
)css";

// Escapes the five characters that matter in HTML text and attribute values.
std::string Escape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (const char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string FormatUtc(absl::Time t) {
  return absl::FormatTime("%Y-%m-%d %H:%M:%S UTC", t, absl::UTCTimeZone());
}

// "42 s", "3 min 12 s", "5 h 3 min", "2 d 4 h": the two largest units, rounded up to a second
// (a reset of 0.2 s is "1 s", never "0 s"). Hours up to two days: a day window's reset is often a
// little over 24 h, and "1 d" would hide the rest.
std::string HumanDuration(absl::Duration d) {
  const int64_t s = absl::ToInt64Seconds(absl::Ceil(d, absl::Seconds(1)));
  auto two = [](int64_t big, const char* big_unit, int64_t small, const char* small_unit) {
    return small == 0 ? absl::StrCat(big, " ", big_unit)
                      : absl::StrCat(big, " ", big_unit, " ", small, " ", small_unit);
  };
  if (s < 60) return absl::StrCat(s, " s");
  if (s < 3600) return two(s / 60, "min", s % 60, "s");
  if (s < 2 * 86400) return two(s / 3600, "h", s / 60 % 60, "min");
  return two(s / 86400, "d", s / 3600 % 24, "h");
}

// The time of day alone when `t` is on `now`'s (UTC) day, else with a short date.
std::string ResetTime(absl::Time t, absl::Time now) {
  const absl::TimeZone utc = absl::UTCTimeZone();
  const bool today = absl::FormatTime("%Y-%m-%d", t, utc) == absl::FormatTime("%Y-%m-%d", now, utc);
  return absl::FormatTime(today ? "%H:%M:%S UTC" : "%b %d %H:%M UTC", t, utc);
}

std::string WindowName(absl::Duration window) {
  if (window == absl::Seconds(1)) return "per second";
  if (window == absl::Minutes(1)) return "per minute";
  if (window == absl::Hours(1)) return "per hour";
  if (window == absl::Hours(24)) return "per day";
  if (window == absl::Hours(24 * 7)) return "per week";
  return absl::StrCat("per ", HumanDuration(window));
}

// How full a window is, in tenths of a percent (0..1000). A limit of 0 admits nothing, so its
// window is full whatever `used` says.
int FilledPerMille(int64_t used, int64_t limit) {
  if (limit <= 0) return 1000;
  const double fraction = static_cast<double>(std::clamp<int64_t>(used, 0, limit)) / limit;
  return static_cast<int>(std::lround(fraction * 1000));
}

// What a window counts, as its rows show it.
enum class Unit { kRequests, kTokens, kMicroUsd };

// An amount of `unit` as the page shows it: "3", "1200", "$0.25".
std::string Amount(Unit unit, int64_t n) {
  return unit == Unit::kMicroUsd ? FormatUsd(n) : absl::StrCat(n);
}

// `label` names the window ("per minute", "tokens per minute").
void AppendWindowRow(const v1::WindowUsage& w, Unit unit, std::string_view label, absl::Time now,
                     std::string* out) {
  const int filled = FilledPerMille(w.used(), w.limit());
  const char* level = filled >= 1000 ? " full" : filled >= 750 ? " warn" : "";
  const absl::Duration reset = FromProto(w.reset());
  const std::string resets =
      reset <= absl::ZeroDuration()
          ? "nothing counted"
          : absl::StrCat("resets in ", HumanDuration(reset), "<br><small>at ",
                         ResetTime(now + reset, now), "</small>");
  // Units held by calls still in flight, which settle when they end; only when there are some.
  const std::string reserved =
      w.reserved() > 0
          ? absl::StrCat("<br><small>", Amount(unit, w.reserved()), " reserved</small>")
          : std::string();
  const std::string width = absl::StrCat(filled / 10, ".", filled % 10, "%");
  absl::StrAppend(out, "<tr><td>", Escape(label), "</td><td class=\"num\">", Amount(unit, w.used()),
                  " / ", Amount(unit, w.limit()), reserved, "</td><td class=\"num\">",
                  Amount(unit, w.remaining()), " left</td><td>", resets,
                  "</td><td><div class=\"bar", level,
                  "\" role=\"progressbar\" aria-valuemin=\"0\" aria-valuemax=\"", w.limit(),
                  "\" aria-valuenow=\"", w.used(), "\" title=\"", width,
                  " used\"><span style=\"width:", width, "\"></span></div></td></tr>\n");
}

// Every window of a class: its request windows, then its token and spend windows when the plan
// has them. Request windows are named by their length alone ("per minute") unless tokens or
// spend are limited too ("requests per minute"), so that a plan without them reads as before.
void AppendClassRows(const v1::ClassUsage& c, absl::Time now, std::string* out) {
  const bool costs = c.token_windows_size() > 0 || c.spend_windows_size() > 0;
  for (const v1::WindowUsage& w : c.windows()) {
    const std::string name = WindowName(FromProto(w.window()));
    AppendWindowRow(w, Unit::kRequests, costs ? absl::StrCat("requests ", name) : name, now, out);
  }
  for (const v1::WindowUsage& w : c.token_windows()) {
    AppendWindowRow(w, Unit::kTokens, absl::StrCat("tokens ", WindowName(FromProto(w.window()))),
                    now, out);
  }
  for (const v1::WindowUsage& w : c.spend_windows()) {
    AppendWindowRow(w, Unit::kMicroUsd, absl::StrCat("spend ", WindowName(FromProto(w.window()))),
                    now, out);
  }
}

// "In flight: 1 of at most 2 calls", after the table, when the plan limits concurrency or a call
// is in flight; nothing otherwise.
void AppendInFlight(const v1::ClassUsage& c, std::string* out) {
  if (c.max_concurrent() <= 0 && c.in_flight() <= 0) return;
  absl::StrAppend(out, "<p class=\"flight\">In flight: <span class=\"num\">", c.in_flight());
  if (c.max_concurrent() > 0) {
    absl::StrAppend(out, " of at most ", c.max_concurrent(),
                    c.max_concurrent() == 1 ? " call" : " calls");
  } else {
    absl::StrAppend(out, c.in_flight() == 1 ? " call" : " calls", " (no limit)");
  }
  out->append("</span></p>\n");
}

struct MediaRange {
  std::string type;  // lower case, e.g. "text/html", "text/*", "*/*"
  double q = 1;
};

// absl::string_view for Abseil's string functions: with this Abseil it is not std::string_view.
std::vector<MediaRange> ParseAccept(absl::string_view accept) {
  std::vector<MediaRange> ranges;
  for (absl::string_view element : absl::StrSplit(accept, ',')) {
    std::vector<absl::string_view> parts = absl::StrSplit(element, ';');
    MediaRange range{.type = absl::AsciiStrToLower(absl::StripAsciiWhitespace(parts[0]))};
    if (range.type.empty()) continue;
    bool valid = true;
    for (size_t i = 1; i < parts.size(); ++i) {
      const absl::string_view param = absl::StripAsciiWhitespace(parts[i]);
      const bool is_q =
          param.size() >= 2 && (param[0] == 'q' || param[0] == 'Q') && param[1] == '=';
      if (is_q) valid = absl::SimpleAtod(param.substr(2), &range.q) && range.q >= 0 && range.q <= 1;
    }
    if (valid) ranges.push_back(std::move(range));
  }
  return ranges;
}

// The q-value `ranges` give `type` ("text/html"): that of the most specific matching range,
// 0 when none matches.
double QualityOf(const std::vector<MediaRange>& ranges, std::string_view type) {
  const std::string_view major = type.substr(0, type.find('/'));
  int best_specificity = 0;
  double q = 0;
  for (const MediaRange& r : ranges) {
    int specificity = 0;
    if (r.type == type) {
      specificity = 3;
    } else if (r.type.size() == major.size() + 2 && r.type.starts_with(major) &&
               r.type.ends_with("/*")) {
      specificity = 2;
    } else if (r.type == "*/*") {
      specificity = 1;
    }
    if (specificity > best_specificity) {
      best_specificity = specificity;
      q = r.q;
    }
  }
  return q;
}

std::string PageHead(const std::string& title) {
  return absl::StrCat(
      "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
      "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
      "<meta name=\"robots\" content=\"noindex\">\n<title>",
      title, "</title>\n<style>", kStyle, "</style>\n</head>\n<body>\n<main>\n");
}

constexpr char kPageFoot[] = "</main>\n</body>\n</html>\n";

void AddPageHeaders(HttpResponse& response) {
  response.headers.emplace_back("content-security-policy", kCsp);
  response.headers.emplace_back("cache-control", "no-store");
  response.headers.emplace_back("x-content-type-options", "nosniff");
  // The page's URL may carry ?key=: never send it on to another site.
  response.headers.emplace_back("referrer-policy", "no-referrer");
}

}  // namespace

bool PrefersHtml(std::optional<std::string_view> accept) {
  if (!accept.has_value()) return false;
  const std::vector<MediaRange> ranges =
      ParseAccept(absl::string_view(accept->data(), accept->size()));
  return QualityOf(ranges, "text/html") > QualityOf(ranges, "application/json");
}

std::string UsagePageHtml(const v1::CheckKeyResponse& usage, absl::Time now) {
  const std::string plan = Escape(usage.plan());
  std::string out = PageHead(absl::StrCat("AnyAI usage: ", plan, " plan"));
  absl::StrAppend(&out, "<h1>AnyAI usage</h1>\n<section class=\"card\"><dl>\n<dt>Key</dt><dd>",
                  usage.masked_key().empty()
                      ? absl::StrCat("anonymous (your IP&#39;s ", plan, "-plan usage)")
                      : absl::StrCat("<code>", Escape(usage.masked_key()), "</code>"),
                  "</dd>\n<dt>Plan</dt><dd>", plan, "</dd>\n");
  if (usage.created() != 0) {
    absl::StrAppend(&out, "<dt>Created</dt><dd>", FormatUtc(absl::FromUnixSeconds(usage.created())),
                    "</dd>\n");
  }
  absl::StrAppend(&out, "<dt>As of</dt><dd>", FormatUtc(now), "</dd>\n</dl></section>\n");
  bool costs = false;  // whether any class has token or spend windows
  for (const v1::ClassUsage& c : usage.classes()) {
    absl::StrAppend(&out, "<section class=\"card\">\n<h2>", Escape(c.feature_class()),
                    "</h2>\n<table>\n<thead><tr><th>Window</th><th>Used / limit</th>"
                    "<th>Remaining</th><th>Resets</th><th>Usage</th></tr></thead>\n<tbody>\n");
    AppendClassRows(c, now, &out);
    out += "</tbody>\n</table>\n";
    AppendInFlight(c, &out);
    out += "</section>\n";
    costs = costs || c.token_windows_size() > 0 || c.spend_windows_size() > 0;
  }
  absl::StrAppend(&out,
                  "<p class=\"note\">Windows slide: a call counts for one window length after it "
                  "is made, and &ldquo;resets&rdquo; is when the oldest counted call stops "
                  "counting. The same figures as JSON: <code>GET /check</code> with "
                  "<code>Accept: application/json</code>.</p>\n");
  if (costs) {
    out +=
        "<p class=\"note\">A call reserves its tokens (its prompt plus <code>max_tokens</code>) "
        "and "
        "their price when it starts, and settles to what it used when it ends; "
        "&ldquo;reserved&rdquo; is what calls still in flight hold. Spend is in US dollars at "
        "the models&rsquo; prices.</p>\n";
  }
  out += kPageFoot;
  return out;
}

HttpResponse UsagePage(const v1::CheckKeyResponse& usage, absl::Time now) {
  HttpResponse response;
  response.headers.emplace_back("content-type", "text/html; charset=utf-8");
  AddPageHeaders(response);
  response.body = UsagePageHtml(usage, now);
  return response;
}

HttpResponse UsageErrorPage(const absl::Status& status) {
  HttpResponse response = ErrorResponse(status);  // its status and Retry-After; the body is ours
  std::erase_if(response.headers, [](const auto& h) { return h.first == "content-type"; });
  response.headers.emplace_back("content-type", "text/html; charset=utf-8");
  AddPageHeaders(response);
  const std::string title = absl::StrCat("AnyAI usage: error ", response.status);
  const absl::string_view message = status.message();
  response.body = absl::StrCat(PageHead(title), "<h1>", title, "</h1>\n<section class=\"card\"><p>",
                               response.status < 500
                                   ? Escape(std::string_view(message.data(), message.size()))
                                   : "The usage could not be read just now; try again in a moment.",
                               "</p></section>\n", kPageFoot);
  return response;
}

}  // namespace anyai::server
