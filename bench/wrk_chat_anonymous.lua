-- POST /v1/chat/completions anonymously (no Authorization header): on the default free plan
-- every call after the first 10 of a minute is refused (429). For bench/http_refused_cpu.sh.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"model":"phi-2","messages":[{"role":"system","content":"You are a terse assistant."},' ..
           '{"role":"user","content":"Summarise the rate-limit policy in one sentence please."}]}'
