"""The deploy helper that runs on a deploy target: small, read-mostly operations on the release layout.

``ops.deploy.transport`` sends this file's source and one command's JSON argument over ssh to the target's ``python3``
(stdin, started by :data:`BOOT`): standard library only, any Python 3.8+. Each command prints one JSON object. Nothing
here reads a value out of ``.env``: only key names leave the target.

The layout under the deploy path::

    releases/<UTC time>-<sha>/     one per deploy; REVISION (what was deployed), BAD (why it failed) or HEALTHY
    current -> releases/<name>     switched atomically (a new link renamed over the old one)
    shared/.env                    secrets, mode 0600, never overwritten
    shared/var/                    logs, pid files, the embedded database: they survive releases
    venvs/<key>/                   virtualenvs keyed by the Python version and requirements.txt
    deploy.lock                    who is deploying (JSON), taken under an flock on .deploy.mutex
    audit.log                      one JSON line per deploy, rollback and unlock (repeated no-ops collapse)

Remote work ends with the connection: the caller keeps stdin open while it waits; when it closes (the deploy killed,
the connection lost) the helper's process group (a venv build's pip, an ``inv`` task) gets SIGTERM, then SIGKILL.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

LOCK = "deploy.lock"
FILES = ".chops-files"  # in a release: the files the deploy shipped, NUL-terminated
MUTEX = ".deploy.mutex"
AUDIT = "audit.log"
MARKERS = ("REVISION", "BAD", "HEALTHY", FILES)
_KEY = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=")
_EXAMPLE_KEY = re.compile(r"^\s*(#\s*)?(?:export\s+)?([A-Z][A-Z0-9_]*)=")
# What the target's Python runs (``python3 -c BOOT N``): the first N bytes of stdin are this program; the rest of
# stdin stays open until the caller is done, and its end ends the work (:func:`watch_stdin`).
BOOT = "import sys; exec(compile(sys.stdin.buffer.read(int(sys.argv[1])), 'chops-deploy-helper', 'exec'))"
GRACE = 10  # seconds the process group gets after SIGTERM before SIGKILL, once the connection is gone


# --- reading the layout ---------------------------------------------------------------------------------------------

def _read(path, default=None):
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except OSError:
        return default


def _write_atomic(path, text, mode=0o644):
    tmp = f"{path}.tmp-{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def current_release(path):
    """The name of the release ``current`` points at, or None."""
    try:
        target = os.readlink(os.path.join(path, "current"))
    except OSError:
        return None
    return os.path.basename(target.rstrip("/")) or None


def venv_of(release_dir):
    """The venv key a release's ``.venv`` link names, or None."""
    try:
        return os.path.basename(os.readlink(os.path.join(release_dir, ".venv")).rstrip("/")) or None
    except OSError:
        return None


def releases(path):
    """Every release directory, oldest first (names start with their UTC time)."""
    base = os.path.join(path, "releases")
    try:
        names = sorted(n for n in os.listdir(base) if os.path.isdir(os.path.join(base, n)) and not n.startswith("."))
    except OSError:
        return []
    out = []
    for name in names:
        d = os.path.join(base, name)
        revision = _read(os.path.join(d, "REVISION"))
        bad = _read(os.path.join(d, "BAD"))
        healthy = _read(os.path.join(d, "HEALTHY"))
        out.append({"name": name, "revision": revision.strip() if revision else None, "complete": revision is not None,
                    "bad": bad.strip() or "marked bad" if bad is not None else None,
                    "healthy": healthy.strip() or "yes" if healthy is not None else None,
                    "venv": venv_of(d)})
    return out


def venvs(path):
    base = os.path.join(path, "venvs")
    try:
        names = sorted(n for n in os.listdir(base) if os.path.isdir(os.path.join(base, n)))
    except OSError:
        return []
    return [{"key": n, "complete": os.path.exists(os.path.join(base, n, ".chops-complete"))} for n in names]


def env_keys(path):
    """The key names (never the values) set in a .env file, or None when it does not exist."""
    text = _read(path)
    if text is None:
        return None
    return sorted({m.group(1) for m in map(_KEY.match, text.splitlines()) if m})


def example_keys(path):
    """The keys a .env.example documents: {"NAME": required}; a commented-out key is optional."""
    text = _read(path)
    if text is None:
        return None
    out = {}
    for line in text.splitlines():
        m = _EXAMPLE_KEY.match(line)
        if m:
            out[m.group(2)] = out.get(m.group(2), False) or not m.group(1)
    return out


def read_lock(path):
    """The holder of the deploy lock (a dict, plus its age in seconds), or None."""
    raw = _read(os.path.join(path, LOCK))
    if raw is None:
        return None
    try:
        holder = json.loads(raw)
        if not isinstance(holder, dict):
            raise ValueError
    except ValueError:
        holder = {"id": "?", "unreadable": raw[:200]}
    try:
        holder["age"] = round(time.time() - os.stat(os.path.join(path, LOCK)).st_mtime, 1)
    except OSError:
        holder["age"] = None
    return holder


def audit_tail(path, n):
    text = _read(os.path.join(path, AUDIT), "")
    out = []
    for line in text.splitlines()[-n:] if n else []:
        try:
            out.append(json.loads(line))
        except ValueError:
            out.append({"unreadable": line[:200]})
    return out


def crontab_lines(tag):
    """The crontab lines carrying ``tag`` (this deploy's project id), and whether crontab is there at all. Other
    lines of the crontab never leave the target."""
    if not shutil.which("crontab"):
        return {"available": False, "lines": []}
    done = subprocess.run(["crontab", "-l"], capture_output=True, text=True, timeout=30)
    text = done.stdout if done.returncode == 0 else ""
    lines = [line for line in text.splitlines() if tag and f"# chops:{tag}:" in line and not line.lstrip().startswith("#")]
    return {"available": True, "lines": lines}


def shipped(root):
    """The files a release was shipped with (its .chops-files), or every regular file under it."""
    listed = _read(os.path.join(root, FILES))
    if listed is not None:
        return [name for name in listed.split("\0") if name]
    out = []
    for base, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(base, d)) and d != "__pycache__"]
        out += [os.path.relpath(os.path.join(base, f), root) for f in files]
    return [name for name in out if name not in MARKERS]


def blob_hashes(root):
    """{relative path: sha256} of every regular file the release at ``root`` was shipped with."""
    out = {}
    root = root.rstrip("/")
    for rel in shipped(root):
        full = os.path.join(root, rel)
        if os.path.islink(full) or not os.path.isfile(full):
            continue
        h = hashlib.sha256()
        with open(full, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        out[rel] = h.hexdigest()
    return out


def python_facts(python):
    """The interpreter venvs are built with: its version, implementation, machine and real path (this process's
    own when ``python`` is the interpreter running this helper, as it is when ops.deploy.transport runs it)."""
    facts = ("{'version': platform.python_version(), 'implementation': sys.implementation.name, 'machine': "
             "platform.machine(), 'executable': os.path.realpath(sys.executable), "
             "'venv': __import__('importlib.util').util.find_spec('ensurepip') is not None}")
    found = shutil.which(python)
    if found and os.path.realpath(found) == os.path.realpath(sys.executable):
        return eval(facts, {"platform": platform, "sys": sys, "os": os})  # noqa: S307 - our own constant
    code = f"import json, os, platform, sys; print(json.dumps({facts}))"
    try:
        done = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=60)
    except OSError as exc:
        return {"error": f"cannot run {python}: {exc.strerror}"}
    if done.returncode != 0:
        return {"error": f"{python} failed: {(done.stderr or '').strip().splitlines()[-1:] or ['?']}"}
    return json.loads(done.stdout)


# --- commands ---------------------------------------------------------------------------------------------------------

def cmd_facts(a):
    """Everything a plan needs to know about the target, in one round trip. Read-only, unless ``holder`` is given:
    then the deploy lock is tried first (see :func:`cmd_lock`), but only on a target that can take a deploy
    (writable, rsync, a Python with venv, crontab when ``need_crontab``), so a refused target is left untouched."""
    path = a["path"]
    parent = os.path.dirname(path.rstrip("/")) or "/"
    python = python_facts(a.get("python") or "python3")
    tried = None

    def writable():
        there = os.path.isdir(path)
        return os.access(path if there else parent, os.W_OK) if (there or os.path.isdir(parent)) else False

    if a.get("holder"):
        ready = (writable() and shutil.which("rsync") and python.get("venv")
                 and (shutil.which("crontab") or not a.get("need_crontab")))
        tried = cmd_lock(a) if ready else {"acquired": False, "holder": None, "not_ready": True}
    exists = os.path.isdir(path)
    current = current_release(path) if exists else None
    out = {
        "path": path, "exists": exists,
        "writable": writable(),
        "parent_exists": os.path.isdir(parent),
        "hostname": socket.gethostname(), "uid": os.getuid(),
        "python": python,
        "lock_result": tried,
        "current": current,
        "releases": releases(path) if exists else [],
        "venvs": venvs(path) if exists else [],
        "env": {"keys": env_keys(os.path.join(path, "shared", ".env")) if exists else None},
        "lock": read_lock(path) if exists else None,
        "crontab": crontab_lines(a.get("tag")),
        "audit": audit_tail(path, int(a.get("audit", 0))) if exists else [],
        "rsync": shutil.which("rsync") is not None,
        "cron_paused": _json_file(os.path.join(path, "shared", "var", "run", "cron.paused")) if exists else None,
        "db_lock": db_lock_holder(path) if exists else None,
    }
    env_file = os.path.join(path, "shared", ".env")
    if exists and os.path.exists(env_file):
        out["env"]["mode"] = oct(os.stat(env_file).st_mode & 0o777)
    if current:
        out["env_example_current"] = example_keys(os.path.join(path, "current", "config", ".env.example"))
        if a.get("manifest"):
            out["manifest"] = blob_hashes(os.path.join(path, "releases", current))
    return out


def _json_file(path):
    raw = _read(path)
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return {"unreadable": raw[:200]}


def db_lock_holder(path):
    """Who holds the embedded database's lock (``shared/var/clickhouse.lock``, an flock with its holder written in
    it), or None when nobody does (or the target's database is a server)."""
    lock = os.path.join(path, "shared", "var", "clickhouse.lock")
    try:
        fh = open(lock, "rb")
    except OSError:
        return None
    with fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)  # released when fh closes
        except OSError:
            return _json_file(lock) or {"unreadable": ""}
    return None


def _mutex(path):
    fh = open(os.path.join(path, MUTEX), "a+")
    fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
    return fh


def cmd_lock(a):
    """Take the deploy lock for ``holder`` unless someone holds it; ``takeover`` names a holder id (judged stale
    by the caller) that may be replaced. Creates the layout's directories the first time."""
    path = a["path"]
    for d in ("", "releases", "venvs", "shared", os.path.join("shared", "var")):
        os.makedirs(os.path.join(path, d), exist_ok=True)
    with _mutex(path):
        holder = read_lock(path)
        if holder is not None and holder.get("id") != a.get("takeover"):
            return {"acquired": False, "holder": holder}
        _write_atomic(os.path.join(path, LOCK), json.dumps(a["holder"]))
        if holder is not None and a.get("takeover") and holder.get("id") != a["holder"].get("id"):
            _append_audit(path, killed_record(holder, a["holder"]))  # the deploy that died says nothing itself
        return {"acquired": True, "took_over": holder}


def killed_record(old, new):
    """The audit line of a deploy that died holding the lock, written by the one that takes its lock over."""
    return {"at": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "who": f"{old.get('user', '?')}@"
            f"{old.get('host', '?')}", "action": old.get("action", "deploy"), "host": socket.gethostname(), "from": None,
            "to": old.get("release"), "revision": None, "result": "killed", "seconds": None, "steps": [],
            "error": f"pid {old.get('pid', '?')} died holding the deploy lock (since {old.get('since', '?')})",
            "note": f"recorded by the deploy of {new.get('user', '?')}@{new.get('host', '?')} pid "
                    f"{new.get('pid', '?')} that took its lock over"}


def cmd_unlock(a):
    """Release the lock when ``id`` holds it (or whoever holds it, with ``force``)."""
    path = a["path"]
    if not os.path.isdir(path):
        return {"released": False, "holder": None}
    with _mutex(path):
        holder = read_lock(path)
        if holder is None:
            return {"released": False, "holder": None}
        if not a.get("force") and holder.get("id") != a.get("id"):
            return {"released": False, "holder": holder}
        os.unlink(os.path.join(path, LOCK))
        if a.get("audit"):
            _append_audit(path, a["audit"])
        return {"released": True, "holder": holder}


def _remove(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _symlink(target, link):
    """Point ``link`` at ``target``, atomically (a new link renamed over the old one)."""
    tmp = f"{link}.tmp-{os.getpid()}"
    _remove(tmp)
    os.symlink(target, tmp)
    os.replace(tmp, link)


def cmd_prepare(a):
    """After the sync: REVISION, the links to shared/ and the venv, and shared/.env (created empty, mode 0600, when
    missing; never overwritten). Reports the .env key names against the release's .env.example."""
    path, release = a["path"], a["release"]
    rel = os.path.join(path, "releases", release)
    shared = os.path.join(path, "shared")
    os.makedirs(os.path.join(shared, "var"), exist_ok=True)
    env = os.path.join(shared, ".env")
    created, fixed = False, None
    if not os.path.exists(env):
        fd = os.open(env, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write("# chops settings and secrets of this target (mode 0600). Deploys never overwrite this file;\n"
                     "# the keys it can hold are documented in current/config/.env.example.\n")
        created = True
    mode = os.stat(env).st_mode & 0o777
    if mode & 0o077:
        os.chmod(env, 0o600)
        fixed = oct(mode)
    for name, target in ((".venv", os.path.join("..", "..", "venvs", a["venv"])),
                         ("var", os.path.join("..", "..", "shared", "var")),
                         (".env", os.path.join("..", "..", "shared", ".env"))):
        link = os.path.join(rel, name)
        if os.path.lexists(link) and not os.path.islink(link):
            shutil.rmtree(link) if os.path.isdir(link) else os.unlink(link)
        _symlink(target, link)
    if a.get("files") is not None:
        _write_atomic(os.path.join(rel, FILES), "".join(f"{name}\0" for name in a["files"]))
    _write_atomic(os.path.join(rel, "REVISION"), a["revision"] + "\n")
    venv_dir = os.path.join(path, "venvs", a["venv"])
    return {"env_created": created, "env_mode_fixed": fixed, "env_keys": env_keys(env),
            "example": example_keys(os.path.join(rel, "config", ".env.example")),
            "venv_ready": os.path.exists(os.path.join(venv_dir, ".chops-complete"))}


def cmd_venv(a):
    """Build ``venvs/<key>`` with the target's Python and ``pip install -r requirements.txt``, unless it is there.
    A half-built venv (no completion marker: a killed build) is removed and built again."""
    path, key = a["path"], a["venv"]
    venv_dir = os.path.join(path, "venvs", key)
    marker = os.path.join(venv_dir, ".chops-complete")
    if os.path.exists(marker):
        return {"built": False, "seconds": 0.0}
    started = time.time()
    shutil.rmtree(venv_dir, ignore_errors=True)
    os.makedirs(os.path.join(path, "venvs"), exist_ok=True)
    log = os.path.join(path, "venvs", f"{key}.log")
    python = a.get("python") or "python3"
    requirements = os.path.join(path, "releases", a["release"], "requirements.txt")
    with open(log, "w") as out:
        steps = [[python, "-m", "venv", venv_dir],
                 [os.path.join(venv_dir, "bin", "pip"), "install", "--disable-pip-version-check", "--no-input",
                  "-r", requirements]]
        for argv in steps:
            out.write("$ " + " ".join(argv) + "\n")
            out.flush()
            code = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL).returncode
            if code != 0:
                shutil.rmtree(venv_dir, ignore_errors=True)
                tail = (_read(log, "") or "").strip().splitlines()[-3:]
                return {"built": False, "failed": True, "exit": code, "log": log, "tail": tail,
                        "seconds": round(time.time() - started, 1)}
    _write_atomic(marker, json.dumps({"built": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
                                      "python": python_facts(python)}))
    return {"built": True, "seconds": round(time.time() - started, 1), "log": log}


def cmd_switch(a):
    """Point ``current`` at ``release`` (a new link renamed over the old one: atomic), or remove it (None)."""
    path = a["path"]
    before = current_release(path)
    link = os.path.join(path, "current")
    if a.get("release"):
        if not os.path.isfile(os.path.join(path, "releases", a["release"], "REVISION")):
            return {"switched": False, "error": f"release {a['release']} is not complete", "from": before}
        _symlink(os.path.join("releases", a["release"]), link)
    elif os.path.lexists(link):
        os.unlink(link)
    return {"switched": True, "from": before, "to": current_release(path)}


def cmd_mark(a):
    """Mark a release BAD (with the reason) or HEALTHY."""
    rel = os.path.join(a["path"], "releases", a["release"])
    if not os.path.isdir(rel):
        return {"marked": False}
    stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    if a["status"] == "bad":
        _write_atomic(os.path.join(rel, "BAD"), f"{stamp} {a.get('reason', '')}".strip() + "\n")
        _remove(os.path.join(rel, "HEALTHY"))
    else:
        _write_atomic(os.path.join(rel, "HEALTHY"), stamp + "\n")
        _remove(os.path.join(rel, "BAD"))
    return {"marked": True}


def prune_plan(found, current, keep):
    """Which releases to remove: all but the ``keep`` newest that are not BAD (a BAD release never takes a place),
    never ``current``, never the newest healthy one (the rollback target) nor the newest BAD one (to look at),
    always the incomplete ones (a sync that died). Pure: ``found`` is :func:`releases`' list."""
    good = [r["name"] for r in found if r["complete"] and not r["bad"]]
    kept = set(good[-keep:]) if keep > 0 else set()
    healthy = [r["name"] for r in found if r["healthy"] and not r["bad"] and r["complete"] and r["name"] != current]
    if healthy:
        kept.add(healthy[-1])
    bad = [r["name"] for r in found if r["complete"] and r["bad"]]
    if bad:
        kept.add(bad[-1])
    if current:
        kept.add(current)
    return [r["name"] for r in found if r["name"] != current and (not r["complete"] or r["name"] not in kept)]


def prune(path, keep):
    current = current_release(path)
    found = releases(path)
    doomed = prune_plan(found, current, keep)
    for name in doomed:
        shutil.rmtree(os.path.join(path, "releases", name), ignore_errors=True)
    used = {r["venv"] for r in releases(path) if r["venv"]}
    gone_venvs = []
    for v in venvs(path):
        if v["key"] not in used:
            shutil.rmtree(os.path.join(path, "venvs", v["key"]), ignore_errors=True)
            _remove(os.path.join(path, "venvs", f"{v['key']}.log"))
            gone_venvs.append(v["key"])
    return {"releases": doomed, "venvs": gone_venvs}


def _append_audit(path, entry):
    """One JSON line; a no-op after a no-op of the same release replaces it, counting (``repeats``, ``first_at``)."""
    log = os.path.join(path, AUDIT)
    if entry.get("result") == "no-op":
        lines = (_read(log, "") or "").splitlines()
        try:
            last = json.loads(lines[-1]) if lines else None
        except ValueError:
            last = None
        if isinstance(last, dict) and last.get("result") == "no-op" and last.get("to") == entry.get("to"):
            entry = {**entry, "repeats": int(last.get("repeats") or 1) + 1,
                     "first_at": last.get("first_at") or last.get("at")}
            lines[-1] = json.dumps(entry, sort_keys=True)
            _write_atomic(log, "".join(line + "\n" for line in lines), 0o640)
            return
    line = json.dumps(entry, sort_keys=True) + "\n"
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
    with os.fdopen(fd, "a") as fh:
        fh.write(line)


def cmd_finish(a):
    """The end of every deploy that held the lock: mark the release, prune old releases and venvs, append the
    audit line, release the lock. One round trip."""
    path = a["path"]
    out = {}
    for mark in a.get("marks", []):
        cmd_mark({"path": path, **mark})
    if a.get("keep") is not None:
        out["pruned"] = prune(path, int(a["keep"]))
    if a.get("audit"):
        _append_audit(path, a["audit"])
    if a.get("id"):
        out["unlocked"] = cmd_unlock({"path": path, "id": a["id"]})["released"]
    return out


def cmd_audit(a):
    return _append_audit(a["path"], a["audit"]) or {"written": True}


def cmd_exec(a):
    """Run ``argv`` in ``cwd`` with ``env`` added, its output passed through, stdin empty: an ``inv`` task of a
    release. Returns its exit code (this command prints no JSON of its own)."""
    env = dict(os.environ, **(a.get("env") or {}))
    try:
        child = subprocess.Popen(a["argv"], cwd=a["cwd"], env=env, stdin=subprocess.DEVNULL)
    except OSError as exc:
        sys.stderr.write(f"cannot run {a['argv'][0]} in {a['cwd']}: {exc.strerror}\n")
        return 127
    return child.wait()


def _end_group():
    """The caller is gone: SIGTERM to this process group (this helper stays: see :func:`watch_stdin`), then SIGKILL
    after :data:`GRACE`."""
    try:
        os.killpg(os.getpgrp(), signal.SIGTERM)
        deadline = time.time() + GRACE
        while time.time() < deadline and os.waitpid(-1, os.WNOHANG) is not None:
            time.sleep(0.1)
    except OSError:  # no child left (ChildProcessError): all ended
        pass
    os.killpg(os.getpgrp(), signal.SIGKILL)  # this helper too
    os._exit(143)


def watch_stdin():
    """End the work when stdin closes (started by :data:`BOOT`, whose caller holds stdin open until it is done)."""
    # This helper outlives its own SIGTERM to send the SIGKILL; a handler (not SIG_IGN) is reset by exec, so the
    # processes it starts still die of SIGTERM.
    signal.signal(signal.SIGTERM, lambda signum, frame: None)

    def watch():
        try:
            while os.read(0, 65536):
                pass
        except (OSError, ValueError):
            pass
        _end_group()

    threading.Thread(target=watch, name="stdin-watch", daemon=True).start()


COMMANDS = {"facts": cmd_facts, "lock": cmd_lock, "unlock": cmd_unlock, "prepare": cmd_prepare, "venv": cmd_venv,
            "switch": cmd_switch, "mark": cmd_mark, "finish": cmd_finish, "audit": cmd_audit, "exec": cmd_exec,
            "dblock": lambda a: {"holder": db_lock_holder(a["path"])}}


def main(argv, watch=False):
    if len(argv) != 2 or argv[0] not in COMMANDS:
        print(json.dumps({"error": f"usage: python3 - {{{'|'.join(COMMANDS)}}} JSON"}))
        return 2
    if watch:
        watch_stdin()
    if argv[0] == "exec":
        return cmd_exec(json.loads(argv[1]))
    try:
        result = COMMANDS[argv[0]](json.loads(argv[1]))
    except OSError as exc:
        print(json.dumps({"error": f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": ")}))
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
