// A second script, run after main.js: logs to the console and marks <body>.
"use strict";

{
  console.log("more.js loaded");
  document.body.dataset.moreJs = "ran";

  const item = document.createElement("li");
  item.textContent = "more.js ran";
  document.getElementById("log").appendChild(item);
}
