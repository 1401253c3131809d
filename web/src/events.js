// GET /api/v1/submissions/{id}/events read with fetch() rather than EventSource, which
// cannot send the Authorization header: the token never goes into a URL (logs, history).
// Reconnects after a dropped connection with Last-Event-ID, so nothing is lost or repeated.
// Where the server has no events stream (404 "no such endpoint"), falls back to polling.

import { authorizedFetch, api } from "./api.js";

// Calls on.status(status), on.output(event data), on.finished(submission); resolves after
// `finished`. `signal` (AbortSignal) stops it.
export async function watchSubmission(id, on, signal) {
  let lastId = null;
  for (let attempt = 0; !signal.aborted; attempt++) {
    const headers = { Accept: "text/event-stream" };
    if (lastId !== null) headers["Last-Event-ID"] = String(lastId);
    let res;
    try {
      res = await authorizedFetch(`/api/v1/submissions/${id}/events`, { headers, signal });
    } catch (e) {
      if (signal.aborted) return;
      await pause(Math.min(2000, 200 * (attempt + 1)));
      continue;
    }
    if (res.status === 404 || !(res.headers.get("Content-Type") || "").startsWith("text/event-stream")) {
      return poll(id, on, signal);
    }
    const done = await readStream(res.body, on, (n) => { lastId = n; });
    if (done || signal.aborted) return;
    await pause(200);  // dropped before `finished`: resume after lastId
  }
}

// Parses the text/event-stream body; true once `finished` was seen.
async function readStream(body, on, setLastId) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let event = { type: "message", data: [], id: null };
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return false;
      buffer += value;
      let nl;
      while ((nl = buffer.search(/\r\n|\r|\n/)) >= 0) {
        const line = buffer.slice(0, nl);
        buffer = buffer.slice(nl + (buffer.startsWith("\r\n", nl) ? 2 : 1));
        if (line === "") {
          if (event.data.length) {
            if (event.id !== null) setLastId(Number(event.id));
            if (dispatch(event.type, JSON.parse(event.data.join("\n")), on)) return true;
          }
          event = { type: "message", data: [], id: null };
          continue;
        }
        if (line.startsWith(":")) continue;  // a comment (keep-alive)
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        const val = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
        if (field === "event") event.type = val;
        else if (field === "data") event.data.push(val);
        else if (field === "id") event.id = val;
      }
    }
  } catch (e) {
    return false;  // the connection broke
  }
}

function dispatch(type, data, on) {
  if (type === "status") on.status(data.status);
  else if (type === "output") on.output(data);
  else if (type === "finished") {
    on.finished(data);
    return true;
  }
  return false;
}

async function poll(id, on, signal) {
  let last = null;
  while (!signal.aborted) {
    const s = await api("GET", `/api/v1/submissions/${id}`);
    if (s.status !== last) on.status((last = s.status));
    if (s.status === "FINISHED") return on.finished(s);
    await pause(250);
  }
}

function pause(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// The text of an output event (base64 chunks are decoded, invalid UTF-8 shown as U+FFFD).
export function outputText(data) {
  if (data.text !== undefined) return data.text;
  const bytes = Uint8Array.from(atob(data.base64), (c) => c.charCodeAt(0));
  return new TextDecoder().decode(bytes);
}
