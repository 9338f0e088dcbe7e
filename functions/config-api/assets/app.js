// Stream Settings: the config API in a page, for customers who would rather not use curl.
//
// Rules this file keeps:
// - the management key lives in this script's memory only: never in a cookie, the URL,
//   storage or a log line; signing out or closing the tab forgets it;
// - every value from the API is inserted as text (textContent), never as HTML;
// - secrets are write-only: inputs start empty, are cleared after a save, and a stored secret
//   shows only as its last four characters.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);

  const TYPES = {
    GRAFANA_LOKI: { key: "grafana_loki", name: "Grafana Loki", secretInput: "loki-password" },
    DATADOG: { key: "datadog", name: "Datadog", secretInput: "datadog-api-key" },
  };
  // Where the API's field errors go: the input of the field named at the start of
  // `error_message`, or of the list or map it is in (`event_filter.actions[2]`,
  // `destination_config.grafana_loki.labels.team`). `entry` names one element of a list.
  const FIELDS = [
    { path: "destination_config.grafana_loki.hostname", input: "loki-hostname" },
    { path: "destination_config.grafana_loki.username", input: "loki-username" },
    { path: "destination_config.grafana_loki.password", input: "loki-password" },
    { path: "destination_config.grafana_loki.tenant_id", input: "loki-tenant-id" },
    { path: "destination_config.grafana_loki.labels", input: "loki-labels", entry: "Label" },
    { path: "destination_config.datadog.site", input: "datadog-site" },
    { path: "destination_config.datadog.api_key", input: "datadog-api-key" },
    { path: "destination_config.datadog.tags", input: "datadog-tags", entry: "Tag" },
    { path: "event_filter.actions", input: "filter-actions", entry: "Action" },
    { path: "event_filter.statuses", input: "filter-statuses", entry: "Status" },
    { path: "redaction.fields", input: "redaction-fields", entry: "Field" },
    { path: "redaction.mode", input: "redaction-mode" },
  ];

  let session = null; // { keyId, secret, project }
  let stream = null; // event_log_streaming_config, or null when nothing is configured
  let sentLists = {}; // the lists of the last save, by input id, to name an entry in an error

  class SignedOut extends Error {}

  // ---- talking to the API

  function authorization() {
    const bytes = new TextEncoder().encode(`${session.keyId}:${session.secret}`);
    let binary = "";
    bytes.forEach((b) => { binary += String.fromCharCode(b); });
    return `Basic ${btoa(binary)}`;
  }

  // One request to the project's configuration. `credentials: "omit"` keeps the browser from
  // answering the API's Basic challenge with a login dialog of its own.
  async function api(method, path, body) {
    let response;
    try {
      response = await fetch(
        `/v1/projects/${encodeURIComponent(session.project)}/event_log_streaming${path}`,
        {
          method,
          credentials: "omit",
          cache: "no-store",
          headers: {
            Authorization: authorization(),
            ...(body === undefined ? {} : { "Content-Type": "application/json" }),
          },
          body: body === undefined ? undefined : JSON.stringify(body),
        },
      );
    } catch {
      throw new Error("The configuration API could not be reached. Check your connection, then try again.");
    }
    let answer = {};
    try {
      answer = await response.json();
    } catch {
      answer = {};
    }
    if (response.status === 401) {
      signOut("The management key was refused: check its id and secret, then sign in again.");
      throw new SignedOut();
    }
    if (response.status === 403) {
      throw new Error(`This management key may not manage project ${session.project}. Sign in with a key for that project.`);
    }
    return { status: response.status, body: answer };
  }

  function failure(answer) {
    const message = answer.body.error_message || `The API answered ${answer.status}.`;
    return answer.status >= 500
      ? `${message} Try again in a moment.`
      : message;
  }

  // ---- what the page shows

  function show(id, visible) {
    $(id).hidden = !visible;
  }

  function say(message) {
    $("notice").textContent = message;
  }

  function problem(message) {
    $("problem").textContent = message || "";
    show("problem", Boolean(message));
  }

  function when(timestamp) {
    if (!timestamp) return "never";
    const date = new Date(timestamp);
    return Number.isNaN(date.getTime()) ? timestamp : date.toLocaleString();
  }

  // A lag in words a customer reads at a glance: tenths below 10 s, whole seconds below two
  // minutes, then whole minutes.
  function lagText(millis) {
    const seconds = millis / 1000;
    if (seconds < 10) return `${Math.max(seconds, 0.1).toFixed(1)} s`;
    if (seconds < 120) return `${Math.round(seconds)} s`;
    return `${Math.round(seconds / 60)} min`;
  }

  function selectedType() {
    const checked = document.querySelector('input[name="destination-type"]:checked');
    return checked ? checked.value : null;
  }

  function showFieldsOf(type) {
    show("loki-fields", type === "GRAFANA_LOKI");
    show("datadog-fields", type === "DATADOG");
  }

  function clearFieldErrors() {
    for (const { input } of FIELDS) {
      $(input).removeAttribute("aria-invalid");
      $(`${input}-error`).textContent = "";
      show(`${input}-error`, false);
    }
    $("form-error").textContent = "";
    show("form-error", false);
  }

  // A 400's message names its field first ("destination_config.…: what is wrong"): it goes
  // next to that field, the rest to the form. The API never quotes a value; the page may quote
  // the entry it sent, which the customer typed.
  function showFieldError(message) {
    const separator = message.indexOf(": ");
    const path = separator > 0 ? message.slice(0, separator) : "";
    const field = FIELDS.find((f) => path === f.path
      || path.startsWith(`${f.path}.`) || path.startsWith(`${f.path}[`));
    if (!field) {
      $("form-error").textContent = message;
      show("form-error", true);
      return;
    }
    // What follows the field's own path: `[2]` for a list's third entry, `.team` for a label.
    const reason = message.slice(separator + 2);
    const rest = path.slice(field.path.length);
    const index = /^\[(\d+)\]$/.exec(rest);
    let text = reason;
    if (field.entry && index) {
      const sent = (sentLists[field.input] || [])[Number(index[1])];
      const quoted = sent === undefined ? "" : `, “${sent}”`;
      text = `${field.entry} ${Number(index[1]) + 1}${quoted}: ${reason}`;
    } else if (field.entry && rest.startsWith(".")) {
      text = `${field.entry} ${rest.slice(1)}: ${reason}`;
    }
    const input = field.input;
    $(`${input}-error`).textContent = text;
    show(`${input}-error`, true);
    $(input).setAttribute("aria-invalid", "true");
    $(input).focus();
  }

  // A list typed one entry per line or separated by commas, blanks dropped.
  function listOf(id) {
    return $(id).value.split(/[,\n]/).map((entry) => entry.trim()).filter(Boolean);
  }

  // Loki labels, one `name=value` a line (a value may hold commas and `=`), as [name, value]
  // pairs; a line without `=` is a name with an empty value, which the API refuses.
  function labelsOf(id) {
    return $(id).value.split("\n").map((line) => line.trim()).filter(Boolean).map((line) => {
      const equals = line.indexOf("=");
      return equals < 0
        ? [line, ""]
        : [line.slice(0, equals).trim(), line.slice(equals + 1).trim()];
    });
  }

  // The controls as the API takes them; an empty control is left out, so a PUT clears it.
  // Returns an error message in the API's shape when the page itself refuses them.
  function controlsOf(type) {
    const destination = {};
    const body = {};
    if (type === "GRAFANA_LOKI") {
      const tenant = $("loki-tenant-id").value.trim();
      if (tenant) destination.tenant_id = tenant;
      const labels = labelsOf("loki-labels");
      const names = labels.map(([name]) => name);
      const repeated = names.find((name, i) => names.indexOf(name) !== i);
      if (repeated !== undefined) {
        return { error: `destination_config.grafana_loki.labels.${repeated}: is given more than once` };
      }
      // fromEntries defines own properties, so even a name such as __proto__ is sent as typed.
      if (labels.length > 0) destination.labels = Object.fromEntries(labels);
    } else {
      const tags = listOf("datadog-tags");
      sentLists["datadog-tags"] = tags;
      if (tags.length > 0) destination.tags = tags;
    }
    const actions = listOf("filter-actions");
    const statuses = listOf("filter-statuses");
    sentLists["filter-actions"] = actions;
    sentLists["filter-statuses"] = statuses;
    if (actions.length > 0 || statuses.length > 0) {
      body.event_filter = {
        ...(actions.length > 0 ? { actions } : {}),
        ...(statuses.length > 0 ? { statuses } : {}),
      };
    }
    const fields = listOf("redaction-fields");
    const mode = $("redaction-mode").value;
    sentLists["redaction-fields"] = fields;
    // Saving fields with no mode would redact nothing without a word: ask instead.
    if (fields.length > 0 && !mode) {
      return { error: "redaction.mode: choose MASK, HASH or REMOVE for these fields, or empty the list to redact nothing" };
    }
    if (mode) body.redaction = { fields, mode };
    return { destination, body };
  }

  function render() {
    const configured = stream !== null;
    show("empty-state", !configured);
    show("status-panel", configured);
    show("health-panel", configured);
    show("delete-panel", configured);
    show("delete-confirmation", false);
    show("delete", true);
    $("destination-title").textContent = configured ? "Destination" : "Choose a destination";
    for (const radio of document.querySelectorAll('input[name="destination-type"]')) {
      radio.disabled = configured;
    }
    show("type-help", configured);
    for (const type of Object.values(TYPES)) {
      $(`${type.secretInput}-stored`).textContent = "";
      show(`${type.secretInput}-stored`, false);
      $(type.secretInput).value = "";
    }
    if (!configured) {
      showFieldsOf(selectedType());
      return;
    }

    const type = stream.destination_type;
    $(type === "GRAFANA_LOKI" ? "type-loki" : "type-datadog").checked = true;
    showFieldsOf(type);
    const config = stream.destination_config[TYPES[type].key] || {};
    const lastFour = type === "GRAFANA_LOKI" ? config.password_last_four : config.api_key_last_four;
    const stored = $(`${TYPES[type].secretInput}-stored`);
    // The API sends a stored Loki token only to the host it was saved for.
    const keep = type === "GRAFANA_LOKI"
      ? "Leave empty to keep it; a new hostname needs it again."
      : "Leave empty to keep it.";
    stored.textContent = lastFour ? `Stored: •••• ${lastFour}. ${keep}` : `Stored. ${keep}`;
    show(`${TYPES[type].secretInput}-stored`, true);
    if (type === "GRAFANA_LOKI") {
      $("loki-hostname").value = config.hostname || "";
      $("loki-username").value = config.username || "";
      $("loki-tenant-id").value = config.tenant_id || "";
      $("loki-labels").value = Object.entries(config.labels || {})
        .map(([name, value]) => `${name}=${value}`)
        .join("\n");
    } else {
      $("datadog-site").value = config.site || "US";
      $("datadog-tags").value = (config.tags || []).join("\n");
    }
    const filter = stream.event_filter || {};
    $("filter-actions").value = (filter.actions || []).join("\n");
    $("filter-statuses").value = (filter.statuses || []).join("\n");
    const redaction = stream.redaction || { fields: [], mode: "" };
    $("redaction-fields").value = redaction.fields.join("\n");
    $("redaction-mode").value = redaction.mode;

    const status = stream.streaming_status;
    const badge = $("status-badge");
    badge.textContent = { ACTIVE: "Active", DISABLED: "Disabled", SUSPENDED: "Suspended" }[status] || status;
    badge.className = `badge ${String(status).toLowerCase()}`;
    $("status-detail").textContent = {
      ACTIVE: `Streaming to ${TYPES[type].name} events produced since ${when(stream.enabled_at)}.`,
      DISABLED: "Nothing is streamed. Enable to stream events produced from then on.",
      SUSPENDED: `Suspended ${when(stream.suspended_at)}: nothing is streamed until you enable it again.`,
    }[status] || "";
    $("status-reason").textContent = status === "SUSPENDED" ? stream.suspended_reason || "" : "";
    show("status-reason", status === "SUSPENDED");
    syncStatusButtons();

    const health = stream.delivery_health || {};
    const lag = health.last_delivery_lag_ms;
    const hasLag = typeof lag === "number";
    $("health-lag").textContent = hasLag
      ? `Events arrive about ${lagText(lag)} after they happen (latest delivery, ${when(health.last_delivery_lag_at)}).`
      : "";
    show("health-lag", hasLag);
    $("health-last-success").textContent = when(health.last_success_at);
    $("health-last-error").textContent = health.last_error
      ? `${when(health.last_error.at)}: ${health.last_error.message}`
      : "none";
    $("health-consecutive").textContent = String(health.consecutive_failures ?? 0);
    $("health-delivered").textContent = String(health.events_delivered ?? 0);
    $("health-failed").textContent = String(health.events_failed ?? 0);
    $("health-filtered").textContent = String(health.events_filtered ?? 0);
    const list = $("health-recent-errors");
    list.replaceChildren(...(health.recent_errors || []).map((error) => {
      const item = document.createElement("li");
      const status = error.destination_status === null ? "no answer" : `HTTP ${error.destination_status}`;
      item.textContent = `${when(error.at)} (${status}): ${error.message}`;
      return item;
    }));
    show("health-no-errors", list.children.length === 0);
  }

  // Enable and Disable are offered only where they change something.
  function syncStatusButtons() {
    const status = stream ? stream.streaming_status : null;
    $("enable").disabled = status === "ACTIVE";
    $("disable").disabled = status === "DISABLED";
  }

  // Runs an action with its button disabled meanwhile and one place for its outcome.
  async function act(button, action) {
    button.disabled = true;
    say("");
    problem("");
    try {
      await action();
    } catch (error) {
      if (!(error instanceof SignedOut)) problem(error.message);
    } finally {
      button.disabled = false;
      syncStatusButtons();
    }
  }

  // ---- loading and actions

  async function load() {
    show("loading", true);
    try {
      for (const type of Object.keys(TYPES)) {
        const answer = await api("GET", `/${type}`);
        if (answer.status === 200) {
          stream = answer.body.event_log_streaming_config;
          return;
        }
        if (answer.status !== 404) throw new Error(failure(answer));
      }
      stream = null;
    } finally {
      show("loading", false);
      render();
    }
  }

  async function save() {
    clearFieldErrors();
    const type = stream ? stream.destination_type : selectedType();
    if (!type) {
      $("form-error").textContent = "Choose Grafana Loki or Datadog first.";
      show("form-error", true);
      $("type-loki").focus();
      return;
    }
    sentLists = {};
    const controls = controlsOf(type);
    if (controls.error) {
      showFieldError(controls.error);
      return;
    }
    const secret = $(TYPES[type].secretInput).value;
    const fields = type === "GRAFANA_LOKI"
      ? { hostname: $("loki-hostname").value.trim(), username: $("loki-username").value.trim(), password: secret }
      : { site: $("datadog-site").value, api_key: secret.trim() };
    const destinationConfig = { [TYPES[type].key]: { ...fields, ...controls.destination } };
    const answer = stream
      ? await api("PUT", `/${type}`, { destination_config: destinationConfig, ...controls.body })
      : await api("POST", "", { destination_type: type, destination_config: destinationConfig, ...controls.body });
    // The secret leaves the page as soon as it has been sent.
    $(TYPES[type].secretInput).value = "";
    if (answer.status === 400) {
      showFieldError(answer.body.error_message || "The settings were refused.");
      return;
    }
    if (answer.status !== 200 && answer.status !== 201) throw new Error(failure(answer));
    stream = answer.body.event_log_streaming_config;
    render();
    say(answer.status === 201
      ? `Saved. Send a test event, then enable streaming to ${TYPES[type].name}.`
      : "Saved.");
  }

  async function setStatus(operation) {
    const answer = await api("POST", `/${stream.destination_type}/${operation}`, {});
    if (answer.status !== 200) throw new Error(failure(answer));
    await load();
    say(operation === "enable"
      ? "Streaming is enabled: events produced from the time shown are streamed."
      : "Streaming is disabled. The configuration is kept.");
  }

  async function sendTest() {
    const result = $("test-result");
    show("test-result", false);
    show("test-note", false);
    const answer = await api("POST", `/${stream.destination_type}/test`);
    if (answer.status !== 200) throw new Error(failure(answer));
    result.textContent = answer.body.delivered
      ? `Test event delivered. ${answer.body.message}.`
      : `Test event not delivered. ${answer.body.message}.`;
    result.className = `test-result ${answer.body.delivered ? "ok" : "failed"}`;
    show("test-result", true);
    // What the stream's controls did to the test event (redaction, labels, tags; no filter).
    $("test-note").textContent = answer.body.note || "";
    show("test-note", Boolean(answer.body.note));
  }

  async function remove() {
    const answer = await api("DELETE", `/${stream.destination_type}`);
    if (answer.status !== 200) throw new Error(failure(answer));
    stream = null;
    show("test-result", false);
    show("test-note", false);
    $("destination-form").reset();
    render();
    say("Deleted. Nothing is streamed any more.");
    $("type-loki").focus();
  }

  // ---- signing in and out

  function signOut(message) {
    session = null;
    stream = null;
    $("key-secret").value = "";
    show("stream-view", false);
    show("session", false);
    show("sign-in-view", true);
    $("sign-in-error").textContent = message || "";
    show("sign-in-error", Boolean(message));
    (message ? $("key-secret") : $("key-id")).focus();
  }

  async function signIn(event) {
    event.preventDefault();
    const keyId = $("key-id").value.trim();
    const secret = $("key-secret").value;
    const project = $("project-id").value.trim();
    if (!keyId || !secret || !project) {
      $("sign-in-error").textContent = "Enter the key id, its secret and the project id.";
      show("sign-in-error", true);
      return;
    }
    session = { keyId, secret, project };
    $("key-secret").value = "";
    show("sign-in-error", false);
    show("sign-in-view", false);
    show("stream-view", true);
    show("session", true);
    $("session-project").textContent = project;
    say("");
    problem("");
    try {
      await load();
    } catch (error) {
      if (!(error instanceof SignedOut)) problem(error.message);
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("sign-in-form").addEventListener("submit", signIn);
    $("sign-out").addEventListener("click", () => signOut(""));
    for (const radio of document.querySelectorAll('input[name="destination-type"]')) {
      radio.addEventListener("change", () => {
        clearFieldErrors();
        showFieldsOf(selectedType());
      });
    }
    $("destination-form").addEventListener("submit", (event) => {
      event.preventDefault();
      act($("save"), save);
    });
    $("enable").addEventListener("click", () => act($("enable"), () => setStatus("enable")));
    $("disable").addEventListener("click", () => act($("disable"), () => setStatus("disable")));
    $("send-test").addEventListener("click", () => act($("send-test"), sendTest));
    $("refresh-health").addEventListener("click", () => act($("refresh-health"), async () => {
      await load();
      say("Delivery health refreshed.");
    }));
    $("delete").addEventListener("click", () => {
      show("delete", false);
      show("delete-confirmation", true);
      $("delete-cancel").focus();
    });
    $("delete-cancel").addEventListener("click", () => {
      show("delete-confirmation", false);
      show("delete", true);
      $("delete").focus();
    });
    $("delete-confirm").addEventListener("click", () => act($("delete-confirm"), remove));
    signOut("");
  });
})();
