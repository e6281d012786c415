#!/usr/bin/env python3
"""Home Assistant side of tests/ha/blueprints.sh: the host2mqtt blueprints
(config/homeassistant/blueprints/) in a real Home Assistant.

Standard library only (Python >= 3.9). It talks to HA through the harness's
client, ha_harness.py (REST + websocket), in tests/ha/harness/.

Sub-commands (each prints one short line when it passes, the details when
it fails, and exits 0 or 1; `record` runs until killed):

  promote-http       promote HA's pending HTTP config: HA 2026.11 stages the
                     `http:` of a fresh config and, unpromoted, reverts it
                     and restarts 5 minutes later (the harness would lose HA)

  install DIR        copy the blueprints into HA's config, make HA load
                     automations.yaml (append `automation: !include
                     automations.yaml`, then automation.reload: the harness
                     writes configuration.yaml anew on every start, so
                     appending before a restart would be lost)
  blueprints N       blueprint/list has the N host2mqtt blueprints, none
                     with an error, each with the inputs its file declares
  todo NAME          a Local to-do list NAME through the config flow;
                     prints its entity id
  device NODE        prints the device id of host2mqtt node NODE (waits)
  entity DEVICE      an entity of DEVICE whose name ends in --name has a
                     number as state (waits)
  trigger ENTITY     runs an automation now (automation.trigger, skipping
                     its conditions)
  create ID PATH JSON  an automation from a blueprint (use_blueprint), through
                     POST /api/config/automation/config/ID; waits until it is on
  record FILE        appends every persistent-notification event (websocket
                     persistent_notification/subscribe) to FILE, one JSON a line
  expect FILE ID     a notification ID whose title+message contain every
                     --contains (and none of --lacks) was added or updated
                     after --after, within --timeout
  dismissed FILE ID  notification ID was removed after --after, within --timeout
  quiet FILE ID...   no notification event for these ids after --after, and
                     the automations' last_triggered is still empty (--automation)
  todo-wait ENTITY   an open item whose summary contains --contains, and
                     whose description contains every --description
  todo-count ENTITY  exactly --count open items (or: none before the window);
                     --summary PREFIX counts only those items
  log FILE           HA's log since --offset: no error or warning from the
                     automation/blueprint/template/script/todo integrations,
                     from MQTT, or about our nodes
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "harness"))
import ha_harness as H  # noqa: E402  (tests/ha/harness)


def ha_from(env_file):
    return H.connect(env_file)


def ws_cmd(ha, type_, **kw):
    ws = ha.ws()
    try:
        return ws.cmd(type_, **kw)
    finally:
        ws.close()


def wait(fn, timeout, interval=0.5):
    """Calls fn() -> (ok, detail) until ok or timeout."""
    return H.until(fn, timeout, interval)


# --------------------------------------------------------------------------
def cmd_promote_http(a, ha, env):
    # HA 2026.11 moves the YAML `http:` of a fresh config into storage as a
    # "pending" config and, unless it is promoted within 5 minutes, reverts
    # it and restarts (the harness cannot follow that restart): promote it.
    try:
        ws_cmd(ha, "http/config/promote")
    except H.HAError as e:
        if "not_allowed" in str(e) or "unknown_command" in str(e):
            print(f"nothing to promote ({e})")
            return 0
        raise
    print("pending HTTP config promoted to stable (no revert and restart after 5 min)")
    return 0


def cmd_install(a, ha, env):
    cfg = env.get("HA_CONFIG")
    if not cfg or not os.path.isdir(cfg):
        print(f"no HA config dir (HA_CONFIG={cfg!r})")
        return 1
    dest = os.path.join(cfg, "blueprints", "automation", "host2mqtt")
    if os.path.isdir(dest):
        shutil.rmtree(dest)
    shutil.copytree(a.dir, dest)
    names = sorted(f for f in os.listdir(dest) if f.endswith(".yaml"))
    auto = os.path.join(cfg, "automations.yaml")
    if not os.path.exists(auto):
        with open(auto, "w") as f:
            f.write("[]\n")
    conf = os.path.join(cfg, "configuration.yaml")
    text = open(conf).read()
    if not re.search(r"^automation:", text, re.M):
        with open(conf, "a") as f:
            f.write("\n# tests/ha/blueprints.sh: automations made through the API live here\n"
                    "automation: !include automations.yaml\n")
    ha.call("POST", "/api/services/automation/reload", data={})
    print(f"{len(names)} blueprints in {dest}: {', '.join(names)}; automations.yaml loaded")
    return 0


def blueprint_inputs(path):
    """The input keys a blueprint file declares (a small YAML reader: the
    keys indented by 4 under `  input:`, and those of sections)."""
    keys, inside = [], False
    for line in open(path):
        if re.match(r"^  input:\s*$", line):
            inside = True
            continue
        if inside:
            if re.match(r"^\S", line) or re.match(r"^  \S", line):
                break
            m = re.match(r"^    ([a-z_0-9]+):\s*$", line)
            if m:
                keys.append(m.group(1))
    return keys


def cmd_blueprints(a, ha, env):
    got = ws_cmd(ha, "blueprint/list", domain="automation")
    ours = {k: v for k, v in got.items() if k.startswith("host2mqtt/")}
    problems = []
    for k, v in sorted(ours.items()):
        if "error" in v:
            problems.append(f"{k}: {v['error']}")
            continue
        if a.dir:
            want = blueprint_inputs(os.path.join(a.dir, os.path.basename(k)))
            have = list(v["metadata"].get("input", {}))
            if want != have:
                problems.append(f"{k}: inputs {have}, the file declares {want}")
    if len(ours) != a.count:
        problems.append(f"{len(ours)} host2mqtt blueprints in blueprint/list, expected {a.count}: {sorted(ours)}")
    if problems:
        print("\n".join(problems))
        return 1
    print(", ".join(f"{k} ({v['metadata']['name']!r}, {len(v['metadata'].get('input', {}))} inputs)"
                    for k, v in sorted(ours.items())))
    return 0


def cmd_todo(a, ha, env):
    flow = ha.call("POST", "/api/config/config_entries/flow", data={"handler": "local_todo"})
    if flow.get("type") == "form":
        flow = ha.call("POST", f"/api/config/config_entries/flow/{flow['flow_id']}",
                       data={"todo_list_name": a.name})
    if flow.get("type") != "create_entry":
        print(f"local_todo config flow did not create an entry: {flow}")
        return 1
    slug = re.sub(r"[^a-z0-9]+", "_", a.name.lower()).strip("_")
    eid = f"todo.{slug}"
    ok, detail = wait(lambda: (H.http("GET", f"{ha.url}/api/states/{eid}", ha.token)[0] == 200, f"no {eid}"), 60)
    if not ok:
        print(detail)
        return 1
    print(eid)
    return 0


def cmd_device(a, ha, env):
    ident = ["mqtt", f"host2mqtt_{a.node}"]

    def probe():
        devices = ws_cmd(ha, "config/device_registry/list")
        found = [d["id"] for d in devices if ident in d.get("identifiers", [])]
        return len(found) == 1, found[0] if found else f"no device with identifiers {ident}"
    ok, detail = wait(probe, a.timeout)
    print(detail)
    return 0 if ok else 1


def cmd_entity(a, ha, env):
    def probe():
        _, ents = H.registry(ha)
        ids = {e["entity_id"] for e in ents if e.get("device_id") == a.device}
        states = {s["entity_id"]: s for s in ha.get("/api/states") if s["entity_id"] in ids}
        for eid, s in states.items():
            if (s["attributes"].get("friendly_name") or "").endswith(a.name):
                try:
                    float(s["state"])
                    return True, f"{eid} = {s['state']} {s['attributes'].get('unit_of_measurement') or ''}"
                except ValueError:
                    return False, f"{eid} = {s['state']}"
        return False, f"no entity named '... {a.name}' on device {a.device}"
    ok, detail = wait(probe, a.timeout)
    print(detail)
    return 0 if ok else 1


def cmd_trigger(a, ha, env):
    ha.call("POST", "/api/services/automation/trigger", data={"entity_id": a.entity, "skip_condition": True})
    print(f"{a.entity} triggered")
    return 0


def cmd_create(a, ha, env):
    inputs = json.loads(a.inputs)
    ha.call("POST", f"/api/config/automation/config/{a.id}", data={
        "alias": a.alias or a.id,
        "description": f"tests/ha/blueprints.sh: {a.path}",
        "use_blueprint": {"path": a.path, "input": inputs},
    })

    def probe():
        for s in ha.get("/api/states"):
            if s["entity_id"].startswith("automation.") and s["attributes"].get("id") == a.id:
                return s["state"] == "on", f"{s['entity_id']} is {s['state']}"
        return False, f"no automation with id {a.id} in /api/states"
    ok, detail = wait(probe, 15)
    print(detail + (f" ({a.path}, {json.dumps(inputs)})" if ok else ""))
    return 0 if ok else 1


def cmd_record(a, ha, env):
    ws = ha.ws()
    ws.sock.settimeout(None)
    ws.send({"id": 1, "type": "persistent_notification/subscribe"})
    with open(a.file, "a", buffering=1) as out:
        while True:
            msg = ws.recv()
            if msg.get("type") != "event":
                continue
            ev = msg["event"]
            for nid, n in (ev.get("notifications") or {}).items():
                out.write(json.dumps({"t": time.time(), "type": ev.get("type"), "id": nid,
                                      "title": n.get("title") or "", "message": n.get("message") or ""}) + "\n")


def events(path):
    out = []
    try:
        for line in open(path):
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
    except OSError:
        pass
    return out


def show(e):
    return f"[{e['type']} +{e['t']:.1f}] {e['title']!r}: {e['message']!r}"


def cmd_expect(a, ha, env):
    t0 = time.time()

    def probe():
        seen = [e for e in events(a.file) if e["id"] == a.id and e["t"] > a.after]
        for e in seen:
            text = e["title"] + "\n" + e["message"]
            if e["type"] in ("added", "updated", "current") and all(c in text for c in a.contains) \
                    and not any(x in text for x in a.lacks):
                return True, e
        return False, seen
    ok, detail = wait(probe, a.timeout)
    if ok:
        print(f"after {time.time() - a.after:.0f}s: {detail['title']!r}: {detail['message']!r}")
        return 0
    print(f"no notification {a.id} with {a.contains}{' and without ' + str(a.lacks) if a.lacks else ''} "
          f"within {a.timeout:.0f}s (waited {time.time() - t0:.0f}s); its events since: "
          + ("\n  " + "\n  ".join(show(e) for e in detail) if detail else "none"))
    return 1


def cmd_dismissed(a, ha, env):
    def probe():
        seen = [e for e in events(a.file) if e["id"] == a.id and e["t"] > a.after]
        return any(e["type"] == "removed" for e in seen), seen
    ok, detail = wait(probe, a.timeout)
    if ok:
        print(f"notification {a.id} dismissed {time.time() - a.after:.0f}s after the cause went away")
        return 0
    print(f"notification {a.id} not dismissed within {a.timeout:.0f}s; its events since: "
          + ("\n  " + "\n  ".join(show(e) for e in detail) if detail else "none"))
    return 1


def cmd_quiet(a, ha, env):
    bad = [e for e in events(a.file) if e["id"] in a.ids and e["t"] > a.after and e["type"] != "current"]
    fired = []
    states = {s["attributes"].get("id"): s for s in ha.get("/api/states") if s["entity_id"].startswith("automation.")}
    for aid in a.automation:
        s = states.get(aid)
        if s is None:
            fired.append(f"automation id {aid}: not in /api/states")
        elif s["attributes"].get("last_triggered"):
            fired.append(f"{s['entity_id']}: last_triggered {s['attributes']['last_triggered']}")
    if bad or fired:
        print("something fired while nothing was wrong:\n  " + "\n  ".join([show(e) for e in bad] + fired))
        return 1
    print(f"no notification ({', '.join(a.ids)}), no run of {len(a.automation)} automation(s)")
    return 0


def todo_items(ha, entity):
    st, js = H.http("POST", f"{ha.url}/api/services/todo/get_items?return_response", ha.token,
                    {"entity_id": entity, "status": ["needs_action"]})
    if st != 200:
        raise H.HAError(f"todo.get_items -> HTTP {st}: {js}")
    return js["service_response"][entity]["items"]


def cmd_todo_wait(a, ha, env):
    def probe():
        items = todo_items(ha, a.entity)
        for it in items:
            desc = it.get("description") or ""
            if a.contains in it["summary"] and all(d in desc for d in a.description):
                return True, it
        return False, items
    ok, detail = wait(probe, a.timeout, interval=1)
    if ok:
        print(f"{a.entity}: {detail['summary']!r} ({detail.get('description')!r}, due {detail.get('due')})")
        return 0
    print(f"no open item with {a.contains!r} and {a.description} in {a.entity} within {a.timeout:.0f}s; "
          f"open items: {detail}")
    return 1


def cmd_todo_count(a, ha, env):
    items = [i for i in todo_items(ha, a.entity) if i["summary"].startswith(a.summary)]
    if len(items) != a.count:
        print(f"{a.entity} has {len(items)} open items, expected {a.count}: {items}")
        return 1
    print(f"{a.entity}: {len(items)} open item(s)" + (f": {[i['summary'] for i in items]}" if items else ""))
    return 0


LOG_RECORD = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+\S* (DEBUG|INFO|WARNING|ERROR|CRITICAL) ")
WATCHED = re.compile(r"\[homeassistant\.(components\.(automation|blueprint|template|script|todo|local_todo|"
                     r"persistent_notification|mqtt)|helpers\.(template|script|event|trigger))")


def cmd_log(a, ha, env):
    with open(a.log, errors="replace") as f:
        f.seek(a.offset)
        text = f.read()
    records = []
    for line in text.splitlines():
        if LOG_RECORD.match(line):
            records.append([LOG_RECORD.match(line).group(1), line])
        elif records:
            records[-1][1] += "\n" + line
    flagged = []
    for level, rec in records:
        if level not in ("WARNING", "ERROR", "CRITICAL"):
            continue
        if WATCHED.search(rec.split("\n", 1)[0]) or any(n in rec for n in a.node) \
                or "host2mqtt" in rec or "blueprint" in rec.lower():
            flagged.append(rec)
    if flagged:
        print(f"{len(flagged)} warning/error record(s):\n" + "\n".join(r[:1500] for r in flagged))
        return 1
    print(f"{len(records)} log records, no warning or error from automations, blueprints, templates, "
          f"scripts, to-do, MQTT or about {', '.join(a.node)}")
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", default=os.environ.get("HA_ENV"), help="the harness's ha.env")
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("promote-http")
    s = sub.add_parser("install"); s.add_argument("dir")
    s = sub.add_parser("blueprints"); s.add_argument("count", type=int); s.add_argument("--dir")
    s = sub.add_parser("todo"); s.add_argument("name")
    s = sub.add_parser("device"); s.add_argument("node"); s.add_argument("--timeout", type=float, default=20)
    s = sub.add_parser("entity"); s.add_argument("device"); s.add_argument("--name", required=True)
    s.add_argument("--timeout", type=float, default=20)
    s = sub.add_parser("trigger"); s.add_argument("entity")
    s = sub.add_parser("create"); s.add_argument("id"); s.add_argument("path"); s.add_argument("inputs")
    s.add_argument("--alias")
    s = sub.add_parser("record"); s.add_argument("file")
    for name in ("expect", "dismissed"):
        s = sub.add_parser(name); s.add_argument("file"); s.add_argument("id")
        s.add_argument("--after", type=float, default=0); s.add_argument("--timeout", type=float, default=60)
        if name == "expect":
            s.add_argument("--contains", action="append", default=[])
            s.add_argument("--lacks", action="append", default=[])
    s = sub.add_parser("quiet"); s.add_argument("file"); s.add_argument("ids", nargs="+")
    s.add_argument("--after", type=float, default=0); s.add_argument("--automation", action="append", default=[])
    s = sub.add_parser("todo-wait"); s.add_argument("entity"); s.add_argument("--contains", required=True)
    s.add_argument("--description", action="append", default=[]); s.add_argument("--timeout", type=float, default=60)
    s = sub.add_parser("todo-count"); s.add_argument("entity"); s.add_argument("--count", type=int, default=0)
    s.add_argument("--summary", default="", help="count only the items whose summary starts with this")
    s = sub.add_parser("log"); s.add_argument("log"); s.add_argument("--offset", type=int, default=0)
    s.add_argument("--node", action="append", default=[])
    a = p.parse_args()
    ha, env = ha_from(a.env)
    fn = {"promote-http": cmd_promote_http, "install": cmd_install, "blueprints": cmd_blueprints, "todo": cmd_todo, "device": cmd_device,
          "create": cmd_create, "entity": cmd_entity, "trigger": cmd_trigger, "record": cmd_record, "expect": cmd_expect, "dismissed": cmd_dismissed,
          "quiet": cmd_quiet, "todo-wait": cmd_todo_wait, "todo-count": cmd_todo_count,
          "log": cmd_log}[a.cmd]
    try:
        sys.exit(fn(a, ha, env))
    except H.HAError as e:
        print(f"HA error: {e}")
        sys.exit(1)


if __name__ == "__main__":
    main()
