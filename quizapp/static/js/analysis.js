// Polls the AI analysis endpoint named in data-poll-url and fills the section in when it is ready.
(function () {
  "use strict";
  var section = document.querySelector("[data-poll-url]");
  if (!section || !window.fetch) { return; }
  var url = section.getAttribute("data-poll-url");
  var delay = parseInt(section.getAttribute("data-poll-ms"), 10) || 3000;
  var giveUpAt = Date.now() + 10 * 60 * 1000;

  function part(role) { return section.querySelector('[data-role="' + role + '"]'); }

  function show(data) {
    var status = part("status");
    section.setAttribute("data-state", data.state);
    if (data.pending) {
      if (status) {
        status.textContent = data.state === "queued"
          ? "Your AI analysis is queued" + (data.position ? ", position " + data.position : "") +
            (data.eta_seconds !== null ? ", about " + Math.round(data.eta_seconds) + " s." : ".")
          : (data.message || "Your analysis is being prepared now.");
      }
      return false;
    }
    if (status) { status.remove(); }
    var refresh = part("refresh");
    if (refresh) { refresh.remove(); }
    var badge = part("badge");
    if (badge) {
      badge.hidden = !data.text;
      badge.textContent = data.fallback
        ? (data.message || "Our scoring model wrote this analysis from your answers.")
        : "Written by AI from your scores and answer choices; it can be wrong, so weigh it against the scores.";
    }
    var text = part("text");
    if (text) { text.textContent = data.text || ""; text.hidden = !data.text; }
    return true;
  }

  function poll() {
    if (Date.now() > giveUpAt) { return; }
    fetch(url, { headers: { "Accept": "application/json" }, credentials: "same-origin", cache: "no-store" })
      .then(function (response) {
        if (!response.ok) { throw new Error("HTTP " + response.status); }
        return response.json();
      })
      .then(function (data) {
        if (show(data)) { return; }
        delay = data.poll_ms || delay;  // the server's pace: slower while the queue is long
        setTimeout(poll, delay);
      })
      .catch(function () {
        delay = Math.min(delay * 2, 15000);  // back off while the server is busy or away
        setTimeout(poll, delay);
      });
  }

  setTimeout(poll, delay);
})();
