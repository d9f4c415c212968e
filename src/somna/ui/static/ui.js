// somna ui: the page's only script (the Content-Security-Policy allows no other, and nothing inline).
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  // a filter applies as soon as it is chosen
  document.querySelectorAll("select.autosubmit").forEach(function (select) {
    select.addEventListener("change", function () { select.form.submit(); });
  });
  // "/" puts the cursor in the search box, as on most sites
  document.addEventListener("keydown", function (event) {
    var q = document.getElementById("q");
    if (event.key === "/" && q && document.activeElement.tagName !== "TEXTAREA" &&
        document.activeElement.tagName !== "INPUT") {
      event.preventDefault();
      q.focus();
    }
  });
  // a revert or a reject asks once: it is undoable, but it is a commit
  document.querySelectorAll("button.revert, button#reject").forEach(function (button) {
    button.addEventListener("click", function () { button.dataset.clicked = "1"; });
  });
  document.body.dataset.ready = "1";
});
