"""Device measurements beside the host figure and the target's estimate, per device; and the warnings."""

from __future__ import annotations

from edgekiln.compiler.report import plots
from edgekiln.compiler.report.inputs import ReportInputs, block, dig, number, rows, texts
from edgekiln.compiler.report.page import Raw, Section, esc, figure, table, where


def _device_rows(inputs: ReportInputs) -> list[dict]:
    """measurements/*.json, then the manifest's latency.device entries that have no file."""
    found, seen = [], set()
    for r in inputs.measurements:
        seen.add(r.get("device_id"))
        lat, dev = block(r, "latency"), block(r, "device")
        found.append({"name": r.get("device_id"), "board": dev.get("board") or dev.get("cpu"), **lat,
                      "validated": r.get("status") == "ok", "when": r.get("measured_utc"), "error": r.get("error"),
                      "stale": dig(r, "bundle", "model_sha256") not in (None, dig(inputs.manifest, "model", "sha256"))})
    for e in rows(dig(inputs.manifest, "latency", "device")):
        if e.get("device") not in seen:
            found.append({**e, "name": e.get("device"), "when": e.get("measured_utc"), "stale": False})
    return found


def devices(inputs: ReportInputs) -> Section | None:
    found = _device_rows(inputs)
    if not found:
        return None
    m = inputs.manifest
    host, est = block(m, "latency", "host"), block(m, "latency", "target_estimate")
    labels, values, colors = [], [], []
    for label, value, color in ([("host (build machine)", host.get("p50_ms"), plots.GREY),
                                 (f"{dig(m, 'target', 'name') or 'target'} estimate", est.get("p50_ms"), plots.ORANGE)]
                                + [(f"device {d['name']}", d.get("p50_ms"), plots.BLUE) for d in found]):
        if number(value) is not None:
            labels.append(label)
            values.append(number(value))
            colors.append(color)
    body = ""
    if len(labels) > 1:
        svg = plots.hbars(labels, [plots.Bars("p50 ms", values, colors)], "p50 latency (ms)", "where", "devices",
                          [(plots.GREY, "host-measured p50"), (plots.ORANGE, "estimate p50 (cost model)"),
                           (plots.BLUE, "device-measured p50")])
        body += figure(svg, "p50 latency of the shipped model: on the build host, estimated for the target, and "
                            "measured on each device")
    body += table(["device", "board / CPU", "p50 ms", "p90 ms", "threads", "runtime", "validated", "measured", ""],
                  [[d["name"], d.get("board"), d.get("p50_ms"), d.get("p90_ms"), d.get("threads"),
                    f"{d.get('runtime') or ''} {d.get('runtime_version') or ''}".strip(),
                    d.get("validated"), d.get("when"),
                    Raw(where("device-measured") + (" another build of the model" if d.get("stale") else ""))
                    if d.get("p50_ms") is not None else d.get("error")]
                   for d in found], [2, 3, 4])
    return Section("devices", "Devices", body)


def warnings(inputs: ReportInputs) -> Section | None:
    notes = texts(inputs.manifest.get("warnings"))
    for r in inputs.measurements:
        notes += [f"device {r.get('device_id')}: {w}" for w in texts(r.get("warnings"))]
    if not notes:
        return None
    return Section("warnings", "Warnings", '<ul class="warnings">' + "".join(f"<li>{esc(n)}</li>" for n in notes)
                   + "</ul>")
