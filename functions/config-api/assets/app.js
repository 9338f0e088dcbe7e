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
  // Where the API's field errors go: the field named at the start of `error_message`.
  const FIELDS = {
    "destination_config.grafana_loki.hostname": "loki-hostname",
    "destination_config.grafana_loki.username": "loki-username",
    "destination_config.grafana_loki.password": "loki-password",
    "destination_config.datadog.site": "datadog-site",
    "destination_config.datadog.api_key": "datadog-api-key",
  };

  let session = null; // { keyId, secret, project }
  let stream = null; // event_log_streaming_config, or null when nothing is configured

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

  function selectedType() {
    const checked = document.querySelector('input[name="destination-type"]:checked');
    return checked ? checked.value : null;
  }

  function showFieldsOf(type) {
    show("loki-fields", type === "GRAFANA_LOKI");
    show("datadog-fields", type === "DATADOG");
  }

  function clearFieldErrors() {
    for (const input of Object.values(FIELDS)) {
      $(input).removeAttribute("aria-invalid");
      $(`${input}-error`).textContent = "";
      show(`${input}-error`, false);
    }
    $("form-error").textContent = "";
    show("form-error", false);
  }

  // A 400's message names its field first ("destination_config.…: what is wrong"): it goes
  // next to that field, the rest to the form.
  function showFieldError(message) {
    const separator = message.indexOf(": ");
    const input = separator > 0 ? FIELDS[message.slice(0, separator)] : undefined;
    if (input) {
      $(`${input}-error`).textContent = message.slice(separator + 2);
      show(`${input}-error`, true);
      $(input).setAttribute("aria-invalid", "true");
      $(input).focus();
    } else {
      $("form-error").textContent = message;
      show("form-error", true);
    }
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
    } else {
      $("datadog-site").value = config.site || "US";
    }

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
    $("health-last-success").textContent = when(health.last_success_at);
    $("health-last-error").textContent = health.last_error
      ? `${when(health.last_error.at)}: ${health.last_error.message}`
      : "none";
    $("health-consecutive").textContent = String(health.consecutive_failures ?? 0);
    $("health-delivered").textContent = String(health.events_delivered ?? 0);
    $("health-failed").textContent = String(health.events_failed ?? 0);
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
    const secret = $(TYPES[type].secretInput).value;
    const fields = type === "GRAFANA_LOKI"
      ? { hostname: $("loki-hostname").value.trim(), username: $("loki-username").value.trim(), password: secret }
      : { site: $("datadog-site").value, api_key: secret.trim() };
    const destinationConfig = { [TYPES[type].key]: fields };
    const answer = stream
      ? await api("PUT", `/${type}`, { destination_config: destinationConfig })
      : await api("POST", "", { destination_type: type, destination_config: destinationConfig });
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
    const answer = await api("POST", `/${stream.destination_type}/test`);
    if (answer.status !== 200) throw new Error(failure(answer));
    result.textContent = answer.body.delivered
      ? `Test event delivered. ${answer.body.message}.`
      : `Test event not delivered. ${answer.body.message}.`;
    result.className = `test-result ${answer.body.delivered ? "ok" : "failed"}`;
    show("test-result", true);
  }

  async function remove() {
    const answer = await api("DELETE", `/${stream.destination_type}`);
    if (answer.status !== 200) throw new Error(failure(answer));
    stream = null;
    show("test-result", false);
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
