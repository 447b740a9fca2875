"""nginx as the fastest upstream (a fixed response) and as a proxy written for speed."""

from __future__ import annotations

import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bench.procs import free_port, start, stop_process
from bench.upstream import BODY

CONFIG = """
daemon off;
master_process on;
worker_processes {workers};
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/tmp/body;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;
    keepalive_requests 1000000;
    upstream fixed {{ server 127.0.0.1:{fixed_port}; keepalive 64; }}
    # The fastest upstream: a fixed JSON body, the same bytes as bench/upstream.py.
    server {{
        listen 127.0.0.1:{fixed_port};
        location / {{ default_type application/json; return 200 '{body}'; }}
    }}
    # A proxy written for speed: proxy_pass to the fixed upstream with a header injected
    # (what the gateway does with an API key, minus authentication and storage).
    server {{
        listen 127.0.0.1:{proxy_port};
        location / {{
            proxy_pass http://fixed;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-API-Key "bench-key";
            proxy_set_header Authorization "";
        }}
    }}
}}
"""


@dataclass
class Nginx:
    process: subprocess.Popen[bytes]
    fixed_port: int
    proxy_port: int
    prefix: Path

    @property
    def fixed_url(self) -> str:
        return f"http://127.0.0.1:{self.fixed_port}"

    @property
    def proxy_url(self) -> str:
        return f"http://127.0.0.1:{self.proxy_port}"

    def stop(self) -> None:
        stop_process(self.process)


def start_nginx(binary: str, log_dir: Path, workers: int = 1) -> Nginx:
    prefix = Path(tempfile.mkdtemp(prefix="bench-nginx-"))
    prefix.chmod(0o755)
    for sub in ("tmp/body", "tmp/proxy", "tmp/fastcgi", "tmp/uwsgi", "tmp/scgi"):
        (prefix / sub).mkdir(parents=True)
        (prefix / sub).chmod(0o777)
    fixed_port, proxy_port = free_port(), free_port()
    body = BODY.decode().replace("'", "\\'").replace("\n", "")
    conf = prefix / "nginx.conf"
    conf.write_text(CONFIG.format(workers=workers, prefix=prefix, fixed_port=fixed_port,
                                  proxy_port=proxy_port, body=body))
    process = start([binary, "-p", str(prefix), "-c", str(conf)], ports=[fixed_port, proxy_port],
                    log=log_dir / "nginx.log", timeout=15)
    return Nginx(process, fixed_port, proxy_port, prefix)
