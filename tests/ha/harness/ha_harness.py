#!/usr/bin/env python3
"""Client of the test harness's Home Assistant; standard library only (>= 3.9).

harness.sh uses it to bring HA up (wait-http, onboard, wait-running,
add-mqtt); the checks in tests/ha/ import it (HA, WS, registry, http,
load_env, HAError); by hand, through `harness.sh probe`:

  ha_harness.py --env FILE states [--device NAME] [--filter TEXT] [--json]
  ha_harness.py --env FILE devices [--json]
  ha_harness.py --env FILE device NAME_OR_IDENTIFIER
  ha_harness.py --env FILE wait ENTITY_ID STATE [--timeout S]
  ha_harness.py --env FILE ws TYPE [JSON]      one websocket command
  ha_harness.py --env FILE get /api/PATH       one REST GET

FILE is the ha.env that `harness.sh start` writes (HA_URL, HA_TOKEN, ...).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import socket
import struct
import sys
import time
import urllib.error
import urllib.parse
import urllib.request


class HAError(Exception):
    pass


def http(method, url, token=None, data=None, form=None, timeout=30):
    """One request; returns (status, body as JSON, or text when it is not JSON)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    body = None
    if form is not None:
        body = urllib.parse.urlencode(form).encode()
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    elif data is not None:
        body = json.dumps(data).encode()
        headers["Content-Type"] = "application/json"
    req = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    if not raw:
        return status, None
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode(errors="replace")


def load_env(path):
    """KEY=VALUE lines of ha.env as a dict (a missing file gives {})."""
    env = {}
    if path and os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            for line in f:
                key, sep, value = line.strip().partition("=")
                if sep and not key.startswith("#"):
                    env[key] = value.strip("'\"")
    return env


def poll(fn, timeout, what, every=0.25):
    """fn() until it returns something true; HAError after timeout seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            got = fn()
            if got:
                return got
        except (OSError, ValueError, HAError) as e:
            last = e
        time.sleep(every)
    raise HAError(f"no {what} within {timeout}s (last error: {last})")


def until(fn, timeout, interval=0.25):
    """fn() -> (ok, detail), again until ok or timeout; the last (ok, detail).
    A query HA fails counts as not ok."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            ok, detail = fn()
        except (OSError, ValueError, HAError) as e:
            ok, detail = False, f"HA query failed: {e}"
        if ok or time.monotonic() >= deadline:
            return ok, detail
        time.sleep(interval)


def connect(env_file):
    """(HA, env) from the harness's ha.env; HA_URL and HA_TOKEN in the
    environment win."""
    env = load_env(env_file)
    url = os.environ.get("HA_URL") or env.get("HA_URL")
    token = os.environ.get("HA_TOKEN") or env.get("HA_TOKEN")
    if not url or not token:
        raise HAError(f"no HA_URL/HA_TOKEN in {env_file}: is the harness started?")
    return HA(url, token), env


class HA:
    """REST calls with a bearer token."""

    def __init__(self, url, token=None):
        self.url = url.rstrip("/")
        self.token = token

    def call(self, method, path, data=None, form=None, auth=True, ok=(200, 201)):
        status, body = http(method, self.url + path, self.token if auth else None, data, form)
        if status not in ok:
            raise HAError(f"{method} {path}: HTTP {status}: {body}")
        return body

    def get(self, path):
        return self.call("GET", path)

    def ws(self):
        return WS(self.url, self.token)

    def flow(self, path, data):
        """POST a config or options flow step; the step's answer."""
        return self.call("POST", path, data=data)


class WS:
    """Just enough RFC 6455 for HA's websocket API: text frames, client masking."""

    def __init__(self, url, token, timeout=30):
        u = urllib.parse.urlsplit(url)
        if u.scheme != "http":
            raise HAError(f"websocket: only http:// URLs, not {url}")
        host, port = u.hostname, u.port or 80
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self._in = self.sock.makefile("rb")
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                f"GET /api/websocket HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        status = self._in.readline()
        if b" 101 " not in status:
            raise HAError(f"websocket upgrade refused: {status!r}")
        while self._in.readline() not in (b"\r\n", b""):
            pass
        self._next_id = 1
        if self.recv().get("type") != "auth_required":
            raise HAError("websocket: no auth_required")
        self.send({"type": "auth", "access_token": token})
        hello = self.recv()
        if hello.get("type") != "auth_ok":
            raise HAError(f"websocket auth: {hello}")
        self.ha_version = hello.get("ha_version")

    def _exact(self, n):
        data = self._in.read(n)
        if data is None or len(data) < n:
            raise HAError("websocket closed")
        return data

    def _frame(self, opcode, payload):
        mask = os.urandom(4)
        n = len(payload)
        if n < 126:
            head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
        elif n < 1 << 16:
            head = struct.pack("!BBH", 0x80 | opcode, 0xFE, n)
        else:
            head = struct.pack("!BBQ", 0x80 | opcode, 0xFF, n)
        masked = bytes(c ^ mask[i & 3] for i, c in enumerate(payload))
        self.sock.sendall(head + mask + masked)

    def send(self, obj):
        self._frame(0x1, json.dumps(obj).encode())

    def recv(self):
        """The next JSON message (pings answered, fragments joined)."""
        message = b""
        while True:
            b0, b1 = self._exact(2)
            n = b1 & 0x7F
            if n == 126:
                (n,) = struct.unpack("!H", self._exact(2))
            elif n == 127:
                (n,) = struct.unpack("!Q", self._exact(8))
            mask = self._exact(4) if b1 & 0x80 else b"\0\0\0\0"
            payload = bytes(c ^ mask[i & 3] for i, c in enumerate(self._exact(n)))
            opcode = b0 & 0x0F
            if opcode == 0x8:
                raise HAError("websocket closed by HA")
            if opcode == 0x9:
                self._frame(0xA, payload)
            elif opcode in (0x0, 0x1):
                message += payload
                if b0 & 0x80:
                    return json.loads(message)

    def cmd(self, type_, **args):
        """One command; its result (HAError when HA says it failed)."""
        mid = self._next_id
        self._next_id += 1
        self.send({"id": mid, "type": type_, **args})
        while True:
            msg = self.recv()
            if msg.get("id") == mid and msg.get("type") == "result":
                if not msg.get("success"):
                    raise HAError(f"{type_}: {msg.get('error')}")
                return msg.get("result")

    def close(self):
        try:
            self._frame(0x8, b"")
        except OSError:
            pass
        self._in.close()
        self.sock.close()


def registry(ha):
    """(device registry, entity registry)."""
    ws = ha.ws()
    try:
        return ws.cmd("config/device_registry/list"), ws.cmd("config/entity_registry/list")
    finally:
        ws.close()


# ---------------------------------------------------------------- bring-up
def wait_http(a):
    t0 = time.monotonic()
    poll(lambda: http("GET", a.url + "/api/onboarding", timeout=3)[0] == 200, a.timeout, "HTTP answer")
    print(f"{time.monotonic() - t0:.1f}")


def onboard(a):
    """The onboarding's user step (the others would reach for the internet),
    then a 10-year token. Prints ha.env lines."""
    ha = HA(a.url)
    client_id = ha.url + "/"
    password = base64.b32encode(os.urandom(10)).decode()
    steps = ha.call("GET", "/api/onboarding", auth=False)
    if any(s["step"] == "user" and s["done"] for s in steps):
        raise HAError("onboarding was done already: the config is not fresh")
    user = ha.call("POST", "/api/onboarding/users", auth=False, data={
        "client_id": client_id, "name": "host2mqtt test", "username": "h2m",
        "password": password, "language": "en"})
    tokens = ha.call("POST", "/auth/token", auth=False, form={
        "grant_type": "authorization_code", "code": user["auth_code"], "client_id": client_id})
    ha.token = tokens["access_token"]
    ws = ha.ws()
    try:
        long_lived = ws.cmd("auth/long_lived_access_token", client_name="host2mqtt-tests", lifespan=3650)
    finally:
        ws.close()
    print(f"HA_TOKEN={long_lived}")
    print(f"HA_REFRESH_TOKEN={tokens['refresh_token']}")
    print(f"HA_CLIENT_ID={client_id}")
    print("HA_USER=h2m")
    print(f"HA_PASSWORD={password}")


def wait_running(a):
    ha = HA(a.url, a.token)
    t0 = time.monotonic()
    cfg = poll(lambda: (c := ha.get("/api/config")).get("state") == "RUNNING" and c, a.timeout, "state RUNNING")
    print(f"{time.monotonic() - t0:.1f} {cfg['version']}")


def section_defaults(field):
    """The required values of a collapsed form section, from the form's schema."""
    out = {}
    for f in field.get("schema", []):
        if not f.get("required"):
            continue
        selector = f.get("selector") or {}
        if "default" in f:
            out[f["name"]] = f["default"]
        elif "boolean" in selector:
            out[f["name"]] = False
        elif (selector.get("select") or {}).get("options"):
            first = selector["select"]["options"][0]
            out[f["name"]] = first["value"] if isinstance(first, dict) else first
    return out


def add_mqtt(a):
    """The MQTT integration through its config flow (broker step), then its
    options flow with discovery on under the prefix. Prints MQTT_ENTRY_ID."""
    ha = HA(a.url, a.token)
    step = ha.flow("/api/config/config_entries/flow", {"handler": "mqtt", "show_advanced_options": False})
    if step.get("step_id") != "broker":
        raise HAError(f"mqtt config flow began with {step}")
    answer = {"broker": "127.0.0.1", "port": a.port}
    for field in step.get("data_schema", []):
        if field.get("type") == "expandable":
            answer[field["name"]] = section_defaults(field)
    done = ha.flow(f"/api/config/config_entries/flow/{step['flow_id']}", answer)
    if done.get("type") != "create_entry":
        raise HAError(f"mqtt broker step: {done}")
    entry = done["result"]["entry_id"]
    step = ha.flow("/api/config/config_entries/options/flow", {"handler": entry})
    names = {f.get("name") for f in step.get("data_schema", [])}
    wanted = {"discovery": True, "discovery_prefix": a.prefix, "discovery_qos": 0,
              "birth_enable": True, "will_enable": True}
    done = ha.flow(f"/api/config/config_entries/options/flow/{step['flow_id']}",
                   {k: v for k, v in wanted.items() if k in names})
    if done.get("type") != "create_entry":
        raise HAError(f"mqtt options: {done}")
    poll(lambda: any(e["entry_id"] == entry and e["state"] == "loaded"
                     for e in ha.get("/api/config/config_entries/entry?domain=mqtt")),
         a.timeout, "loaded MQTT entry")
    print(f"MQTT_ENTRY_ID={entry}")


# ---------------------------------------------------------------- probing
def from_env(a):
    return connect(a.env)[0]


def matching_devices(devices, key):
    key = key.lower()

    def names(d):
        idents = d.get("identifiers", [])
        return [d.get("name") or "", d.get("name_by_user") or "", d["id"]] + [
            str(i[1]) for i in idents] + [f"{i[0]}:{i[1]}" for i in idents]

    return [d for d in devices if key in (n.lower() for n in names(d))]


def table(states):
    cols = ("entity_id", "state", "unit_of_measurement", "device_class", "state_class")
    rows = [[s["entity_id"], s["state"]] + [str(s["attributes"].get(c, "-")) for c in cols[2:]] for s in states]
    widths = [max(len(r[i]) for r in rows + [list(cols)]) for i in range(len(cols))]
    for r in [list(cols)] + rows:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip())


def states(a):
    ha = from_env(a)
    got = ha.get("/api/states")
    if a.device:
        devices, entities = registry(ha)
        ids = {d["id"] for d in matching_devices(devices, a.device)}
        mine = {e["entity_id"] for e in entities if e.get("device_id") in ids}
        got = [s for s in got if s["entity_id"] in mine]
    got = sorted((s for s in got if a.filter in s["entity_id"]), key=lambda s: s["entity_id"])
    if a.json:
        print(json.dumps(got, indent=2, ensure_ascii=False))
    else:
        table(got)


def devices(a):
    devs, _ = registry(from_env(a))
    if a.json:
        print(json.dumps(devs, indent=2, ensure_ascii=False))
        return
    for d in devs:
        print(d["id"], d.get("name"), d.get("identifiers"), d.get("manufacturer"), d.get("model"))


def device(a):
    ha = from_env(a)
    devs, entities = registry(ha)
    found = matching_devices(devs, a.name)
    if not found:
        raise HAError(f"no device {a.name!r}")
    by_id = {s["entity_id"]: s for s in ha.get("/api/states")}
    for d in found:
        print(f"device {d.get('name')!r} id={d['id']} identifiers={d.get('identifiers')} "
              f"manufacturer={d.get('manufacturer')!r} model={d.get('model')!r} sw={d.get('sw_version')!r}")
        mine = sorted(e["entity_id"] for e in entities if e.get("device_id") == d["id"])
        table([by_id.get(e, {"entity_id": e, "state": "(no state)", "attributes": {}}) for e in mine])


def wait(a):
    ha = from_env(a)
    poll(lambda: http("GET", f"{ha.url}/api/states/{a.entity}", ha.token)[1].get("state") == a.state,
         a.timeout, f"{a.entity} = {a.state}")
    print(f"{a.entity} = {a.state}")


def ws_cmd(a):
    ws = from_env(a).ws()
    try:
        print(json.dumps(ws.cmd(a.type, **json.loads(a.args)), indent=2, ensure_ascii=False))
    finally:
        ws.close()


def get(a):
    print(json.dumps(from_env(a).get(a.path), indent=2, ensure_ascii=False))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", default=os.environ.get("HA_ENV"))
    sub = p.add_subparsers(dest="cmd", required=True)

    def command(name, fn, *args):
        s = sub.add_parser(name)
        s.set_defaults(fn=fn)
        for names, kw in args:
            s.add_argument(*names, **kw)
        return s

    url = (("--url",), {"required": True})
    timeout = (("--timeout",), {"type": float, "default": 300})
    command("wait-http", wait_http, url, timeout)
    command("onboard", onboard, url)
    command("wait-running", wait_running, url, (("--token",), {"required": True}), timeout)
    command("add-mqtt", add_mqtt, url, (("--token",), {"required": True}), (("--port",), {"type": int, "required": True}),
            (("--prefix",), {"default": "homeassistant"}), (("--timeout",), {"type": float, "default": 60}))
    command("states", states, (("--device",), {}), (("--filter",), {"default": ""}), (("--json",), {"action": "store_true"}))
    command("devices", devices, (("--json",), {"action": "store_true"}))
    command("device", device, (("name",), {}))
    command("wait", wait, (("entity",), {}), (("state",), {}), (("--timeout",), {"type": float, "default": 30}))
    command("ws", ws_cmd, (("type",), {}), (("args",), {"nargs": "?", "default": "{}"}))
    command("get", get, (("path",), {}))
    a = p.parse_args()
    try:
        a.fn(a)
    except HAError as e:
        print(f"ha_harness: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
