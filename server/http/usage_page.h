// The usage page: what `GET /check` answers a browser instead of CheckKeyJson (http_json.h). One
// self-contained HTML document (inline <style>, no script, no external asset) with the masked
// key, the plan, and per feature class and window the used / limit, remaining, when the oldest
// counted call stops counting and a bar: its request windows, then, where the plan has them,
// its token windows and spend windows (in US dollars), each with what calls in flight still
// hold ("reserved", when any), and the calls in flight (when the plan limits them or any is).
// Without token, spend or concurrency limits the page is as it always was. Every interpolated
// string is HTML-escaped, and only the masked key is shown: the report carries nothing else of the
// key.
//
//   if (PrefersHtml(request.Header("accept"))) {
//     response = outcome.result.ok() ? UsagePage(*outcome.result, absl::Now())
//                                    : UsageErrorPage(outcome.result.status());
//   }
//
// Thread safety: pure functions.
#ifndef ANYAI_SERVER_HTTP_USAGE_PAGE_H_
#define ANYAI_SERVER_HTTP_USAGE_PAGE_H_

#include <optional>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "anyai/v1/anyai.pb.h"
#include "server/http/http_message.h"

namespace anyai::server {

// Whether an Accept header asks for HTML before JSON: text/html has a higher q-value (that of
// the most specific range matching it) than application/json. A browser's
// "text/html,...,*/*;q=0.8" does; no header, "*/*", "application/json", and a tie do not, so
// API clients keep getting JSON.
bool PrefersHtml(std::optional<std::string_view> accept);

// The page for `usage`, as of `now` (the clock time printed on it; the reset times are `now`
// plus each window's reset).
std::string UsagePageHtml(const v1::CheckKeyResponse& usage, absl::Time now);

// The whole 200 response: UsagePageHtml as text/html; charset=utf-8, with a Content-Security-
// Policy that forbids everything but the inline style, and Cache-Control: no-store (the figures
// are per caller and change with every call).
HttpResponse UsagePage(const v1::CheckKeyResponse& usage, absl::Time now);

// A non-OK `status` for a browser: the HTTP status and Retry-After of ErrorResponse
// (http_status.h), with a short HTML page instead of OpenAI's JSON. It shows the status's
// message for a client error (errors.h: safe to show) and a fixed sentence for a server error.
HttpResponse UsageErrorPage(const absl::Status& status);

}  // namespace anyai::server

#endif  // ANYAI_SERVER_HTTP_USAGE_PAGE_H_
