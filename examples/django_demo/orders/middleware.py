import logging

log = logging.getLogger("shop")


def log_responses(get_response):
    """Every answer goes to the log, so a replayed log shows the responses too."""
    def middleware(request):
        response = get_response(request)
        kind = response.get("Content-Type", "").split(";")[0]
        body = response.content.decode().strip() if kind == "application/json" else kind
        path = request.get_full_path()
        log.info("%s %s -> %s %s", request.method, path, response.status_code, body)
        return response
    return middleware
