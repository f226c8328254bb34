"""The benign software of the synthetic fleet, as data: processes, their flows and peers.

A `Program` is a process as osquery's `processes` table shows it (name = the kernel's
15-character `comm`, path = the resolved executable), so `python3` runs from
`/usr/bin/python3.10` and `nc` from `/usr/bin/nc.openbsd`, as on a real Ubuntu host.
`{user}` in a program's text stands for the host's interactive user.
"""

from __future__ import annotations

from dataclasses import dataclass

# How a program gets its pid: one per host until restarted, a fresh fork per
# connection (postgres backends, sshd sessions), or a fresh process per run.
DAEMON, FORK, RUN = "daemon", "fork", "run"
HOST_NETNS = "4026531840"
POD_UID = 10001  # a container user with no entry in the host's /etc/passwd

USERS = {
    "root": 0,
    "www-data": 33,
    "systemd-resolve": 101,
    "_apt": 105,
    "_chrony": 112,
    "postgres": 114,
    "redis": 115,
    "rabbitmq": 116,
    "postfix": 117,
    "node_exporter": 998,
    "gitlab-runner": 999,
    "": POD_UID,
}


@dataclass(frozen=True, slots=True)
class Program:
    """One executable as a process: what osquery's `processes` columns say about it."""

    name: str
    path: str
    cmdline: str
    user: str
    parent: str  # key of the parent program ("" for pid 1)
    mode: str = RUN
    cwd: str = "/"
    pod: bool = False  # runs in a Kubernetes pod's network namespace


@dataclass(frozen=True, slots=True)
class Flow:
    """A kind of connection: which program, to or from which peers, on which port."""

    program: str
    peer: str  # key of a peer pool (remote servers, or clients when inbound)
    port: int  # remote port when outbound, the listening port when inbound
    inbound: bool = False
    udp: bool = False


_PY = "/usr/bin/python3.10"
_PG = "/usr/lib/postgresql/14/bin/postgres"
_JAVA = "/usr/lib/jvm/java-{v}-openjdk-amd64/bin/java"
_GRADLE = (
    " -Xmx2g -cp /home/gitlab-runner/.gradle/wrapper/dists/gradle-8.5-bin/gradle-launcher-8.5.jar"
    " org.gradle.launcher.daemon.bootstrap.GradleDaemon 8.5"
)
_BUILD = "/home/gitlab-runner/builds/shop"
_GUNICORN = (
    "/usr/bin/python3 /srv/shop/venv/bin/gunicorn --workers 4 --bind 127.0.0.1:8000 shop.wsgi"
)
_ELECTRON = " --type=utility --utility-sub-type=network.mojom.NetworkService --lang=en-US"

PROGRAMS: dict[str, Program] = {
    # every host
    "systemd": Program("systemd", "/usr/lib/systemd/systemd", "/sbin/init", "root", "", DAEMON),
    "cron": Program("cron", "/usr/sbin/cron", "/usr/sbin/cron -f -P", "root", "systemd", DAEMON),
    "sh": Program("sh", "/usr/bin/dash", "/bin/sh -c run-parts /etc/cron.daily", "root", "cron"),
    "node_exporter": Program(
        "node_exporter",
        "/usr/local/bin/node_exporter",
        "/usr/local/bin/node_exporter --collector.systemd --web.listen-address=:9100",
        "node_exporter",
        "systemd",
        DAEMON,
    ),
    "chronyd": Program(
        "chronyd", "/usr/sbin/chronyd", "/usr/sbin/chronyd -F 1", "_chrony", "systemd", DAEMON
    ),
    "resolved": Program(
        "systemd-resolve",
        "/usr/lib/systemd/systemd-resolved",
        "/lib/systemd/systemd-resolved",
        "systemd-resolve",
        "systemd",
        DAEMON,
    ),
    "osqueryd": Program(
        "osqueryd",
        "/opt/osquery/bin/osqueryd",
        "/opt/osquery/bin/osqueryd --flagfile=/etc/osquery/osquery.flags"
        " --config_path=/etc/osquery/osquery.conf",
        "root",
        "systemd",
        DAEMON,
    ),
    "sshd": Program(
        "sshd",
        "/usr/sbin/sshd",
        "sshd: /usr/sbin/sshd -D [listener] 0 of 10-100 startups",
        "root",
        "systemd",
        DAEMON,
    ),
    "sshd-session": Program("sshd", "/usr/sbin/sshd", "sshd: admin [priv]", "root", "sshd", FORK),
    "unattended": Program(
        "unattended-upgr", _PY, "/usr/bin/python3 /usr/bin/unattended-upgrade", "root", "systemd"
    ),
    "apt-http": Program(
        "http", "/usr/lib/apt/methods/http", "/usr/lib/apt/methods/http", "_apt", "unattended"
    ),
    "apt-https": Program(
        "https", "/usr/lib/apt/methods/https", "/usr/lib/apt/methods/https", "_apt", "unattended"
    ),
    "acme-agent": Program(
        "acme-agent",
        "/opt/acme-agent/bin/acme-agent",
        "/opt/acme-agent/bin/acme-agent --config /etc/acme-agent/agent.yaml",
        "root",
        "systemd",
        DAEMON,
    ),
    "dockerd": Program(
        "dockerd",
        "/usr/bin/dockerd",
        "/usr/bin/dockerd -H fd:// --containerd=/run/containerd/containerd.sock",
        "root",
        "systemd",
        DAEMON,
    ),
    # web
    "nginx-master": Program(
        "nginx",
        "/usr/sbin/nginx",
        "nginx: master process /usr/sbin/nginx -g daemon on; master_process on;",
        "root",
        "systemd",
        DAEMON,
    ),
    "nginx": Program(
        "nginx", "/usr/sbin/nginx", "nginx: worker process", "www-data", "nginx-master", DAEMON
    ),
    "gunicorn-master": Program(
        "python3", _PY, _GUNICORN, "www-data", "systemd", DAEMON, "/srv/shop"
    ),
    "gunicorn": Program(
        "python3", _PY, _GUNICORN, "www-data", "gunicorn-master", DAEMON, "/srv/shop"
    ),
    "certbot": Program(
        "certbot", _PY, "/usr/bin/python3 /usr/bin/certbot -q renew", "root", "systemd"
    ),
    "aws-logs": Program(
        "aws",
        "/usr/local/aws-cli/v2/2.15.30/dist/aws",
        "aws s3 cp /var/log/nginx/access.log.1.gz s3://acme-logs/web/ --only-show-errors",
        "root",
        "sh",
    ),
    # db
    "postgres-master": Program(
        "postgres",
        _PG,
        f"{_PG} -D /var/lib/postgresql/14/main -c config_file=/etc/postgresql/14/main/postgresql.conf",
        "postgres",
        "systemd",
        DAEMON,
        "/var/lib/postgresql/14/main",
    ),
    "postgres": Program(
        "postgres",
        _PG,
        "postgres: 14/main: shop shop idle",
        "postgres",
        "postgres-master",
        FORK,
        "/var/lib/postgresql/14/main",
    ),
    "walreceiver": Program(
        "postgres",
        _PG,
        "postgres: 14/main: walreceiver streaming 0/5A3B1C8",
        "postgres",
        "postgres-master",
        DAEMON,
        "/var/lib/postgresql/14/main",
    ),
    "healthcheck": Program(
        "bash",
        "/usr/bin/bash",
        "/bin/bash /usr/local/bin/pg-replica-check.sh",
        "postgres",
        "cron",
        cwd="/var/lib/postgresql",
    ),
    "pg_dump": Program(
        "pg_dump",
        "/usr/lib/postgresql/14/bin/pg_dump",
        "pg_dump -h 127.0.0.1 -U backup -Fc -f /var/backups/postgres/shop.dump shop",
        "postgres",
        "sh",
        cwd="/var/backups/postgres",
    ),
    "restic": Program(
        "restic",
        "/usr/bin/restic",
        "restic -r s3:https://s3.example.net/acme-backups/db backup /var/backups/postgres",
        "root",
        "sh",
    ),
    "aws-backup": Program(
        "aws",
        "/usr/local/aws-cli/v2/2.15.30/dist/aws",
        "aws s3 cp /var/backups/postgres/shop.dump s3://acme-backups/db/ --storage-class STANDARD_IA",
        "root",
        "sh",
    ),
    # ci
    "gitlab-runner": Program(
        "gitlab-runner",
        "/usr/bin/gitlab-runner",
        "/usr/bin/gitlab-runner run --working-directory /home/gitlab-runner"
        " --config /etc/gitlab-runner/config.toml --service gitlab-runner --user gitlab-runner",
        "root",
        "systemd",
        DAEMON,
    ),
    "ci-shell": Program("bash", "/usr/bin/bash", "bash --login", "gitlab-runner", "gitlab-runner"),
    "ci-git": Program(
        "git", "/usr/bin/git", "git fetch origin --prune", "gitlab-runner", "ci-shell", cwd=_BUILD
    ),
    "ci-git-http": Program(
        "git-remote-http",
        "/usr/lib/git-core/git-remote-http",
        "git-remote-https origin https://github.com/acme/shop.git",
        "gitlab-runner",
        "ci-git",
        cwd=_BUILD,
    ),
    "java17": Program(
        "java",
        _JAVA.format(v=17),
        _JAVA.format(v=17) + _GRADLE,
        "gitlab-runner",
        "ci-shell",
        cwd=_BUILD,
    ),
    "java21": Program(
        "java",
        _JAVA.format(v=21),
        _JAVA.format(v=21) + _GRADLE,
        "gitlab-runner",
        "ci-shell",
        cwd=_BUILD,
    ),
    "ci-npm": Program("node", "/usr/bin/node", "npm ci", "gitlab-runner", "ci-shell", cwd=_BUILD),
    "ci-pip": Program(
        "python3",
        _PY,
        "/usr/bin/python3 -m pip install -r requirements.txt",
        "gitlab-runner",
        "ci-shell",
        cwd=_BUILD,
    ),
    # developer workstations
    "systemd-user": Program(
        "systemd",
        "/usr/lib/systemd/systemd",
        "/lib/systemd/systemd --user",
        "{user}",
        "systemd",
        DAEMON,
    ),
    "terminal": Program(
        "gnome-terminal-",
        "/usr/libexec/gnome-terminal-server",
        "/usr/libexec/gnome-terminal-server",
        "{user}",
        "systemd-user",
        DAEMON,
    ),
    "dev-shell": Program(
        "bash", "/usr/bin/bash", "bash", "{user}", "terminal", DAEMON, "/home/{user}"
    ),
    "dev-git": Program(
        "git",
        "/usr/bin/git",
        "git pull --rebase",
        "{user}",
        "dev-shell",
        cwd="/home/{user}/src/shop",
    ),
    "dev-git-http": Program(
        "git-remote-http",
        "/usr/lib/git-core/git-remote-http",
        "git-remote-https origin https://github.com/acme/shop.git",
        "{user}",
        "dev-git",
        cwd="/home/{user}/src/shop",
    ),
    "dev-ssh": Program("ssh", "/usr/bin/ssh", "ssh bastion-01", "{user}", "dev-shell"),
    "dev-curl": Program(
        "curl",
        "/usr/bin/curl",
        "curl -fsSL https://api.example.com/v1/status",
        "{user}",
        "dev-shell",
        cwd="/home/{user}",
    ),
    "dev-pip": Program(
        "python3",
        _PY,
        "/usr/bin/python3 -m pip install --user httpx",
        "{user}",
        "dev-shell",
        cwd="/home/{user}/src/shop",
    ),
    "dev-npm": Program(
        "node", "/usr/bin/node", "npm install", "{user}", "dev-shell", cwd="/home/{user}/src/web"
    ),
    "code": Program(
        "code",
        "/usr/share/code/code",
        "/usr/share/code/code" + _ELECTRON,
        "{user}",
        "systemd-user",
        DAEMON,
    ),
    "slack": Program(
        "slack",
        "/usr/lib/slack/slack",
        "/usr/lib/slack/slack" + _ELECTRON,
        "{user}",
        "systemd-user",
        DAEMON,
    ),
    "firefox": Program(
        "firefox",
        "/usr/lib/firefox/firefox",
        "/usr/lib/firefox/firefox",
        "{user}",
        "systemd-user",
        DAEMON,
    ),
    # bastion
    "bastion-ssh": Program(
        "ssh", "/usr/bin/ssh", "ssh -o ServerAliveInterval=30 -l admin", "root", "sshd-session"
    ),
    # cache / queue
    "redis": Program(
        "redis-server",
        "/usr/bin/redis-server",
        "/usr/bin/redis-server 0.0.0.0:6379",
        "redis",
        "systemd",
        DAEMON,
        "/var/lib/redis",
    ),
    "rabbitmq": Program(
        "beam.smp",
        "/usr/lib/erlang/erts-12.2.1/bin/beam.smp",
        "/usr/lib/erlang/erts-12.2.1/bin/beam.smp -W w -MBas ageffcbf -- -root /usr/lib/erlang"
        " -progname erl -- -home /var/lib/rabbitmq -- -noshell -s rabbit boot",
        "rabbitmq",
        "systemd",
        DAEMON,
        "/var/lib/rabbitmq",
    ),
    # kubernetes nodes
    "kubelet": Program(
        "kubelet",
        "/usr/bin/kubelet",
        "/usr/bin/kubelet --kubeconfig=/etc/kubernetes/kubelet.conf --config=/var/lib/kubelet/config.yaml",
        "root",
        "systemd",
        DAEMON,
    ),
    "containerd": Program(
        "containerd", "/usr/bin/containerd", "/usr/bin/containerd", "root", "systemd", DAEMON
    ),
    "shim": Program(
        "containerd-shim",
        "/usr/bin/containerd-shim-runc-v2",
        "/usr/bin/containerd-shim-runc-v2 -namespace k8s.io -address /run/containerd/containerd.sock",
        "root",
        "systemd",
        DAEMON,
    ),
    "pod-api": Program(
        "python3",
        "/usr/local/bin/python3.11",
        "python3 -m uvicorn api.main:app --host 0.0.0.0 --port 8080",
        "",
        "shim",
        DAEMON,
        "/app",
        pod=True,
    ),
    "coredns": Program(
        "coredns",
        "/coredns",
        "/coredns -conf /etc/coredns/Corefile",
        "root",
        "shim",
        DAEMON,
        pod=True,
    ),
    # mail relay
    "postfix-master": Program(
        "master",
        "/usr/lib/postfix/sbin/master",
        "/usr/lib/postfix/sbin/master -w",
        "root",
        "systemd",
        DAEMON,
    ),
    "smtp": Program(
        "smtp", "/usr/lib/postfix/sbin/smtp", "smtp -t unix -u -c", "postfix", "postfix-master"
    ),
    "smtpd": Program(
        "smtpd",
        "/usr/lib/postfix/sbin/smtpd",
        "smtpd -n smtp -t inet -u -s 2",
        "postfix",
        "postfix-master",
    ),
}

# User tools a developer installs mid-way (benign but rare), and what they talk to.
USER_TOOLS: dict[str, Program] = {
    "gh": Program("gh", "/home/{user}/.local/bin/gh", "gh pr list", "{user}", "dev-shell"),
    "golangci-lint": Program(
        "golangci-lint",
        "/home/{user}/go/bin/golangci-lint",
        "golangci-lint run ./...",
        "{user}",
        "dev-shell",
        cwd="/home/{user}/src/agent",
    ),
    "terraform": Program(
        "terraform", "/home/{user}/bin/terraform", "terraform plan", "{user}", "dev-shell"
    ),
    "cargo": Program(
        "cargo", "/home/{user}/.cargo/bin/cargo", "cargo build", "{user}", "dev-shell"
    ),
    "kubectl": Program(
        "kubectl", "/home/{user}/.local/bin/kubectl", "kubectl get pods -A", "{user}", "dev-shell"
    ),
}
TOOL_PEERS = {
    "gh": ("github", 443),
    "golangci-lint": ("goproxy", 443),
    "terraform": ("terraform-registry", 443),
    "cargo": ("crates", 443),
    "kubectl": ("k8s-api", 6443),
}

FLOWS: dict[str, Flow] = {
    "scrape": Flow("node_exporter", "prometheus", 9100, inbound=True),
    "ntp": Flow("chronyd", "ntp", 123, udp=True),
    "dns-upstream": Flow("resolved", "dns", 53, udp=True),
    "osquery-tls": Flow("osqueryd", "fleet-server", 443),
    "ssh-in-bastion": Flow("sshd-session", "fleet:bastion", 22, inbound=True),
    "apt-mirror": Flow("apt-http", "mirror", 80),
    "apt-docker": Flow("apt-https", "docker-repo", 443),
    "agent": Flow("acme-agent", "acme-saas", 443),
    "https-in": Flow("nginx", "internet", 443, inbound=True),
    "http-in": Flow("nginx", "internet", 80, inbound=True),
    "nginx-upstream": Flow("nginx", "loopback", 8000),
    "app-db": Flow("gunicorn", "fleet:db", 5432),
    "app-cache": Flow("gunicorn", "fleet:cache", 6379),
    "app-queue": Flow("gunicorn", "fleet:queue", 5672),
    "app-dns": Flow("gunicorn", "resolved-stub", 53, udp=True),
    "app-payments": Flow("gunicorn", "payments", 443),
    "certbot": Flow("certbot", "letsencrypt", 443),
    "aws-logs": Flow("aws-logs", "s3", 443),
    "pg-in": Flow("postgres", "fleet:app", 5432, inbound=True),
    "pg-replica": Flow("walreceiver", "fleet:db", 5432),
    "healthcheck": Flow("healthcheck", "fleet:db", 5432),
    "pg_dump": Flow("pg_dump", "loopback", 5432),
    "restic": Flow("restic", "backup", 443),
    "aws-backup": Flow("aws-backup", "s3", 443),
    "runner-poll": Flow("gitlab-runner", "gitlab", 443),
    "ci-git": Flow("ci-git-http", "github", 443),
    "ci-gradle17": Flow("java17", "maven", 443),
    "ci-npm": Flow("ci-npm", "npm", 443),
    "ci-pip": Flow("ci-pip", "pypi", 443),
    "docker-pull": Flow("dockerd", "registry", 443),
    "docker-internal": Flow("dockerd", "internal-registry", 5000),
    "dev-git": Flow("dev-git-http", "github", 443),
    "dev-ssh": Flow("dev-ssh", "fleet:bastion", 22),
    "dev-curl": Flow("dev-curl", "internet", 443),
    "dev-pip": Flow("dev-pip", "pypi", 443),
    "dev-npm": Flow("dev-npm", "npm", 443),
    "code": Flow("code", "code-services", 443),
    "code-local": Flow("code", "loopback", 9229),
    "slack": Flow("slack", "slack", 443),
    "firefox": Flow("firefox", "internet", 443),
    "admin-ssh-in": Flow("sshd-session", "internet", 22, inbound=True),
    "bastion-ssh": Flow("bastion-ssh", "fleet:all", 22),
    "redis-in": Flow("redis", "fleet:app", 6379, inbound=True),
    "rabbit-in": Flow("rabbitmq", "fleet:app", 5672, inbound=True),
    "rabbit-cluster": Flow("rabbitmq", "fleet:queue", 25672),
    "kubelet": Flow("kubelet", "k8s-api", 6443),
    "containerd-pull": Flow("containerd", "registry", 443),
    "pod-db": Flow("pod-api", "fleet:db", 5432),
    "pod-in": Flow("pod-api", "fleet:web", 8080, inbound=True),
    "coredns": Flow("coredns", "dns", 53, udp=True),
    "smtp-out": Flow("smtp", "internet", 25),
    "smtp-in": Flow("smtpd", "internet", 25, inbound=True),
}

# A program replaced fleet-wide mid-way (a rollout upgrading its path): old → new.
UPGRADES = {"java17": "java21"}

# Attacker infrastructure: never used by benign flows.
ATTACKER_IPS = frozenset(
    {
        "203.0.113.7",
        "203.0.113.9",
        "203.0.113.12",
        "203.0.113.31",
        "203.0.113.50",
        "203.0.113.66",
        "203.0.113.99",
        "198.51.100.5",
        "198.51.100.23",
        "198.51.100.77",
        "198.51.100.200",
    }
)

# --scenarios all (baseline/simulate/families.py). Packages rolled out to part of the
# fleet in waves mid-run, each a daemon under systemd from a package-managed path.
ROLLOUT_PACKAGES: dict[str, tuple[Program, Flow]] = {
    "teleport": (
        Program(
            "teleport",
            "/usr/bin/teleport",
            "/usr/bin/teleport start --config /etc/teleport.yaml",
            "root",
            "systemd",
            DAEMON,
        ),
        Flow("rollout:teleport", "teleport-proxy", 3025),
    ),
    "datadog": (
        Program(
            "agent",
            "/opt/datadog-agent/bin/agent/agent",
            "/opt/datadog-agent/bin/agent/agent run -p /opt/datadog-agent/run/agent.pid",
            "root",
            "systemd",
            DAEMON,
        ),
        Flow("rollout:datadog", "datadog", 443),
    ),
    "fwupd": (
        Program(
            "fwupd",
            "/usr/libexec/fwupd/fwupd",
            "/usr/libexec/fwupd/fwupd",
            "root",
            "systemd",
            DAEMON,
        ),
        Flow("rollout:fwupd", "lvfs", 443),
    ),
    "vector": (
        Program(
            "vector",
            "/opt/vector/bin/vector",
            "/opt/vector/bin/vector --config /etc/vector/vector.yaml",
            "root",
            "systemd",
            DAEMON,
        ),
        Flow("rollout:vector", "vector-aggregator", 6000),
    ),
}
# New weekly jobs that start on several hosts at the same time.
WEEKLY_JOBS: dict[str, tuple[Program, Flow]] = {
    "lynis": (
        Program(
            "lynis",
            "/usr/sbin/lynis",
            "/bin/sh /usr/sbin/lynis audit system --cronjob",
            "root",
            "cron",
        ),
        Flow("weekly:lynis", "cisofy", 443),
    ),
    "rkhunter": (
        Program(
            "rkhunter",
            "/usr/bin/rkhunter",
            "/usr/bin/perl /usr/bin/rkhunter --update --cronjob",
            "root",
            "cron",
        ),
        Flow("weekly:rkhunter", "rkhunter-mirror", 80),
    ),
}
# Jobs on a calendar (weekly, monthly, quarterly) that reach the hosts of some roles
# one by one: key → (program, flow, schedule kind, host flavors).
SCHEDULED_JOBS: dict[str, tuple[Program, Flow, str, tuple[str, ...]]] = {
    "pgbackrest": (
        Program(
            "pgbackrest",
            "/usr/bin/pgbackrest",
            "pgbackrest --stanza=main --type=full backup",
            "postgres",
            "cron",
        ),
        Flow("scheduled:pgbackrest", "backup", 443),
        "weekly",
        ("db", "cache", "queue"),
    ),
    "archive-logs": (
        Program(
            "archive-logs",
            "/usr/local/sbin/archive-logs",
            "/usr/local/sbin/archive-logs --upload --older-than 30d",
            "root",
            "cron",
        ),
        Flow("scheduled:archive-logs", "s3", 443),
        "monthly",
        ("web", "k8s", "mail"),
    ),
    "borg": (
        Program(
            "borg",
            "/usr/bin/borg",
            "borg create --stats ssh://borg@backup/./host::{now} /etc /srv",
            "root",
            "cron",
        ),
        Flow("scheduled:borg", "backup", 22),
        "monthly",
        ("db", "cache", "queue", "bastion", "ci"),
    ),
    "lego": (
        Program(
            "lego",
            "/usr/bin/lego",
            "lego --path /etc/lego --http renew --days 45",
            "root",
            "cron",
        ),
        Flow("scheduled:lego", "letsencrypt", 443),
        "quarterly",
        ("web", "mail", "bastion", "k8s"),
    ),
}
# Apps developers install on their workstations over days (a package in /opt, or into
# their home directory), each talking to its vendor: key → (program, flow).
USER_APPS: dict[str, tuple[Program, Flow]] = {
    "zoom": (
        Program("zoom", "/opt/zoom/zoom", "/opt/zoom/zoom", "{user}", "dev-shell"),
        Flow("app:zoom", "zoom-cloud", 443),
    ),
    "obsidian": (
        Program(
            "obsidian", "/opt/Obsidian/obsidian", "/opt/Obsidian/obsidian", "{user}", "dev-shell"
        ),
        Flow("app:obsidian", "obsidian-sync", 443),
    ),
    "jetbrains-toolbox": (
        Program(
            "jetbrains-toolbox",
            "/home/{user}/.local/share/JetBrains/Toolbox/bin/jetbrains-toolbox",
            "jetbrains-toolbox --minimize",
            "{user}",
            "dev-shell",
        ),
        Flow("app:jetbrains-toolbox", "jetbrains", 443),
    ),
}
for _key, (_program, _flow) in USER_APPS.items():
    PROGRAMS[f"app:{_key}"] = _program
    FLOWS[f"app:{_key}"] = _flow

for _key, (_program, _flow, _kind, _flavors) in SCHEDULED_JOBS.items():
    PROGRAMS[f"scheduled:{_key}"] = _program
    FLOWS[f"scheduled:{_key}"] = _flow

for _key, (_program, _flow) in (ROLLOUT_PACKAGES | WEEKLY_JOBS).items():
    _kind = "rollout" if _key in ROLLOUT_PACKAGES else "weekly"
    PROGRAMS[f"{_kind}:{_key}"] = _program
    FLOWS[f"{_kind}:{_key}"] = _flow

for _tool, _program in USER_TOOLS.items():
    PROGRAMS[f"tool:{_tool}"] = _program
    FLOWS[f"tool:{_tool}"] = Flow(f"tool:{_tool}", *TOOL_PEERS[_tool])
