-- wrk script: POST /v1/chat/completions with a small chat body and the key from $ANYAI_KEY.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. (os.getenv("ANYAI_KEY") or "")
wrk.body = '{"model":"phi-2","messages":[{"role":"system","content":"You are a terse assistant."},' ..
           '{"role":"user","content":"Summarise the rate-limit policy in one sentence please."}]}'
