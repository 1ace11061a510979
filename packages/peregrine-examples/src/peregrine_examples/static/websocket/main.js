// Talks to the server over a WebSocket at /ws on the host this page came from: sends
// "Hello server!" once a second, ten times, shows every reply, then closes with 1000 once
// the tenth reply has arrived (a reply that arrived after close() would not be delivered).
// Progress is recorded on <body> (data-state, data-sent, data-received, data-close-code,
// data-was-clean, data-error) so that a test, or a curious reader, can follow it.
"use strict";

{
  const MESSAGE = "Hello server!";
  const COUNT = 10;
  const INTERVAL_MS = 1000;

  const body = document.body;
  const status = document.getElementById("status");
  const messages = document.getElementById("messages");
  let sent = 0;
  let received = 0;
  let timer = null;

  const show = (text, kind) => {
    const item = document.createElement("li");
    item.className = kind;
    item.textContent = text;
    messages.appendChild(item);
  };

  const stop = () => {
    if (timer !== null) {
      clearInterval(timer);
      timer = null;
    }
  };

  const finish = () => {
    stop();
    if (ws.readyState === WebSocket.OPEN) {
      body.dataset.state = "closing";
      ws.close(1000, "done");
    }
  };

  // ws:// next to http://, wss:// next to https://, always the page's own host and port.
  const url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws";
  body.dataset.state = "connecting";
  const ws = new WebSocket(url);

  ws.onopen = () => {
    body.dataset.state = "open";
    status.textContent = "Connected to WebSocket";
    timer = setInterval(() => {
      if (sent >= COUNT) {
        finish(); // the last reply is late: close anyway
      } else if (ws.readyState === WebSocket.OPEN) {
        ws.send(MESSAGE);
        sent += 1;
        body.dataset.sent = String(sent);
        show(MESSAGE, "sent");
      }
    }, INTERVAL_MS);
  };

  ws.onmessage = (event) => {
    received += 1;
    body.dataset.received = String(received);
    show("Received: " + event.data, "received");
    if (sent >= COUNT && received >= COUNT) {
      finish();
    }
  };

  ws.onerror = () => {
    body.dataset.error = "true";
    show("WebSocket error", "note");
  };

  ws.onclose = (event) => {
    stop();
    body.dataset.state = "closed";
    body.dataset.closeCode = String(event.code);
    body.dataset.wasClean = String(event.wasClean);
    status.textContent = "Disconnected";
    show(`Connection closed (code ${event.code}${event.wasClean ? ", clean" : ", not clean"})`, "note");
  };
}
