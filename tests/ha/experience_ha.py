#!/usr/bin/env python3
"""Home Assistant side of tests/ha/offline_alert.sh and tests/ha/fleet.sh:
what a user sees of host2mqtt in a real Home Assistant (issue 12).

Standard library only. It talks to HA through the harness's client,
ha_harness.py (tests/ha/harness), and reuses blueprints_ha.py's helpers.

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
  dashboard JSON HOST...  saves the dashboard (JSON of `host2mqtt dashboard`'s
                     YAML) into HA through the websocket API (lovelace/
                     dashboards/create, lovelace/config/save), reads it back
                     and checks what its cards need: one section a host,
                     every entity a card names exists and is enabled (has a
                     state), and the integrations its cards use are loaded
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


def card_entities(node):
    """Every entity id a card config names (entity, entities, badges...)."""
    out = set()
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "entity" and isinstance(v, str):
                out.add(v)
            elif k == "entities" and isinstance(v, list):
                for e in v:
                    if isinstance(e, str):
                        out.add(e)
                    elif isinstance(e, dict) and isinstance(e.get("entity"), str):
                        out.add(e["entity"])
                    out |= card_entities(e) if isinstance(e, dict) else set()
            else:
                out |= card_entities(v)
    elif isinstance(node, list):
        for x in node:
            out |= card_entities(x)
    return out


def card_types(node):
    out = set()
    if isinstance(node, dict):
        if isinstance(node.get("type"), str):
            out.add(node["type"])
        for v in node.values():
            out |= card_types(v)
    elif isinstance(node, list):
        for x in node:
            out |= card_types(x)
    return out


def cmd_dashboard(a, ha, env):
    with open(a.json) as f:
        config = json.load(f)
    url = "host2mqtt-fleet"
    have = B.ws_cmd(ha, "lovelace/dashboards/list")
    if not any(d.get("url_path") == url for d in have):
        B.ws_cmd(ha, "lovelace/dashboards/create", url_path=url, mode="storage", title="Fleet",
                 icon="mdi:server", show_in_sidebar=True, require_admin=False)
    B.ws_cmd(ha, "lovelace/config/save", url_path=url, config=config)
    back = B.ws_cmd(ha, "lovelace/config", url_path=url)
    problems = []
    if back != config:
        problems.append("the config read back differs from the one saved")
    sections = back.get("views", [{}])[0].get("sections", [])
    if len(sections) != len(a.hosts):
        problems.append(f"{len(sections)} sections for {len(a.hosts)} hosts")
    text = json.dumps(back)
    for h in a.hosts:
        if h not in text:
            problems.append(f"host {h} not in the dashboard")
    wanted = card_entities(back)
    states = {s["entity_id"] for s in ha.get("/api/states")}
    missing = sorted(wanted - states)
    if missing:
        problems.append(f"{len(missing)} entities the cards name have no state (absent or disabled): "
                        + ", ".join(missing[:12]))
    types = card_types(back)
    comps = set(ha.get("/api/config").get("components", []))
    if "history-graph" in types and not {"history", "recorder"} <= comps:
        problems.append("history-graph cards, but history/recorder are not loaded")
    if problems:
        print("; ".join(problems))
        return 1
    print(f"dashboard /{url} saved and read back: {len(sections)} sections, {len(wanted)} entities all with a "
          f"state, card types {', '.join(sorted(types))}")
    return 0


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--env", default=os.environ.get("HA_ENV"), help="the harness's ha.env")
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
    s = sub.add_parser("dashboard")
    s.add_argument("json")
    s.add_argument("hosts", nargs="+")
    a = p.parse_args()
    ha, env = B.ha_from(a.env)
    fn = {"related": cmd_related, "area": cmd_area, "enabled": cmd_enabled, "states": cmd_states,
          "watch": cmd_watch, "unavailable": cmd_unavailable, "dashboard": cmd_dashboard}[a.cmd]
    return fn(a, ha, env)


if __name__ == "__main__":
    sys.exit(main())
