-- wrk script: a non-streaming chat completion against the simulator.
wrk.method = "POST"
wrk.path = "/v1/chat/completions"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"model":"stable","messages":[{"role":"user","content":"What is the capital of France?"}]}'
