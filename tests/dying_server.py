"""A stand-in for the llama.cpp server process that dies on a chosen request, as a crash would.

Run as ``python dying_server.py --port P --hits FILE --at N --then ACTION``: it answers
``GET /v1/models`` and ``POST /v1/chat/completions`` like an OpenAI server, appends one line to
``FILE`` per completion request it receives (the file outlives the process, so a test can count
the attempts that reached it), and on completion request number ``N`` does ``ACTION``:
``ILL``/``KILL``/... raises that signal in the thread serving the request, before it answers
(``ILL`` is what an illegal CPU instruction does to llama.cpp), ``hang`` never answers (a test
kills it from outside). Like llama.cpp's server, it serves one request at a time: a request that
arrives while another is served waits, so none reaches it after the crash.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from fake_openai import completion_body

LAST_WORDS = "dying_server: about to {action} on request {n}"
"""What the process prints right before it dies; the LLMError must carry it."""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--hits", required=True)
    parser.add_argument("--at", type=int, required=True)
    parser.add_argument("--then", required=True)
    args = parser.parse_args()
    lock = threading.Lock()
    count = 0

    class Handler(BaseHTTPRequestHandler):
        def _send(self, doc: dict) -> None:
            body = json.dumps(doc).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            self._send({"object": "list", "data": [{"id": "fake", "object": "model"}]})

        def do_POST(self) -> None:
            nonlocal count
            request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with lock:
                count += 1
                n = count
                with open(args.hits, "a") as f:
                    f.write(f"{n}\n")
            if n == args.at:
                print(LAST_WORDS.format(action=args.then, n=n), file=sys.stderr, flush=True)
                if args.then == "hang":
                    time.sleep(3600)
                # Thread-directed, like a faulting instruction: a SIGILL sent to the whole
                # process may be taken by another thread while this one still answers.
                signal.pthread_kill(threading.get_ident(), signal.Signals["SIG" + args.then])
            self._send(completion_body(request, n, 1))

        def log_message(self, *a: object) -> None:
            pass

    HTTPServer(("127.0.0.1", args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
