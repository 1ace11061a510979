// Runs after both stylesheets have loaded (a classic script waits for the stylesheets above
// it). It logs to the console, marks <body> and reports the styles the browser applied, so
// that a test, or a curious reader, can see that every asset arrived and took effect.
"use strict";

{
  console.log("main.js loaded");
  const body = document.body;
  body.dataset.mainJs = "ran";
  body.dataset.h1Color = getComputedStyle(document.querySelector("h1")).color;
  body.dataset.bodyBackground = getComputedStyle(body).backgroundColor;

  const item = document.createElement("li");
  item.textContent = `main.js ran: the heading is ${body.dataset.h1Color} on ${body.dataset.bodyBackground}`;
  document.getElementById("log").appendChild(item);
}
