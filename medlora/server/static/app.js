// medlora web chat: no framework, no CDN. Streams /v1/chat/completions (SSE) and shows sources as links.
// All model text goes through textContent, never innerHTML: answers and source titles are untrusted.
"use strict";

const $ = (id) => document.getElementById(id);
let controller = null;

// A server started with an API key (MEDLORA_API_KEY) answers 401: ask for the key once per tab and retry.
// It is kept in sessionStorage only, so it goes when the tab closes.
async function apiFetch(url, options = {}) {
  for (let attempt = 0; ; attempt++) {
    const key = sessionStorage.getItem("medlora-api-key");
    const headers = { ...(options.headers || {}) };
    if (key) headers.Authorization = `Bearer ${key}`;
    const response = await fetch(url, { ...options, headers });
    if (response.status !== 401 || attempt > 0) return response;
    const entered = window.prompt("This bot needs an API key:");
    if (!entered) return response;
    sessionStorage.setItem("medlora-api-key", entered.trim());
  }
}

async function loadModels() {
  try {
    const response = await apiFetch("/v1/models");
    const body = await response.json();
    const select = $("adapter");
    for (const model of body.data) {
      if (model.id === "auto" || model.id === "base") continue;
      const option = document.createElement("option");
      option.value = model.id;
      option.textContent = model.specialty ? `${model.id} (${model.specialty})` : model.id;
      select.appendChild(option);
    }
    select.dataset.loaded = "true";
  } catch (err) {
    $("status").textContent = `Could not list adapters: ${err}`;
  }
}

function newExchange(question) {
  const node = $("answer-template").content.firstElementChild.cloneNode(true);
  node.querySelector(".question").textContent = question;
  $("messages").appendChild(node);
  node.scrollIntoView({ behavior: "smooth", block: "end" });
  return node;
}

function showSources(node, sources) {
  const list = node.querySelector(".sources");
  list.replaceChildren();
  for (const source of sources || []) {
    const item = document.createElement("li");
    item.value = source.number;
    if (source.url && /^https?:\/\//i.test(source.url)) {
      const link = document.createElement("a");
      link.href = source.url;
      link.target = "_blank";
      link.rel = "noopener noreferrer";
      link.textContent = source.title;
      item.appendChild(link);
    } else {
      item.textContent = source.title;
    }
    if (source.text) item.title = source.text;
    list.appendChild(item);
  }
  node.querySelector(".sources-box").hidden = list.children.length === 0;
}

// Parse an SSE byte stream into the JSON payloads of its "data:" lines.
async function* sseEvents(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      for (const line of event.split("\n")) {
        if (line.startsWith("data:")) yield line.slice(5).trim();
      }
    }
  }
}

async function ask(question, adapter) {
  const node = newExchange(question);
  const text = node.querySelector(".text");
  const answer = node.querySelector(".answer");
  answer.dataset.chunks = "0";
  text.classList.add("streaming");
  controller = new AbortController();
  try {
    const response = await apiFetch("/v1/chat/completions", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ model: adapter, stream: true, messages: [{ role: "user", content: question }] }),
      signal: controller.signal,
    });
    if (!response.ok) {
      const body = await response.json().catch(() => ({}));
      throw new Error(body.error ? body.error.message : `HTTP ${response.status}`);
    }
    for await (const data of sseEvents(response)) {
      if (data === "[DONE]") break;
      const chunk = JSON.parse(data);
      if (chunk.error) throw new Error(chunk.error.message);
      if (chunk.adapter) node.querySelector(".adapter-used").textContent = chunk.adapter;
      const choice = chunk.choices && chunk.choices[0];
      if (chunk.sources !== undefined) {
        // The final chunk: its text is the sources list and the disclaimer, shown structured instead.
        showSources(node, chunk.sources);
        node.querySelector(".answer-disclaimer").textContent = chunk.disclaimer;
        node.querySelector(".answer-note").textContent = chunk.note || "";
        if (chunk.route) {
          node.querySelector(".adapter-used").textContent +=
            ` (auto, p=${chunk.route.probability.toFixed(2)})`;
        }
      } else if (choice && choice.delta && choice.delta.content) {
        text.textContent += choice.delta.content;
        answer.dataset.chunks = String(Number(answer.dataset.chunks) + 1);
      }
    }
  } catch (err) {
    if (err.name !== "AbortError") {
      const p = document.createElement("p");
      p.className = "error";
      p.textContent = `Error: ${err.message}`;
      answer.appendChild(p);
    }
  } finally {
    text.classList.remove("streaming");
    if (!node.querySelector(".answer-disclaimer").textContent) {
      node.querySelector(".answer-disclaimer").textContent = $("banner-disclaimer").textContent.trim();
    }
    answer.dataset.done = "true";
    controller = null;
  }
}

$("ask").addEventListener("submit", async (event) => {
  event.preventDefault();
  const question = $("question").value.trim();
  if (!question) return;
  $("send").disabled = true;
  $("stop").hidden = false;
  $("status").textContent = "Answering…";
  $("question").value = "";
  await ask(question, $("adapter").value);
  $("send").disabled = false;
  $("stop").hidden = true;
  $("status").textContent = "";
  $("question").focus();
});

$("question").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey) {
    event.preventDefault();
    $("ask").requestSubmit();
  }
});

$("stop").addEventListener("click", () => controller && controller.abort());

loadModels();
