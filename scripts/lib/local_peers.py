#!/usr/bin/env python3
"""Local stand-ins for a company's peers, for scripts/quickstart and scripts/bench-latency.

Standard library only, so a fresh machine needs nothing but python3:

  push-image REGISTRY REPOSITORY TAG [--label KEY=VALUE]...
      Pushes a small OCI image (a real config blob with `created` and labels, one
      layer) through the registry's HTTP API, as `docker push` does, and prints
      the manifest digest.

  git-http ROOT PORT
      Serves the bare repositories under ROOT over Git's smart HTTP protocol on
      127.0.0.1:PORT by running `git http-backend` (CGI) for each request; pushes
      are allowed (the repositories need `http.receivepack = true`).
"""

import datetime
import hashlib
import http.server
import json
import os
import socketserver
import subprocess
import sys
import urllib.error
import urllib.request

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def _request(method, url, body=None, headers=None):
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as e:
        raise SystemExit(f"{method} {url}: HTTP {e.code}: {e.read()[:300]!r}")
    except urllib.error.URLError as e:
        raise SystemExit(f"{method} {url}: {e.reason}")


def _upload_blob(base, repository, data):
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    _, headers, _ = _request("POST", f"{base}/v2/{repository}/blobs/uploads/")
    location = headers.get("Location") or headers.get("location")
    if not location:
        raise SystemExit("registry gave no upload location")
    if location.startswith("/"):
        location = base + location
    sep = "&" if "?" in location else "?"
    _request(
        "PUT",
        f"{location}{sep}digest={digest}",
        body=data,
        headers={"Content-Type": "application/octet-stream"},
    )
    return digest


def push_image(registry, repository, tag, labels):
    base = f"http://{registry}"
    created = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    # A layer unique to the tag, so every tag has its own digest.
    layer = f"capstan quickstart layer for {repository}:{tag} at {created}\n".encode()
    layer_digest = _upload_blob(base, repository, layer)
    config = json.dumps(
        {
            "created": created,
            "architecture": "amd64",
            "os": "linux",
            "config": {"Labels": labels},
            "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        },
        sort_keys=True,
    ).encode()
    config_digest = _upload_blob(base, repository, config)
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": len(config)},
            "layers": [{"mediaType": OCI_LAYER, "digest": layer_digest, "size": len(layer)}],
        }
    ).encode()
    _request(
        "PUT",
        f"{base}/v2/{repository}/manifests/{tag}",
        body=manifest,
        headers={"Content-Type": OCI_MANIFEST},
    )
    print("sha256:" + hashlib.sha256(manifest).hexdigest())


class _GitHandler(http.server.BaseHTTPRequestHandler):
    root = "."

    def _cgi(self):
        path, _, query = self.path.partition("?")
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        env = dict(os.environ)
        env.update(
            {
                "GIT_PROJECT_ROOT": self.root,
                "GIT_HTTP_EXPORT_ALL": "1",
                "REQUEST_METHOD": self.command,
                "PATH_INFO": path,
                "QUERY_STRING": query,
                "CONTENT_TYPE": self.headers.get("Content-Type", ""),
                "CONTENT_LENGTH": str(len(body)),
                "REMOTE_USER": "quickstart",
                "REMOTE_ADDR": self.client_address[0],
                "GIT_HTTP_MAX_REQUEST_BUFFER": "100M",
            }
        )
        if self.headers.get("Content-Encoding"):
            env["HTTP_CONTENT_ENCODING"] = self.headers["Content-Encoding"]
        if self.headers.get("Git-Protocol"):
            env["GIT_PROTOCOL"] = self.headers["Git-Protocol"]
        out = subprocess.run(
            ["git", "http-backend"], input=body, env=env, capture_output=True, check=False
        ).stdout
        head, _, payload = out.partition(b"\r\n\r\n")
        if not _:
            head, _, payload = out.partition(b"\n\n")
        status = 200
        headers = []
        for line in head.decode("latin-1").splitlines():
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.strip().split()[0])
            elif name:
                headers.append((name, value.strip()))
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = _cgi
    do_POST = _cgi

    def log_message(self, fmt, *args):  # quiet: the quickstart prints its own steps
        pass


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


def git_http(root, port):
    _GitHandler.root = os.path.abspath(root)
    with _Server(("127.0.0.1", int(port)), _GitHandler) as server:
        server.serve_forever()


def main(argv):
    if len(argv) >= 4 and argv[0] == "push-image":
        labels = {}
        rest = argv[4:]
        while rest:
            if rest[0] != "--label" or len(rest) < 2 or "=" not in rest[1]:
                raise SystemExit(f"push-image: unexpected argument {rest[0]!r}")
            key, _, value = rest[1].partition("=")
            labels[key] = value
            rest = rest[2:]
        push_image(argv[1], argv[2], argv[3], labels)
    elif len(argv) == 3 and argv[0] == "git-http":
        git_http(argv[1], argv[2])
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
