/* Maps: Leaflet (vendored), no internet tiles. Layers: schematic kecamatan cells, reports, posts,
   and a local MBTiles basemap when the center configured one. */
(function () {
  "use strict";
  if (!window.L) return;
  var KEFA = [-9.447, 124.479];

  function base(el, zoom) {
    var map = L.map(el, { zoomControl: true, attributionControl: true }).setView(KEFA, zoom);
    if (el.dataset.tiles) {
      L.tileLayer("/tiles/{z}/{x}/{y}", { maxZoom: 18, attribution: "© OpenStreetMap contributors (ODbL)" }).addTo(map);
    }
    map.attributionControl.setPrefix("Leaflet");
    fetch("/static/map/ttu-kecamatan.geojson", { credentials: "same-origin" })
      .then(function (r) { return r.json(); })
      .then(function (data) {
        L.geoJSON(data, {
          style: { color: "#495057", weight: 1, fillColor: "#f8f9fa", fillOpacity: el.dataset.tiles ? 0.05 : 0.6 },
          onEachFeature: function (f, layer) {
            layer.bindTooltip(f.properties.name, { permanent: zoom >= 10, direction: "center", className: "kec-label" });
          }
        }).addTo(map).bringToBack();
      });
    return map;
  }

  function popup(props) {
    var div = document.createElement("div");
    var a = document.createElement("a");
    a.href = "/laporan/" + encodeURIComponent(props.report_id);
    a.textContent = "#" + props.ref + " " + props.label + " (" + props.status + ")";
    var p = document.createElement("p");
    p.className = "raw";
    p.textContent = props.text_raw; /* text, never HTML */
    div.appendChild(a);
    div.appendChild(p);
    return div;
  }

  var big = document.getElementById("map");
  if (big) {
    var map = base(big, 10);
    var reports = L.layerGroup().addTo(map);
    var posts = L.layerGroup().addTo(map);
    L.control.layers(null, { "Laporan": reports, "Pos": posts }).addTo(map);
    var load = function () {
      fetch("/api/map.geojson?" + (big.dataset.query || ""), { credentials: "same-origin" })
        .then(function (r) { return r.json(); })
        .then(function (data) {
          reports.clearLayers();
          data.features.forEach(function (f) {
            var c = f.geometry.coordinates;
            var open = ["baru", "diterima", "diverifikasi", "dikirim"].indexOf(f.properties.status) >= 0;
            L.circleMarker([c[1], c[0]], {
              radius: f.properties.life_safety ? 9 : 7, color: "#000", weight: f.properties.status === "baru" ? 3 : 1,
              fillColor: f.properties.color, fillOpacity: open ? 0.9 : 0.35
            }).bindPopup(popup(f.properties)).addTo(reports);
          });
          big.dataset.reports = String(data.features.length);
        });
      fetch("/api/posts.geojson", { credentials: "same-origin" })
        .then(function (r) { return r.json(); })
        .then(function (data) {
          posts.clearLayers();
          data.features.forEach(function (f) {
            var c = f.geometry.coordinates;
            var ok = f.properties.online;
            var m = L.marker([c[1], c[0]], {
              icon: L.divIcon({ className: "", html: "", iconSize: [14, 14] })
            });
            m.setIcon(L.divIcon({ className: "post-dot " + (ok ? "on" : "off"), iconSize: [14, 14] }));
            var label = (f.properties.name || f.properties.post_id) + (ok ? " — aktif" : " — SENYAP");
            m.bindTooltip(label);
            m.addTo(posts);
          });
          big.dataset.posts = String(data.features.length);
        });
    };
    load();
    document.addEventListener("siaga:change", load);
  }

  var small = document.getElementById("detail-map");
  if (small) {
    var m2 = base(small, 11);
    var place = function () {
      var el = document.getElementById("detail-map");
      var lat = parseFloat(el.dataset.lat), lon = parseFloat(el.dataset.lon);
      if (isNaN(lat) || isNaN(lon)) return;
      var acc = parseFloat(el.dataset.acc) || 0;
      L.circleMarker([lat, lon], { radius: 8, color: "#000", fillColor: el.dataset.color, fillOpacity: 0.9 }).addTo(m2);
      if (acc > 0) L.circle([lat, lon], { radius: acc, color: el.dataset.color, weight: 1, fillOpacity: 0.1 }).addTo(m2);
      m2.setView([lat, lon], 12);
    };
    place();
  }
})();
