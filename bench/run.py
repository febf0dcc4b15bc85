"""`make bench`: load-test taskapi as it runs in production, and write bench/results.json.

Starts a throwaway PostgreSQL (or uses BENCH_DATABASE_URL), applies schema.sql, serves taskapi with
`python wsgi.py`, seeds a user with 50 tasks through the API, then drives each scenario with wrk
(bench/request.lua) and measures the server's CPU time and peak memory. `hostile-deployed` runs
deploy/topology.sh (nginx and PgBouncer, which it installs from Debian when run as root).

Settings, from the environment (defaults): BENCH_WORKERS (one a core), BENCH_SERVER_THREADS
(as `make serve`: DB_POOL_SIZE), BENCH_CONNECTIONS (32), BENCH_THREADS (2, wrk's),
BENCH_DURATION (10 s a scenario), BENCH_WARMUP (3 s, once at the start), BENCH_TIMEOUT (10 s),
BENCH_READ_CONNECTIONS (8, the reads of the mixed scenario), BENCH_HOSTILE_SECONDS (60, the
hostile scenario's paced run), BENCH_SCENARIOS (all), BENCH_PORT and BENCH_PG_PORT (free ones),
BCRYPT_ROUNDS (12), BENCH_PROFILE=1 (py-spy records one worker under list and get, into
bench/results/).
Standard library only, so it runs with any Python; wrk comes from Debian (apt-get install wrk).
"""

import datetime
import glob
import itertools
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from random import Random

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"  # logs, ids and profiles (not committed)
BIN = Path(sys.executable).parent
SCENARIOS = (
    "list get create put patch delete signin mixed list10k position10k "
    "search10k search10k-common search10k-short page1 page1000 after1000 hostile hostile-deployed"
)
PASSWORD = "bench password"
SECRET = secrets.token_urlsafe(48)  # one for every server of a run: tokens work on each
TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")
TLS = ssl.create_default_context()  # trusts the deployed topology's own CA once it is up
LETTERS = "abcdefghijklmnopqrstuvwxyz"
USERS = ("reader", "writer", "deleter", "heavy", "searcher", "deep")
# Scenarios measured one request at a time: their latency, not a queue of 32 in front of it.
ONE_AT_A_TIME = {
    *("search10k", "search10k-common", "search10k-short"),
    *("page1", "page1000", "after1000"),
}


def setting(name, default):
    return int(os.environ.get(name) or default)


WORKERS = setting("BENCH_WORKERS", len(os.sched_getaffinity(0)))
SERVER_THREADS = setting("BENCH_SERVER_THREADS", 0)  # 0: wsgi.py's default
CONNECTIONS = setting("BENCH_CONNECTIONS", 32)
THREADS = setting("BENCH_THREADS", 2)
DURATION = setting("BENCH_DURATION", 10)
WARMUP = setting("BENCH_WARMUP", 3)
TIMEOUT = setting("BENCH_TIMEOUT", 10)
READ_CONNECTIONS = setting("BENCH_READ_CONNECTIONS", 8)
BCRYPT_ROUNDS = setting("BCRYPT_ROUNDS", 12)
HOSTILE_SECONDS = setting("BENCH_HOSTILE_SECONDS", 60)
PROFILE = os.environ.get("BENCH_PROFILE") == "1"


def main():
    RESULTS.mkdir(exist_ok=True)
    install_wrk()
    port = setting("BENCH_PORT", 0) or get_free_port()
    url = f"http://127.0.0.1:{port}"
    with get_database() as database_url, serve(database_url, port) as server:
        setup = seed(url, database_url)
        workers = get_children(server.pid)
        # Warm-up: fill the connection pools, and let each worker hash its dummy password
        # (auth.get_dummy_hash, made on the first sign-in) before anything is measured.
        for name in ("list", "signin"):
            run_wrk(url, scenario_env(setup, name), seconds=WARMUP)
        rows = []
        for name in os.environ.get("BENCH_SCENARIOS", SCENARIOS).split():
            print(f"bench: {name} ...", file=sys.stderr)
            if name == "hostile":
                rows += measure_hostile(database_url, setup)
                continue
            if name == "hostile-deployed":
                rows += measure_hostile_deployed(database_url)
                continue
            measured = measure_mixed if name == "mixed" else measure
            rows += measured(url, setup, name, [server.pid, *workers])
    report = {"settings": get_settings(), "scenarios": rows}
    (ROOT / "bench" / "results.json").write_text(json.dumps(report, indent=2) + "\n")
    print(format_table(rows))
    for row in rows:
        if "p99_ratio" in row:
            share = row["hostile_share_of_its_worker"]
            share = "an unknown share" if share is None else f"{share:.0%}"
            print(
                f"{row['scenario']}: another user's p99 at {row['p99_ratio']} times alone; "
                f"its worker answered {share} of the rest"
            )
    for row in rows:
        if "bcrypt_ceiling" in row:
            print(
                f"sign-in: {row['ok_rps']}/s succeeded, {row['of_ceiling']:.0%} of bcrypt's "
                f"{row['bcrypt_ceiling']}/s on {os.cpu_count()} cores"
            )


def install_wrk():
    if shutil.which("wrk"):
        return
    print("bench: wrk is missing; installing Debian's package", file=sys.stderr)
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    subprocess.run([*sudo, "apt-get", "install", "-y", "wrk"], check=True)


def get_free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def get_database():
    """BENCH_DATABASE_URL, or a PostgreSQL cluster of its own in a temporary folder."""
    if os.environ.get("BENCH_DATABASE_URL"):
        yield os.environ["BENCH_DATABASE_URL"]
        return
    pg_bin = Path(find_postgres_program("initdb")).parent
    port = setting("BENCH_PG_PORT", 0) or get_free_port()
    with tempfile.TemporaryDirectory(prefix="taskapi-bench-") as folder:
        as_postgres = []
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root
            shutil.chown(folder, "postgres")
            as_postgres = ["runuser", "-u", "postgres", "--"]
        data = f"{folder}/data"
        initdb = [pg_bin / "initdb", "-D", data, "-U", "postgres", "--auth=trust", "--no-sync"]
        subprocess.run([*as_postgres, *initdb], check=True, stdout=subprocess.DEVNULL)
        options = f"-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={folder}"
        pg_ctl = [*as_postgres, pg_bin / "pg_ctl", "-D", data, "-l", f"{folder}/log", "-w"]
        subprocess.run([*pg_ctl, "-o", options, "start"], check=True, stdout=subprocess.DEVNULL)
        try:
            yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
        finally:
            subprocess.run([*pg_ctl, "-m", "fast", "stop"], stdout=subprocess.DEVNULL)


def find_postgres_program(name):
    """On PATH, else in Debian's versioned folder (the newest), where initdb and pg_ctl live."""
    versions = glob.glob(f"/usr/lib/postgresql/*/bin/{name}")
    newest = max(versions, key=lambda path: float(Path(path).parts[4]), default=None)
    found = shutil.which(name) or newest
    if not found:
        sys.exit(f"bench: {name} not found; install PostgreSQL or set BENCH_DATABASE_URL")
    return found


@contextmanager
def serve(database_url, port, **settings):
    """`python wsgi.py` in its production settings on this database, stopped with SIGTERM."""
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "BETTER_AUTH_SECRET": SECRET,
        "BCRYPT_ROUNDS": str(BCRYPT_ROUNDS),
        # A load generator signing in 32 at a time, or one user writing 500 times a second, is
        # what the rate limits and quotas are for; off here, on in the hostile scenario.
        "RATELIMIT_ENABLED": "false",
        "TASK_QUOTA": "1000000",
        "PYTHON_DOTENV_DISABLED": "1",  # measure the defaults, not a developer's .env
        "FLASK_SKIP_DOTENV": "1",
        **settings,
    }
    subprocess.run([BIN / "flask", "--app", "taskapi", "init-db"], cwd=ROOT, env=env, check=True)
    command = [sys.executable, "wsgi.py", f"--workers={WORKERS}"]
    if SERVER_THREADS:
        command.append(f"--threads={SERVER_THREADS}")
    log = open(RESULTS / "server.log", "w")
    server = subprocess.Popen(
        [*command, f"--listen=127.0.0.1:{port}"], cwd=ROOT, env=env, stdout=log, stderr=log
    )
    try:
        for _ in range(100):
            if server.poll() is not None:
                sys.exit(f"bench: the server exited; see {log.name}")
            if len(get_children(server.pid)) == WORKERS and is_healthy(port):
                break
            time.sleep(0.1)
        yield server
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


def is_healthy(port):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1):
            return True
    except OSError:
        return False


def call(url, method="GET", body=None, token=None):
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data, headers, method=method)
    with urllib.request.urlopen(request, timeout=30, context=TLS) as response:
        return json.load(response)


def seed(url, database_url):
    """Users and tasks for the scenarios: `reader` has 50 tasks, made through the API; `writer`
    receives the created ones, so the list stays at 50; `deleter` owns the tasks to delete;
    `heavy` has 10,000 in its inbox, 2,500 with three subtasks each; `searcher` has 10,000
    with 2 KB descriptions, among 100,000 such; `deep` has 100,000 (for page 1,000)."""
    setup = sign_up(url)
    ids = add_tasks(url, setup["reader"], 50)
    (RESULTS / "read-ids.txt").write_text("".join(f"{id}\n" for id in ids))
    # Deleting needs a supply of rows: SQL inserts them in a second, the API would take minutes.
    user_id = setup["deleter"]["id"]
    count = 2000 * (DURATION + 5)  # over four times the fastest rate seen so far
    psql = find_postgres_program("psql")
    sql = (
        "INSERT INTO tasks (user_id, title, list_id, position, path) "
        f"SELECT '{user_id}', 'Doomed task ' || n, lists.id, 'i' || lpad(n::text, 9, '0'), "
        f"'i' || lpad(n::text, 9, '0') || '.' FROM generate_series(1, {count}) AS n "
        f"JOIN lists ON lists.user_id = '{user_id}' AND lists.is_inbox RETURNING id"
    )
    ids = subprocess.run(
        [psql, database_url, "-qtAc", sql], check=True, capture_output=True, text=True
    ).stdout
    (RESULTS / "delete-ids.txt").write_text(ids)
    setup["heavy"]["inbox"] = seed_heavy(psql, database_url, setup["heavy"]["id"])
    chosen = os.environ.get("BENCH_SCENARIOS", SCENARIOS).split()
    if {"search10k", "search10k-common", "search10k-short", "hostile"} & set(chosen):
        seed_searcher(psql, database_url, setup["searcher"])
        explain_search(psql, database_url, setup["searcher"])
    if {"page1", "page1000", "after1000"} & set(chosen):
        seed_deep(psql, database_url, setup["deep"]["id"])
        setup["deep"]["after"] = get_deep_cursor(url, setup["deep"])
    return setup


def sign_up(url):
    stamp = secrets.token_hex(4)
    setup = {}
    for name in USERS:
        body = {"email": f"bench-{name}-{stamp}@example.com", "password": PASSWORD}
        answer = call(f"{url}/api/auth/signup", "POST", body)
        user_id = answer["user"]["id"]
        setup[name] = {
            "id": user_id,
            "email": body["email"],
            "token": answer["access_token"],
            "tasks": f"/api/users/{user_id}/tasks",
        }
    return setup


def add_tasks(url, user, count):
    """count tasks made through the API; returns their ids."""
    tasks = f"{url}{user['tasks']}"
    return [call(tasks, "POST", {"title": f"Task {n}"}, user["token"])["id"] for n in range(count)]


def seed_heavy(psql, database_url, user_id):
    """10,000 tasks in the user's inbox, as a tree of two levels; returns the inbox's id."""
    inbox = f"(SELECT id FROM lists WHERE user_id = '{user_id}' AND is_inbox)"
    top = (
        "INSERT INTO tasks (user_id, title, list_id, position, path) "
        f"SELECT '{user_id}', 'Project ' || n, {inbox}, 'h' || lpad(n::text, 8, '0'), "
        "'h' || lpad(n::text, 8, '0') || '.' FROM generate_series(1, 2500) AS n"
    )
    below = (
        "INSERT INTO tasks (user_id, title, list_id, parent_id, position, path) "
        "SELECT user_id, 'Step ' || k, list_id, id, 'a' || k, path || 'a' || k || '.' "
        f"FROM tasks, generate_series(0, 2) AS k WHERE user_id = '{user_id}'"
    )
    for sql in (top, below, "ANALYZE tasks"):
        subprocess.run([psql, database_url, "-qc", sql], check=True, capture_output=True)
    select = f"SELECT {inbox}"
    found = subprocess.run([psql, database_url, "-qtAc", select], check=True, capture_output=True)
    return int(found.stdout)


def seed_search(psql, database_url, user_id):
    """10,000 tasks of this user and 90,000 of nine others, each with a description of about
    2 KB: words of a made-up vocabulary, drawn as often as words of a language are (Zipf's
    law), from a fixed seed. SEARCHES lists what the scenarios look for in them."""
    others = [f"bench-other-{n}-{user_id}" for n in range(9)]
    values = ", ".join(f"('{other}', '{other}@example.com')" for other in others)
    insert = f"INSERT INTO users (id, email) VALUES {values}"
    subprocess.run([psql, database_url, "-qc", insert], check=True, capture_output=True)
    random = Random(14)
    words = ["".join(random.choices(LETTERS, k=random.randint(3, 9))) for _ in range(4096)]
    weights = list(itertools.accumulate(1 / rank for rank in range(1, len(words) + 1)))
    inboxes = get_inboxes(psql, database_url, [user_id, *others])
    rows = []
    for n in range(100_000):
        owner = [user_id, *others][n % 10]
        title = " ".join(random.choices(words, cum_weights=weights, k=4))
        description = " ".join(random.choices(words, cum_weights=weights, k=330))[:2000]
        position = f"s{n:08d}"
        rows.append(f"{owner}\t{title}\t{description}\t{inboxes[owner]}\t{position}\t{position}.\n")
    columns = "user_id, title, description, list_id, position, path"
    copy = [psql, database_url, "-q", "-c", f"COPY tasks ({columns}) FROM STDIN"]
    subprocess.run([*copy, "-c", "ANALYZE tasks"], input="".join(rows), text=True, check=True)
    return words


def seed_searcher(psql, database_url, searcher):
    words = seed_search(psql, database_url, searcher["id"])
    # A rare word (about 80 of the user's tasks hold it), a common one (about 340), and two
    # letters, which no trigram serves (every task holds them).
    searcher["searches"] = {"": words[3999], "-common": words[999], "-short": "qt"}


def explain_search(psql, database_url, searcher):
    """PostgreSQL's plan for a search as the list runs it, into bench/results/search-plan.txt."""
    user_id, word = searcher["id"], searcher["searches"][""]
    sql = (
        "EXPLAIN (ANALYZE, COSTS OFF) SELECT id, title, count(*) OVER () FROM tasks "
        f"WHERE user_id = '{user_id}' AND deleted_at IS NULL "
        f"AND (title ILIKE '%{word}%' OR description ILIKE '%{word}%') "
        "ORDER BY created_at DESC, id DESC LIMIT 101"
    )
    found = subprocess.run([psql, database_url, "-qAtc", sql], capture_output=True, text=True)
    (RESULTS / "search-plan.txt").write_text(found.stdout)


def get_inboxes(psql, database_url, user_ids):
    names = ", ".join(f"'{user_id}'" for user_id in user_ids)
    sql = f"SELECT user_id, id FROM lists WHERE is_inbox AND user_id IN ({names})"
    found = subprocess.run(
        [psql, database_url, "-qtAF,", "-c", sql], capture_output=True, text=True
    )
    return dict(line.split(",") for line in found.stdout.split())


def seed_deep(psql, database_url, user_id):
    """100,000 short tasks of one user, for page 1,000 (of 100) against page 1."""
    inbox = f"(SELECT id FROM lists WHERE user_id = '{user_id}' AND is_inbox)"
    sql = (
        "INSERT INTO tasks (user_id, title, list_id, position, path, created_at) "
        f"SELECT '{user_id}', 'Deep ' || n, {inbox}, 'd' || lpad(n::text, 8, '0'), "
        "'d' || lpad(n::text, 8, '0') || '.', now() - n * interval '1 second' "
        "FROM generate_series(1, 100000) AS n"
    )
    for statement in (sql, "ANALYZE tasks"):
        subprocess.run([psql, database_url, "-qc", statement], check=True, capture_output=True)


def get_deep_cursor(url, user):
    """The cursor that starts page 1,000 (of 100 tasks), walked to through the API: 199
    pages of 500, then 4 of 100."""
    after = None
    for size, pages in ((500, 199), (100, 4)):
        for _ in range(pages):
            query = f"page_size={size}" + (f"&after={after}" if after else "")
            request = urllib.request.Request(
                f"{url}{user['tasks']}?{query}",
                headers={"Authorization": f"Bearer {user['token']}"},
            )
            with urllib.request.urlopen(request, timeout=30) as response:
                after = json.loads(response.headers["X-Pagination"])["next_cursor"]
    return after


def scenario_env(setup, name):
    """What bench/request.lua sends in each scenario."""
    reader, writer, deleter, heavy, searcher, deep = (setup[name] for name in USERS)
    in_order = f"{heavy['tasks']}?list_id={heavy.get('inbox')}&sort=position"
    one_task = {"WRK_PATH": reader["tasks"] + "/{id}", "WRK_IDS": str(RESULTS / "read-ids.txt")}
    new_task = {"title": "Write the report", "description": "Before Friday.", "completed": False}
    return {
        "list": {"WRK_METHOD": "GET", "WRK_PATH": reader["tasks"], "WRK_TOKEN": reader["token"]},
        "get": {"WRK_METHOD": "GET", **one_task, "WRK_TOKEN": reader["token"]},
        "create": {
            "WRK_METHOD": "POST",
            "WRK_PATH": writer["tasks"],
            "WRK_TOKEN": writer["token"],
            "WRK_BODY": json.dumps(new_task),
        },
        "put": {
            "WRK_METHOD": "PUT",
            **one_task,
            "WRK_TOKEN": reader["token"],
            "WRK_BODY": json.dumps({**new_task, "completed": True}),
        },
        "patch": {
            "WRK_METHOD": "PATCH",
            **one_task,
            "WRK_TOKEN": reader["token"],
            "WRK_BODY": json.dumps({"completed": True}),
        },
        "delete": {
            "WRK_METHOD": "DELETE",
            "WRK_PATH": deleter["tasks"] + "/{id}",
            "WRK_IDS": str(RESULTS / "delete-ids.txt"),
            "WRK_TOKEN": deleter["token"],
        },
        "list10k": {"WRK_METHOD": "GET", "WRK_PATH": heavy["tasks"], "WRK_TOKEN": heavy["token"]},
        **{
            f"search10k{kind}": {
                "WRK_METHOD": "GET",
                "WRK_PATH": f"{searcher['tasks']}?q={word}",
                "WRK_TOKEN": searcher["token"],
            }
            for kind, word in searcher.get("searches", {}).items()
        },
        **{
            name: {
                "WRK_METHOD": "GET",
                "WRK_PATH": deep["tasks"] + query,
                "WRK_TOKEN": deep["token"],
            }
            for name, query in (
                ("page1", ""),
                ("page1000", "?page=1000"),
                ("after1000", f"?after={deep.get('after')}"),
            )
        },
        "position10k": {"WRK_METHOD": "GET", "WRK_PATH": in_order, "WRK_TOKEN": heavy["token"]},
        "hostile create": {
            "WRK_METHOD": "POST",
            "WRK_PATH": searcher["tasks"],
            "WRK_TOKEN": searcher["token"],
            "WRK_BODY": json.dumps({**new_task, "description": "x" * 10_000}),
        },
        "hostile search": {
            "WRK_METHOD": "GET",
            "WRK_PATH": f"{searcher['tasks']}?q={searcher.get('searches', {}).get('-common')}",
            "WRK_TOKEN": searcher["token"],
        },
        "signin": {
            "WRK_METHOD": "POST",
            "WRK_PATH": "/api/auth/signin",
            "WRK_BODY": json.dumps({"email": reader["email"], "password": PASSWORD}),
        },
    }[name]


def start_wrk(url, env, connections=CONNECTIONS, threads=THREADS, seconds=DURATION):
    script = ROOT / "bench" / "request.lua"
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", f"--timeout={TIMEOUT}s"]
    return subprocess.Popen(
        [*command, "-s", script, url],
        env={**os.environ, "WRK_THREADS": str(threads), **env},
        stdout=subprocess.PIPE,
        text=True,
    )


def finish_wrk(wrk):
    """wrk's figures, from the JSON line bench/request.lua prints last."""
    output, _ = wrk.communicate()
    result = json.loads(next(line for line in output.splitlines() if line.startswith("{")))
    return {
        "rps": round(result["requests"] / result["seconds"], 1),
        "p50_ms": result["p50_ms"],
        "p99_ms": result["p99_ms"],
        "errors": result["non_2xx"] + result["socket_errors"],
        "requests": result["requests"],
    }


def run_wrk(url, env, **options):
    return finish_wrk(start_wrk(url, env, **options))


def measure(url, setup, name, pids):
    """One scenario, from an idle server: wrk's figures, the server's CPU time per request and
    its peak memory.

    wrk stops with a request in flight on each connection, which the server answers all the
    same (for sign-in, seconds of bcrypt). So the CPU time runs until the server rests again,
    and is shared among the requests answered plus those, one a connection."""
    connections, threads = (1, 1) if name in ONE_AT_A_TIME else (CONNECTIONS, THREADS)
    wait_until_idle(pids)
    profiler = start_profiler(name, pids[1])
    ticks = get_cpu_ticks(pids)
    result = run_wrk(url, scenario_env(setup, name), connections=connections, threads=threads)
    wait_until_idle(pids)
    cpu_ms = (get_cpu_ticks(pids) - ticks) * 1000 / TICKS_PER_SECOND
    if profiler:
        profiler.wait()
    per_request = round(cpu_ms / (result["requests"] + connections), 2)
    cpu = {"cpu_ms_per_request": per_request, "cpu_s": round(cpu_ms / 1000, 1)}
    if name == "signin":
        result |= compare_with_bcrypt(result)
    return [{"scenario": name, **result, **cpu, **get_peak_rss(pids)}]


def compare_with_bcrypt(result):
    """Sign-ins that succeeded a second, against the most bcrypt allows on this machine: one
    process a core checking the bench's password and doing nothing else (the server is idle)."""
    ok_rps = round((result["requests"] - result["errors"]) / DURATION, 2)
    check = (
        "import bcrypt, time\n"
        f"hashed = bcrypt.hashpw(b'x', bcrypt.gensalt({BCRYPT_ROUNDS}))\n"
        f"end, checked = time.monotonic() + {DURATION}, 0\n"
        "while time.monotonic() < end:\n"
        "    checked += bcrypt.checkpw(b'x', hashed)\n"
        "print(checked)\n"
    )
    checkers = [
        subprocess.Popen([BIN / "python", "-c", check], stdout=subprocess.PIPE, text=True)
        for _ in range(os.cpu_count())
    ]
    ceiling = round(sum(int(checker.communicate()[0]) for checker in checkers) / DURATION, 2)
    return {"ok_rps": ok_rps, "bcrypt_ceiling": ceiling, "of_ceiling": round(ok_rps / ceiling, 3)}


def measure_mixed(url, setup, name, pids):
    """Reads of one task alone, then again while CONNECTIONS clients hammer sign-in."""
    read = scenario_env(setup, "get")
    wait_until_idle(pids)
    alone = {**run_wrk(url, read, connections=READ_CONNECTIONS, threads=1), **get_peak_rss(pids)}
    flood = start_wrk(url, scenario_env(setup, "signin"), seconds=WARMUP + DURATION + 1)
    time.sleep(WARMUP)  # let the flood fill every worker thread first
    loaded = run_wrk(url, read, connections=READ_CONNECTIONS, threads=1)
    flooding = finish_wrk(flood)
    rss = get_peak_rss(pids)
    return [
        {"scenario": f"get alone, {READ_CONNECTIONS} connections", **alone},
        {"scenario": "get during sign-in flood", **loaded, **rss},
        {"scenario": f"sign-in flood, {CONNECTIONS} connections", **flooding, **rss},
    ]


def measure_hostile(database_url, setup):
    """The hostile user against `python wsgi.py` itself, with the default limits and quotas: on
    a second server, as the other scenarios run with the limits off."""
    port = get_free_port()
    with serve(database_url, port, RATELIMIT_ENABLED="true", TASK_QUOTA="10000") as server:
        pids = [server.pid, *get_children(server.pid)]
        rows = measure_against(f"http://127.0.0.1:{port}", setup, pids, [RESULTS / "server.log"])
        rss = get_peak_rss(pids)
    return [row | rss for row in rows]


def measure_hostile_deployed(database_url):
    """The same as deployed (deploy/topology.sh: nginx with TLS, two `wsgi.py` of one worker,
    PgBouncer), in a fresh database of that server: nginx spreads every client's requests over
    both processes, where direct the kernel may give all the hostile user's connections to the
    other user's worker."""
    with deployed(database_url) as topology:
        url, direct_url = topology["TOPOLOGY_URL"], topology["TOPOLOGY_DIRECT_URL"]
        setup = sign_up(url)
        add_tasks(url, setup["reader"], 50)
        seed_searcher(find_postgres_program("psql"), direct_url, setup["searcher"])
        workers = [int(pid) for pid in topology["TOPOLOGY_WAITRESS_PIDS"].split()]
        logs = sorted(Path(topology["dir"]).glob("waitress-*.log"))
        rows = measure_against(url, setup, workers, logs)
        for log in [*logs, Path(topology["TOPOLOGY_ACCESS_LOG"])]:  # the folder goes with it
            shutil.copy(log, RESULTS / f"deployed-{log.name}")
    return [{**row, "scenario": f"{row['scenario']} (as deployed)"} for row in rows]


@contextmanager
def deployed(database_url):
    """deploy/topology.sh on this database's server, with the defaults; yields its env file."""
    folder = tempfile.mkdtemp(prefix="taskapi-bench-topology-")
    script = ROOT / "deploy" / "topology.sh"
    env = {
        **os.environ,
        "TOPOLOGY_DIR": folder,
        "TOPOLOGY_POSTGRES_URL": database_url,
        "PYTHON_DOTENV_DISABLED": "1",
        "FLASK_SKIP_DOTENV": "1",
    }
    try:
        subprocess.run([script, "start"], env=env, check=True, stdout=subprocess.DEVNULL)
        lines = Path(folder, "env").read_text().splitlines()
        topology = dict(line.split("=", 1) for line in lines) | {"dir": folder}
        TLS.load_verify_locations(topology["TOPOLOGY_CA"])
        yield topology
    finally:
        subprocess.run([script, "stop"], env=env, stdout=subprocess.DEVNULL)


def measure_against(url, setup, pids, logs):
    """One user's list alone, then while `searcher` (at its 10,000-task quota) creates 11 KB
    tasks and searches from 12 connections at 100 creates and 100 searches a second (past its
    limits, faster than the account created before there were limits), for a minute: one
    window of its limits. The list is measured inside that minute, from its second second to its
    last, so it meets the burst that opens the window once, as it would each minute of a longer
    attack (the list measured a second past the minute met the next window's burst too). Then
    the same for DURATION as fast as the answers come (a flood)."""
    victim = scenario_env(setup, "list")
    run_wrk(url, victim, seconds=WARMUP)
    rows = []
    for pace, delay_ms, seconds in (("100/s each", 60, HOSTILE_SECONDS), ("flooding", 0, DURATION)):
        wait_until_idle(pids)
        alone = run_wrk(url, victim, connections=1, threads=1, seconds=seconds - 2)
        floods = [
            start_wrk(
                url,
                {**scenario_env(setup, name), "WRK_DELAY_MS": str(delay_ms)},
                connections=6,
                seconds=seconds,
            )
            for name in ("hostile create", "hostile search")
        ]
        time.sleep(1)
        since = time.time()
        loaded = run_wrk(url, victim, connections=1, threads=1, seconds=seconds - 2)
        shared = get_shared_worker(logs, setup["reader"]["id"], since, time.time())
        creates, searches = (finish_wrk(flood) for flood in floods)
        ratio = round(loaded["p99_ms"] / alone["p99_ms"], 2)
        loaded |= {"p99_ratio": ratio, "hostile_share_of_its_worker": shared}
        rows += [
            {"scenario": f"another user's list alone, 1 connection, {seconds - 2} s", **alone},
            {"scenario": f"the same, the hostile user {pace}", **loaded},
            {"scenario": f"its creates at the quota, {pace}, 6 connections", **creates},
            {"scenario": f"its searches, {pace}, 6 connections", **searches},
        ]
    return rows


def get_shared_worker(logs, user_id, since, until):
    """Of the other requests the servers logged from since to until, the share answered by the
    worker that answered most of user_id's (by the access logs): direct, the kernel gives each
    connection to whichever worker accepts it first, and the hostile user's requests slow
    another user's most in the worker they share."""
    theirs, others = Counter(), Counter()
    for entry in read_access_logs(logs):
        at = datetime.datetime.strptime(entry["time"], "%Y-%m-%d %H:%M:%S,%f").timestamp()
        if since <= at <= until:
            counter = theirs if entry.get("user_id") == user_id else others
            counter[entry["process"]] += 1
    if not theirs:
        return None
    worker = theirs.most_common(1)[0][0]
    return round(others[worker] / max(1, sum(others.values())), 2)


def read_access_logs(logs):
    for path in logs:
        with open(path) as log:
            for line in log:
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue  # waitress's own lines
                if entry.get("logger") == "taskapi.access":
                    yield entry


def wait_until_idle(pids):
    """Until the server rests: waitress still answers the requests of clients that have left, and
    a scenario must not pay for the backlog of the one before (sign-in leaves seconds of bcrypt)."""
    for _ in range(120):
        ticks = get_cpu_ticks(pids)
        time.sleep(0.5)
        if get_cpu_ticks(pids) - ticks <= TICKS_PER_SECOND // 50:  # under 4% of one core
            return


def start_profiler(name, pid):
    """With BENCH_PROFILE=1, py-spy samples one worker for the list and get scenarios."""
    if not PROFILE or name not in ("list", "get"):
        return None
    output = RESULTS / f"profile-{name}.speedscope.json"
    command = [BIN / "py-spy", "record", "--pid", str(pid), "--duration", str(DURATION)]
    return subprocess.Popen(
        [*command, "--format", "speedscope", "--output", output], stdout=subprocess.DEVNULL
    )


def get_children(pid):
    children = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(child) for child in children.read_text().split()] if children.exists() else []


def get_cpu_ticks(pids):
    """User plus system CPU time of these processes so far, in clock ticks (/proc/<pid>/stat)."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total


def get_peak_rss(pids):
    """Each process's peak resident memory so far (VmHWM), in MB: the parent first."""
    peaks = []
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                peaks.append(round(int(line.split()[1]) / 1024, 1))
    return {"peak_rss_mb": peaks}


def get_settings():
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "commit": commit,
        "cores": os.cpu_count(),
        "workers": WORKERS,
        "server_threads": SERVER_THREADS,
        "connections": CONNECTIONS,
        "wrk_threads": THREADS,
        "warmup_s": WARMUP,
        "duration_s": DURATION,
        "bcrypt_rounds": BCRYPT_ROUNDS,
        "database": "BENCH_DATABASE_URL" if os.environ.get("BENCH_DATABASE_URL") else "throwaway",
        "profiled": PROFILE,
    }


def format_table(rows):
    lines = [
        "| scenario | req/s | p50 ms | p99 ms | errors | CPU ms/req | peak RSS MB (workers) |",
        "|---|--:|--:|--:|--:|--:|--:|",
    ]
    for row in rows:
        cpu = row.get("cpu_ms_per_request")
        rss = " / ".join(str(mb) for mb in row.get("peak_rss_mb", [])[1:])
        lines.append(
            f"| {row['scenario']} | {row['rps']:,.0f} | {row['p50_ms']:.1f} | {row['p99_ms']:.1f} "
            f"| {row['errors']} | {'' if cpu is None else cpu} | {rss} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
