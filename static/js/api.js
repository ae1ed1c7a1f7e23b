/*
 * JSON calls to the REST API from the room page's panels, with the session's
 * cookie and CSRF token. Each resolves to {ok, status, data, detail}: `detail` is
 * the server's own words on a refusal ({detail} bodies), or says what went wrong.
 */

export function createApi({ fetch, csrfToken }) {
  return async function call(url, init) {
    let response;
    try {
      response = await fetch(url, {
        credentials: "same-origin",
        ...init,
        headers: {
          Accept: "application/json",
          ...(init && init.body ? { "Content-Type": "application/json" } : {}),
          ...(init && init.method && init.method !== "GET" ? { "X-CSRFToken": csrfToken() } : {}),
        },
      });
    } catch (error) {
      return { ok: false, status: 0, detail: "Could not reach the server." };
    }
    const data = response.status === 204 ? null : await response.json().catch(() => null);
    return { ok: response.ok, status: response.status, data, detail: detailOf(data, response.status) };
  };
}

/* The server's reason: {detail: "..."}, or DRF's field errors ({cron: ["..."]}). */
export function detailOf(data, status) {
  if (data && typeof data.detail === "string") return data.detail;
  if (data && typeof data === "object" && !Array.isArray(data)) {
    const parts = Object.entries(data)
      .map(([field, value]) => `${field}: ${Array.isArray(value) ? value.join(" ") : String(value)}`);
    if (parts.length) return parts.join("; ");
  }
  return `The server answered ${status}.`;
}
