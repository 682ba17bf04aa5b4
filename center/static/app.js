/* Siaga 112 dashboard: live updates (SSE), age timers, sound alert for life-safety reports.
   Report text is never inserted as HTML from JSON: fragments come from the server already escaped
   (Jinja autoescape), and anything built here uses textContent. Only this origin is contacted. */
(function () {
  "use strict";
  var csrf = document.body.dataset.csrf || "";
  window.siagaAlerts = 0;
  window.siagaChanges = 0;

  function duration(ms) {
    var s = Math.max(0, Math.floor(ms / 1000));
    if (s < 60) return s + " dtk";
    if (s < 3600) return Math.floor(s / 60) + " mnt " + (s % 60) + " dtk";
    if (s < 86400) return Math.floor(s / 3600) + " jam " + Math.floor((s % 3600) / 60) + " mnt";
    return Math.floor(s / 86400) + " hari " + Math.floor((s % 86400) / 3600) + " jam";
  }
  function tick() {
    var now = Date.now();
    document.querySelectorAll(".timer[data-since]").forEach(function (el) {
      var since = parseInt(el.dataset.since, 10);
      if (since) el.textContent = duration(now - since);
    });
  }
  tick();
  setInterval(tick, 1000);

  /* ---- sound: WebAudio, generated here (no audio file). Browsers allow sound only after a user
     gesture, so staff switch it on once per tab; the choice is remembered. */
  var audio = null;
  var soundOn = localStorage.getItem("siaga-sound") === "on";
  var toggle = document.getElementById("sound-toggle");
  function showSound() {
    if (!toggle) return;
    toggle.setAttribute("aria-pressed", soundOn ? "true" : "false");
    toggle.textContent = soundOn ? "Suara: aktif" : "Suara: mati";
  }
  function ensureAudio() {
    if (!audio && (window.AudioContext || window.webkitAudioContext)) {
      audio = new (window.AudioContext || window.webkitAudioContext)();
    }
    if (audio && audio.state === "suspended") audio.resume();
  }
  function beep() {
    window.siagaAlerts += 1;
    document.body.dataset.alerts = String(window.siagaAlerts);
    if (!soundOn) return;
    ensureAudio();
    if (!audio) return;
    var t = audio.currentTime;
    [0, 0.25, 0.5].forEach(function (offset) {
      var osc = audio.createOscillator();
      var gain = audio.createGain();
      osc.type = "square";
      osc.frequency.value = 880;
      gain.gain.setValueAtTime(0.0001, t + offset);
      gain.gain.exponentialRampToValueAtTime(0.3, t + offset + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, t + offset + 0.18);
      osc.connect(gain).connect(audio.destination);
      osc.start(t + offset);
      osc.stop(t + offset + 0.2);
    });
  }
  if (toggle) {
    showSound();
    toggle.addEventListener("click", function () {
      soundOn = !soundOn;
      localStorage.setItem("siaga-sound", soundOn ? "on" : "off");
      if (soundOn) ensureAudio();
      showSound();
    });
  }
  document.addEventListener("click", function () { if (soundOn) ensureAudio(); }, { once: true });

  /* ---- live regions: elements with data-live="URL" are re-fetched on every change */
  function refreshLive() {
    document.querySelectorAll("[data-live]").forEach(function (el) {
      fetch(el.dataset.live, { credentials: "same-origin", headers: { "Accept": "text/html" } })
        .then(function (r) {
          if (r.status === 401 || r.redirected) { location.reload(); return null; }
          return r.ok ? r.text() : null;
        })
        .then(function (html) {
          if (html === null) return;
          el.innerHTML = html; /* server-rendered, autoescaped fragment */
          tick();
          document.dispatchEvent(new CustomEvent("siaga:refreshed"));
        })
        .catch(function () {});
    });
  }
  function setBadge(id, n) {
    var el = document.getElementById(id);
    if (!el) return;
    el.textContent = String(n);
    el.classList.toggle("zero", !n);
  }
  function summary(s) {
    if (!s) return;
    setBadge("badge-unack", s.unacknowledged);
    setBadge("badge-silent", s.posts_silent);
    document.title = (s.unacknowledged ? "(" + s.unacknowledged + ") " : "") + document.title.replace(/^\(\d+\) /, "");
  }

  var live = document.getElementById("live-state");
  function connect() {
    if (!window.EventSource) return;
    var source = new EventSource("/api/events");
    source.addEventListener("hello", function (e) {
      if (live) { live.classList.add("on"); live.classList.remove("off"); }
      summary(JSON.parse(e.data).summary);
    });
    source.addEventListener("change", function (e) {
      var data = JSON.parse(e.data);
      window.siagaChanges += 1;
      summary(data.summary);
      var urgent = (data.new || []).filter(function (n) { return n.life_safety; });
      if (urgent.length) beep();
      refreshLive();
      document.dispatchEvent(new CustomEvent("siaga:change", { detail: data }));
    });
    source.onerror = function () {
      if (live) { live.classList.add("off"); live.classList.remove("on"); }
    };
  }
  connect();

  /* forms posted by fetch() elsewhere would send this header; plain forms carry the hidden field */
  window.siagaCsrf = csrf;
})();
