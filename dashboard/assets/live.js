// Keeps a dashboard page current without a reload: every few seconds it
// fetches the page again and swaps in the parts marked data-live. Filters
// apply on change.
(function () {
  "use strict";
  var interval = Number(document.body.dataset.poll) || 3000;
  var state = document.getElementById("live-state");

  function mark(ok) {
    if (!state) return;
    state.classList.toggle("stale", !ok);
    state.textContent = ok ? "live · " + new Date().toLocaleTimeString() : "reconnecting…";
  }

  async function refresh() {
    try {
      var res = await fetch(location.href, { headers: { Accept: "text/html" }, cache: "no-store" });
      if (!res.ok) throw new Error(res.status);
      var doc = new DOMParser().parseFromString(await res.text(), "text/html");
      document.querySelectorAll("[data-live]").forEach(function (el) {
        var fresh = doc.getElementById(el.id);
        if (fresh && fresh.innerHTML !== el.innerHTML) el.replaceWith(document.adoptNode(fresh));
      });
      var head = doc.body.dataset.head;
      if (head && head !== document.body.dataset.head) {
        document.body.dataset.head = head;
        document.dispatchEvent(new CustomEvent("sluice:head", { detail: head }));
      }
      mark(true);
    } catch (e) {
      mark(false);
    }
    setTimeout(refresh, interval);
  }

  document.querySelectorAll("form.filters select").forEach(function (s) {
    s.addEventListener("change", function () { s.form.submit(); });
  });
  setTimeout(refresh, interval);
})();
