"""Human-readable views of a JSON report: the terminal table and ``--markdown OUT``.

Pure functions from the report dict (``report.build_report``) to text, so every view
shows exactly the figures the JSON holds. Imports nothing of seamcut.
"""

from __future__ import annotations

from typing import Any

_PCT = ("p50", "p90", "p99", "max")
# The cut figure is measured from the look-ahead bound, so it is negative whenever the
# server decides a cut early (the usual case): "latency" alone reads as broken.
CUT_LABEL = "cut vs. look-ahead bound (ms)"


def _f(v: Any, nd: int = 1) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{nd}f}"
    return str(v)


def _rows(report: dict[str, Any]) -> list[tuple[str, list[str]]]:
    """(label, [p50, p90, p99, max, count]) rows of the latency-like distributions."""
    rows: list[tuple[str, dict[str, Any] | None]] = [
        ("ack latency (ms)", report["summary"]["ack_latency_ms"]),
        (CUT_LABEL, report["summary"]["cut_finalization_latency_ms"]),
    ]
    if "messages" in report:
        rows.append(("send lag (ms)", report["messages"]["send_lag_ms"]))
    for name, d in (report.get("stages_ms") or {}).items():
        rows.append((f"server {name} (ms)", d))
    if report.get("batch_size"):
        rows.append(("VAD batch size (streams)", report["batch_size"]))
    out = []
    for label, d in rows:
        if d is None:
            continue
        out.append((label, [_f(d.get(k)) for k in _PCT] + [_f(d.get("count"))]))
    return out


def _connected(report: dict[str, Any]) -> str:
    """`` (3 of 4 got Ready)`` when some opened streams never got Ready, else ``""``."""
    st = report.get("streams")
    if not isinstance(st, dict) or "connected" not in st or st["connected"] >= st["opened"]:
        return ""
    return f" ({st['connected']} of {st['opened']} got Ready)"


def _headline(report: dict[str, Any]) -> list[tuple[str, str]]:
    s = report["summary"]
    cfg = report["config"]
    rt = cfg.get("realtime_factor")
    items = [
        ("server", _f((report.get("server") or {}).get("target")
                      or (cfg.get("transport") or {}).get("target"))),
        ("mode", f"{cfg.get('mode')}, idle streams (config only)" if report.get("idle")
         else f"{cfg['mode']}, {cfg['chunk_ms']} ms chunks, "
         + ("flood" if rt is None else f"paced x{rt:g}")),
        ("streams", _f(s["streams"]) + _connected(report)),
        ("errors", _f(s["errors"])
         + (f" {report['errors']['by_code']}" if report.get("errors", {}).get("by_code")
            else "")),
        ("audio s / wall s", _f(s["audio_seconds_per_second"])
         + (f" (offered {cfg['streams'] * rt:g})" if rt is not None and not cfg.get("ramp")
            and not report.get("idle") else "")),
        ("look-ahead (ms)", _f(s["lookahead_ms"])),
    ]
    if "messages" in report:
        items.append(("messages / s", _f(report["messages"]["per_second"])))
    res = report.get("resources") or {}
    for who in ("client", "server"):
        r = res.get(who)
        if r:
            items.append((f"{who} CPU % of a core (p50 / max)",
                          f"{_f(r['cpu_percent']['p50'])} / {_f(r['cpu_percent']['max'])}"))
            items.append((f"{who} RSS max (MiB)", _f(r["rss_mib_max"])))
    ramp = report.get("ramp")
    if ramp:
        items.append(("ramp knee (streams)", _f(ramp["knee_streams"])))
    cmp_ = report.get("compare")
    if cmp_:
        ip, sv = cmp_.get("inprocess"), cmp_.get("silero_vad")
        if ip:
            items.append(("in-process audio s / wall s", _f(ip["audio_seconds_per_second"])))
        items.append(("gRPC / in-process", _f(cmp_.get("grpc_over_inprocess"), 3)))
        if sv:
            items.append(("silero get_speech_timestamps audio s / s",
                          _f(sv["audio_seconds_per_second"])))
    idle = report.get("idle")
    if idle:
        items.append(("server RSS per idle stream (KiB)",
                      _f(idle["server_rss_per_idle_stream_kib"])))
    verdict = report.get("verdict")
    if verdict:
        items.append(("verdict", "PASS" if verdict["passed"]
                      else "FAIL: " + "; ".join(verdict["reasons"])))
    return items


def terminal_table(report: dict[str, Any]) -> str:
    """The end-of-run table printed to stdout."""
    head = _headline(report)
    width = max(len(k) for k, _ in head)
    lines = [f"{k:<{width}}  {v}" for k, v in head]
    rows = _rows(report)
    if rows:
        lw = max(len(label) for label, _ in rows)
        lines.append("")
        lines.append(f"{'':<{lw}}  " + "".join(f"{h:>9}" for h in (*_PCT, "count")))
        lines.extend(f"{label:<{lw}}  " + "".join(f"{v:>9}" for v in vals)
                     for label, vals in rows)
    ramp = report.get("ramp")
    if ramp and ramp["steps"]:
        lines.append("")
        lines.append(f"{'streams':>8} {'ack p50':>8} {'ack p99':>8} {'cut-vs-bound p50':>17} "
                     f"{'cut-vs-bound p99':>17} {'audio-s/s':>10} {'errors':>7}  verdict")
        for st in ramp["steps"]:
            a, c = st["ack_latency_ms"], st["cut_finalization_latency_ms"]
            lines.append(
                f"{st['streams']:>8} {_f(a['p50']):>8} {_f(a['p99']):>8} {_f(c['p50'], 0):>17} "
                f"{_f(c['p99'], 0):>17} {_f(st['audio_seconds_per_second']):>10} "
                f"{st['errors']:>7}  "
                + ("pass" if st["passed"] else "FAIL: " + "; ".join(st["reasons"])))
    return "\n".join(lines)


def markdown(report: dict[str, Any]) -> str:
    """A Markdown summary: command, machine, date, the headline and latency tables."""
    m = report["machine"]
    out = [
        "# seamcut bench",
        "",
        f"`{report['command_line']}`",
        "",
        f"{report['date']} · {m.get('cpu_count')} CPUs ({m.get('cpu_model')}), "
        f"{m.get('ram_gib')} GiB RAM · Python {m.get('python')} · {m.get('platform')}",
        "",
        "| figure | value |",
        "|---|---|",
    ]
    out.extend(f"| {k} | {v} |" for k, v in _headline(report))
    rows = _rows(report)
    if rows:
        out += ["", "| distribution | p50 | p90 | p99 | max | count |", "|---|---|---|---|---|---|"]
        out.extend(f"| {label} | " + " | ".join(vals) + " |" for label, vals in rows)
        out += ["", f"{CUT_LABEL}: when the cut arrived relative to the server's worst-case "
                "bound (the send of the audio at cut + look-ahead); negative = before it."]
    ramp = report.get("ramp")
    if ramp and ramp["steps"]:
        out += ["", f"Ramp {ramp['start']}:{ramp['step']}:{ramp['every_s']:g} — knee "
                f"**{ramp['knee_streams']}** streams", "",
                "| streams | ack p50 | ack p99 | cut vs. bound p50 | cut vs. bound p99 "
                "| audio s/s | errors | |",
                "|---|---|---|---|---|---|---|---|"]
        for st in ramp["steps"]:
            a, c = st["ack_latency_ms"], st["cut_finalization_latency_ms"]
            out.append(f"| {st['streams']} | {_f(a['p50'])} | {_f(a['p99'])} | "
                       f"{_f(c['p50'], 0)} | {_f(c['p99'], 0)} | "
                       f"{_f(st['audio_seconds_per_second'])} | {st['errors']} | "
                       + ("pass" if st["passed"] else "; ".join(st["reasons"])) + " |")
    return "\n".join(out) + "\n"
