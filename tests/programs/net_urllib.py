"""urllib.request against the test peer over HTTP and HTTPS.

    net_urllib.py HOST HTTP_PORT HTTPS_PORT CAFILE
"""
import hashlib
import json
import ssl
import sys
import urllib.error
import urllib.request

host, http_port, https_port, cafile = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
context = ssl.create_default_context(cafile=cafile)

for scheme, port in (("http", http_port), ("https", https_port)):
    base = f"{scheme}://{host}:{port}"
    kw = {"context": context} if scheme == "https" else {}
    with urllib.request.urlopen(f"{base}/json?x=1", timeout=10, **kw) as resp:
        print(f"{scheme} json: {resp.status} {json.load(resp)}")
    with urllib.request.urlopen(f"{base}/chunked", timeout=10, **kw) as resp:
        body = resp.read()
        print(f"{scheme} chunked: {len(body)} {hashlib.sha256(body).hexdigest()}")
    with urllib.request.urlopen(f"{base}/big?size=3000000", timeout=10, **kw) as resp:
        body = resp.read()
        print(f"{scheme} big: {len(body)} {hashlib.sha256(body).hexdigest() == resp.headers['X-SHA256']}")
    req = urllib.request.Request(f"{base}/echo", data=b"urllib " + scheme.encode(), method="POST")
    with urllib.request.urlopen(req, timeout=10, **kw) as resp:
        print(f"{scheme} echo: {json.load(resp)}")
    try:
        urllib.request.urlopen(f"{base}/missing", timeout=10, **kw)
    except urllib.error.HTTPError as exc:
        print(f"{scheme} missing: {exc.code} {exc.reason}")
