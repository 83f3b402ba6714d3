"""A stand-in for ``python -m vllm.entrypoints.openai.api_server`` in the recipe tests.

:data:`FAKE_VLLM_SERVE` is the source of a script the tests install as that module: like vLLM's
server it takes ``--port``, leaves ``/health`` open and asks every other path for the key vLLM
reads from ``VLLM_API_KEY`` (401 without it). It records its pid, arguments and key in
``$SPECIARL_TEST_OUT/judge.json`` so a test can check what the recipe started.
"""

FAKE_VLLM_SERVE = r"""
import http.server, json, os, sys
port = int(sys.argv[sys.argv.index("--port") + 1])
key = os.environ.get("VLLM_API_KEY")
with open(os.path.join(os.environ["SPECIARL_TEST_OUT"], "judge.json"), "w") as out:
    json.dump({"pid": os.getpid(), "argv": sys.argv, "key": key}, out)
print("fake judge: serving on", port, flush=True)

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        allowed = self.path == "/health" or (key and self.headers.get("Authorization") == f"Bearer {key}")
        self.send_response(200 if allowed else 401)
        self.end_headers()

    def log_message(self, *args):
        pass

http.server.HTTPServer(("127.0.0.1", port), Handler).serve_forever()
"""
