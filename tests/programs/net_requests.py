"""requests against the test peer over HTTP and HTTPS: a session reusing its
connection (keep-alive), JSON, chunked, streaming a 10 MB body, a POST.

    net_requests.py HOST HTTP_PORT HTTPS_PORT CAFILE
"""
import hashlib
import sys

import requests

host, http_port, https_port, cafile = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]

for scheme, port in (("http", http_port), ("https", https_port)):
    base = f"{scheme}://{host}:{port}"
    with requests.Session() as session:
        # (per request: REQUESTS_CA_BUNDLE in the environment beats session.verify)
        r = session.get(f"{base}/json", params={"q": scheme}, timeout=10, verify=cafile)
        print(f"{scheme} json: {r.status_code} {r.json()}")
        r = session.get(f"{base}/chunked", timeout=10, verify=cafile)
        print(f"{scheme} chunked: {r.headers.get('Transfer-Encoding')} {len(r.text)} {r.text[:40]}")
        with session.get(f"{base}/big", stream=True, timeout=10, verify=cafile) as r:
            digest = hashlib.sha256()
            for chunk in r.iter_content(chunk_size=1 << 16):
                digest.update(chunk)
            print(f"{scheme} big: {digest.hexdigest()} "
                  f"matches={digest.hexdigest() == r.headers['X-SHA256']}")
        r = session.post(f"{base}/echo", json={"from": scheme}, timeout=10, verify=cafile)
        print(f"{scheme} echo: {r.json()}")
        r = session.get(f"{base}/slow", timeout=10, verify=cafile)
        print(f"{scheme} slow: {r.content!r} elapsed>0={r.elapsed.total_seconds() > 0}")
        pool = session.get_adapter(base).poolmanager
        print(f"{scheme} pools: {len(pool.pools)}")

r = requests.get(f"https://{host}:{https_port}/json", verify=cafile, timeout=10)
print("one-shot:", r.status_code, sorted(r.json()))
