// The Vary (Region) editor: marks shapes over the image (kept in the image's own pixels, so the
// screen's scale never matters), then sends them as a black-and-white mask PNG with the prompt.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const image = $("image");
  const canvas = $("canvas");
  const prompt = $("prompt");
  const submit = $("submit");
  const status = $("status");
  const undo = $("undo");
  const clear = $("clear");
  const tools = { rect: $("tool-rect"), lasso: $("tool-lasso") };
  const postUrl = $("editor").dataset.post; // relative: the page's own address
  const shapes = []; // {kind: "rect", x0, y0, x1, y1} or {kind: "lasso", points: [[x, y], ...]}
  let tool = "rect";
  let current = null; // the shape being drawn
  let done = false; // a job was queued: the link is spent

  function show(text, kind) {
    status.textContent = text;
    status.className = kind || "";
  }

  function setTool(name) {
    tool = name;
    for (const [key, button] of Object.entries(tools)) {
      button.setAttribute("aria-pressed", String(key === name));
    }
  }

  function ready() {
    return image.complete && image.naturalWidth > 0;
  }

  // A pointer event's position in image pixels, kept inside the image.
  function toImage(event) {
    const box = canvas.getBoundingClientRect();
    const x = ((event.clientX - box.left) / box.width) * image.naturalWidth;
    const y = ((event.clientY - box.top) / box.height) * image.naturalHeight;
    return [
      Math.min(Math.max(x, 0), image.naturalWidth),
      Math.min(Math.max(y, 0), image.naturalHeight),
    ];
  }

  function trace(ctx, shape) {
    ctx.beginPath();
    if (shape.kind === "rect") {
      const x = Math.min(shape.x0, shape.x1);
      const y = Math.min(shape.y0, shape.y1);
      ctx.rect(x, y, Math.abs(shape.x1 - shape.x0), Math.abs(shape.y1 - shape.y0));
    } else {
      const [first, ...rest] = shape.points;
      ctx.moveTo(first[0], first[1]);
      for (const [x, y] of rest) ctx.lineTo(x, y);
      ctx.closePath();
    }
  }

  function worthKeeping(shape) {
    if (shape.kind === "rect") {
      return Math.abs(shape.x1 - shape.x0) >= 1 && Math.abs(shape.y1 - shape.y0) >= 1;
    }
    return shape.points.length >= 3;
  }

  function draw() {
    if (!ready()) return;
    const box = canvas.getBoundingClientRect();
    const ratio = window.devicePixelRatio || 1;
    const width = Math.max(1, Math.round(box.width * ratio));
    const height = Math.max(1, Math.round(box.height * ratio));
    if (canvas.width !== width || canvas.height !== height) {
      canvas.width = width;
      canvas.height = height;
    }
    const ctx = canvas.getContext("2d");
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, width, height);
    // Draw in image pixels; the canvas's own opacity makes the marks see-through.
    ctx.setTransform(width / image.naturalWidth, 0, 0, height / image.naturalHeight, 0, 0);
    ctx.fillStyle = "#4da3ff";
    for (const shape of shapes) {
      trace(ctx, shape);
      ctx.fill();
    }
    if (current) {
      trace(ctx, current);
      ctx.fill();
      ctx.lineWidth = (2 * image.naturalWidth) / width;
      ctx.strokeStyle = "#ffffff";
      ctx.stroke();
    }
    undo.disabled = done || shapes.length === 0;
    clear.disabled = done || shapes.length === 0;
  }

  canvas.addEventListener("pointerdown", (event) => {
    if (done || !ready() || event.button !== 0) return;
    event.preventDefault();
    canvas.setPointerCapture(event.pointerId);
    const [x, y] = toImage(event);
    current = tool === "rect" ? { kind: "rect", x0: x, y0: y, x1: x, y1: y }
                              : { kind: "lasso", points: [[x, y]] };
    draw();
  });

  canvas.addEventListener("pointermove", (event) => {
    if (!current) return;
    const [x, y] = toImage(event);
    if (current.kind === "rect") {
      current.x1 = x;
      current.y1 = y;
    } else {
      current.points.push([x, y]);
    }
    draw();
  });

  function finish() {
    if (current && worthKeeping(current)) shapes.push(current);
    current = null;
    draw();
  }
  canvas.addEventListener("pointerup", finish);
  canvas.addEventListener("pointercancel", finish);

  tools.rect.addEventListener("click", () => setTool("rect"));
  tools.lasso.addEventListener("click", () => setTool("lasso"));
  undo.addEventListener("click", () => { shapes.pop(); draw(); });
  clear.addEventListener("click", () => { shapes.length = 0; draw(); });

  // The mask at the image's own size: black everywhere, white where it is to be redrawn.
  function maskBlob() {
    const mask = document.createElement("canvas");
    mask.width = image.naturalWidth;
    mask.height = image.naturalHeight;
    const ctx = mask.getContext("2d");
    ctx.fillStyle = "#000000";
    ctx.fillRect(0, 0, mask.width, mask.height);
    ctx.fillStyle = "#ffffff";
    for (const shape of shapes) {
      trace(ctx, shape);
      ctx.fill();
    }
    return new Promise((resolve, reject) => {
      mask.toBlob((blob) => (blob ? resolve(blob) : reject(new Error("no mask"))), "image/png");
    });
  }

  submit.addEventListener("click", async () => {
    if (!ready()) return show("The image has not loaded yet.", "error");
    if (shapes.length === 0) return show("Mark the area to redraw first: drag over the image.", "error");
    const text = prompt.value.trim();
    if (!text) return show("Write a prompt.", "error");
    submit.disabled = true;
    show("Sending…");
    try {
      const form = new FormData();
      form.append("mask", await maskBlob(), "mask.png");
      form.append("prompt", text);
      const response = await fetch(postUrl, { method: "POST", body: form });
      const answer = await response.json().catch(() => ({}));
      if (response.ok) {
        done = true;
        draw();
        show(answer.message || "Queued.", "ok");
        return;
      }
      show(answer.error || `The bot answered ${response.status}.`, "error");
      // A forged, used or expired link stays unusable; other errors may be fixed and resent.
      submit.disabled = [403, 410].includes(response.status);
    } catch (error) {
      show(`Could not reach the bot: ${error.message}`, "error");
      submit.disabled = false;
    }
  });

  image.addEventListener("load", draw);
  image.addEventListener("error", () => show("The image could not be loaded.", "error"));
  new ResizeObserver(draw).observe(image);
  if (ready()) draw();
})();
