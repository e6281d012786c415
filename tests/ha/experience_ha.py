#!/usr/bin/env python3
"""Home Assistant side of tests/ha/offline_alert.sh and tests/ha/fleet.sh:
what a user sees of host2mqtt in a real Home Assistant (issue 12).

Standard library only. It talks to HA through the harness's client,
ha_harness.py (found with --harness), and reuses blueprints_ha.py's helpers.

Sub-commands (one short line when they pass, details when they fail; exit 0/1):

  related DEVICE AUTOMATION_ID   the device page's "Related" (websocket
                     search/related) lists the automation, and the
                     automation's lists the device
  area NODE AREA     the device of NODE is in the area named AREA (made
                     from the discovery's suggested_area)
  enabled NODE       the entity registry of NODE: the headline entities
                     --on are enabled, those in --off disabled by the
                     integration
  states NODE STATE  every --key entity of NODE has state STATE (waits)
  watch FILE ENTITY... appends every state change of these entities
                     (state_changed events) to FILE, one JSON a line
  unavailable FILE ENTITY  longest time ENTITY was unavailable after
                     --after, from a watch FILE (prints seconds)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import blueprints_ha as B  # noqa: E402


def device_of(ha, node):
    ident = ["mqtt", f"host2mqtt_{node}"]
    for d in B.ws_cmd(ha, "config/device_registry/list"):
        if ident in d.get("identifiers", []):
            return d
    return None


def cmd_related(a, ha, env):
    def probe():
        autos = [s for s in ha.get("/api/states")
                 if s["entity_id"].startswith("automation.") and s["attributes"].get("id") == a.automation]
        if not autos:
            return False, f"no automation with id {a.automation}"
        eid = autos[0]["entity_id"]
        rel = B.ws_cmd(ha, "search/related", item_type="device", item_id=a.device)
        back = B.ws_cmd(ha, "search/related", item_type="automation", item_id=eid)
        ok = eid in rel.get("automation", []) and a.device in back.get("device", [])
        return ok, f"device {a.device} related automations {rel.get('automation', [])}; " \
                   f"{eid} related devices {back.get('device', [])}"
    ok, detail = B.wait(probe, 15)
    print(detail)
    return 0 if ok else 1


def cmd_area(a, ha, env):
    def probe():
        d = device_of(ha, a.node)
        if d is None:
            return False, f"no device for {a.node}"
        areas = {x["area_id"]: x["name"] for x in B.ws_cmd(ha, "config/area_registry/list")}
        name = areas.get(d.get("area_id"))
        return name == a.area, f"device {d['name']!r} area_id={d.get('area_id')!r} ({name!r}); areas {sorted(areas.values())}"
    ok, detail = B.wait(probe, 20)
    print(detail)
    return 0 if ok else 1


def cmd_enabled(a, ha, env):
    def probe():
        d = device_of(ha, a.node)
        if d is None:
            return False, f"no device for {a.node}"
        _, ents = B.H.registry(ha)
        mine = {e["entity_id"]: e for e in ents if e.get("device_id") == d["id"]}
        by_key = {}
        for eid, e in mine.items():
            key = (e.get("unique_id") or "").removeprefix(f"host2mqtt_{a.node}_")
            by_key[key] = e
        problems = []
        for k in a.on:
            if k not in by_key:
                problems.append(f"{k}: no entity")
            elif by_key[k].get("disabled_by"):
                problems.append(f"{k}: disabled by {by_key[k]['disabled_by']}")
        for k in a.off:
            if k not in by_key:
                problems.append(f"{k}: no entity")
            elif by_key[k].get("disabled_by") != "integration":
                problems.append(f"{k}: disabled_by={by_key[k].get('disabled_by')!r}, expected 'integration'")
        on = sum(1 for e in by_key.values() if not e.get("disabled_by"))
        return not problems, (f"{on} of {len(by_key)} entities enabled" if not problems else "; ".join(problems))
    ok, detail = B.wait(probe, 20)
    print(detail)
    return 0 if ok else 1


def cmd_states(a, ha, env):
    def probe():
        states = {s["entity_id"]: s["state"] for s in ha.get("/api/states")}
        wrong = {}
        for k in a.key:
            eid = f"sensor.{a.node}_{k}"
            if states.get(eid) != a.state and not (a.state == "*" and states.get(eid) not in (None, "unavailable", "unknown")):
                wrong[eid] = states.get(eid)
        return not wrong, wrong or "ok"
    ok, detail = B.wait(probe, a.timeout)
    print(detail if ok else f"not {a.state}: {detail}")
    return 0 if ok else 1


def cmd_watch(a, ha, env):
    ws = ha.ws()
    ws.sock.settimeout(None)
    ws.send({"id": 1, "type": "subscribe_events", "event_type": "state_changed"})
    want = set(a.entities)
    with open(a.file, "a", buffering=1) as out:
        while True:
            msg = ws.recv()
            if msg.get("type") != "event":
                continue
            d = msg["event"]["data"]
            if d.get("entity_id") in want:
                new = d.get("new_state") or {}
                out.write(json.dumps({"t": time.time(), "entity_id": d["entity_id"], "state": new.get("state")}) + "\n")


def cmd_unavailable(a, ha, env):
    rows = [e for e in B.events(a.file) if e.get("entity_id") == a.entity and e["t"] > a.after]
    longest, since = 0.0, None
    for e in rows:
        if e["state"] == "unavailable" and since is None:
            since = e["t"]
        elif e["state"] != "unavailable" and since is not None:
            longest = max(longest, e["t"] - since)
            since = None
    if since is not None:
        longest = max(longest, time.time() - since)
    print(f"{longest:.1f}")
    return 0


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--harness", required=True)
    p.add_argument("--env", default=os.environ.get("HA_ENV", "/tmp/ha/run/ha.env"))
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("related")
    s.add_argument("device")
    s.add_argument("automation")
    s = sub.add_parser("area")
    s.add_argument("node")
    s.add_argument("area")
    s = sub.add_parser("enabled")
    s.add_argument("node")
    s.add_argument("--on", action="append", default=[])
    s.add_argument("--off", action="append", default=[])
    s = sub.add_parser("states")
    s.add_argument("node")
    s.add_argument("state")
    s.add_argument("--key", action="append", default=[])
    s.add_argument("--timeout", type=float, default=20)
    s = sub.add_parser("watch")
    s.add_argument("file")
    s.add_argument("entities", nargs="+")
    s = sub.add_parser("unavailable")
    s.add_argument("file")
    s.add_argument("entity")
    s.add_argument("--after", type=float, default=0)
    a = p.parse_args()
    sys.path.insert(0, a.harness)
    import ha_harness
    B.H = ha_harness
    ha, env = B.ha_from(a.env)
    fn = {"related": cmd_related, "area": cmd_area, "enabled": cmd_enabled, "states": cmd_states,
          "watch": cmd_watch, "unavailable": cmd_unavailable}[a.cmd]
    return fn(a, ha, env)


if __name__ == "__main__":
    sys.exit(main())
