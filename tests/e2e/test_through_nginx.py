"""A page calls taskapi through nginx (deploy/topology.sh), as production serves it."""

import pytest

from ..topology.conftest import running_topology
from ..topology.test_through_nginx import FAR_TOO_MANY

# Signs up, then sends the user's searches all at once, past nginx's limit per token; each
# answer as the page can read it (a fetch that CORS blocks rejects, and so does the whole call).
FLOOD = """async ({api, email, count}) => {
  const json = {"Content-Type": "application/json"};
  const body = JSON.stringify({email, password: "correct horse"});
  const signup = await fetch(`${api}/api/auth/signup`, {method: "POST", headers: json, body});
  const {access_token: token, user} = await signup.json();
  const headers = {Authorization: `Bearer ${token}`};
  const tasks = `${api}/api/users/${user.id}/tasks`;
  const read = async (response) => ({
    status: response.status,
    retryAfter: response.headers.get("Retry-After"),
    requestId: response.headers.get("X-Request-ID"),
    body: await response.json(),
  });
  const searches = Array.from({length: count}, () => fetch(`${tasks}?q=milk`, {headers}));
  const answers = await Promise.all(searches.map((search) => search.then(read)));
  return {answers, list: (await fetch(tasks, {headers})).status};
}"""


@pytest.fixture(scope="module")
def topology(origins):
    with running_topology(CORS_ORIGINS=origins[0]) as topology:
        yield topology


def test_a_page_reads_nginxs_429_for_its_tokens_flood(browser, topology, origins):
    """nginx's own 429 (not the app's) reaches the page whole: status, JSON body, Retry-After
    and the request id; the same token's plain list still answers 200."""
    context = browser.new_context(ignore_https_errors=True)  # the topology's own certificate
    page = context.new_page()
    page.goto(origins[0])
    arguments = {"api": topology["TOPOLOGY_URL"], "email": "flood@example.com", "count": 320}
    seen = page.evaluate(FLOOD, arguments)
    context.close()
    answers = seen["answers"]
    refused = [answer for answer in answers if answer["status"] == 429]
    by_nginx = [answer for answer in refused if answer["body"]["message"] == FAR_TOO_MANY]
    assert by_nginx, [answer["status"] for answer in answers]
    for answer in by_nginx:
        assert answer["body"]["code"] == 429
        assert answer["retryAfter"] == "1" and len(answer["requestId"]) == 32
    assert seen["list"] == 200
