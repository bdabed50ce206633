// The pyhost console's one script: follow an active run's log live (Server-Sent Events).
// Text is added as text nodes, never as markup.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const log = document.getElementById("log");
  if (!log || !log.dataset.follow) {
    return;
  }
  const badge = document.getElementById("run-state");
  const source = new EventSource(log.dataset.follow);
  // The log scrolls in its own box (never the page: the Stop button stays where it is),
  // and keeps to its end while the reader is there.
  const atEnd = () => log.scrollTop + log.clientHeight >= log.scrollHeight - 20;
  log.scrollTop = log.scrollHeight;

  source.addEventListener("log", (event) => {
    const follow = atEnd();
    log.appendChild(document.createTextNode(JSON.parse(event.data)));
    if (follow) {
      log.scrollTop = log.scrollHeight;
    }
  });
  source.addEventListener("state", (event) => {
    const state = JSON.parse(event.data);
    if (badge) {
      const span = document.createElement("span");
      span.className = "state state-" + state.toLowerCase();
      span.dataset.state = state;
      span.textContent = state;
      badge.replaceChildren(span);
    }
  });
  source.addEventListener("end", () => {
    source.close();
    const stop = document.querySelector("form.stop");
    if (stop) {
      stop.remove();
    }
    log.dataset.ended = "true";
  });
});
