// A small, documented approximation of an LLM tokenizer, used by the builtin provider to report
// honest token counts (usage.prompt_tokens, completion_tokens) and to cut an answer at
// max_tokens. It is not any model's real tokenizer; it tracks OpenAI's cl100k within a small
// factor on English text, which is all a stand-in needs.
//
// The rule, applied left to right:
//   - A run of ASCII letters and digits is one token per started kWordPieceChars characters
//     ("Hello" is 1 token, "internationalization" is 3).
//   - Every other character is a token of its own: each ASCII punctuation mark or symbol and
//     each non-ASCII code point (so "café" is "caf" + "é", and each CJK character is a token),
//     and each byte of invalid UTF-8.
//   - Whitespace is never a token by itself: a run of it joins the token that follows it (as
//     real tokenizers fold the leading space into " word"); whitespace at the very end joins
//     the last token. Text of nothing but whitespace has no tokens.
// So the tokens of a text, concatenated, give the text back (unless it is only whitespace),
// and cutting after any token gives a prefix that is itself exactly that many tokens.
//
// Thread-safe: pure functions.
#ifndef ANYAI_SERVER_GATEWAY_TOKEN_COUNT_H_
#define ANYAI_SERVER_GATEWAY_TOKEN_COUNT_H_

#include <vector>

#include "absl/strings/string_view.h"

namespace anyai::server {

// The most ASCII letters and digits one token holds.
inline constexpr int kWordPieceChars = 8;

// The tokens of `text`, in order, as views into it (see the rule above).
std::vector<absl::string_view> SplitTokens(absl::string_view text);

// The number of tokens of `text`: SplitTokens(text).size(), without the vector.
int CountTokens(absl::string_view text);

}  // namespace anyai::server

#endif  // ANYAI_SERVER_GATEWAY_TOKEN_COUNT_H_
