"""Deploy: ``inv deploy`` over loopback ssh (first deploy, no-op redeploy, code-only redeploy), each beside a bare
``rsync`` of the same tree in the same run.

* chops: ``inv deploy --host 127.0.0.1 …`` from a git copy of this project, wall clock, process start included.
  The first deploy builds the target's virtualenv (pip install of requirements.txt: dominated by the network and
  the package cache); the no-op redeploy only re-verifies health (``proc.check`` on the target); the code-only
  redeploy makes a new release (rsync with hard links, provision, migrate, smoke test, switch, verify) and reuses
  the venv.
* bare: ``rsync --recursive --links --perms --times --files-from`` of the same files over plain ssh (a connection
  of its own each time, no sharing: what a person types), into a directory of its own on the same target: into an
  empty directory, again with nothing changed, and again after the same one-file change.

* bare proc.check: ``ssh HOST 'cd PATH/current && inv proc.check --json'`` (a connection of its own): the health
  check every no-op redeploy runs. A no-op redeploy's irreducible work is a bare no-change rsync plus this.

A deploy ends its shared ssh connection when it is done, so every redeploy starts with a connection of its own.

It needs root: it starts ``sshd`` on 127.0.0.1 with a throwaway key and config, and deploys as the user
``chopsdeploy`` (created when missing) to a directory of its home that it removes at the end, with the cron entries
it installed.

Goals (issue): no-op redeploy <= 2 s and <= 1.3x the irreducible work (bare no-change rsync + bare proc.check).

    python bench/deploy.py [--rounds N] [--json]
"""

from __future__ import annotations

import argparse
import os
import pwd
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: make `ops` importable
    sys.path.insert(0, str(ROOT))

USER = "chopsdeploy"
GOALS = {"noop_seconds": 2.0, "noop_ratio": 1.3}
GIT_ENV = {"GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@localhost", "GIT_COMMITTER_NAME": "bench",
           "GIT_COMMITTER_EMAIL": "bench@localhost"}


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, env={**os.environ, **GIT_ENV}, check=True, capture_output=True,
                          text=True).stdout.strip()


def _timed(argv: list[str], cwd: Path, env: dict[str, str] | None = None, input: bytes | None = None) -> float:
    from ops.core.errors import WorkFailed

    started = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, env=env, input=input, capture_output=True, timeout=1800)
    took = time.perf_counter() - started
    if done.returncode != 0:
        raise WorkFailed(f"{' '.join(argv[:3])} … failed: {done.stderr.decode(errors='replace')[-1500:]}")
    return took


class Loopback:
    """sshd on 127.0.0.1, the deploy user, keys, and a git copy of this project."""

    def __init__(self, tmp: Path):
        from ops.core.errors import BadInput

        if os.geteuid() != 0:
            raise BadInput("bench/deploy.py starts sshd and creates a user: run it as root")
        for tool in ("sshd", "rsync", "ssh", "ssh-keygen", "git"):
            if not (shutil.which(tool) or os.path.exists(f"/usr/sbin/{tool}")):
                raise BadInput(f"{tool} is not installed (apt-get install openssh-server rsync git)")
        self.tmp = tmp
        try:
            pwd.getpwnam(USER)
        except KeyError:
            subprocess.run(["useradd", "-m", "-s", "/bin/sh", USER], check=True, capture_output=True)
        subprocess.run(["usermod", "-p", "*", USER], check=True, capture_output=True)
        self.home = Path(pwd.getpwnam(USER).pw_dir)
        self.path = self.home / f"bench-{os.getpid()}"
        self.keys = Path(tempfile.mkdtemp(prefix="chops-bench-keys-"))
        self.keys.chmod(0o755)
        for name in ("hostkey", "client"):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp / name)], check=True)
        shutil.copy(tmp / "client.pub", self.keys / "authorized_keys")
        (self.keys / "authorized_keys").chmod(0o644)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        (tmp / "sshd_config").write_text(
            f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {tmp / 'hostkey'}\nPidFile {tmp / 'sshd.pid'}\n"
            f"AuthorizedKeysFile {self.keys / 'authorized_keys'}\nPasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n")
        key = (tmp / "hostkey.pub").read_text().split()
        (tmp / "known_hosts").write_text(f"[127.0.0.1]:{self.port} {key[0]} {key[1]}\n")
        os.makedirs("/run/sshd", exist_ok=True)
        self.sshd = subprocess.Popen([shutil.which("sshd") or "/usr/sbin/sshd", "-D", "-e", "-f",
                                      str(tmp / "sshd_config")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                break
            except OSError:
                time.sleep(0.05)
        self.src = tmp / "src"
        listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                                text=True, check=True).stdout.split("\n")
        for name in listed:
            if name and (ROOT / name).is_file():
                (self.src / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / name, self.src / name)
        _git(self.src, "init", "-q")
        _git(self.src, "add", "-A")
        _git(self.src, "commit", "-qm", "bench")
        self.files = b"\0".join(n.encode() for n in _git(self.src, "ls-files").split("\n")) + b"\0"
        self.count = self.files.count(b"\0")

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CHOPS_") and k != "CLICKHOUSE_URL"}
        env.update(CHOPS_DEPLOY__KNOWN_HOSTS=str(self.tmp / "known_hosts"),
                   CHOPS_DEPLOY__IDENTITY_FILE=str(self.tmp / "client"), CHOPS_PATHS__VAR=str(self.tmp / "var"),
                   CHOPS_ENV_FILE=str(self.tmp / "no.env"))
        return env

    def ssh(self) -> list[str]:
        return ["ssh", "-o", "BatchMode=yes", "-o", f"UserKnownHostsFile={self.tmp / 'known_hosts'}",
                "-i", str(self.tmp / "client"), "-o", "IdentitiesOnly=yes", "-p", str(self.port)]

    def deploy(self) -> float:
        return _timed([str(Path(sys.executable).parent / "inv"), "deploy", "--host", "127.0.0.1", "--port",
                       str(self.port), "--user", USER, "--path", str(self.path)], self.src, self.env())

    def bare_rsync(self) -> float:
        from ops.deploy.transport import quote_command

        return _timed(["rsync", "--recursive", "--links", "--perms", "--times", "--from0", "--files-from=-",
                       "-e", quote_command(self.ssh()), "./", f"{USER}@127.0.0.1:{self.path}-bare/"],
                      self.src, input=self.files)

    def bare_check(self) -> float:
        from ops.deploy.transport import quote_command

        remote = f"cd {self.path}/current && " + quote_command(["env", "CHOPS_ENV=prod", "./.venv/bin/inv",
                                                                 "proc.check", "--json"])
        return _timed([*self.ssh(), f"{USER}@127.0.0.1", "--", remote], self.src)

    def close_shared_connection(self) -> None:
        from ops.deploy.transport import control_dir

        subprocess.run(["ssh", "-o", f"ControlPath={control_dir()}/%C", "-O", "exit", "-p", str(self.port),
                        f"{USER}@127.0.0.1"], capture_output=True, timeout=10)

    def change(self, n: int) -> None:
        (self.src / "BENCH.txt").write_text(f"change {n}\n")
        _git(self.src, "add", "-A")
        _git(self.src, "commit", "-qm", f"change {n}")
        self.files = b"\0".join(x.encode() for x in _git(self.src, "ls-files").split("\n")) + b"\0"

    def close(self) -> None:
        from ops.deploy.targets import project_id

        self.close_shared_connection()
        self.sshd.terminate()
        self.sshd.wait(timeout=10)
        tag = f"# chops:{project_id(str(self.path))}:"
        text = subprocess.run(["crontab", "-l", "-u", USER], capture_output=True, text=True).stdout
        kept = "".join(line + "\n" for line in text.splitlines() if tag not in line)
        subprocess.run(["crontab", "-u", USER, "-"], input=kept, text=True, capture_output=True)
        shutil.rmtree(self.path, ignore_errors=True)
        shutil.rmtree(f"{self.path}-bare", ignore_errors=True)
        shutil.rmtree(self.keys, ignore_errors=True)


def measure(rounds: int = 3) -> dict:
    from ops.core.errors import BadInput

    if rounds < 1:
        raise BadInput(f"rounds must be at least 1, got {rounds}")
    with tempfile.TemporaryDirectory(prefix="chops-bench-deploy-") as tmp:
        lo = Loopback(Path(tmp))
        try:
            first = {"chops": lo.deploy(), "bare": lo.bare_rsync()}
            cold, bare_noop, bare_check = [], [], []
            for _ in range(rounds):
                lo.close_shared_connection()
                cold.append(lo.deploy())
                bare_noop.append(lo.bare_rsync())
                bare_check.append(lo.bare_check())
            code, bare_code = [], []
            for n in range(rounds):
                lo.change(n)
                code.append(lo.deploy())
                bare_code.append(lo.bare_rsync())
            files = lo.count
        finally:
            lo.close()

    def stats(xs):
        return {"best": min(xs), "median": statistics.median(xs), "runs": xs}

    result = {
        "files": files, "rounds": rounds,
        "first": first,
        "noop_cold": stats(cold), "bare_noop": stats(bare_noop), "bare_check": stats(bare_check),
        "code_only": stats(code), "bare_code_only": stats(bare_code),
    }
    irreducible = statistics.median(bare_noop) + statistics.median(bare_check)
    result["irreducible_noop"] = irreducible
    result["ratio"] = {
        "first": first["chops"] / first["bare"],
        "noop_cold": statistics.median(cold) / irreducible,
        "noop_vs_rsync": statistics.median(cold) / statistics.median(bare_noop),
        "code_only": statistics.median(code) / statistics.median(bare_code),
    }
    result["goals"] = {**GOALS, "noop_met": statistics.median(cold) <= GOALS["noop_seconds"]
                       and result["ratio"]["noop_cold"] <= GOALS["noop_ratio"]}
    return result


def print_report(result: dict) -> None:
    from ops.core.output import print_table

    r = result["ratio"]
    print_table([
        ("first deploy (builds the venv)", f"{result['first']['chops']:.2f}", f"{result['first']['bare']:.2f}",
         f"{r['first']:.1f}x"),
        ("no-op redeploy vs bare rsync + bare proc.check", f"{result['noop_cold']['median']:.2f}",
         f"{result['bare_noop']['median']:.2f} + {result['bare_check']['median']:.2f}", f"{r['noop_cold']:.2f}x"),
        ("code-only redeploy (one file)", f"{result['code_only']['median']:.2f}",
         f"{result['bare_code_only']['median']:.2f}", f"{r['code_only']:.1f}x"),
    ], ["case (median of %d; %d files)" % (result["rounds"], result["files"]), "inv deploy s", "bare s", "ratio"],
        right=["inv deploy s", "bare s", "ratio"])
    g = result["goals"]
    print(f"goal: no-op redeploy <= {g['noop_seconds']:g} s and <= {g['noop_ratio']:g}x the irreducible work (bare "
          f"no-change rsync + bare proc.check over ssh): {'met' if g['noop_met'] else 'NOT met'}")


def main(argv=None) -> int:
    from ops.core.errors import ChopsError
    from ops.core.output import print_json

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    try:
        result = measure(args.rounds)
    except ChopsError as exc:
        print(f"error: {exc.line()}", file=sys.stderr)
        return exc.exit_code
    print_json(result) if args.json else print_report(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
