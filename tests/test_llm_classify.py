"""examples/llm_classify: record the router until the provider's prose
reply crashes it, stop the provider, replay the identical crash offline."""
import re
import subprocess

import pytest

from conftest import PY, REPO, Case, assert_same_run, unshare_net_works

EXAMPLE = REPO / "examples" / "llm_classify"


@pytest.fixture
def provider():
    proc = subprocess.Popen([PY, str(EXAMPLE / "provider.py"), "--port", "0",
                             "--text-rate", "0.3"],
                            stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    line = proc.stdout.readline().decode()
    match = re.match(r"listening on (http://\S+)", line)
    try:
        assert match, f"the provider did not start: {line!r}"
        yield proc, match.group(1)
    finally:
        proc.kill()
        proc.wait(timeout=30)
        proc.stdout.close()


def test_recorded_json_crash_replays_without_the_provider(world, provider):
    proc, url = provider
    case = Case(world, "classify", [EXAMPLE / "classify.py"], ["40"], world.work,
                {"LLM_URL": url})
    for _ in range(8):
        rec = case.record()
        if rec.code != 0:
            break
    assert rec.code == 1, rec.describe()
    err = rec.err.decode()
    assert err.rstrip().splitlines()[-1].startswith("json.decoder.JSONDecodeError:"), rec.describe()
    assert 'in classify_intent\n    data = json.loads(response)' in err, rec.describe()

    proc.kill()
    proc.wait(timeout=30)
    for attempt in (1, 2):
        assert_same_run(rec, world.replay(rec.trace), f"replay {attempt}")
    if unshare_net_works():
        assert_same_run(rec, world.replay(rec.trace, prefix=["unshare", "-n"]),
                        "replay without network")
    check = world.retrace("check", rec.trace)
    assert check.code == 1, check.describe()   # the recorded crash is reproduced
