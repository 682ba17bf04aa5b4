// The console's only script (served by the post; CSP allows nothing else).  Text is never inserted as
// markup except the server's own autoescaped fragments.
(function () {
  "use strict";
  var EVERY_MS = 4000;

  function get(url, done) {
    var xhr = new XMLHttpRequest();
    xhr.open("GET", url);
    xhr.setRequestHeader("X-Requested-With", "fetch");
    xhr.onload = function () {
      if (xhr.status === 401) { window.location.href = "/masuk"; return; }
      if (xhr.status === 200) done(xhr.responseText);
    };
    xhr.send();
  }

  // Live parts: refetched only while the page is visible (a phone in a pocket asks nothing).
  function refresh() {
    if (document.visibilityState !== "visible") return;
    var parts = document.querySelectorAll("[data-poll]");
    Array.prototype.forEach.call(parts, function (el) {
      get(el.getAttribute("data-poll"), function (html) {
        if (el.innerHTML !== html) el.innerHTML = html;
      });
    });
    var badge = document.getElementById("unread");
    if (badge) {
      get("/pesan/belum-dibaca", function (body) {
        var n = JSON.parse(body).unread;
        badge.textContent = String(n);
        badge.className = n ? "badge" : "badge zero";
      });
    }
  }
  setInterval(refresh, EVERY_MS);
  document.addEventListener("visibilitychange", refresh);

  // The classifier's suggestion while the officer types; their own choice of category wins.
  var teks = document.getElementById("teks");
  var kategori = document.getElementById("kategori");
  var saran = document.getElementById("saran");
  if (teks && kategori) {
    var chosen = false;
    var timer = null;
    kategori.addEventListener("change", function () { chosen = true; });
    teks.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(function () {
        get("/saran?teks=" + encodeURIComponent(teks.value), function (body) {
          var cat = JSON.parse(body).category;
          saran.textContent = "saran: " + cat;
          if (!chosen) kategori.value = cat;
          kategori.setAttribute("data-suggested", cat);
        });
      }, 350);
    });
  }
})();
