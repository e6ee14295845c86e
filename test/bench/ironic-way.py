#!/usr/bin/env python3
"""The stream benchmark's Ironic-agent-way peer, standard library only.

How ironic-python-agent writes a raw image: an HTTP download read in 1 MiB
chunks, each chunk hashed (sha256) and written to the disk, one fsync at the
end. Two roles, each its own process as the controller and the agent are:

  ironic-way.py serve FILE     serves FILE over HTTP on 127.0.0.1 (a free
                               port, printed as one line) until killed
  ironic-way.py fetch URL DISK downloads URL onto the existing file DISK and
                               prints one JSON line: seconds, bytes, sha256,
                               cpuSeconds (its own user + system time)
"""
import hashlib
import http.server
import json
import os
import resource
import sys
import time
import urllib.request

CHUNK = 1024 * 1024


def serve(path: str) -> None:
    directory, name = os.path.split(os.path.abspath(path))

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=directory, **kwargs)

        def log_message(self, format, *args):  # noqa: A002 - the base class's name
            pass

    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
    print(json.dumps({'port': server.server_address[1], 'path': '/' + name}), flush=True)
    server.serve_forever()


def fetch(url: str, disk: str) -> None:
    started = time.monotonic()
    digest = hashlib.sha256()
    written = 0
    with urllib.request.urlopen(url) as response, open(disk, 'r+b') as target:
        while True:
            chunk = response.read(CHUNK)
            if not chunk:
                break
            digest.update(chunk)
            target.write(chunk)
            written += len(chunk)
        target.flush()
        os.fsync(target.fileno())
    seconds = time.monotonic() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({'seconds': seconds, 'bytes': written, 'sha256': digest.hexdigest(), 'cpuSeconds': usage.ru_utime + usage.ru_stime}), flush=True)


if __name__ == '__main__':
    if len(sys.argv) == 3 and sys.argv[1] == 'serve':
        serve(sys.argv[2])
    elif len(sys.argv) == 4 and sys.argv[1] == 'fetch':
        fetch(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)
