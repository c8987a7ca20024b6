// The song map (Figure 1): a canvas of t-SNE points, coloured by tags; hovering shows
// artist and title, clicking plays the song's clip. No library, no network: the map
// page of `coldtune map` inlines this file, and `coldtune serve` serves it.
//
// data: {ids, artists, titles, cold, x, y, clips, tags, song_tags, colour_tags}
//   song_tags[i]: indices into `tags` of song i's tags; colour_tags: indices coloured
//   at first; clips[i]: a URL (relative to the page) or null.
"use strict";

const ColdtuneMap = (() => {
  const PALETTE = ["#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b",
                   "#e377c2", "#17becf"];
  const GREY = "#c8c8c8";

  function create(canvas, data, options = {}) {
    const n = data.ids.length;
    const ctx = canvas.getContext("2d");
    const tip = options.tooltip;
    const player = options.player;
    let colourTags = (data.colour_tags || []).slice(0, PALETTE.length);
    let marker = null;  // {x, y, label}: a new clip placed on the map
    let selected = -1;
    let hover = -1;

    let minX = Infinity, maxX = -Infinity, minY = Infinity, maxY = -Infinity;
    for (let i = 0; i < n; i++) {
      minX = Math.min(minX, data.x[i]); maxX = Math.max(maxX, data.x[i]);
      minY = Math.min(minY, data.y[i]); maxY = Math.max(maxY, data.y[i]);
    }
    const tagSets = data.song_tags.map((t) => new Set(t));

    function size() {
      const rect = canvas.getBoundingClientRect();
      const ratio = window.devicePixelRatio || 1;
      canvas.width = Math.max(1, Math.round(rect.width * ratio));
      canvas.height = Math.max(1, Math.round(rect.height * ratio));
      ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
      return rect;
    }

    function screen(x, y) {
      const rect = canvas.getBoundingClientRect();
      const pad = 14;
      const scale = Math.min((rect.width - 2 * pad) / (maxX - minX || 1),
                             (rect.height - 2 * pad) / (maxY - minY || 1));
      const offX = (rect.width - scale * (maxX - minX)) / 2;
      const offY = (rect.height - scale * (maxY - minY)) / 2;
      return [offX + scale * (x - minX), rect.height - (offY + scale * (y - minY))];
    }

    function colour(i) {
      for (let c = 0; c < colourTags.length; c++) {
        if (tagSets[i].has(colourTags[c])) return PALETTE[c];
      }
      return GREY;
    }

    function draw() {
      const rect = size();
      ctx.clearRect(0, 0, rect.width, rect.height);
      // grey first, so coloured songs stay visible on top
      for (const pass of [0, 1]) {
        for (let i = 0; i < n; i++) {
          const fill = colour(i);
          if ((fill === GREY) !== (pass === 0)) continue;
          const [sx, sy] = screen(data.x[i], data.y[i]);
          ctx.beginPath();
          ctx.arc(sx, sy, data.cold[i] ? 4 : 3, 0, 2 * Math.PI);
          ctx.fillStyle = fill;
          ctx.fill();
          if (data.cold[i]) {
            ctx.lineWidth = 1;
            ctx.strokeStyle = "#222";
            ctx.stroke();
          }
        }
      }
      for (const i of [hover, selected]) {
        if (i < 0) continue;
        const [sx, sy] = screen(data.x[i], data.y[i]);
        ctx.beginPath();
        ctx.arc(sx, sy, 7, 0, 2 * Math.PI);
        ctx.lineWidth = 2;
        ctx.strokeStyle = "#000";
        ctx.stroke();
      }
      if (marker) {
        const [sx, sy] = screen(marker.x, marker.y);
        star(sx, sy, 11);
      }
    }

    function star(cx, cy, r) {
      ctx.beginPath();
      for (let k = 0; k < 10; k++) {
        const radius = k % 2 ? r * 0.45 : r;
        const angle = -Math.PI / 2 + k * Math.PI / 5;
        ctx.lineTo(cx + radius * Math.cos(angle), cy + radius * Math.sin(angle));
      }
      ctx.closePath();
      ctx.fillStyle = "#ffd700";
      ctx.fill();
      ctx.lineWidth = 2;
      ctx.strokeStyle = "#000";
      ctx.stroke();
    }

    function nearest(event) {
      const rect = canvas.getBoundingClientRect();
      const px = event.clientX - rect.left, py = event.clientY - rect.top;
      let best = -1, bestD = 64;  // within 8 px
      for (let i = 0; i < n; i++) {
        const [sx, sy] = screen(data.x[i], data.y[i]);
        const d = (sx - px) ** 2 + (sy - py) ** 2;
        if (d < bestD) { best = i; bestD = d; }
      }
      return best;
    }

    function label(i) {
      const who = data.artists[i] || data.titles[i]
        ? `${data.artists[i]} - ${data.titles[i]}` : data.ids[i];
      const tags = data.song_tags[i].slice(0, 6).map((t) => data.tags[t]).join(", ");
      return { who, detail: `${data.ids[i]}${data.cold[i] ? " (cold)" : ""}`, tags };
    }

    canvas.addEventListener("mousemove", (event) => {
      const i = nearest(event);
      if (i !== hover) { hover = i; draw(); }
      if (!tip) return;
      if (i < 0) { tip.style.display = "none"; return; }
      const text = label(i);
      tip.replaceChildren();
      const strong = document.createElement("strong");
      strong.textContent = text.who;
      const small = document.createElement("div");
      small.textContent = text.detail;
      const tags = document.createElement("div");
      tags.className = "tags";
      tags.textContent = text.tags;
      tip.append(strong, small, tags);
      const rect = canvas.getBoundingClientRect();
      tip.style.left = `${event.clientX - rect.left + 12}px`;
      tip.style.top = `${event.clientY - rect.top + 12}px`;
      tip.style.display = "block";
    });
    canvas.addEventListener("mouseleave", () => {
      hover = -1;
      if (tip) tip.style.display = "none";
      draw();
    });
    canvas.addEventListener("click", (event) => {
      const i = nearest(event);
      if (i < 0) return;
      select(i);
      if (player && data.clips[i]) {
        player.src = data.clips[i];
        player.play().catch(() => {});  // a browser may refuse autoplay; the controls remain
      }
      if (options.onSelect) options.onSelect(i);
    });
    window.addEventListener("resize", draw);

    function select(i) { selected = i; draw(); }
    function setColourTags(tags) { colourTags = tags.slice(0, PALETTE.length); draw(); }
    function placeMarker(x, y, text) { marker = { x, y, label: text }; draw(); }
    function indexOf(id) { return data.ids.indexOf(id); }

    // where song i is drawn, in CSS pixels from the canvas' top left (for tests)
    function pointOf(i) { return screen(data.x[i], data.y[i]); }

    draw();
    return { draw, select, setColourTags, placeMarker, indexOf, pointOf, palette: PALETTE, data };
  }

  // a <select> of tags and a legend, driving `map.setColourTags`
  function controls(map, select, legend) {
    const data = map.data;
    const counts = data.tags.map(() => 0);
    data.song_tags.forEach((t) => t.forEach((j) => { counts[j] += 1; }));
    const first = document.createElement("option");
    first.value = "";
    first.textContent = "(the tags shown first)";
    select.append(first);
    data.tags.forEach((tag, j) => {
      const option = document.createElement("option");
      option.value = String(j);
      option.textContent = `${tag} (${counts[j]})`;
      select.append(option);
    });
    function show(tags) {
      map.setColourTags(tags);
      legend.replaceChildren();
      tags.slice(0, map.palette.length).forEach((j, c) => {
        const item = document.createElement("span");
        item.className = "legend-item";
        const dot = document.createElement("span");
        dot.className = "dot";
        dot.style.background = map.palette[c];
        item.append(dot, document.createTextNode(` ${data.tags[j]}`));
        legend.append(item);
      });
      const cold = document.createElement("span");
      cold.className = "legend-item";
      cold.textContent = "ringed: cold songs";
      legend.append(cold);
    }
    select.addEventListener("change", () => {
      show(select.value === "" ? (data.colour_tags || []) : [Number(select.value)]);
    });
    show(data.colour_tags || []);
  }

  return { create, controls };
})();
