/* The simulator page: a customer's WhatsApp, talking to the service through real signed webhooks.
   Everything the page shows comes from the sandbox's event log, polled from /sandbox/api/conversation. */
"use strict";

const POLL_MS = 700;
const GRAPH_CALLS = new Set(["send", "read", "media_lookup", "media_download", "phone_number"]);
const EMOJIS = ["👍", "❤️", "😂", "😮", "🙏"];
const BUSINESS = "Sandbox Business";

const $ = (id) => document.getElementById(id);
const state = {
  customers: [],
  current: null,      // wa_id of the customer being simulated (a business-scoped user id for a username customer)
  generation: 0,      // bumps on every switch, so late answers for another customer are dropped
  cursor: 0,
  events: [],
  typing: false,
  selected: null,     // wamid of the inbound message the inspector shows (null: the last one)
  replyTo: null,      // the bot message the next text quotes
  reported: new Set(),// bot messages already reported as delivered and read
  openLists: new Set(),
  recorder: null,
  stick: true,        // follow new messages: true until the reader scrolls up, again once back at the bottom
};

// ---------------------------------------------------------------------------------------------------------------
// WhatsApp formatting, safely: escape everything first, then turn markers into tags.

function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));
}

function formatWhatsApp(text) {
  const kept = [];
  const keep = (html) => `\u0000${kept.push(html) - 1}\u0000`;
  let html = escapeHtml(text);
  html = html.replace(/```([\s\S]+?)```/g, (_, code) => keep(`<span class="mono">${code.replace(/^\n/, "")}</span>`));
  html = html.replace(/`([^`\n]+)`/g, (_, code) => keep(`<code>${code}</code>`));
  html = html.replace(/\bhttps?:\/\/[^\s<]+[^\s<.,;:!?)\]'"]/g,
    (url) => keep(`<a href="${url}" target="_blank" rel="noopener noreferrer">${url}</a>`));
  for (const [marker, tag] of [["*", "strong"], ["_", "em"], ["~", "s"]]) {
    const m = "\\" + marker;
    const pattern = new RegExp(`(^|[^\\w${m}])${m}(?=\\S)([^\\n]*?\\S)${m}(?![\\w${m}])`, "g");
    html = html.replace(pattern, `$1<${tag}>$2</${tag}>`);
  }
  html = html.replace(/\n/g, "<br>");
  return html.replace(/\u0000(\d+)\u0000/g, (_, i) => kept[Number(i)]);
}

// ---------------------------------------------------------------------------------------------------------------
// Talking to the server.

async function api(path, options = {}) {
  const response = await fetch(path, options);
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.error || `${response.status} ${response.statusText}`);
  return body;
}

function postJson(path, body) {
  return api(path, {method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)});
}

async function loadCustomers() {
  const {customers} = await api("/sandbox/api/customers");
  state.customers = customers;
  if (!state.current && customers.length) {
    const wanted = new URLSearchParams(location.search).get("customer");
    switchTo(customers.some((c) => c.wa_id === wanted) ? wanted : customers[0].wa_id);
  }
  renderCustomers();
}

async function removeCustomer(customer) {
  if (!confirm(`Remove ${customer.name} and the whole conversation?`)) return;
  await fetch(`/sandbox/api/customers/${encodeURIComponent(customer.wa_id)}`, {method: "DELETE"});
  if (state.current === customer.wa_id) state.current = null;
  await loadCustomers();
}

function switchTo(waId) {
  if (state.current === waId) return;
  state.current = waId;
  state.generation += 1;
  state.cursor = 0;
  state.events = [];
  state.selected = null;
  state.replyTo = null;
  state.typing = false;
  state.openLists.clear();
  state.stick = true;
  renderReplyPreview();
  renderCustomers();
  render();
  poll();
}

let polling = null;
let inFlight = false;
let again = false;
async function poll() {
  if (inFlight) { again = true; return; }
  clearTimeout(polling);
  inFlight = true;
  const generation = state.generation;
  const customer = state.current;
  try {
    if (customer) {
      const data = await api(`/sandbox/api/conversation?customer=${encodeURIComponent(customer)}&after=${state.cursor}`);
      if (generation === state.generation) {
        const fresh = data.events.filter((e) => e.seq > state.cursor);
        const changed = fresh.length > 0 || data.typing !== state.typing;
        state.events.push(...fresh);
        state.cursor = Math.max(state.cursor, data.cursor);
        state.typing = data.typing;
        if (changed) render();
        reportSeen();
      }
    }
  } catch (error) {
    console.warn("poll failed", error);
  } finally {
    inFlight = false;
  }
  if (again) { again = false; poll(); return; }
  polling = setTimeout(poll, POLL_MS);
}

async function sendAction(body) {
  const customer = state.current;
  state.stick = true;  // what I send, and its answer, come into view as in WhatsApp
  try {
    await postJson("/sandbox/api/messages", {customer, ...body});
  } catch (error) {
    notice(`Not sent: ${error.message}`);
  }
  poll();
}

async function sendText() {
  const composer = $("composer");
  const text = composer.value;
  if (!text.trim() || !state.current) return;
  composer.value = "";
  autosize();
  const replyTo = state.replyTo;
  state.replyTo = null;
  state.selected = null;
  renderReplyPreview();
  await sendAction({type: "text", text, reply_to: replyTo});
}

async function sendFile(file, voice = false) {
  if (!file || !state.current) return;
  const form = new FormData();
  form.append("customer", state.current);
  form.append("file", file, file.name || (voice ? "voice-note.webm" : "file"));
  form.append("voice", voice ? "true" : "false");
  form.append("caption", $("composer").value.trim());
  if (state.replyTo) form.append("reply_to", state.replyTo);
  state.stick = true;
  $("composer").value = "";
  state.replyTo = null;
  state.selected = null;
  renderReplyPreview();
  try {
    await api("/sandbox/api/media", {method: "POST", body: form});
  } catch (error) {
    notice(`Not sent: ${error.message}`);
  }
  poll();
}

function reportSeen() {
  if (document.visibilityState !== "visible" || !state.current) return;
  const ids = conversation().items.filter((i) => !i.mine && i.wamid && !state.reported.has(i.wamid)).map((i) => i.wamid);
  if (!ids.length) return;
  ids.forEach((id) => state.reported.add(id));
  postJson("/sandbox/api/seen", {customer: state.current, ids}).catch(() => ids.forEach((id) => state.reported.delete(id)));
}

// ---------------------------------------------------------------------------------------------------------------
// From the event log to a conversation.

function conversation() {
  const items = [];
  const byId = new Map();
  const calls = [];
  let readUpTo = -1;
  for (const event of state.events) {
    if (event.kind === "model") {
      const item = byId.get(event.wamid);
      if (item) item.model.push(event);
    } else if (event.kind === "inbound") {
      const message = event.message;
      if (message.type === "reaction") {
        const target = byId.get(message.reaction.message_id);
        if (target) target.customerReaction = message.reaction.emoji || null;
      }
      const item = {mine: true, wamid: event.wamid, seq: event.seq, at: event.at, message, webhook: event.webhook,
        ack: null, hidden: message.type === "reaction", model: []};
      items.push(item);
      byId.set(item.wamid, item);
    } else if (event.kind === "ack") {
      const item = byId.get(event.wamid);
      if (item) item.ack = event;
    } else if (event.kind === "status") {
      const item = byId.get(event.wamid);
      if (item && (event.status === "read" || item.status !== "read")) item.status = event.status;
    } else if (GRAPH_CALLS.has(event.kind)) {
      calls.push(event);
      if (event.kind === "read" && event.status === 200) {
        const read = byId.get(event.wamid);
        if (read) readUpTo = Math.max(readUpTo, read.seq);
      }
      if (event.kind === "send" && event.status === 200) {
        const request = event.request || {};
        if (request.type === "reaction") {
          const target = byId.get(request.reaction.message_id);
          if (target) target.botReaction = request.reaction.emoji || null;
          continue;
        }
        const item = {mine: false, wamid: event.wamid, seq: event.seq, at: event.at, request, status: "sent"};
        items.push(item);
        byId.set(item.wamid, item);
      }
    }
  }
  for (const item of items) if (item.mine && item.seq <= readUpTo) item.read = true;
  return {items, byId, calls};
}

function summary(item) {
  if (!item) return "";
  if (item.mine) {
    const m = item.message;
    switch (m.type) {
      case "text": return m.text.body;
      case "image": return `📷 ${m.image.caption || "Photo"}`;
      case "video": return `🎥 ${m.video.caption || "Video"}`;
      case "audio": return m.audio.voice ? "🎤 Voice message" : "🎵 Audio";
      case "document": return `📄 ${m.document.filename || "Document"}`;
      case "sticker": return "Sticker";
      case "location": return `📍 ${m.location.name || "Location"}`;
      case "interactive": return (m.interactive[m.interactive.type] || {}).title || "Reply";
      default: return m.type;
    }
  }
  const r = item.request;
  switch (r.type || "text") {
    case "text": return r.text.body;
    case "interactive": return r.interactive.body.text;
    case "location": return `📍 ${r.location.name || "Location"}`;
    case "contacts": return `👤 ${((r.contacts[0] || {}).name || {}).formatted_name || "Contact"}`;
    case "template": return `Template: ${r.template.name}`;
    default: return `${r.type}${(r[r.type] || {}).caption ? ": " + r[r.type].caption : ""}`;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Rendering.

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function clock(at) {
  return new Date(at * 1000).toLocaleTimeString([], {hour: "2-digit", minute: "2-digit"});
}

function initials(name) {
  return name.replace(/[^\p{L}\p{N} ]/gu, "").split(/\s+/).filter(Boolean).slice(0, 2).map((w) => w[0]).join("").toUpperCase() || "#";
}

const TWO_DIGIT_CODES = /^(2[07]|3[0-469]|4[013-9]|5[1-8]|6[0-6]|8[1246]|9[0-58])/;

function prettyNumber(waId) {
  const size = /^[17]/.test(waId) ? 1 : TWO_DIGIT_CODES.test(waId) ? 2 : 3;
  const rest = waId.slice(size).match(/\d{1,3}/g) || [];
  if (rest.length > 1 && rest[rest.length - 1].length === 1) rest.splice(-2, 2, rest.at(-2) + rest.at(-1));
  return `+${waId.slice(0, size)} ${rest.join(" ")}`;
}

// How a customer is known: "@username" (its phone number is withheld), else its phone number.
function handle(customer) {
  return customer.username ? `@${customer.username}` : prettyNumber(customer.wa_id);
}

function renderCustomers() {
  const list = $("customer-list");
  list.replaceChildren();
  for (const customer of state.customers) {
    const li = el("li", customer.wa_id === state.current ? "active" : "");
    li.dataset.waId = customer.wa_id;
    li.append(el("div", "avatar", initials(customer.name)));
    const text = el("div");
    text.append(el("div", "name", customer.name), el("div", "number", handle(customer)));
    const remove = el("button", "remove", "✕");
    remove.type = "button";
    remove.title = "Remove this customer and the conversation";
    remove.addEventListener("click", (event) => { event.stopPropagation(); removeCustomer(customer); });
    li.append(text, remove);
    li.addEventListener("click", () => switchTo(customer.wa_id));
    list.append(li);
  }
  const me = state.customers.find((c) => c.wa_id === state.current);
  $("me").textContent = me ? `you are ${me.name} · ${handle(me)}` : "";
}

// Whether to follow new messages is decided by the reader's scrolling, not by the geometry at render time: a photo
// has no height until it has loaded, so "at the bottom" measured then would be wrong once it appears.
function nearBottom(box) {
  return box.scrollHeight - box.scrollTop - box.clientHeight < 80;
}

function followNewMessages() {
  const box = $("messages");
  if (state.stick) box.scrollTop = box.scrollHeight;
}

function render() {
  const box = $("messages");
  const {items, byId, calls} = conversation();
  box.replaceChildren();
  let lastDay = null;
  let lastMine = null;
  for (const item of items) {
    if (item.hidden) continue;
    const day = new Date(item.at * 1000).toDateString();
    if (day !== lastDay) {
      const divider = el("div", "day");
      divider.append(el("span", "", day === new Date().toDateString() ? "Today" : day));
      box.append(divider);
      lastDay = day;
    }
    box.append(renderItem(item, byId, lastMine !== item.mine));
    lastMine = item.mine;
  }
  const typing = $("presence");
  typing.textContent = state.typing ? "typing…" : "online";
  typing.classList.toggle("typing", state.typing);
  if (state.typing) {
    const row = el("div", "row typing-row gap");
    row.id = "typing";
    const bubble = el("div", "bubble dots");
    bubble.append(el("span"), el("span"), el("span"));
    row.append(bubble);
    box.append(row);
  }
  followNewMessages();
  renderInspector(items, byId, calls);
}

function renderItem(item, byId, gap) {
  const row = el("div", `row ${item.mine ? "mine" : "theirs"}${gap ? " gap" : ""}`);
  row.dataset.wamid = item.wamid;
  const stack = el("div", "stack");
  const bubble = el("div", "bubble");
  bubble.dataset.wamid = item.wamid;
  if (item.mine && item.wamid === state.selected) bubble.classList.add("selected");

  const quotedId = item.mine ? (item.message.context || {}).id : (item.request.context || {}).message_id;
  if (quotedId) {
    const quoted = byId.get(quotedId);
    const quote = el("div", "quote");
    quote.append(el("strong", "", quoted ? (quoted.mine ? "You" : BUSINESS) : "Message"));
    const said = el("span");
    said.innerHTML = formatWhatsApp(quoted ? summary(quoted) : "a message that is no longer here");  // escapes first
    quote.append(said);
    quote.addEventListener("click", (event) => { event.stopPropagation(); flash(quotedId); });
    bubble.append(quote);
  }
  if (item.mine) fillMine(bubble, item.message); else fillTheirs(bubble, item.request);

  const meta = el("span", "meta", clock(item.at));
  if (item.mine) meta.append(tick(item)); else meta.append(statusTick(item.status));
  bubble.append(meta);
  bubble.addEventListener("click", () => {
    if (item.mine) { state.selected = item.wamid; render(); }
  });
  stack.append(bubble);

  const reaction = item.mine ? item.botReaction : item.customerReaction;
  if (reaction) {
    const badge = el("div", "reactions");
    badge.append(el("span", "", reaction));
    stack.append(badge);
  }
  if (!item.mine && (item.request.type === "interactive")) stack.append(interactiveControls(item));
  row.append(stack);

  if (!item.mine) {
    const actions = el("div", "actions");
    const reply = el("button", "", "↩");
    reply.title = "Reply";
    reply.addEventListener("click", () => { state.replyTo = item.wamid; renderReplyPreview(); $("composer").focus(); });
    const react = el("button", "", "☺");
    react.title = "React";
    react.addEventListener("click", (event) => openPicker(event, item.wamid));
    actions.append(reply, react);
    row.append(actions);
  }
  return row;
}

function tick(item) {
  if (item.ack && item.ack.status !== 200) {
    const failed = el("span", "tick failed", "⚠");
    failed.title = `webhook answered ${item.ack.status ?? "nothing"}${item.ack.error ? ": " + item.ack.error : ""}`;
    return failed;
  }
  if (item.read) return Object.assign(el("span", "tick read", "✓✓"), {title: "read: the service marked it read"});
  if (item.ack) return Object.assign(el("span", "tick", "✓✓"), {title: "delivered: the webhook was answered 200"});
  return Object.assign(el("span", "tick", "✓"), {title: "sent: the webhook is on its way"});
}

function statusTick(status) {
  const span = el("span", `tick ${status === "read" ? "read" : ""}`, status === "sent" ? "✓" : "✓✓");
  span.title = `status reported to the business: ${status}`;
  return span;
}

function mediaUrl(id) {
  return `/sandbox/media/${encodeURIComponent(id)}`;
}

function addText(bubble, text) {
  if (!text) return;
  const div = el("div", "text");
  div.innerHTML = formatWhatsApp(text);  // formatWhatsApp escapes first
  bubble.append(div);
}

function fillMine(bubble, message) {
  const content = message[message.type] || {};
  switch (message.type) {
    case "text": addText(bubble, content.body); break;
    case "image":
    case "sticker": {
      const img = el("img", "media-img");
      img.src = mediaUrl(content.id);
      img.alt = content.caption || message.type;
      bubble.append(img);
      addText(bubble, content.caption);
      break;
    }
    case "video": {
      const video = el("video");
      video.src = mediaUrl(content.id);
      video.controls = true;
      bubble.append(video);
      addText(bubble, content.caption);
      break;
    }
    case "audio": {
      const audio = el("audio");
      audio.src = mediaUrl(content.id);
      audio.controls = true;
      bubble.append(el("div", "muted", content.voice ? "🎤 Voice message" : "🎵 Audio"), audio);
      break;
    }
    case "document": {
      const doc = el("a", "doc");
      doc.href = mediaUrl(content.id);
      doc.target = "_blank";
      doc.append(el("span", "icon-big", "📄"), el("span", "", content.filename || "Document"));
      bubble.append(doc);
      addText(bubble, content.caption);
      break;
    }
    case "interactive": addText(bubble, summary({mine: true, message})); break;
    case "location": addText(bubble, `📍 ${content.name || "Location"} (${content.latitude}, ${content.longitude})`); break;
    default: addText(bubble, `[${message.type}]`);
  }
}

function mediaSource(content) {
  if (/^https?:/.test(content.link || "")) return content.link;
  return content.id ? mediaUrl(content.id) : "";
}

function fillTheirs(bubble, request) {
  const type = request.type || "text";
  const content = request[type] || {};
  switch (type) {
    case "text": return addText(bubble, content.body);
    case "interactive": {
      const header = content.header || {};
      if (header.type === "text" && header.text) bubble.append(el("div", "interactive-header", header.text));
      addText(bubble, (content.body || {}).text);
      if (content.footer && content.footer.text) bubble.append(el("div", "interactive-footer", content.footer.text));
      return;
    }
    case "image":
    case "sticker": {
      const img = el("img", type === "sticker" ? "media-img sticker" : "media-img");
      img.src = mediaSource(content);
      img.alt = content.caption || type;
      bubble.append(img);
      return addText(bubble, content.caption);
    }
    case "video":
    case "audio": {
      const player = el(type);
      player.src = mediaSource(content);
      player.controls = true;
      bubble.append(player);
      return addText(bubble, content.caption);
    }
    case "document": {
      const doc = el("a", "doc");
      doc.href = mediaSource(content);
      doc.target = "_blank";
      doc.rel = "noopener";
      doc.append(el("span", "icon-big", "📄"), el("span", "", content.filename || "Document"));
      bubble.append(doc);
      return addText(bubble, content.caption);
    }
    case "location": {
      const map = el("a", "doc");
      map.href = `https://www.openstreetmap.org/?mlat=${content.latitude}&mlon=${content.longitude}`;
      map.target = "_blank";
      map.rel = "noopener";
      map.append(el("span", "icon-big", "📍"), el("span", "", content.name || `${content.latitude}, ${content.longitude}`));
      bubble.append(map);
      return addText(bubble, content.address);
    }
    case "contacts": {
      for (const card of request.contacts || []) {
        const box = el("div", "contact-card");
        box.append(el("span", "icon-big", "👤"), el("strong", "", (card.name || {}).formatted_name || "Contact"));
        for (const phone of card.phones || []) box.append(el("div", "muted", `📞 ${phone.phone}`));
        for (const email of card.emails || []) box.append(el("div", "muted", `✉️ ${email.email}`));
        bubble.append(box);
      }
      return;
    }
    case "template": {
      bubble.append(el("div", "interactive-header", `Template: ${content.name} (${(content.language || {}).code || ""})`));
      const texts = (content.components || []).flatMap((c) => (c.parameters || []).map((p) => p.text || p.type));
      return addText(bubble, texts.length ? texts.join(" · ") : "(no parameters)");
    }
    default: addText(bubble, `[${type}] ${content.caption || content.filename || content.link || content.id || ""}`);
  }
}

function interactiveControls(item) {
  const content = item.request.interactive;
  const box = el("div", "buttons");
  if (content.type === "button") {
    for (const button of content.action.buttons) {
      const b = el("button", "", button.reply.title);
      b.type = "button";
      b.dataset.replyId = button.reply.id;
      b.addEventListener("click", () => sendAction({type: "button_reply", id: button.reply.id, title: button.reply.title, reply_to: item.wamid}));
      box.append(b);
    }
  } else if (content.type === "list") {
    const open = el("button", "list-open", `☰ ${content.action.button}`);
    open.type = "button";
    open.addEventListener("click", () => {
      if (state.openLists.has(item.wamid)) state.openLists.delete(item.wamid); else state.openLists.add(item.wamid);
      render();
    });
    box.append(open);
    if (state.openLists.has(item.wamid)) {
      const rows = el("div", "list-rows");
      for (const section of content.action.sections) {
        if (section.title) rows.append(el("h4", "", section.title));
        for (const row of section.rows || []) {
          const b = el("button", "", row.title);
          b.type = "button";
          b.dataset.replyId = row.id;
          if (row.description) b.append(el("small", "", row.description));
          b.addEventListener("click", () => {
            state.openLists.delete(item.wamid);
            sendAction({type: "list_reply", id: row.id, title: row.title, description: row.description, reply_to: item.wamid});
          });
          rows.append(b);
        }
      }
      box.append(rows);
    }
  } else if (content.type === "cta_url") {
    const parameters = content.action.parameters || {};
    const link = el("a", "cta", `🔗 ${parameters.display_text}`);
    link.href = parameters.url;
    link.target = "_blank";
    link.rel = "noopener";
    box.append(link);
  } else if (content.type === "location_request_message") {
    const share = el("button", "", "📍 Send location");
    share.type = "button";
    share.addEventListener("click", () => sendAction({
      type: "location", latitude: 52.5200, longitude: 13.4050, name: "Simulated location", address: "Berlin",
      reply_to: item.wamid,
    }));
    box.append(share);
  }
  return box;
}

function flash(wamid) {
  const bubble = document.querySelector(`.bubble[data-wamid="${CSS.escape(wamid)}"]`);
  if (!bubble) return;
  bubble.scrollIntoView({block: "center", behavior: "smooth"});
  bubble.classList.remove("flash");
  void bubble.offsetWidth;
  bubble.classList.add("flash");
}

function notice(text) {
  const box = $("messages");
  const row = el("div", "notice");
  row.append(el("span", "", text));
  box.append(row);
  box.scrollTop = box.scrollHeight;
}

function renderReplyPreview() {
  const preview = $("reply-preview");
  const target = state.replyTo && conversation().byId.get(state.replyTo);
  preview.hidden = !target;
  if (target) {
    $("reply-author").textContent = target.mine ? "You" : BUSINESS;
    $("reply-text").textContent = summary(target);
  }
}

function openPicker(event, wamid) {
  event.stopPropagation();
  const picker = $("emoji-picker");
  picker.replaceChildren();
  for (const emoji of [...EMOJIS, ""]) {
    const b = el("button", "", emoji || "✕");
    b.title = emoji ? `React ${emoji}` : "Remove reaction";
    b.addEventListener("click", () => { picker.hidden = true; sendAction({type: "reaction", message_id: wamid, emoji}); });
    picker.append(b);
  }
  picker.style.left = `${Math.max(8, event.clientX - 120)}px`;
  picker.style.top = `${Math.max(8, event.clientY - 56)}px`;
  picker.hidden = false;
}

// ---------------------------------------------------------------------------------------------------------------
// The inspector: what the last (or the clicked) message did on the wire.

function inspectedWamid() {
  if (state.selected) return state.selected;
  const inbound = state.events.filter((e) => e.kind === "inbound");
  return inbound.length ? inbound[inbound.length - 1].wamid : null;
}

function ms(value) {
  if (value === null || value === undefined) return "—";
  return `${value < 10 ? value.toFixed(1) : Math.round(value)} ms`;
}

function jsonBlock(value) {
  const pre = el("pre", "json");
  pre.textContent = typeof value === "string" ? value : JSON.stringify(value, null, 2);
  return pre;
}

function renderInspector(items, byId, calls) {
  const body = $("inspector-body");
  const wamid = inspectedWamid();
  const item = wamid && byId.get(wamid);
  if (!item) return;
  $("inspected").textContent = state.selected ? "the message you clicked" : "the last message";
  const next = items.find((i) => i.mine && i.seq > item.seq);
  const related = calls.filter((c) => c.seq > item.seq && (!next || c.seq < next.seq));
  const read = related.find((c) => c.kind === "read" && c.status === 200);
  const sends = related.filter((c) => c.kind === "send");
  const firstSend = sends.find((c) => c.status === 200);
  const after = (call) => (call ? (call.at - item.at) * 1000 : null);

  const parts = [];
  parts.push(el("h3", "", `${item.message.type} message`));
  const id = el("div", "muted");
  id.textContent = item.wamid;
  parts.push(id);

  parts.push(el("h3", "", "Timings"));
  const table = el("table", "timings");
  const rows = [
    ["Webhook answered", item.ack ? `${item.ack.status ?? "no answer"} in ${ms(item.ack.ms)}` : "waiting…"],
    ["Marked read, typing shown", read ? `+${ms(after(read))}` : "—"],
    ["Model and pipeline", read && firstSend ? ms((firstSend.at - read.at) * 1000 - read.ms) : "—"],
    ["First reply sent", firstSend ? `+${ms(after(firstSend) + firstSend.ms)}` : "—"],
    ...sends.map((c, n) => [`Graph send ${n + 1}`, `${c.status} in ${ms(c.ms)}`]),
  ];
  for (const [label, value] of rows) {
    const tr = el("tr");
    tr.append(el("td", "", label), el("td", "", value));
    table.append(tr);
  }
  parts.push(table);

  parts.push(...renderModel(item.model));

  parts.push(el("h3", "", "Webhook"));
  const post = el("div", "muted");
  post.textContent = `POST ${item.ack ? item.ack.url : "/whatsapp/webhook"}` + (item.ack && item.ack.via ? ` (${item.ack.via})` : "");
  parts.push(post);
  if (item.ack && item.ack.signed) parts.push(el("div", "muted", "Signed with the sandbox's own app secret (X-Hub-Signature-256)"));
  parts.push(jsonBlock(item.webhook));

  parts.push(el("h3", "", `Graph API calls (${related.length})`));
  if (!related.length) parts.push(el("p", "muted", "None yet."));
  for (const call of related) {
    const details = el("details", "call");
    const summaryLine = el("summary");
    summaryLine.append(el("span", `badge${call.status === 200 ? "" : " bad"}`, String(call.status)));
    summaryLine.append(el("span", "path", `${call.method} ${call.path}`));
    summaryLine.append(el("span", "muted", ms(call.ms)));
    details.append(summaryLine);
    details.append(el("div", "label", `${call.kind}${call.typing ? " + typing indicator" : ""}`));
    if (call.request) details.append(el("div", "label", "request"), jsonBlock(call.request));
    details.append(el("div", "label", "response"), jsonBlock(call.response));
    parts.push(details);
  }
  const open = new Set([...body.querySelectorAll("details[open] summary .path")].map((s) => s.textContent));
  body.replaceChildren(...parts);
  body.querySelectorAll("details summary .path").forEach((s) => { if (open.has(s.textContent)) s.closest("details").open = true; });
}

const HANDOFF = "transfer_to_";

function shortArguments(text) {
  try {
    const args = JSON.parse(text || "{}");
    return Object.entries(args).map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(", ");
  } catch (error) {
    return text;
  }
}

// What the agents asked the model while answering the message: each request, the tool calls it answered with (and
// their results, which open the next request), the handoffs, and the final words.
function renderModel(requests) {
  const parts = [el("h3", "", `Agent and model (${requests.length} request${requests.length === 1 ? "" : "s"})`)];
  if (!requests.length) {
    parts.push(el("p", "muted", "No model request for this message (yet)."));
    return parts;
  }
  const named = new Map();
  const steps = el("ol", "steps");
  requests.forEach((request, n) => {
    for (const result of request.tool_results || []) {
      const name = named.get(result.tool_call_id) || "tool";
      if (name.startsWith(HANDOFF)) continue;
      steps.append(el("li", "step result", `${name} returned: ${result.content ?? ""}`));
    }
    const step = el("li", "step request");
    const line = el("div");
    line.append(el("span", `badge${request.error ? " bad" : ""}`, `#${n + 1}`));
    line.append(el("span", "", ` ${request.model} · ${request.messages} messages · ${ms(request.ms)}`));
    step.append(line);
    if (request.tools && request.tools.length) step.append(el("div", "muted", `offered: ${request.tools.join(", ")}`));
    if (request.error) step.append(el("div", "error", request.error));
    const answer = request.answer || {};
    for (const call of answer.tool_calls || []) {
      named.set(call.id, call.name);
      const text = call.name.startsWith(HANDOFF)
        ? `handoff to ${call.name.slice(HANDOFF.length)}`
        : `tool call ${call.name}(${shortArguments(call.arguments)})`;
      step.append(el("div", call.name.startsWith(HANDOFF) ? "handoff" : "tool-call", text));
    }
    if (answer.content) step.append(el("div", "answer", `answer: ${answer.content}`));
    const details = el("details", "call");
    const summaryLine = el("summary");
    summaryLine.append(el("span", "path", `model request #${n + 1}: what was sent and answered`));
    details.append(summaryLine);
    details.append(jsonBlock(request));
    step.append(details);
    steps.append(step);
  });
  parts.push(steps);
  return parts;
}

// ---------------------------------------------------------------------------------------------------------------
// Voice notes: recorded in the browser where allowed, else picked as an audio file.

async function toggleRecording() {
  const button = $("record");
  if (state.recorder) { state.recorder.stop(); return; }
  if (!(navigator.mediaDevices && window.MediaRecorder)) { pickAudio(); return; }
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({audio: true});
  } catch (error) {
    notice("The browser did not allow the microphone: pick an audio file instead.");
    pickAudio();
    return;
  }
  const type = ["audio/ogg;codecs=opus", "audio/webm;codecs=opus", "audio/webm"].find((t) => MediaRecorder.isTypeSupported(t)) || "";
  const recorder = new MediaRecorder(stream, type ? {mimeType: type} : {});
  const chunks = [];
  recorder.ondataavailable = (event) => chunks.push(event.data);
  recorder.onstop = () => {
    stream.getTracks().forEach((t) => t.stop());
    state.recorder = null;
    button.classList.remove("recording");
    button.title = "Record a voice note";
    const mime = (recorder.mimeType || "audio/webm").split(";")[0];
    const ext = mime.includes("ogg") ? "ogg" : "webm";
    sendFile(new File(chunks, `voice-note.${ext}`, {type: recorder.mimeType || mime}), true);
  };
  recorder.start();
  state.recorder = recorder;
  button.classList.add("recording");
  button.title = "Stop and send";
}

function pickAudio() {
  const input = $("file");
  const accept = input.accept;
  input.accept = "audio/*";
  input.dataset.voice = "true";
  input.click();
  input.accept = accept;
}

// ---------------------------------------------------------------------------------------------------------------
// Wiring.

function autosize() {
  const composer = $("composer");
  composer.style.height = "auto";
  composer.style.height = `${Math.min(composer.scrollHeight, 120)}px`;
}

function start() {
  $("composer").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey) { event.preventDefault(); sendText(); }
  });
  $("composer").addEventListener("input", autosize);
  $("messages").addEventListener("scroll", (event) => { state.stick = nearBottom(event.target); });
  // A photo, video or voice note grows its bubble when it loads (load events do not bubble: capture them).
  $("messages").addEventListener("load", followNewMessages, true);
  $("messages").addEventListener("loadedmetadata", followNewMessages, true);
  $("send").addEventListener("click", sendText);
  $("record").addEventListener("click", toggleRecording);
  $("reply-cancel").addEventListener("click", () => { state.replyTo = null; renderReplyPreview(); });
  $("file").addEventListener("change", (event) => {
    const input = event.target;
    const voice = input.dataset.voice === "true";
    delete input.dataset.voice;
    sendFile(input.files[0], voice);
    input.value = "";
  });
  $("add-customer").addEventListener("submit", async (event) => {
    event.preventDefault();
    const error = $("add-error");
    try {
      const kind = $("new-kind").value;
      const known = kind === "username" ? {username: $("new-number").value} : {wa_id: $("new-number").value};
      const added = await postJson("/sandbox/api/customers", {kind, ...known, name: $("new-name").value});
      $("new-number").value = "";
      $("new-name").value = "";
      error.hidden = true;
      await loadCustomers();
      switchTo(added.wa_id);
    } catch (problem) {
      error.textContent = problem.message;
      error.hidden = false;
    }
  });
  $("new-kind").addEventListener("change", (event) => {
    const username = event.target.value === "username";
    const field = $("new-number");
    field.placeholder = username ? "Username, optional" : "Phone, country code first";
    field.inputMode = username ? "text" : "tel";
    field.required = !username;
  });
  document.addEventListener("click", () => { $("emoji-picker").hidden = true; });
  document.addEventListener("visibilitychange", reportSeen);
  loadCustomers();
  setInterval(() => loadCustomers().catch(() => {}), 5000);
}

start();
