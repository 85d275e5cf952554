"""A pool of threads each doing HTTP to a local server, itself threaded, in
the same process: completion order depends on scheduling and random delays."""
import http.server
import random
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor, as_completed


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        time.sleep(random.random() / 200)
        body = f"{self.path} {random.randint(0, 999)}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01},
                 daemon=True).start()
url = f"http://127.0.0.1:{server.server_address[1]}"


def fetch(n):
    time.sleep(random.random() / 200)
    with urllib.request.urlopen(f"{url}/item{n}", timeout=10) as response:
        return response.read().decode()


with ThreadPoolExecutor(max_workers=4) as pool:
    for future in as_completed([pool.submit(fetch, n) for n in range(8)]):
        print("got:", future.result())
server.shutdown()
server.server_close()
print("http: done")
