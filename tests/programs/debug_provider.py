"""examples/llm_classify's provider (on PYTHONPATH), writing every text it
sends to LOG as a JSON line, so a test can compare what the debugger shows
with what the outside world really said.

    python debug_provider.py LOG [provider options...]
"""
import json
import sys

import provider

LOG = sys.argv.pop(1)


class LoggingHandler(provider.Handler):
    def do_POST(self):
        write = self.wfile.write

        def logged(data):
            try:
                text = json.loads(data)["text"]
            except (ValueError, KeyError, TypeError):
                pass                        # the headers
            else:
                with open(LOG, "a") as log:
                    log.write(json.dumps(text) + "\n")
            return write(data)

        self.wfile.write = logged
        super().do_POST()


provider.Handler = LoggingHandler
provider.main()
