// The ACS web UI's only script. Every change it makes is a request to the
// operator API (/api/v1) with the session cookie and the page's CSRF token;
// the server renders the pages. No framework, no build step.
"use strict";

(() => {
  const csrf = document.querySelector('meta[name="csrf-token"]')?.content || "";
  const FLASH = "acs-flash";
  const BULK_MAX = 1000;
  const BULK_PARALLEL = 8;

  // ------------------------------------------------------------------ the API

  function urlWith(path, query) {
    if (!query) return path;
    const qs = new URLSearchParams();
    for (const [k, v] of Object.entries(query)) {
      if (v !== undefined && v !== null && v !== "") qs.set(k, String(v));
    }
    const s = qs.toString();
    return s ? path + (path.includes("?") ? "&" : "?") + s : path;
  }

  // Resolves to {ok, status, data, message}; never throws, so every caller
  // has one place to show what went wrong.
  async function api(method, path, { json, body, query, headers } = {}) {
    const h = { "X-CSRF-Token": csrf, Accept: "application/json", ...(headers || {}) };
    let payload = body;
    if (json !== undefined) {
      h["Content-Type"] = "application/json";
      payload = JSON.stringify(json);
    }
    let resp;
    try {
      resp = await fetch(urlWith(path, query), {
        method, headers: h, body: payload, credentials: "same-origin",
      });
    } catch (err) {
      return { ok: false, status: 0, data: null,
        message: `The ACS did not answer (${err.message}). Check the connection and try again.` };
    }
    let data = null;
    if ((resp.headers.get("Content-Type") || "").includes("application/json")) {
      try { data = await resp.json(); } catch { data = null; }
    }
    return { ok: resp.ok, status: resp.status, data, message: resp.ok ? "" : explain(resp.status, data) };
  }

  // The API's own words, with the path of each bad field.
  function explain(status, data) {
    const e = data && data.error;
    if (status === 401) return "Your session has ended. Sign in again, then retry.";
    let text = e && e.message ? e.message : `The ACS answered HTTP ${status}.`;
    if (e && e.code === "forbidden") text = `Not allowed: ${text}.`;
    const details = (e && e.errors) || [];
    if (details.length) {
      text += " — " + details.map((d) => (d.path ? `${d.path}: ${d.message}` : d.message)).join("; ");
    }
    return text;
  }

  // A job's outcome as an operator would say it.
  function jobOutcome(r, waitedS) {
    const t = r.data || {};
    const id = t.id ? `Job ${t.id} (${t.name})` : "The job";
    if (r.status === 201) return { ok: true, text: `${id} is queued; it runs at the device's next session.` };
    if (r.status === 202) {
      return { ok: true, text: `${id} is queued, but the device did not come within ${waitedS} s; it runs at its next contact.` };
    }
    if (r.status === 504) {
      const why = (t.connectionRequest && t.connectionRequest.reason) || "no reason given";
      return { ok: false, text: `${id} is queued, but the connection request failed: ${why}. It runs at the device's next Inform.` };
    }
    if (r.status === 200) {
      if (t.status === "done") return { ok: true, done: true, text: `${id} is done.` };
      const f = t.fault || {};
      if (t.status === "fault") {
        return { ok: false, text: `${id} failed: ${f.code ? `CPE fault ${f.code} ` : ""}${f.message || "no reason given"}.` };
      }
      return { ok: false, text: `${id} ended ${t.status}.` };
    }
    return { ok: false, text: r.message };
  }

  // ------------------------------------------------------------------ messages

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      node.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }

  function noticeArea(from) {
    let scope = from && from.closest("[data-notice-scope]");
    // a live update may have swapped the part while the request was out: the
    // answer goes to the part now on the page, not to the detached copy
    if (scope && !scope.isConnected && scope.id) scope = document.getElementById(scope.id);
    return (scope && scope.isConnected && scope.querySelector(".notice")) || document.getElementById("notice");
  }

  function say(from, kind, text) {
    const area = noticeArea(from);
    if (!area) return;
    const msg = el("div", { class: `msg msg-${kind}`, role: kind === "error" ? "alert" : "status" }, text);
    if (kind === "error" && /session has ended/.test(text)) {
      msg.append(" ", el("a", { href: `/ui/login?next=${encodeURIComponent(location.pathname + location.search)}` }, "Sign in"));
    }
    area.replaceChildren(msg);
    msg.scrollIntoView({ block: "nearest" });
  }

  // A message to show after the page reloads, so the outcome is not lost.
  function flash(kind, text) {
    sessionStorage.setItem(FLASH, JSON.stringify({ kind, text }));
  }

  function showFlash() {
    const raw = sessionStorage.getItem(FLASH);
    if (!raw) return;
    sessionStorage.removeItem(FLASH);
    try {
      const { kind, text } = JSON.parse(raw);
      say(null, kind, text);
    } catch { /* a stale or foreign value: nothing to show */ }
  }

  function finish(done, kind, text, from) {
    if (done === "reload") {
      flash(kind, text);
      location.reload();
    } else if (done && done.startsWith("go:")) {
      flash(kind, text);
      location.assign(done.slice(3));
    } else {
      say(from, kind, text);
    }
  }

  // ------------------------------------------------------------------ buttons

  // <button data-api="POST" data-path="/api/v1/..." data-body='{...}' data-query="a=b"
  //         data-confirm="..." data-done="reload|go:/ui/..." data-ok="..." data-kind="task|knock|knock-waiting|retry|selection"
  //         data-selected="name of the row checkboxes whose values become {"ids": [...]}">
  // the answer of POST /campaigns/{id}/knock or /bulk-jobs/{id}/knock, in words
  function knockWaitingText(k) {
    if (!k.waiting) return "No device is waiting: nothing to knock.";
    const counts = Object.entries(k.byChannel)
      .map(([ch, by]) => `${ch}: ` + Object.entries(by).map(([o, n]) => `${n} ${o}`).join(", "))
      .join("; ");
    let text = `Knocked ${k.knocked} of ${k.waiting} waiting devices (${counts}); ${k.reached} open a session now.`;
    if (k.unreachable.length) {
      const shown = k.unreachable.slice(0, 5).map((u) => `${u.device} (${u.reason})`).join(", ");
      const more = k.unreachable.length > 5 ? ` and ${k.unreachable.length - 5} more` : "";
      text += ` Not reached: ${shown}${more}.`;
    }
    if (k.remaining) text += ` ${k.remaining} still wait: knock again for the next ones.`;
    return text;
  }

  async function onApiButton(btn) {
    if (btn.dataset.confirm && !confirm(btn.dataset.confirm)) return;
    const query = Object.fromEntries(new URLSearchParams(btn.dataset.query || ""));
    const opts = { query };
    if (btn.dataset.body) opts.json = JSON.parse(btn.dataset.body);
    if (btn.dataset.selected) {
      // the checked rows of the button's own section: {"ids": [...]}
      const scope = btn.closest("[data-selection]") || document;
      const ids = [...scope.querySelectorAll(`input[name="${btn.dataset.selected}"]:checked`)]
        .map((box) => Number(box.value));
      if (!ids.length) return say(btn, "error", "Select at least one row first.");
      opts.json = { ids };
    }
    btn.disabled = true;
    btn.classList.add("busy");
    say(btn, "info", "Working…");
    try {
      const r = await api(btn.dataset.api, btn.dataset.path, opts);
      const kind = btn.dataset.kind;
      if (kind === "task") {
        const o = jobOutcome(r, query.timeout || 0);
        finish(o.ok ? "reload" : (r.data && r.data.id ? "reload" : ""), o.ok ? "ok" : "error", o.text, btn);
      } else if (kind === "knock") {
        if (!r.ok) return say(btn, "error", r.message);
        const c = r.data;
        say(btn, c.ok ? "ok" : "error", c.ok
          ? `The device answered the connection request${c.channel ? " over " + c.channel.toUpperCase() : ""} in ${c.elapsedS.toFixed(1)} s; it opens a session now.`
          : `The connection request failed: ${c.reason}.`);
      } else if (kind === "knock-waiting") {
        if (!r.ok) return say(btn, "error", r.message);
        say(btn, r.data.unreachable.length ? "error" : "ok", knockWaitingText(r.data));
      } else if (kind === "selection") {
        if (!r.ok) return say(btn, "error", r.message);
        const n = r.data.matched;
        finish(btn.dataset.done, "ok", `${n} job${n === 1 ? "" : "s"} ${r.data.action}.`, btn);
      } else if (kind === "retry") {
        if (!r.ok) return say(btn, "error", r.message);
        finish(btn.dataset.done, "ok", `${r.data.retried} failed devices get another round.`, btn);
      } else if (!r.ok) {
        say(btn, "error", r.message);
      } else {
        finish(btn.dataset.done, "ok", btn.dataset.ok || "Done.", btn);
      }
    } finally {
      btn.disabled = false;
      btn.classList.remove("busy");
    }
  }

  // ------------------------------------------------------------------ forms

  const text = (fd, name) => String(fd.get(name) ?? "").trim();
  const list = (value) => value.split(",").map((s) => s.trim()).filter(Boolean);
  const numberOrNull = (value) => (value === "" ? null : Number(value));

  function parseJson(value, what) {
    try {
      return JSON.parse(value);
    } catch (err) {
      throw new Error(`${what}: not valid JSON (${err.message}).`);
    }
  }

  async function queueTask(form, path, body, now) {
    const query = now ? { connection_request: "true", timeout: 30 } : {};
    const r = await api("POST", path, { json: body, query });
    const o = jobOutcome(r, 30);
    // a job that ran changed what the page shows: reload to show it
    finish(o.ok || (r.data && r.data.id) ? "reload" : "", o.ok ? "ok" : "error", o.text, form);
  }

  const actions = {
    async "set-param"(form, fd) {
      const param = text(fd, "param");
      const triple = [param, String(fd.get("value") ?? "")];
      if (text(fd, "type")) triple.push(text(fd, "type"));
      await queueTask(form, form.dataset.path, { name: "setParameterValues", parameterValues: [triple] }, fd.get("now"));
    },

    async task(form, fd) {
      const name = text(fd, "name");
      let args = {};
      if (fd.has("args")) args = parseJson(text(fd, "args") || "{}", "The arguments");
      if (fd.has("fileName")) {
        const opt = form.querySelector('select[name="fileName"]').selectedOptions[0];
        args = { fileName: text(fd, "fileName"), fileType: opt ? opt.dataset.type : undefined };
      }
      if (typeof args !== "object" || Array.isArray(args) || args === null) throw new Error("The arguments must be a JSON object.");
      await queueTask(form, form.dataset.path, { ...args, name }, fd.get("now"));
    },

    async "tag-add"(form, fd) {
      const r = await api("POST", form.dataset.path, { json: { tags: [text(fd, "tag")] } });
      if (!r.ok) throw new Error(r.message);
      finish("reload", "ok", `Tag ${text(fd, "tag")} added.`, form);
    },

    async "upload-file"(form, fd) {
      const file = fd.get("file");
      if (!file || !file.name) throw new Error("Choose a file to upload.");
      const name = text(fd, "name") || file.name;
      say(form, "info", `Uploading ${name} (${file.size} bytes)…`);
      const r = await api("PUT", `/api/v1/files/${encodeURIComponent(name)}`, {
        body: file,
        headers: { "Content-Type": "application/octet-stream" },
        query: {
          fileType: text(fd, "fileType"), version: text(fd, "version"), oui: text(fd, "oui"),
          productClass: text(fd, "productClass"), hardwareVersions: text(fd, "hardwareVersions"),
          replace: fd.get("replace") ? "true" : "",
        },
      });
      if (!r.ok) throw new Error(r.message);
      finish("reload", "ok", `Uploaded ${r.data.name}: ${r.data.size} bytes, SHA-256 ${r.data.sha256.slice(0, 12)}…`, form);
    },

    async "add-image"(form, fd) {
      const body = {
        file: text(fd, "file"), oui: text(fd, "oui"), productClass: text(fd, "productClass"),
        hardwareVersions: list(text(fd, "hardwareVersions")), version: text(fd, "version"),
        channel: text(fd, "channel") || "stable", allowDowngrade: !!fd.get("allowDowngrade"),
        releaseNotes: text(fd, "releaseNotes"),
      };
      if (text(fd, "minVersion")) body.minVersion = text(fd, "minVersion");
      if (text(fd, "regionName")) {
        body.region = { name: text(fd, "regionName"), source: text(fd, "regionSource"), values: list(text(fd, "regionValues")) };
        if (body.region.source === "parameter") body.region.parameter = text(fd, "regionParameter");
      }
      const r = await api("POST", "/api/v1/firmware/images", { json: body });
      if (!r.ok) throw new Error(r.message);
      finish("reload", "ok", `Image #${r.data.id} (${r.data.version}) is in the catalog.`, form);
    },

    async campaign(form, fd, submitter) {
      const stages = list(text(fd, "stages")).map((size) => ({
        size, successThreshold: text(fd, "successThreshold") || "100%",
        failureThreshold: text(fd, "failureThreshold") || "10%",
        onSuccess: text(fd, "onSuccess"), onFailure: text(fd, "onFailure"),
      }));
      const body = {
        name: text(fd, "name"), filter: text(fd, "filter"), stages,
        maxInFlight: numberOrNull(text(fd, "maxInFlight")), startsPerMinute: numberOrNull(text(fd, "startsPerMinute")),
        maxAttempts: Number(text(fd, "maxAttempts") || 3), rollback: !!fd.get("rollback"),
        connectionRequest: !!fd.get("connectionRequest"), priority: Number(text(fd, "priority") || 0),
        windows: [],
      };
      if (text(fd, "image")) body.image = Number(text(fd, "image"));
      if (text(fd, "channel")) body.channel = text(fd, "channel");
      if (text(fd, "windowCron")) {
        body.windows.push({ cron: text(fd, "windowCron"), durationMinutes: Number(text(fd, "windowMinutes") || 60), timezone: text(fd, "windowTimezone") || "UTC" });
      }
      const preview = submitter && submitter.value === "preview";
      const r = await api("POST", "/api/v1/campaigns", { json: body, query: preview ? { dryRun: "true" } : {} });
      if (!r.ok) throw new Error(r.message);
      if (preview) return showPreview(form.querySelector(".out"), r.data);
      finish(`go:/ui/campaigns/${r.data.id}`, "ok", `Campaign ${r.data.name} created as a draft. Start it when ready.`, form);
    },

    async "policy-save"(form, fd) {
      const doc = form.policyDoc ? form.policyDoc() : parseJson(String(fd.get("doc")), "The policy");
      const r = await api(form.dataset.method, form.dataset.path, { json: doc });
      if (!r.ok) throw new Error(r.message);
      finish(`go:/ui/policies/${r.data.id}`, "ok", `Policy ${r.data.name} saved (version ${r.data.version}).`, form);
    },

    async "backup-restore"(form, fd) {
      const target = text(fd, "targetDevice");
      const r = await api("POST", form.dataset.path, { json: target ? { targetDevice: target } : {} });
      if (!r.ok) throw new Error(r.message);
      finish("reload", "ok", `Restore queued as job ${r.data.id} for ${r.data.device}; it runs at its next session.`, form);
    },

    async "policy-dry-run"(form, fd) {
      // the editor's content, saved or not: POST /policies/dry-run checks it as a save would
      const editor = document.getElementById(form.dataset.editor);
      const r = await api("POST", form.dataset.path, {
        json: editor.policyDoc(), query: { device: text(fd, "device"), policy: form.dataset.policy },
      });
      if (!r.ok) throw new Error(r.message);
      showDryRun(form.parentElement.querySelector(".out"), r.data);
    },

    async "user-create"(form, fd) {
      const body = { username: text(fd, "username"), password: String(fd.get("password")), role: text(fd, "role") };
      const r = await api("POST", "/api/v1/users", { json: body });
      if (!r.ok) throw new Error(r.message);
      finish("reload", "ok", `User ${r.data.username} created (${r.data.role}).`, form);
    },

    async "user-role"(form, fd) {
      const r = await api("PATCH", form.dataset.path, { json: { role: text(fd, "role") } });
      if (!r.ok) throw new Error(r.message);
      finish("reload", "ok", `${r.data.username} is now ${r.data.role}.`, form);
    },

    async "user-password"(form, fd) {
      const r = await api("PATCH", form.dataset.path, { json: { password: String(fd.get("password")) } });
      if (!r.ok) throw new Error(r.message);
      finish("reload", "ok", `Password of ${r.data.username} changed; their sessions ended.`, form);
    },

    async "own-password"(form, fd) {
      const r = await api("POST", "/api/v1/me/password", { json: { current: String(fd.get("current")), new: String(fd.get("new")) } });
      if (!r.ok) throw new Error(r.message);
      finish("go:/ui/login", "ok", "Password changed. Sign in with the new one.", form);
    },

    async "bulk-job-create"(form, fd, submitter) {
      const body = {
        name: text(fd, "name"),
        filter: text(fd, "filter"),
        task: bulkJobTask(fd),
        ratePerMinute: Number(fd.get("ratePerMinute") || 60),
        connectionRequest: !!fd.get("connectionRequest"),
      };
      if (text(fd, "expiry")) body.expiry = Number(fd.get("expiry"));
      if (text(fd, "startAt")) body.startAt = new Date(text(fd, "startAt")).toISOString();
      if (text(fd, "windowCron")) {
        body.windows = [{ cron: text(fd, "windowCron"), durationMinutes: Number(fd.get("windowMinutes") || 60),
          timezone: Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC" }];
      }
      const preview = submitter && submitter.value === "preview";
      const r = await api("POST", "/api/v1/bulk-jobs", { json: body, query: preview ? { dryRun: "true" } : {} });
      if (!r.ok) throw new Error(r.message);
      const out = form.parentElement.querySelector(".out");
      if (preview) {
        const shown = r.data.sample.slice(0, 10);
        return fill(out, el("p", { class: "msg msg-ok", role: "status" },
          `Dry run: the job would reach ${r.data.devices} device(s)`, shown.length ? ", for example " : ".",
          ...shown.flatMap((id, i) => (i ? [", ", deviceLink(id)] : [deviceLink(id)]))));
      }
      finish(`go:/ui/bulk-jobs/${r.data.id}`, "ok", `Bulk job #${r.data.id} started on ${r.data.total} device(s).`, form);
    },

    async "webhook-create"(form, fd) {
      const events = fd.getAll("events").map(String);
      if (!events.length) throw new Error("Choose at least one event.");
      const r = await api("POST", "/api/v1/webhooks", { json: { url: text(fd, "url"), events } });
      if (!r.ok) throw new Error(r.message);
      fill(form.parentElement.querySelector(".out"),
        el("div", { class: "msg msg-ok", role: "status" },
          `Webhook #${r.data.id} added. Its signing secret, shown once (verify X-ACS-Signature with it): `,
          el("code", { class: "secret" }, r.data.secret)),
        el("p", {}, el("a", { href: "/ui/webhooks" }, "Back to the list")));
    },

    async "token-create"(form, fd) {
      const r = await api("POST", "/api/v1/tokens", { json: { name: text(fd, "name"), role: text(fd, "role") } });
      if (!r.ok) throw new Error(r.message);
      form.parentElement.querySelector(".out").replaceChildren(
        el("div", { class: "msg msg-ok", role: "status" },
          `Token ${r.data.name} (${r.data.role}) created. Copy it now; it is not shown again: `,
          el("code", { class: "secret" }, r.data.token)));
    },

    bulk: runBulk,
  };

  async function onForm(form, submitter) {
    const run = actions[form.dataset.action];
    if (!run) return;
    const buttons = form.querySelectorAll("button");
    buttons.forEach((b) => { b.disabled = true; });
    try {
      await run(form, new FormData(form), submitter);
    } catch (err) {
      say(form, "error", err.message || String(err));
    } finally {
      buttons.forEach((b) => { b.disabled = false; });
    }
  }

  // ------------------------------------------------------------------ results drawn in the page

  function deviceLink(id) {
    return el("a", { href: `/ui/devices/${encodeURIComponent(id)}` }, id);
  }

  // replaceChildren, leaving out the parts a condition left null (DOM's own
  // replaceChildren would print them as the text "null")
  function fill(node, ...children) {
    node.replaceChildren(...children.filter((c) => c !== null && c !== undefined && c !== false));
  }

  function showPreview(out, p) {
    const rows = p.stages.map((s) => el("tr", {},
      el("td", {}, s.stage), el("td", {}, s.devices),
      el("td", {}, s.sample.slice(0, 5).flatMap((id, i) => (i ? [", ", deviceLink(id)] : [deviceLink(id)])),
        s.sample.length > 5 ? ` and ${s.devices - 5} more` : "")));
    const skipped = Object.entries(p.skipped).map(([why, n]) => el("li", {}, `${n} skipped: ${why}`));
    const overlap = Object.entries(p.overlapping).map(([cid, n]) => el("li", {}, `${n} devices are also in campaign #${cid}`));
    fill(out,
      el("h3", {}, `Dry run: ${p.audience} devices would take part`),
      el("table", {}, el("thead", {}, el("tr", {}, el("th", {}, "Stage"), el("th", {}, "Devices"), el("th", {}, "For example"))),
        el("tbody", {}, rows)),
      p.outsideStages ? el("p", {}, `${p.outsideStages} eligible devices fall beyond the last stage.`) : null,
      skipped.length ? el("ul", {}, skipped) : el("p", { class: "muted" }, "No device is skipped."),
      overlap.length ? el("ul", {}, overlap) : null);
  }

  function showDryRun(out, d) {
    const items = (arr, fmt) => (arr.length ? el("ul", {}, arr.map((x) => el("li", {}, fmt(x)))) : el("p", { class: "muted" }, "none"));
    out.replaceChildren(
      el("p", {}, d.matches ? "The device matches the precondition now." : "The device does not match the precondition now: nothing would apply."),
      el("h3", {}, "Values to set"), items(d.set, (c) => `${c.path}: ${c.from ?? "(missing)"} → ${c.to}`),
      el("h3", {}, "Instances to add"), items(d.add, (x) => x),
      el("h3", {}, "Instances to delete"), items(d.delete, (x) => x),
      el("h3", {}, "Notifications"), items(d.attributes, (a) => `${a.path}: ${a.from ?? "?"} → ${a.to}`),
      el("h3", {}, "Faults"), items(d.faults, (f) => JSON.stringify(f)));
  }

  // ------------------------------------------------------------------ bulk actions

  function bulkRequest(fd) {
    const action = text(fd, "action");
    if (action === "reboot") return { label: "Reboot", task: { name: "reboot" } };
    if (action === "set") {
      if (!text(fd, "path")) throw new Error("Name the parameter to set.");
      const triple = [text(fd, "path"), String(fd.get("value") ?? "")];
      if (text(fd, "type")) triple.push(text(fd, "type"));
      return { label: `Set ${triple[0]} = ${triple[1]}`, task: { name: "setParameterValues", parameterValues: [triple] } };
    }
    if (action === "download") {
      if (!text(fd, "file")) throw new Error("Upload a file first (Files & firmware).");
      const opt = document.querySelector(`#bulk select[name="file"] option[value="${CSS.escape(text(fd, "file"))}"]`);
      return { label: `Push ${text(fd, "file")}`, task: { name: "download", fileName: text(fd, "file"), fileType: opt ? opt.dataset.type : undefined } };
    }
    const tag = text(fd, "tag");
    if (!tag) throw new Error("Give the tag.");
    return action === "tag-add" ? { label: `Tag with ${tag}`, tag, add: true } : { label: `Remove tag ${tag}`, tag, add: false };
  }

  // the task of the Bulk jobs page's form, in the API's shape
  function bulkJobTask(fd) {
    const action = text(fd, "action");
    if (action === "json") return parseJson(text(fd, "task"), "The job");
    const what = bulkRequest(fd);
    return what.task;
  }

  // <input data-match-count="ID">: how many devices the filter matches, and the
  // first of them, said in #ID as the operator types (one request per pause)
  function matchCount(input) {
    const out = document.getElementById(input.dataset.matchCount);
    let timer = null;
    let asked = 0;
    const ask = async () => {
      const mine = ++asked;
      const filter = input.value.trim();
      if (!filter) return fill(out);
      const r = await api("GET", "/api/v1/devices", { query: { filter, limit: 5 } });
      if (mine !== asked) return; // a newer question is on its way
      if (!r.ok) return fill(out, el("p", { class: "msg msg-error" }, r.message));
      const ids = r.data.items.map((d) => d.id);
      fill(out, el("p", { class: "muted" }, `${r.data.total} device(s) match`,
        ids.length ? ": " : "", ...ids.flatMap((id, i) => (i ? [", ", deviceLink(id)] : [deviceLink(id)])),
        r.data.total > ids.length ? " …" : ""));
    };
    input.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(ask, 400); });
    if (input.value.trim()) ask();
  }

  async function bulkTargets(fd) {
    if (text(fd, "scope") === "matching") {
      const r = await api("GET", "/api/v1/devices", { query: { filter: text(fd, "filter"), limit: BULK_MAX } });
      if (!r.ok) throw new Error(r.message);
      if (r.data.total > BULK_MAX) {
        throw new Error(`${r.data.total} devices match; a bulk action takes at most ${BULK_MAX}. Narrow the filter.`);
      }
      return r.data.items.map((d) => d.id);
    }
    return [...document.querySelectorAll('input[name="sel"]:checked')].map((i) => i.value);
  }

  async function runBulk(form, fd) {
    const what = bulkRequest(fd);
    if (what.task && text(fd, "scope") === "matching") {
      // every device of the filter, however many: one bulk job, queued at its rate
      // by the ACS, watched on its own page
      if (!text(fd, "filter")) throw new Error("Give a filter first: a bulk job never takes every device by accident.");
      if (!confirm(`${what.label} on every device matching the filter, as a bulk job?`)) return;
      const r = await api("POST", "/api/v1/bulk-jobs", { json: {
        name: what.label, filter: text(fd, "filter"), task: what.task, connectionRequest: !!fd.get("knock") } });
      if (!r.ok) throw new Error(r.message);
      return finish(`go:/ui/bulk-jobs/${r.data.id}`, "ok", `Bulk job #${r.data.id} started on ${r.data.total} device(s).`, form);
    }
    const ids = await bulkTargets(fd);
    if (!ids.length) throw new Error("Tick at least one device in the table, or choose all matching devices.");
    if (ids.length > BULK_MAX) throw new Error(`At most ${BULK_MAX} devices at once.`);
    if (!confirm(`${what.label} on ${ids.length} device(s)?`)) return;
    const out = form.querySelector(".out");
    const knock = !!fd.get("knock");
    const failures = [];
    let done = 0;
    const progress = el("p", { role: "status" });
    out.replaceChildren(progress);
    const one = async (id) => {
      const base = `/api/v1/devices/${encodeURIComponent(id)}`;
      let r;
      if (what.task) {
        // a short wait: the point of knocking here is to start sessions, not to watch each one
        r = await api("POST", `${base}/tasks`, { json: what.task, query: knock ? { connection_request: "true", timeout: 1 } : {} });
        if (r.status === 504) r = { ok: false, message: jobOutcome(r, 1).text };
        else if (r.status === 200 && r.data.status !== "done") r = { ok: false, message: jobOutcome(r, 1).text };
      } else if (what.add) {
        r = await api("POST", `${base}/tags`, { json: { tags: [what.tag] } });
      } else {
        r = await api("DELETE", `${base}/tags/${encodeURIComponent(what.tag)}`);
      }
      if (!r.ok) failures.push([id, r.message]);
      done += 1;
      progress.textContent = `${done} of ${ids.length} done${failures.length ? `, ${failures.length} failed` : ""}…`;
    };
    const queue = [...ids];
    const workers = Array.from({ length: Math.min(BULK_PARALLEL, queue.length) }, async () => {
      while (queue.length) await one(queue.shift());
    });
    await Promise.all(workers);
    progress.textContent = `${what.label}: ${ids.length - failures.length} of ${ids.length} device(s) done.`;
    progress.className = failures.length ? "msg msg-error" : "msg msg-ok";
    if (failures.length) {
      out.append(el("ul", { class: "details" }, failures.map(([id, m]) => el("li", {}, deviceLink(id), `: ${m}`))));
    }
  }

  // ------------------------------------------------------------------ live parts

  // <main data-live="topic,topic">: the page listens to the ACS's server-sent
  // events (GET /api/v1/events) and, when a topic changes, re-fetches its
  // [data-live-part] elements: from the page itself (matched by id), or from
  // data-live-src, a fragment. No timer: nothing is fetched while nothing changes.
  function live(root) {
    let busy = false;
    let again = false;
    const state = (s) => { document.documentElement.dataset.liveState = s; };

    // a part the operator is typing in waits until they leave it; ticked
    // checkboxes stay ticked (a selection is theirs, not the server's)
    function swap(part, fresh) {
      const active = document.activeElement;
      if (active && part.contains(active) && active.matches("input:not([type=checkbox]), select, textarea")) {
        part.addEventListener("focusout", () => setTimeout(refresh, 0), { once: true });
        return;
      }
      const ticked = new Set([...part.querySelectorAll("input[type=checkbox]:checked")]
        .map((box) => `${box.name}\u0000${box.value}`));
      for (const box of fresh.querySelectorAll("input[type=checkbox]")) {
        if (ticked.has(`${box.name}\u0000${box.value}`)) box.checked = true;
      }
      keepWhatIsInHand(part, fresh);
      part.replaceWith(fresh);
    }

    // The server's copy knows nothing of what the operator has in hand: a
    // message they were just given, a form they opened, what they typed and
    // left. Those move over to the fresh part (matched by position, as the
    // template renders them in the same order), so a change elsewhere in the
    // fleet never erases an error before it is read.
    function keepWhatIsInHand(part, fresh) {
      const pairs = (selector) => {
        const fresher = fresh.querySelectorAll(selector);
        return [...part.querySelectorAll(selector)].map((old, i) => [old, fresher[i]]).filter(([, f]) => f);
      };
      for (const [old, f] of pairs(".notice")) if (old.childNodes.length) f.replaceChildren(...old.childNodes);
      for (const [old, f] of pairs("details")) f.open = old.open;
      for (const [old, f] of pairs("form[data-action]")) {
        const twins = [...f.elements];
        [...old.elements].forEach((field, i) => {
          const twin = twins[i];
          if (!twin || twin.name !== field.name || twin.type !== field.type || !field.name) return;
          if (field.type === "checkbox" || field.type === "radio") {
            if (field.checked !== field.defaultChecked) twin.checked = field.checked;
          } else if (field.tagName === "SELECT") {
            if ([...field.options].some((o) => o.selected !== o.defaultSelected)) twin.value = field.value;
          } else if (field.type !== "hidden" && field.type !== "file" && field.value !== field.defaultValue) {
            twin.value = field.value;
          }
        });
      }
    }

    async function fetchHtml(url) {
      const resp = await fetch(url, { credentials: "same-origin", headers: { Accept: "text/html" } });
      if (resp.redirected || resp.status === 401) throw new Error("signed out");
      return resp.ok ? resp.text() : null;
    }

    async function refresh() {
      if (busy) { again = true; return; }
      busy = true;
      try {
        const parts = [...document.querySelectorAll("[data-live-part]")];
        const own = parts.filter((p) => !p.dataset.liveSrc);
        if (own.length) {
          const text = await fetchHtml(location.href);
          if (text !== null) {
            const doc = new DOMParser().parseFromString(text, "text/html");
            for (const part of own) {
              const fresh = doc.getElementById(part.id);
              if (fresh) swap(part, document.adoptNode(fresh));
            }
          }
        }
        for (const part of parts.filter((p) => p.dataset.liveSrc)) {
          const text = await fetchHtml(part.dataset.liveSrc);
          // our own server's template output, escaped there; not user-supplied HTML
          if (text !== null) part.innerHTML = text;
        }
        const n = Number(document.documentElement.dataset.liveUpdates || 0) + 1;
        document.documentElement.dataset.liveUpdates = String(n);
      } catch {
        say(root, "error", "Your session has ended. Sign in again, then retry.");
      } finally {
        busy = false;
        if (again) { again = false; refresh(); }
      }
    }

    const source = new EventSource(urlWith("/api/v1/events", { topics: root.dataset.live }));
    source.addEventListener("ready", () => state("ready"));
    source.addEventListener("change", refresh);
    // the ACS may have missed changes (it reconnected to PostgreSQL, or we did)
    source.addEventListener("resync", refresh);
    source.addEventListener("error", () => {
      // EventSource retries by itself; CLOSED means the ACS refused (signed out)
      state(source.readyState === EventSource.CLOSED ? "closed" : "reconnecting");
    });
    window.addEventListener("pagehide", () => source.close());
  }

  // ------------------------------------------------------------------ the policy editor

  // <form data-policy-editor>: a form over the policy's JSON (the textarea
  // "doc"), one document in two views. Fields the form has no inputs for
  // (windows, refresh, download, backup) ride along untouched.
  const FORM_KEYS = ["name", "description", "enabled", "priority", "precondition", "events",
    "parameters", "objects", "attributes", "tags"];

  // "A=1, B=two" <-> {"A": "1", "B": "two"}
  function pairsText(obj) {
    return Object.entries(obj || {}).map(([k, v]) => `${k}=${v}`).join(", ");
  }
  function pairsOf(value, what) {
    const out = {};
    for (const part of list(value)) {
      const at = part.indexOf("=");
      if (at < 1) throw new Error(`${what}: write Name=value pairs separated by commas (got "${part}").`);
      out[part.slice(0, at).trim()] = part.slice(at + 1).trim();
    }
    return out;
  }

  function policyEditor(form) {
    const doc = form.querySelector('textarea[name="doc"]');
    const field = (name) => form.querySelector(`[name="${name}"]`);
    const box = (name) => form.querySelector(`[data-rows="${name}"]`);
    const eventBoxes = [...form.querySelectorAll('input[name="pe-event"]')];
    let extra = {};
    let view = "json";

    function addRow(kind, values) {
      const row = document.getElementById(`pe-row-${kind}`).content.firstElementChild.cloneNode(true);
      for (const [k, v] of Object.entries(values || {})) {
        const input = row.querySelector(`[name="${k}"]`);
        if (input && v !== undefined && v !== null) input.value = String(v);
      }
      box(kind).append(row);
      return row;
    }

    function toForm(d) {
      if (typeof d !== "object" || d === null || Array.isArray(d)) throw new Error("The policy must be a JSON object.");
      field("pe-name").value = d.name ?? "";
      field("pe-description").value = d.description ?? "";
      field("pe-enabled").checked = d.enabled !== false;
      field("pe-priority").value = d.priority ?? 0;
      const events = d.events || [];
      for (const b of eventBoxes) b.checked = events.includes(b.value);
      field("pe-events-other").value = events.filter((e) => !eventBoxes.some((b) => b.value === e)).join(", ");
      field("pe-precondition").value = d.precondition ?? "";
      for (const kind of ["parameters", "objects", "attributes"]) box(kind).replaceChildren();
      for (const p of d.parameters || []) addRow("parameters", { path: p.path, value: p.value, type: p.type || "" });
      for (const o of d.objects || []) {
        addRow("objects", { path: o.path, count: o.count ?? "", keys: pairsText(o.keys), parameters: pairsText(o.parameters) });
      }
      for (const a of d.attributes || []) addRow("attributes", { path: a.path, notification: a.notification });
      field("pe-tags-add").value = ((d.tags || {}).add || []).join(", ");
      field("pe-tags-remove").value = ((d.tags || {}).remove || []).join(", ");
      extra = Object.fromEntries(Object.entries(d).filter(([k]) => !FORM_KEYS.includes(k)));
      const kept = Object.keys(extra);
      form.querySelector("[data-pe-extra]").textContent = kept.length
        ? `Also in this policy, kept as they are (edit them in the JSON view): ${kept.join(", ")}.` : "";
      checkPrecondition();
    }

    function fromForm() {
      const rows = (kind) => [...box(kind).querySelectorAll(".pe-row")];
      const val = (row, name) => row.querySelector(`[name="${name}"]`).value.trim();
      const d = {
        name: field("pe-name").value.trim(),
        description: field("pe-description").value.trim(),
        enabled: field("pe-enabled").checked,
        priority: Number(field("pe-priority").value || 0),
        precondition: field("pe-precondition").value.trim(),
        events: [...eventBoxes.filter((b) => b.checked).map((b) => b.value), ...list(field("pe-events-other").value)],
        parameters: rows("parameters").map((r) => {
          const p = { path: val(r, "path"), value: r.querySelector('[name="value"]').value };
          if (val(r, "type")) p.type = val(r, "type");
          return p;
        }),
        objects: rows("objects").map((r, i) => {
          const o = { path: val(r, "path") };
          if (val(r, "count") !== "") o.count = Number(val(r, "count"));
          if (val(r, "keys")) o.keys = pairsOf(val(r, "keys"), `Object ${i + 1}'s key values`);
          if (val(r, "parameters")) o.parameters = pairsOf(val(r, "parameters"), `Object ${i + 1}'s parameters`);
          return o;
        }),
        attributes: rows("attributes").map((r) => ({ path: val(r, "path"), notification: Number(val(r, "notification")) })),
        tags: { add: list(field("pe-tags-add").value), remove: list(field("pe-tags-remove").value) },
      };
      return { ...d, ...extra };
    }

    function show(next) {
      if (next === view) return;
      if (next === "form") {
        toForm(parseJson(doc.value, "The policy"));
      } else {
        doc.value = JSON.stringify(fromForm(), null, 2);
      }
      view = next;
      form.dataset.view = view;
      for (const pane of form.querySelectorAll("[data-pane]")) pane.hidden = pane.dataset.pane !== view;
      for (const b of document.querySelectorAll("[data-view-switch] [data-view]")) {
        b.setAttribute("aria-pressed", String(b.dataset.view === view));
      }
    }

    // the precondition, checked by the API's own filter parser as it is typed,
    // with how many devices it matches now
    let timer = null;
    let asked = 0;
    async function checkPrecondition() {
      const out = document.getElementById("pe-precondition-check");
      const filter = field("pe-precondition").value.trim();
      const mine = ++asked;
      if (!filter) return fill(out, "Empty: the policy applies to every device.");
      const r = await api("GET", "/api/v1/devices", { query: { filter, limit: 1 } });
      if (mine !== asked) return;
      out.className = r.ok ? "muted" : "msg msg-error";
      out.textContent = r.ok ? `Valid: ${r.data.total} device(s) match now.` : r.message;
    }
    field("pe-precondition").addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(checkPrecondition, 300); });

    form.addEventListener("click", (ev) => {
      const add = ev.target.closest("[data-add-row]");
      if (add) addRow(add.dataset.addRow).querySelector("input").focus();
      const remove = ev.target.closest("[data-remove-row]");
      if (remove) remove.closest(".pe-row").remove();
    });
    for (const b of document.querySelectorAll("[data-view-switch] [data-view]")) {
      b.addEventListener("click", () => {
        try {
          show(b.dataset.view);
        } catch (err) {
          say(form, "error", `${err.message} Fix it in the JSON view first.`);
        }
      });
    }
    form.policyDoc = () => (view === "form" ? fromForm() : parseJson(doc.value, "The policy"));
    try {
      show("form");
    } catch (err) {
      say(form, "error", `${err.message} The JSON view shows it as stored.`);
    }
  }

  function toggleOptions(select) {
    const form = select.form;
    const show = () => {
      for (const box of form.querySelectorAll(".opts")) {
        box.hidden = !box.dataset.for.split(" ").includes(select.value);
      }
    };
    select.addEventListener("change", show);
    show();
  }

  // ------------------------------------------------------------------ wiring

  document.addEventListener("click", (ev) => {
    const btn = ev.target.closest("button[data-api]");
    if (btn) {
      ev.preventDefault();
      onApiButton(btn);
    }
  });

  document.addEventListener("submit", (ev) => {
    const form = ev.target.closest("form[data-action]");
    if (form) {
      ev.preventDefault();
      onForm(form, ev.submitter);
    }
  });

  document.addEventListener("change", (ev) => {
    const all = ev.target.closest("input[data-select-all]");
    if (all) {
      for (const box of document.querySelectorAll(`input[name="${all.dataset.selectAll}"]`)) box.checked = all.checked;
    }
  });

  document.addEventListener("DOMContentLoaded", () => {
    showFlash();
    document.querySelectorAll("[data-live]").forEach(live);
    document.querySelectorAll("select[data-toggles]").forEach(toggleOptions);
    document.querySelectorAll("input[data-match-count]").forEach(matchCount);
    document.querySelectorAll("form[data-policy-editor]").forEach(policyEditor);
  });
})();
