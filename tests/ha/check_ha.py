#!/usr/bin/env python3
"""Assertions against a real Home Assistant for tests/ha/check.sh.

Standard library only (Python >= 3.9). It talks to HA through the harness's
own client, ha_harness.py (REST + websocket registries), in
tests/ha/harness/. What HA should hold is derived from `host2mqtt check --json`
(--check-json): its discovery payload's `cmps`, one entity per component.

Every sub-command prints one short line when it passes and the details when
it fails, and exits 0 (pass) or 1 (fail):

  discovered  device and every expected entity appear (waits)
  device      device registry entry: identifiers, name, manufacturer, model, sw_version
  entities    entity_id == default_entity_id, unit, device_class, state_class,
              entity_category, unique_id, name; no extra entities on the device
  sane        states after the second cycle: numbers, 0..100 %, timestamps, on/off
  mount       a mount point's entities exist with values
  gone        a mount point's entities leave /api/states and the entity registry
  all-state   every entity reaches a state (e.g. unavailable), timed from --since
  steady      every entity stays available and sane for --duration seconds
  expire      after SIGSTOP: entities with expire_after go unavailable on time,
              those without (last_seen) keep their value
  log         HA's log since --offset has no error/warning about our device
  kinds       each --want KEY_GLOB=PLATFORM,DEVICE_CLASS,UNIT,STATE_CLASS
              (- for none, * for any): at least one announced entity
              matches KEY_GLOB, and every one is in HA with that platform,
              and (when enabled) that device_class, unit and state_class;
              --absent KEY_GLOB: no announced entity matches (e.g. a CPU
              temperature on a VM without sensors)
  values      every entity's state in HA is the value `check --json` computed
              (on fixture trees: the fixture's reading; numbers compared as
              numbers, true/false as on/off), but --skip KEY_GLOBs (clock,
              timings); each --expect KEY=STATE also holds literally
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import re
import shlex
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "harness"))
import ha_harness as H  # noqa: E402  (tests/ha/harness)

BAD = ("unknown", "unavailable")

# HA's discovery abbreviations that host2mqtt uses (src/discovery.rs
# ABBREVIATIONS, DEVICE_ABBREVIATIONS), expanded here as HA expands them.
ABBREVIATIONS = {
    "avty": "availability", "avty_mode": "availability_mode", "cmd_t": "command_topic",
    "def_ent_id": "default_entity_id", "dev_cla": "device_class", "en": "enabled_by_default",
    "ent_cat": "entity_category", "exp_aft": "expire_after", "ic": "icon",
    "json_attr_t": "json_attributes_topic", "json_attr_tpl": "json_attributes_template",
    "ops": "options", "pl_inst": "payload_install", "pl_prs": "payload_press",
    "stat_cla": "state_class", "stat_t": "state_topic", "sug_dsp_prc": "suggested_display_precision",
    "uniq_id": "unique_id", "unit_of_meas": "unit_of_measurement", "val_tpl": "value_template",
}
DEVICE_ABBREVIATIONS = {
    "ids": "identifiers", "mf": "manufacturer", "mdl": "model", "mdl_id": "model_id",
    "sa": "suggested_area", "sw": "sw_version", "url": "support_url",
}


def expand(obj, table):
    return {table.get(k, k): v for k, v in obj.items()}


def expand_payload(p):
    """The payload with HA's long key names (top level, dev, o, each component)."""
    p = expand(p, ABBREVIATIONS)
    for part in ("dev", "o"):
        if isinstance(p.get(part), dict):
            p[part] = expand(p[part], DEVICE_ABBREVIATIONS)
    cmps = {}
    for k, c in p.get("cmps", {}).items():
        c = expand(c, ABBREVIATIONS)
        if isinstance(c.get("availability"), list):
            c["availability"] = [expand(x, {"t": "topic", "val_tpl": "value_template"}) for x in c["availability"]]
        cmps[k] = c
    p["cmps"] = cmps
    return p


def ha_slugify(s):
    """HA's slugify for ASCII text (lower case, runs of anything else -> one _)."""
    return re.sub(r"_+", "_", re.sub(r"[^a-z0-9]", "_", s.lower())).strip("_")


def derived_entity_id(platform, device_name, name, area=""):
    """The entity id HA makes itself when there is no default_entity_id:
    <platform>.<slug of "[<area>] <device name> <entity name>"> (HA 2026.11
    puts a device's area in front)."""
    return f"{platform}.{ha_slugify(f'{area} {device_name} {name}')}"


# --------------------------------------------------------------------------
# what host2mqtt says HA should have
class Expected:
    def __init__(self, check_json: str, without_mounts=()):
        with open(check_json) as f:
            messages = json.load(f)
        disc = [m for m in messages if m["topic"].endswith("/config") and isinstance(m["payload"], dict)]
        if len(disc) != 1:
            raise SystemExit(f"{check_json}: expected one discovery message, found {len(disc)}")
        self.discovery_topic = disc[0]["topic"]
        st = [m for m in messages if m["topic"].endswith("/state") and isinstance(m["payload"], dict)]
        # The steady values (kernel, OS, updates) come on the retained info topic.
        info = [m for m in messages if m["topic"].endswith("/info") and isinstance(m["payload"], dict)]
        self.state_values = {**(info[0]["payload"] if len(info) == 1 else {}),
                             **(st[0]["payload"] if len(st) == 1 else {})}
        p = expand_payload(disc[0]["payload"])
        self.payload = p
        self.dev = p["dev"]
        self.state_topic = p.get("state_topic", "")
        self.availability_topic = p.get("availability_topic", "")
        self.idents = {("mqtt", i) for i in self.dev.get("identifiers", [])}
        # removal stubs ({"p": ...}) are not entities
        self.all_cmps = {k: c for k, c in p["cmps"].items() if "unique_id" in c}
        # Without default_entity_id HA names the entity from the device and
        # entity names; host2mqtt leaves it out only where that gives
        # <platform>.<node_id>_<key>.
        self.derived = set()
        for k, c in self.all_cmps.items():
            if "default_entity_id" not in c:
                c["default_entity_id"] = derived_entity_id(c["p"], self.dev.get("name", ""), c.get("name", ""),
                                                            self.dev.get("suggested_area", ""))
                self.derived.add(k)
        self.cmps = {k: c for k, c in self.all_cmps.items()
                     if not any(is_of_mount(c, m) for m in without_mounts)}

    def entity_ids(self, cmps=None):
        return {c["default_entity_id"]: (k, c) for k, c in (cmps or self.cmps).items()}

    def mount_cmps(self, mount):
        return {k: c for k, c in self.all_cmps.items() if is_of_mount(c, mount)}


def is_of_mount(c, mount):
    # The disk collector names its entities "Disk <mount point> used|free|...".
    return c.get("name", "").startswith(f"Disk {mount} ")


# --------------------------------------------------------------------------
# what HA has
class HAView:
    def __init__(self, env_file):
        self.ha, _ = H.connect(env_file)

    def states(self):
        return {s["entity_id"]: s for s in self.ha.get("/api/states")}

    def registry(self):
        return H.registry(self.ha)


def our_device(devices, exp):
    found = [d for d in devices if {tuple(i) for i in d.get("identifiers", [])} & exp.idents]
    return found[0] if len(found) == 1 else (None if not found else found)


def retry(fn, timeout, interval=0.25):
    """Calls fn() -> (ok, detail) until ok or timeout; returns the last result."""
    return H.until(fn, timeout, interval)


def fmt_list(items, limit=12):
    items = sorted(items)
    s = ", ".join(items[:limit])
    return s + (f", ... ({len(items)} in all)" if len(items) > limit else "")


# --------------------------------------------------------------------------
# sanity of one state
def parse_ts(s):
    t = dt.datetime.fromisoformat(s.replace("Z", "+00:00"))
    if t.tzinfo is None:
        raise ValueError("no time zone")
    return t


def insane(c, st):
    """Why this state is not a sane value for component c (None if sane)."""
    if st is None:
        return "no state in /api/states"
    s = st["state"]
    if s in BAD:
        return s
    if c["p"] == "binary_sensor":
        return None if s in ("on", "off") else f"{s!r} is not on/off"
    if c.get("device_class") == "timestamp":
        try:
            t = parse_ts(s)
        except ValueError as e:
            return f"{s!r} is not a timestamp ({e})"
        now = dt.datetime.now(dt.timezone.utc)
        if not (dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc) < t < now + dt.timedelta(minutes=1)):
            return f"timestamp {s} is not between 2000 and now"
        return None
    if c.get("unit_of_measurement") or c.get("state_class"):
        try:
            v = float(s)
        except ValueError:
            return f"{s!r} is not a number"
        if not math.isfinite(v):
            return f"{s!r} is not finite"
        if c.get("unit_of_measurement") == "%" and not 0 <= v <= 100:
            return f"{v} % is outside 0..100"
        if v < 0:
            return f"{v} is negative"
        return None
    return None if s.strip() else "empty text"


def insane_all(exp, states):
    bad = {}
    for eid, (_, c) in exp.entity_ids().items():
        if c.get("enabled_by_default") is False:
            continue
        why = insane(c, states.get(eid))
        if why:
            bad[eid] = why
    return bad


def enabled_ids(exp):
    return {eid for eid, (_, c) in exp.entity_ids().items() if c.get("enabled_by_default") is not False}


# --------------------------------------------------------------------------
# sub-commands
def cmd_discovered(a, exp, v):
    t0 = time.monotonic()
    want = set(exp.entity_ids())

    def probe():
        devices, ents = v.registry()
        d = our_device(devices, exp)
        if d is None:
            return False, f"no device with identifiers {sorted(exp.idents)} in the device registry"
        if isinstance(d, list):
            return False, f"{len(d)} devices with identifiers {sorted(exp.idents)}"
        reg = {e["entity_id"] for e in ents if e.get("device_id") == d["id"]}
        states = v.states()
        missing_reg = want - reg
        missing_st = enabled_ids(exp) - set(states)
        if missing_reg or missing_st:
            return False, (f"missing from the entity registry: {fmt_list(missing_reg) or '-'}; "
                           f"missing from /api/states: {fmt_list(missing_st) or '-'}")
        return True, ""
    ok, detail = retry(probe, a.timeout)
    if ok:
        print(f"device and {len(want)} entities in HA after {time.monotonic() - t0:.1f}s")
        return 0
    print(f"after {a.timeout}s: {detail}")
    return 1


def read_os_release():
    for path in ("/etc/os-release", "/usr/lib/os-release"):
        try:
            text = open(path).read()
        except OSError:
            continue
        out = {"NAME": "Linux", "PRETTY_NAME": "Linux"}
        for line in text.splitlines():
            line = line.strip()
            if line and not line.startswith("#") and "=" in line:
                k, raw = line.split("=", 1)
                try:
                    words = shlex.split(raw)
                except ValueError:
                    continue
                out[k.strip()] = " ".join(words)
        return out
    return {"NAME": "Linux", "PRETTY_NAME": "Linux"}


def cmd_device(a, exp, v):
    devices, _ = v.registry()
    d = our_device(devices, exp)
    if not isinstance(d, dict):
        print(f"device with identifiers {sorted(exp.idents)}: {'none' if d is None else f'{len(d)} of them'}")
        return 1
    osr = read_os_release()
    uname = os.uname()
    want = {
        "identifiers": sorted([["mqtt", f"host2mqtt_{a.node}"]]),
        "name": uname.nodename,
        "manufacturer": osr["NAME"],
        "model": osr["PRETTY_NAME"],
        "sw_version": uname.release,
    }
    if "model_id" in exp.dev:
        want["model_id"] = exp.dev["model_id"]
    got = dict(d, identifiers=sorted(d.get("identifiers") or []))
    bad = [f"{k}: HA has {got.get(k)!r}, expected {w!r}" for k, w in want.items() if got.get(k) != w]
    if bad:
        print("device registry entry differs:\n  " + "\n  ".join(bad))
        return 1
    print(f"{d['name']!r} identifiers={got['identifiers']} manufacturer={d['manufacturer']!r} "
          f"model={d['model']!r} sw_version={d['sw_version']!r}")
    return 0


def cmd_entities(a, exp, v):
    devices, ents = v.registry()
    d = our_device(devices, exp)
    if not isinstance(d, dict):
        print("our device is not (uniquely) in the device registry")
        return 1
    states = v.states()
    by_uid = {e["unique_id"]: e for e in ents if e.get("platform") == "mqtt"}
    on_device = {e["entity_id"]: e for e in ents if e.get("device_id") == d["id"]}
    problems = []
    for key in sorted(exp.derived & set(exp.cmps)):
        c = exp.cmps[key]
        if c["default_entity_id"] != f"{c['p']}.{a.node}_{key}":
            problems.append(f"{key}: no default_entity_id, and HA derives {c['default_entity_id']}, "
                            f"not {c['p']}.{a.node}_{key}")
    for eid, (key, c) in sorted(exp.entity_ids().items()):
        r = by_uid.get(c["unique_id"])
        if r is None:
            problems.append(f"{eid}: unique_id {c['unique_id']} not in the entity registry")
            continue
        if r["entity_id"] != eid:
            problems.append(f"{c['unique_id']}: HA made it {r['entity_id']}, default_entity_id is {eid}")
        if r.get("device_id") != d["id"]:
            problems.append(f"{eid}: on device {r.get('device_id')}, not ours ({d['id']})")
        if r.get("entity_category") != c.get("entity_category"):
            problems.append(f"{eid}: entity_category {r.get('entity_category')!r}, expected {c.get('entity_category')!r}")
        if r.get("original_name") != c.get("name"):
            problems.append(f"{eid}: name {r.get('original_name')!r}, expected {c.get('name')!r}")
        want_disabled = None if c.get("enabled_by_default", True) else "integration"
        if r.get("disabled_by") != want_disabled:
            problems.append(f"{eid}: disabled_by {r.get('disabled_by')!r}, expected {want_disabled!r}")
        if want_disabled:
            continue
        st = states.get(r["entity_id"])
        if st is None:
            problems.append(f"{eid}: not in /api/states")
            continue
        at = st.get("attributes", {})
        for attr in ("unit_of_measurement", "device_class", "state_class"):
            if at.get(attr) != c.get(attr):
                problems.append(f"{eid}: {attr} {at.get(attr)!r}, expected {c.get(attr)!r}")
    extra = set(on_device) - set(exp.entity_ids())
    if extra:
        problems.append(f"entities on the device that host2mqtt does not announce: {fmt_list(extra)}")
    if problems:
        print(f"{len(problems)} problem(s):\n  " + "\n  ".join(problems))
        return 1
    n = len(exp.cmps)
    kinds = {}
    for c in exp.cmps.values():
        kinds[c["p"]] = kinds.get(c["p"], 0) + 1
    diag = sum(1 for c in exp.cmps.values() if c.get("entity_category"))
    off = sum(1 for c in exp.cmps.values() if c.get("enabled_by_default") is False)
    print(f"{n} entities match ({', '.join(f'{v_} {k}' for k, v_ in sorted(kinds.items()))}; {diag} diagnostic; "
          f"{off} disabled by default: in the registry with disabled_by=integration, not in /api/states; "
          f"{len(exp.derived & set(exp.cmps))} without default_entity_id, named by HA)")
    return 0


def last_seen_id(exp):
    for eid, (key, c) in exp.entity_ids().items():
        if key == "last_seen":
            return eid
    return None


def cmd_sane(a, exp, v):
    t0 = time.monotonic()
    ls = last_seen_id(exp)
    if a.cycles > 1 and ls:
        # Wait for a newer cycle than the one HA shows now: after that, the
        # agent has published at least its second cycle.
        first = None

        def newer():
            nonlocal first
            st = v.states().get(ls)
            s = st["state"] if st else None
            if s in BAD or s is None:
                return False, f"{ls} is {s}"
            if first is None:
                first = s
            return s != first, f"{ls} stayed {s}"
        ok, detail = retry(newer, a.timeout)
        if not ok:
            print(f"no new cycle within {a.timeout}s: {detail}")
            return 1
    ok, bad = retry(lambda: ((b := insane_all(exp, v.states())) == {}, b), a.settle)
    if not ok:
        if isinstance(bad, str):
            print(bad)
            return 1
        print(f"{len(bad)} of {len(enabled_ids(exp))} entities without a sane state:\n  "
              + "\n  ".join(f"{k}: {w}" for k, w in sorted(bad.items())))
        return 1
    print(f"{len(enabled_ids(exp))} states sane after {time.monotonic() - t0:.1f}s")
    return 0


def cmd_mount(a, exp, v):
    cmps = exp.mount_cmps(a.mount)
    if not cmps:
        print(f"`host2mqtt check --json` reports no entity for {a.mount}")
        return 1
    ids = set(exp.entity_ids(cmps))

    def probe():
        states = v.states()
        _, ents = v.registry()
        reg = {e["entity_id"] for e in ents}
        bad = [f"{eid}: not in the entity registry" for eid in ids - reg]
        bad += [f"{eid}: {w}" for eid, (_, c) in exp.entity_ids(cmps).items()
                if c.get("enabled_by_default") is not False and (w := insane(c, states.get(eid)))]
        return not bad, bad
    ok, bad = retry(probe, a.timeout)
    if not ok:
        print("\n".join(bad) if isinstance(bad, list) else bad)
        return 1
    states = v.states()
    print(", ".join(f"{eid}={states[eid]['state'] if eid in states else '(disabled by default)'}"
                    for eid in sorted(ids)))
    return 0


def cmd_gone(a, exp, v):
    cmps = exp.mount_cmps(a.mount)
    if not cmps:
        print(f"`host2mqtt check --json` reports no entity for {a.mount}; nothing to watch")
        return 1
    ids = set(exp.entity_ids(cmps))
    uids = {c["unique_id"] for c in cmps.values()}
    since = a.since or time.time()

    def probe():
        in_states = ids & set(v.states())
        _, ents = v.registry()
        in_reg = {e["entity_id"] for e in ents if e["entity_id"] in ids or e.get("unique_id") in uids}
        return not in_states and not in_reg, (in_states, in_reg)
    ok, detail = retry(probe, max(0.0, since + a.timeout - time.time()))
    if not ok:
        if isinstance(detail, str):
            print(detail)
        else:
            print(f"{a.timeout}s after umount: still in /api/states: {fmt_list(detail[0]) or '-'}; "
                  f"still in the entity registry: {fmt_list(detail[1]) or '-'}")
        return 1
    print(f"{len(ids)} entities gone from /api/states and the entity registry {time.time() - since:.1f}s after umount")
    return 0


def cmd_all_state(a, exp, v):
    since = a.since or time.time()
    ids = enabled_ids(exp)

    def probe():
        states = v.states()
        off = {eid: (states[eid]["state"] if eid in states else "absent")
               for eid in ids if eid not in states or states[eid]["state"] != a.state}
        return not off, off
    ok, off = retry(probe, max(0.0, since + a.timeout - time.time()), interval=0.1)
    if not ok:
        if isinstance(off, str):
            print(off)
            return 1
        print(f"{a.timeout}s after {a.what}: {len(off)} of {len(ids)} not {a.state}: "
              + fmt_list(f"{k}={s}" for k, s in off.items()))
        return 1
    print(f"all {len(ids)} entities {a.state} {time.time() - since:.2f}s after {a.what}")
    return 0


def cmd_steady(a, exp, v):
    t_end = time.monotonic() + a.duration
    polls = 0
    while True:
        bad = insane_all(exp, v.states())
        polls += 1
        if bad:
            print(f"after {polls} polls: {len(bad)} entities not available/sane:\n  "
                  + "\n  ".join(f"{k}: {w}" for k, w in sorted(bad.items())))
            return 1
        if time.monotonic() >= t_end:
            break
        time.sleep(0.2)
    print(f"all {len(enabled_ids(exp))} entities available and sane in {polls} polls over {a.duration:.1f}s")
    return 0


def cmd_expire(a, exp, v):
    t_stop = a.since
    ids = exp.entity_ids()
    expiring = {eid for eid, (_, c) in ids.items() if "expire_after" in c and eid in enabled_ids(exp)}
    keep = {eid for eid, (_, c) in ids.items() if "expire_after" not in c and eid in enabled_ids(exp)}
    afters = {c["expire_after"] for eid, (_, c) in ids.items() if eid in expiring}
    if not expiring:
        print("no component has expire_after")
        return 1
    if afters != {a.expect_after}:
        print(f"expire_after in the discovery payload is {sorted(afters)}, expected {a.expect_after} (3 x interval)")
        return 1
    time.sleep(max(0.0, t_stop + 0.5 - time.time()))  # let a message in flight at SIGSTOP land
    before = v.states()
    kept = {eid: before[eid]["state"] if eid in before else None for eid in keep}
    went = {}
    early = {}
    problems = []
    t_max = t_stop + a.max
    while time.time() < t_max and len(went) < len(expiring):
        states = v.states()
        now = time.time() - t_stop
        for eid in expiring - set(went):
            if states.get(eid, {}).get("state") == "unavailable":
                went[eid] = now
                if now < a.min:
                    early[eid] = now
        for eid in keep:
            s = states.get(eid, {}).get("state")
            if s != kept[eid]:
                problems.append(f"{eid} changed from {kept[eid]!r} to {s!r} while the agent was stopped")
                kept[eid] = s
        time.sleep(0.1)
    if early:
        problems.append(f"unavailable too early (< {a.min}s after SIGSTOP, the last state was at most "
                        f"one interval before it): " + fmt_list(f"{k} at {t:.1f}s" for k, t in early.items()))
    stuck = expiring - set(went)
    if stuck:
        problems.append(f"still available {a.max}s after SIGSTOP: {fmt_list(stuck)}")
    for eid, s in kept.items():
        c = ids[eid][1]
        if s in BAD or s is None:
            problems.append(f"{eid} (no expire_after) is {s!r}, expected it to keep its last value")
        elif c.get("device_class") == "timestamp":
            try:
                parse_ts(s)
            except ValueError:
                problems.append(f"{eid} is {s!r}, not a timestamp")
    if problems:
        print("\n".join(problems))
        return 1
    times = sorted(went.values())
    print(f"{len(expiring)} entities with expire_after={a.expect_after} unavailable {times[0]:.1f}-{times[-1]:.1f}s "
          f"after SIGSTOP; {', '.join(f'{k} kept {s}' for k, s in sorted(kept.items()))}")
    return 0


LOG_RECORD = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?(?:[+-]\d\d:\d\d)? (\w+) ")


def cmd_log(a, exp, v):
    with open(a.log, "rb") as f:
        f.seek(a.offset)
        text = f.read().decode(errors="replace")
    records = []
    for line in text.splitlines():
        m = LOG_RECORD.match(line)
        if m:
            records.append([m.group(1), line])
        elif records:
            records[-1][1] += "\n" + line
    ours = [a.node, "host2mqtt", exp.discovery_topic, exp.state_topic, exp.availability_topic]
    keys = [f"value_json.{k}" for k in exp.all_cmps]
    flagged = []
    for level, rec in records:
        mentions = any(s and s in rec for s in ours) or any(k in rec for k in keys)
        mqtt = "[homeassistant.components.mqtt" in rec or re.search(r"\[homeassistant\.components\.[a-z_]+\.mqtt\]", rec)
        if level in ("ERROR", "WARNING", "CRITICAL") and (mentions or mqtt):
            flagged.append(rec)
        elif "Invalid MQTT device discovery payload" in rec or "when processing MQTT discovery message" in rec:
            flagged.append(rec)
        elif "Template variable" in rec and mentions:
            flagged.append(rec)
    if flagged:
        print(f"{len(flagged)} log record(s) about our device:\n" + "\n".join(r[:2000] for r in flagged))
        return 1
    print(f"{len(records)} log records since the agent started, none an error/warning about our device")
    return 0


def cmd_kinds(a, exp, v):
    import fnmatch
    devices, ents = v.registry()
    states = v.states()
    by_uid = {e["unique_id"]: e for e in ents if e.get("platform") == "mqtt"}
    problems, seen = [], []
    for want in a.want:
        glob, spec = want.split("=", 1)
        platform, dev_cla, unit, stat_cla = spec.split(",")
        keys = sorted(k for k in exp.cmps if fnmatch.fnmatchcase(k, glob))
        if not keys:
            problems.append(f"{glob}: no such entity announced")
            continue
        for k in keys:
            c = exp.cmps[k]
            r = by_uid.get(c["unique_id"])
            if r is None:
                problems.append(f"{k}: not in the entity registry")
                continue
            eid = r["entity_id"]
            if not eid.startswith(platform + "."):
                problems.append(f"{k}: {eid} is not a {platform}")
            if r["entity_id"] != f"{c['p']}.{a.node}_{k}":
                problems.append(f"{k}: entity id {eid}, expected {c['p']}.{a.node}_{k}")
            if r.get("disabled_by"):
                seen.append(f"{eid} (disabled by {r['disabled_by']})")
                continue
            at = (states.get(eid) or {}).get("attributes", {})
            for attr, w in (("device_class", dev_cla), ("unit_of_measurement", unit), ("state_class", stat_cla)):
                got = at.get(attr)
                if w == "*":
                    continue
                if (w == "-" and got is not None) or (w != "-" and got != w):
                    problems.append(f"{eid}: {attr} {got!r}, expected {None if w == '-' else w!r}")
            seen.append(f"{eid}={(states.get(eid) or {}).get('state')}")
    for glob in a.absent:
        keys = [k for k in exp.cmps if fnmatch.fnmatchcase(k, glob)]
        if keys:
            problems.append(f"{glob}: announced here ({', '.join(keys)}), expected none")
    if problems:
        print(f"{len(problems)} problem(s):\n  " + "\n  ".join(problems))
        return 1
    print(", ".join(seen) + (f"; none of {', '.join(a.absent)}" if a.absent else ""))
    return 0


def ha_state_of(c, value):
    """The state HA shows for this component when the state payload holds
    `value` under the component's key (plain `{{value_json.KEY}}` templates,
    and the binary sensors' true/false/null -> on/off/unknown)."""
    if c["p"] == "binary_sensor":
        return "unknown" if value is None else ("on" if value else "off")
    if value is None:
        return "unknown"
    return value if isinstance(value, str) else json.dumps(value)


def same_state(got, want):
    if got == want:
        return True
    try:
        return math.isclose(float(got), float(want), rel_tol=1e-9, abs_tol=1e-9)
    except (TypeError, ValueError):
        return False


def cmd_values(a, exp, v):
    import fnmatch
    states = v.states()
    problems, shown = [], []
    ids = {k: eid for eid, (k, _) in exp.entity_ids().items()}
    for k, c in sorted(exp.cmps.items()):
        if any(fnmatch.fnmatchcase(k, g) for g in a.skip):
            continue
        if c.get("value_template") != f"{{{{value_json.{k}}}}}" and c["p"] != "binary_sensor":
            continue  # a template of its own: `sane` covers it
        if k not in exp.state_values:
            problems.append(f"{k}: not in the state payload of `check --json`")
            continue
        want = ha_state_of(c, exp.state_values[k])
        got = (states.get(ids[k]) or {}).get("state")
        if not same_state(got, want):
            problems.append(f"{ids[k]}: HA shows {got!r}, the fixture gives {want!r}")
        else:
            shown.append(f"{k}={got}")
    for e in a.expect:
        k, want = e.split("=", 1)
        got = (states.get(ids.get(k, "")) or {}).get("state")
        if k not in ids:
            problems.append(f"{k}: no such entity announced")
        elif not same_state(got, want):
            problems.append(f"{ids[k]}: HA shows {got!r}, expected {want!r}")
    if problems:
        print(f"{len(problems)} problem(s):\n  " + "\n  ".join(problems))
        return 1
    print(", ".join(shown))
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", default=os.environ.get("HA_ENV"), help="the harness's ha.env")
    p.add_argument("--check-json", required=True, help="output of `host2mqtt check --json`")
    p.add_argument("--without-mount", action="append", default=[],
                   help="leave out this mount point's entities (it was unmounted)")
    p.add_argument("--node", default="hacheck")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("discovered"); s.add_argument("--timeout", type=float, default=20)
    sub.add_parser("device")
    sub.add_parser("entities")
    s = sub.add_parser("sane"); s.add_argument("--cycles", type=int, default=2)
    s.add_argument("--timeout", type=float, default=10); s.add_argument("--settle", type=float, default=2)
    s = sub.add_parser("mount"); s.add_argument("mount"); s.add_argument("--timeout", type=float, default=5)
    s = sub.add_parser("gone"); s.add_argument("mount"); s.add_argument("--since", type=float)
    s.add_argument("--timeout", type=float, default=10)
    s = sub.add_parser("all-state"); s.add_argument("state"); s.add_argument("--since", type=float)
    s.add_argument("--timeout", type=float, default=3); s.add_argument("--what", default="the event")
    s = sub.add_parser("steady"); s.add_argument("--duration", type=float, default=4)
    s = sub.add_parser("expire"); s.add_argument("--since", type=float, required=True)
    s.add_argument("--expect-after", type=int, default=6)
    s.add_argument("--min", type=float, default=3.5); s.add_argument("--max", type=float, default=9)
    s = sub.add_parser("log"); s.add_argument("--log", required=True); s.add_argument("--offset", type=int, default=0)
    s = sub.add_parser("kinds"); s.add_argument("--want", action="append", default=[])
    s.add_argument("--absent", action="append", default=[])
    s = sub.add_parser("values"); s.add_argument("--skip", action="append", default=[])
    s.add_argument("--expect", action="append", default=[])
    a = p.parse_args()
    exp = Expected(a.check_json, a.without_mount)
    v = HAView(a.env)
    fn = {"discovered": cmd_discovered, "device": cmd_device, "entities": cmd_entities, "sane": cmd_sane,
          "mount": cmd_mount, "gone": cmd_gone, "all-state": cmd_all_state, "steady": cmd_steady,
          "expire": cmd_expire, "log": cmd_log, "kinds": cmd_kinds,
          "values": cmd_values}[a.cmd]
    try:
        sys.exit(fn(a, exp, v))
    except H.HAError as e:
        print(f"HA error: {e}")
        sys.exit(1)


if __name__ == "__main__":
    main()
