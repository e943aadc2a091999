#!/usr/bin/env python3
"""Pushes images to a registry, for scripts/quickstart and scripts/bench-latency.

Standard library only, so a fresh machine needs nothing but python3:

  push_image.py REGISTRY REPOSITORY TAG [--label KEY=VALUE]...
      Pushes a small OCI image (a real config blob with `created` and labels, one
      layer) through the registry's HTTP API, as `docker push` does, and prints
      the manifest digest.
"""

import datetime
import hashlib
import json
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


def main(argv):
    if len(argv) >= 3:
        labels = {}
        rest = argv[3:]
        while rest:
            if rest[0] != "--label" or len(rest) < 2 or "=" not in rest[1]:
                raise SystemExit(f"push_image.py: unexpected argument {rest[0]!r}")
            key, _, value = rest[1].partition("=")
            labels[key] = value
            rest = rest[2:]
        push_image(argv[0], argv[1], argv[2], labels)
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
